"""Browser tests of the shop's HTMX flows in headless Chromium.

Starts its own `shop all` (embedded: SQLite, in-memory sessions) on free
ports, seeds it through the JSON API, then shops as people do: registers,
signs in and out, fills a cart, checks out, watches the order; an admin
ships it from the orders list without a page load; pagination follows the
URL, back and forward included. Screenshots of the main pages land in
ci-artifacts/screenshots/ (and failure-*.png of every open page when a check
fails).

Debian's Chromium is driven through executable_path: `playwright install`
(a downloaded browser) is never run. Every wait is on a condition
(Playwright's expect and wait_for_*), never a fixed sleep.

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
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SHOP_BIN = Path(os.environ.get("SHOP_BIN", ROOT / "target" / "debug" / "shop"))
CHROMIUM = os.environ.get("SHOP_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("SHOP_SCREENSHOTS", ROOT / "ci-artifacts" / "screenshots"))
PASSWORD = "correct horse battery"
# Generous: CI machines have two cores and may be compiling meanwhile.
TIMEOUT_MS = 15_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # as root in a container, Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: the tests see only the shop
    "--disable-component-update",
    "--disable-sync",
]

checks = 0


def check(what: str) -> None:
    global checks
    checks += 1
    print(f"  ok: {what}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def money(minor: int) -> str:
    return f"€{minor // 100}.{minor % 100:02}"


class Shop:
    """`shop all` on free ports with a data dir of its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="shop-browser-"))
        self.http = free_port()
        self.base = f"http://127.0.0.1:{self.http}"
        # Nothing of the caller's shop settings (a PostgreSQL, a Redis) leaks in:
        # this is the embedded shop.
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
        self.log_path = self.dir / "shop.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([str(SHOP_BIN), "all"], cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:  # ready when the gateway answers (it starts last); bounded
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the shop exited with {self.process.returncode} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the shop did not answer /healthz within 60 s")
            time.sleep(0.1)

    def make_admin(self, email: str) -> None:
        done = subprocess.run([str(SHOP_BIN), "make-admin", email], cwd=self.dir, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"shop make-admin {email} failed ({done.returncode}): {done.stderr.strip()}")

    def stop(self) -> int:
        """SIGTERM, which must end the shop cleanly; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
            print("the shop did not exit within 30 s of SIGTERM: killed it", file=sys.stderr)
        self.log.close()
        return code

    def print_log_tail(self, lines: int = 40) -> None:
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- the end of the shop's log ({self.log_path}):", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)


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


class Browsing:
    """Pages opened in the test, and what went wrong in them."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.pages: dict[str, Page] = {}
        self.errors: list[str] = []

    def page(self, name: str, viewport: dict = DESKTOP) -> Page:
        # A context of its own: its own cookies, so its own session.
        context: BrowserContext = self.browser.new_context(viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        # The htmx SSE extension announces an open stream with an event; the
        # live order check waits for it (events are not replayed, so a change
        # made before the stream opens would never arrive).
        context.add_init_script(
            "document.addEventListener('htmx:sseOpen', () => { window.__sseOpen = true }, true)"
        )
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{name}: {error}"))
        self.pages[name] = page
        return page

    def no_script_errors(self) -> None:
        assert not self.errors, f"uncaught JavaScript errors: {self.errors}"

    def shoot_all(self, prefix: str) -> None:
        for name, page in self.pages.items():
            try:
                shot(page, f"{prefix}-{name}")
            except Exception as error:  # the page may be gone; the report matters more
                print(f"(no screenshot of {name}: {error})", file=sys.stderr)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def mark(page: Page) -> None:
    """Marks the window; a full page load would lose the mark."""
    page.evaluate("window.__marker = 1")


def assert_still_marked(page: Page, what: str) -> None:
    assert page.evaluate("window.__marker === 1"), f"{what} loaded a whole new page"


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/users/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def seed(shop: Shop) -> list[dict]:
    """An admin (registered with JSON, promoted by the CLI) and 25 products."""
    admin = Api(shop.base)
    admin.call("POST", "/users/register", {"name": "Avery Admin", "email": "admin@example.com", "password": PASSWORD})
    shop.make_admin("admin@example.com")
    # Signing in again puts the new role into the session.
    assert admin.call("POST", "/users/login", {"email": "admin@example.com", "password": PASSWORD})["role"] == "admin"
    products = []
    for n in range(1, 26):
        body = {"name": f"Product {n:02}", "description": f"Thing number {n}.", "price_minor": 100 * n + 99, "stock": 10}
        products.append(admin.call("POST", "/products", body))
    check("seeded an admin and 25 products through the JSON API")
    return products


def shop_as_people_do(browsing: Browsing, base: str, products: list[dict]) -> None:
    # Register, sign out, sign in.
    customer = browsing.page("customer")
    customer.goto(f"{base}/users/register")
    shot(customer, "register")
    customer.get_by_label("Your name").fill("Casey Customer")
    customer.get_by_label("Email").fill("casey@example.com")
    customer.get_by_label("Password").fill(PASSWORD)
    customer.get_by_role("button", name="Create account").click()
    expect(customer.get_by_test_id("nav-user")).to_have_text("Casey Customer")
    check("registering through the form signs in (the navigation bar shows the name)")
    shot(customer, "home")
    customer.get_by_role("button", name="Sign out").click()
    expect(customer.get_by_role("link", name="Sign in")).to_be_visible()
    expect(customer.get_by_test_id("nav-user")).to_have_count(0)
    check("signing out")
    customer.goto(f"{base}/users/login")
    shot(customer, "login")
    sign_in(customer, base, "casey@example.com")
    expect(customer.get_by_test_id("nav-user")).to_have_text("Casey Customer")
    check("signing in through /users/login")

    # Two products into the cart from their pages, with HTMX: the badge
    # counts without a page load.
    first, second = products[0], products[1]
    customer.goto(f"{base}/products/{first['id']}")
    mark(customer)
    customer.get_by_role("button", name="Add to cart").click()
    expect(customer.locator("#cart-count")).to_have_text("1")
    expect(customer.locator("#flash")).to_contain_text(f"Added 1 × {first['name']}")
    assert_still_marked(customer, "adding to the cart")
    shot(customer, "product")
    customer.goto(f"{base}/products/{second['id']}")
    mark(customer)
    customer.get_by_label("Quantity").fill("2")
    customer.get_by_role("button", name="Add to cart").click()
    expect(customer.locator("#cart-count")).to_have_text("3")
    assert_still_marked(customer, "adding to the cart")
    check("add to cart (two products) updates the #cart-count badge without a page load")

    # Checkout.
    total = first["price_minor"] + 2 * second["price_minor"]
    customer.goto(f"{base}/cart")
    expect(customer.locator("#cart")).to_contain_text(first["name"])
    expect(customer.locator("#cart")).to_contain_text(second["name"])
    expect(customer.locator("#cart tfoot")).to_contain_text(money(total))
    shot(customer, "cart")
    customer.get_by_role("button", name="Place order").click()
    customer.wait_for_url(re.compile(r"/orders/\d+$"))
    order_id = int(customer.url.rsplit("/", 1)[1])
    expect(customer.get_by_test_id("order-status")).to_have_text("confirmed")
    expect(customer.locator("#order-detail tfoot")).to_contain_text(money(total))
    expect(customer.locator("#cart-count")).to_have_text("0")
    check(f"Place order lands on /orders/{order_id}: confirmed, {money(total)}, cart emptied")
    shot(customer, "order")

    # An admin ships it from the list; the row updates in place.
    customer.wait_for_function("window.__sseOpen === true")  # the order page listens for changes
    admin = browsing.page("admin")
    sign_in(admin, base, "admin@example.com")
    expect(admin.get_by_test_id("nav-user")).to_have_text("Avery Admin")
    admin.goto(f"{base}/orders")
    expect(admin.get_by_test_id(f"order-status-{order_id}")).to_have_text("confirmed")
    shot(admin, "admin-orders")
    mark(admin)
    row = admin.locator(f"#order-row-{order_id}")
    row.get_by_label(f"New status for order {order_id}").select_option("shipped")
    row.get_by_role("button", name="Update").click()
    expect(admin.get_by_test_id(f"order-status-{order_id}")).to_have_text("shipped")
    # The row is the new one: its select now offers what follows "shipped".
    expect(row.get_by_label(f"New status for order {order_id}").locator("option")).to_have_text(["delivered"])
    assert_still_marked(admin, "changing the status")
    check("the admin's select + Update swaps the row (confirmed → shipped) without a page load")
    expect(customer.get_by_test_id("order-status")).to_have_text("shipped")
    check("the customer's open order page shows 'shipped' live (server-sent events)")
    customer.reload()
    expect(customer.get_by_test_id("order-status")).to_have_text("shipped")
    expect(customer.locator(".history")).to_contain_text("shipped")
    check("after a reload the customer's order page shows 'shipped' and its history")

    # Pagination: HTMX swaps push the URL; back, forward and reload agree.
    page = browsing.page("visitor")
    page.goto(f"{base}/products")
    list_ = page.locator("#product-list")
    expect(list_).to_contain_text("page 1 of 2")
    expect(list_).to_contain_text("Product 25")  # newest first
    shot(page, "products")
    mark(page)
    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(re.compile(r"/products\?page=2&page_size=20$"))
    expect(list_).to_contain_text("page 2 of 2")
    expect(list_).to_contain_text("Product 05")
    expect(list_).not_to_contain_text("Product 25")
    assert_still_marked(page, "Next")
    check("Next swaps in page 2 and pushes /products?page=2&page_size=20 (no page load)")
    page.get_by_role("link", name="← Previous").click()
    expect(page).to_have_url(re.compile(r"/products\?page=1&page_size=20$"))
    expect(list_).to_contain_text("page 1 of 2")
    expect(list_).to_contain_text("Product 25")
    assert_still_marked(page, "Previous")
    check("Previous swaps page 1 back and pushes page=1")
    page.go_back()
    expect(page).to_have_url(re.compile(r"/products\?page=2&page_size=20$"))
    expect(list_).to_contain_text("page 2 of 2")
    page.go_forward()
    expect(page).to_have_url(re.compile(r"/products\?page=1&page_size=20$"))
    expect(list_).to_contain_text("page 1 of 2")
    page.go_back()
    expect(page).to_have_url(re.compile(r"/products\?page=2&page_size=20$"))
    expect(list_).to_contain_text("page 2 of 2")
    check("Back and Forward follow the URL and show its page")
    page.reload()
    expect(list_).to_contain_text("page 2 of 2")
    expect(list_).to_contain_text("Product 05")
    page.goto(f"{base}/products?page=2")
    expect(list_).to_contain_text("page 2 of 2")
    expect(list_).to_contain_text("Product 05")
    check("reloading page 2, or opening /products?page=2 directly, shows page 2")

    # Inline validation keeps what was typed.
    stranger = browsing.page("stranger")
    stranger.goto(f"{base}/users/register")
    stranger.get_by_label("Your name").fill("Second Casey")
    stranger.get_by_label("Email").fill("CASEY@example.com")
    stranger.get_by_label("Password").fill(PASSWORD)
    stranger.get_by_role("button", name="Create account").click()
    error = stranger.locator("#register-email-error")
    expect(error).to_contain_text("already exists")
    expect(stranger.get_by_label("Email")).to_have_attribute("aria-describedby", "register-email-error")
    expect(stranger.get_by_label("Your name")).to_have_value("Second Casey")
    expect(stranger.get_by_label("Email")).to_have_value("CASEY@example.com")
    expect(stranger.get_by_label("Password")).to_have_value("")
    expect(stranger).to_have_url(re.compile(r"/users/register$"))
    check("a taken email is shown beside its field; name and email kept (not the password)")

    # Phone width.
    phone = browsing.page("phone", PHONE)
    for path, name in [("/", "home-phone"), ("/products", "products-phone")]:
        phone.goto(f"{base}{path}")
        expect(phone.locator(".product-tile").first).to_be_visible()
        shot(phone, name)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} scrolls sideways at phone width ({width}px)"
    check("phone width (390x844): home and products do not scroll sideways")

    browsing.no_script_errors()
    check("no uncaught JavaScript errors on any page")


