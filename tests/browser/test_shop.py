"""Browser tests of the shop's HTMX flows in headless Chromium.

Starts its own `shop all` (embedded: SQLite, in-memory sessions) on free
ports, seeds it through the JSON API, then shops as people do: registers,
signs in and out, fills a cart, checks out, watches the order; an admin
ships it from the orders list without a page load; pagination follows the
URL, back and forward included. Screenshots of the main pages land in
ci-artifacts/screenshots/.

Environment: SHOP_BIN (the shop binary), SHOP_TEST_CHROMIUM (default
/usr/bin/chromium), SHOP_SCREENSHOTS (default ci-artifacts/screenshots).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SHOP_BIN = Path(os.environ.get("SHOP_BIN", ROOT / "target" / "debug" / "shop"))
CHROMIUM = os.environ.get("SHOP_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("SHOP_SCREENSHOTS", ROOT / "ci-artifacts" / "screenshots"))
PASSWORD = "correct horse battery"
TIMEOUT_MS = 15_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

checks = 0


def check(what: str) -> None:
    global checks
    checks += 1
    print(f"  ok: {what}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Shop:
    """`shop all` on free ports with a data dir of its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="shop-browser-"))
        self.http = free_port()
        self.base = f"http://127.0.0.1:{self.http}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "POSTGRES_DB_"))}
        env.update(
            SHOP_DATA_DIR=str(self.dir / "data"),
            SHOP_HTTP_ADDR=f"127.0.0.1:{self.http}",
            SHOP_USERS_ADDR=f"127.0.0.1:{free_port()}",
            SHOP_INVENTORY_ADDR=f"127.0.0.1:{free_port()}",
            SHOP_ORDERS_ADDR=f"127.0.0.1:{free_port()}",
            SHOP_METRICS_ADDR="127.0.0.1:0",
            NO_COLOR="1",
        )
        self.env = env
        self.log = open(self.dir / "shop.log", "wb")
        self.process = subprocess.Popen([str(SHOP_BIN), "all"], cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the shop did not start; see {self.dir / 'shop.log'}")
            time.sleep(0.1)

    def make_admin(self, email: str) -> None:
        subprocess.run([str(SHOP_BIN), "make-admin", email], cwd=self.dir, env=self.env, check=True, capture_output=True)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=15)
        self.log.close()
        assert code == 0, f"the shop exited with {code}"
        shutil.rmtree(self.dir, ignore_errors=True)