def main() -> int:
    print(f"browser: {CHROMIUM}; screenshots in {SHOTS}", flush=True)
    shop = Shop()
    failed = False
    try:
        products = seed(shop)
        with sync_playwright() as playwright:
            expect.set_options(timeout=TIMEOUT_MS)
            # A plain launch runs on a fresh, temporary profile (user-data-dir)
            # that is removed when the browser closes; launch_persistent_context
            # would give one context only, and the admin needs cookies of its own.
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            browsing = Browsing(browser)
            try:
                shop_as_people_do(browsing, shop.base, products)
            except BaseException:
                browsing.shoot_all("failure")
                raise
            finally:
                browser.close()
    except BaseException:
        failed = True
        traceback.print_exc()
        print(f"FAIL after {checks} checks; screenshots (failure-*.png) in {SHOTS}", file=sys.stderr)
    code = shop.stop()
    if not failed and code != 0:
        failed = True
        print(f"FAIL: the shop exited with {code} on SIGTERM", file=sys.stderr)
    if failed:
        shop.print_log_tail()
        print(f"(the shop's data dir is kept: {shop.dir})", file=sys.stderr)
        return 1
    shutil.rmtree(shop.dir, ignore_errors=True)
    print(f"browser: {checks} checks passed; screenshots in {SHOTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