class Api:
    """A JSON client with a cookie jar, for seeding."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(request, timeout=10) as reply:
                text = reply.read()
                return json.loads(text) if text else {}
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{method} {path}: {error.code} {error.read()[:300]!r}") from None


def new_context(browser: Browser, viewport: dict = DESKTOP) -> BrowserContext:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    return context


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def mark(page: Page) -> None:
    """Marks the page; a full page load would lose the mark."""
    page.evaluate("window.__marker = 1")


def still_marked(page: Page) -> bool:
    return page.evaluate("window.__marker === 1")


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/users/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def main() -> int:
    shop = Shop()
    try:
        base = shop.base
        admin_api = Api(base)
        admin_api.call("POST", "/users/register", {"name": "Avery Admin", "email": "admin@example.com", "password": PASSWORD})
        shop.make_admin("admin@example.com")
        admin_api.call("POST", "/users/login", {"email": "admin@example.com", "password": PASSWORD})
        products = []
        for n in range(1, 26):
            product = admin_api.call(
                "POST",
                "/products",
                {"name": f"Product {n:02}", "description": f"The {n}th thing we sell.", "price_minor": 100 * n + 99, "stock": 10},
            )
            products.append(product)
        check("seeded 25 products through the JSON API as an admin")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            customer = new_context(browser).new_page()

            # Register, sign out, sign in.
            customer.goto(f"{base}/users/register")
            shot(customer, "register")
            customer.get_by_label("Your name").fill("Casey Customer")
            customer.get_by_label("Email").fill("casey@example.com")
            customer.get_by_label("Password").fill(PASSWORD)
            customer.get_by_role("button", name="Create account").click()
            expect(customer.get_by_test_id("nav-user")).to_have_text("Casey Customer")
            check("registering through the form signs in (the navigation bar knows)")
            shot(customer, "home")
            customer.get_by_role("button", name="Sign out").click()
            expect(customer.get_by_role("link", name="Sign in")).to_be_visible()
            check("signing out")
            customer.goto(f"{base}/users/login")
            shot(customer, "login")
            sign_in(customer, base, "casey@example.com")
            expect(customer.get_by_test_id("nav-user")).to_have_text("Casey Customer")
            check("signing in through the form")

            # Two products into the cart, with HTMX: the badge counts without a page load.
            first, second = products[0], products[1]
            customer.goto(f"{base}/products/{first['id']}")
            mark(customer)
            customer.get_by_role("button", name="Add to cart").click()
            expect(customer.locator("#cart-count")).to_have_text("1")
            assert still_marked(customer), "adding to the cart reloaded the page"
            shot(customer, "product")
            customer.goto(f"{base}/products/{second['id']}")
            customer.get_by_label("Quantity").fill("2")
            customer.get_by_role("button", name="Add to cart").click()
            expect(customer.locator("#cart-count")).to_have_text("3")
            check("add to cart swaps the badge in place")

            customer.goto(f"{base}/cart")
            expect(customer.locator("#cart")).to_contain_text(first["name"])
            expect(customer.locator("#cart")).to_contain_text(second["name"])
            total = first["price_minor"] + 2 * second["price_minor"]
            expect(customer.locator("#cart tfoot")).to_contain_text(f"€{total // 100}.{total % 100:02}")
            shot(customer, "cart")
            customer.get_by_role("button", name="Place order").click()
            customer.wait_for_url(re.compile(r".*/orders/\d+$"))
            order_id = int(customer.url.rsplit("/", 1)[1])
            expect(customer.get_by_test_id("order-status")).to_have_text("confirmed")
            expect(customer.locator("#order-detail tfoot")).to_contain_text(f"€{total // 100}.{total % 100:02}")
            expect(customer.locator("#cart-count")).to_have_text("0")
            check(f"checkout places order {order_id}, confirmed, at inventory's prices")
            shot(customer, "order")

            # An admin ships it from the list; the row updates in place, and
            # the customer's open order page hears it.
            admin = new_context(browser).new_page()
            sign_in(admin, base, "admin@example.com")
            expect(admin.get_by_test_id("nav-user")).to_have_text("Avery Admin")
            admin.goto(f"{base}/orders")
            shot(admin, "admin-orders")
            mark(admin)
            row = admin.locator(f"#order-row-{order_id}")
            row.get_by_label(f"New status for order {order_id}").select_option("shipped")
            row.get_by_role("button", name="Update").click()
            expect(admin.get_by_test_id(f"order-status-{order_id}")).to_have_text("shipped")
            assert still_marked(admin), "changing the status reloaded the page"
            check("the admin's status change swaps the row without a page load")
            expect(customer.get_by_test_id("order-status")).to_have_text("shipped")
            assert "/orders/" in customer.url
            check("the customer's open order page shows 'shipped' live (server-sent events)")
            customer.reload()
            expect(customer.get_by_test_id("order-status")).to_have_text("shipped")
            expect(customer.locator(".history")).to_contain_text("shipped")

            # Pagination: HTMX swaps push the URL; back, forward and reload agree.
            page = new_context(browser).new_page()
            page.goto(f"{base}/products")
            shot(page, "products")
            mark(page)
            expect(page.locator("#product-list")).to_contain_text("Page 1 of 2")
            page.get_by_role("link", name="Next →").click()
            expect(page.locator("#product-list")).to_contain_text("Page 2 of 2")
            assert page.url.endswith("/products?page=2&page_size=20"), page.url
            assert still_marked(page), "paging reloaded the page"
            page.get_by_role("link", name="← Previous").click()
            expect(page.locator("#product-list")).to_contain_text("Page 1 of 2")
            assert page.url.endswith("/products?page=1&page_size=20"), page.url
            check("next and previous swap the list and push the URL")
            page.go_back()
            expect(page.locator("#product-list")).to_contain_text("Page 2 of 2")
            assert "page=2" in page.url, page.url
            page.go_forward()
            expect(page.locator("#product-list")).to_contain_text("Page 1 of 2")
            check("back and forward follow the URL")
            page.goto(f"{base}/products?page=2&page_size=20")
            expect(page.locator("#product-list")).to_contain_text("Page 2 of 2")
            expect(page.locator("#product-list")).to_contain_text("Product 05")
            check("reloading a page URL shows that page")

            # Inline validation keeps what was typed.
            stranger = new_context(browser).new_page()
            stranger.goto(f"{base}/users/register")
            stranger.get_by_label("Your name").fill("Second Casey")
            stranger.get_by_label("Email").fill("CASEY@example.com")
            stranger.get_by_label("Password").fill(PASSWORD)
            stranger.get_by_role("button", name="Create account").click()
            expect(stranger.locator("#register-email-error")).to_contain_text("already exists")
            expect(stranger.get_by_label("Your name")).to_have_value("Second Casey")
            expect(stranger.get_by_label("Email")).to_have_value("CASEY@example.com")
            expect(stranger.get_by_label("Password")).to_have_value("")
            check("a taken email is shown beside the field, with what was typed kept (not the password)")

            # Phone width.
            phone = new_context(browser, PHONE).new_page()
            phone.goto(base)
            shot(phone, "home-phone")
            phone.goto(f"{base}/products")
            shot(phone, "products-phone")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"the products page scrolls sideways at phone width ({width}px)"
            check("phone width: no sideways scrolling")
            browser.close()
    finally:
        shop.stop()
    print(f"browser: {checks} checks passed; screenshots in {SHOTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
