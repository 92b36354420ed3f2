"""What the browser tests share: the shop they start (`shop all`, embedded, on
free ports), a JSON client to seed it, Chromium's pages and screenshots.

Debian's Chromium is driven through executable_path: `playwright install`
(a downloaded browser) is never run.

Environment: SHOP_BIN (the shop binary), SHOP_TEST_CHROMIUM (default
/usr/bin/chromium), SHOP_SCREENSHOTS (default ci-artifacts/screenshots).
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import os
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
from typing import Callable

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SHOP_BIN = Path(os.environ.get("SHOP_BIN", ROOT / "target" / "debug" / "shop"))
CHROMIUM = os.environ.get("SHOP_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("SHOP_SCREENSHOTS", ROOT / "ci-artifacts" / "screenshots"))
AXE = Path(os.environ.get("SHOP_AXE_JS", ROOT / "target" / "test-node" / "node_modules" / "axe-core" / "axe.min.js"))
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
        self.log_path = self.dir / "shop.log"
        # A free port can be taken by another process between our asking and
        # the shop binding it: a start that fails that way is tried again.
        for attempt in range(3):
            if self.start():
                return
            print(f"(a port was taken before the shop bound it; starting again, attempt {attempt + 2})", file=sys.stderr)
        raise RuntimeError("the shop could not bind its ports three times in a row")

    def start(self) -> bool:
        """Starts `shop all` on new free ports; False when a port was taken."""
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
        self.log = open(self.log_path, "wb")  # this attempt's log only
        self.process = subprocess.Popen([str(SHOP_BIN), "all"], cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:  # ready when the gateway answers (it starts last); bounded
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        return True
            except OSError:
                pass
            if self.process.poll() is not None:
                self.log.close()
                if "Address already in use" in self.log_path.read_text(errors="replace"):
                    return False
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

    def __init__(self, browser: Browser, data_dir: Path) -> None:
        self.browser = browser
        # The shop's SHOP_DATA_DIR: what it writes there (emails as .eml
        # files under mail/) is part of what a scenario may check.
        self.data_dir = data_dir
        self.pages: dict[str, Page] = {}
        self.errors: list[str] = []

    def page(self, name: str, viewport: dict = DESKTOP, scripts: bool = True, audit: bool = False) -> Page:
        # A context of its own: its own cookies, so its own session. An audit
        # context lets axe-core's injected script past the shop's CSP.
        context: BrowserContext = self.browser.new_context(
            viewport=viewport, java_script_enabled=scripts, bypass_csp=audit
        )
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


def accessibility_violations(page: Page) -> list[dict]:
    """axe-core's violations on the page as it is now (WCAG 2.x A and AA and
    best practices), each with its impact and where."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ['violations'] });
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                where: v.nodes.slice(0, 3).map(n => n.target.join(' ')),
            }));
        }"""
    )


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


def check_out(page: Page, base: str, payment: str = "Bank transfer") -> None:
    """From the cart to the review step as a shopper does: a new address the
    first time (the saved one afterwards), the first delivery method, then
    `payment`; the caller then ticks the terms and presses Place order."""
    page.goto(f"{base}/cart")
    page.get_by_role("link", name="Check out").click()
    # A returning customer lands on the review with last time's choices;
    # these tests walk every step.
    expect(page).to_have_url(re.compile(r"/checkout/(address|review)$"))
    if page.url.endswith("/review"):
        page.goto(f"{base}/checkout/address")
    if page.get_by_label("Recipient's name").is_visible() and not page.locator("input[name=address_id][value]:not([value=new])").count():
        page.get_by_label("Recipient's name").fill("Casey Customer")
        page.get_by_label("Street and number").fill("1 rue de la Paix")
        page.get_by_label("Postcode").fill("75002")
        page.get_by_label("City").fill("Paris")
    page.get_by_role("button", name="Continue to delivery").click()
    expect(page).to_have_url(re.compile(r"/checkout/delivery$"))
    page.get_by_role("button", name="Continue to payment").click()
    expect(page).to_have_url(re.compile(r"/checkout/payment$"))
    page.get_by_label(payment).check()
    page.get_by_role("button", name="Review your order").click()
    expect(page).to_have_url(re.compile(r"/checkout/review$"))


def place_order(page: Page) -> int:
    """On the review step: accepts the terms and places the order; returns its id."""
    page.get_by_label("I accept the shop's terms of sale.").check()
    page.get_by_role("button", name=re.compile(r"^Place order")).click()
    expect(page).to_have_url(re.compile(r"/orders/\d+/confirmation$"))
    return int(re.search(r"/orders/(\d+)/confirmation", page.url).group(1))


def seed(shop: Shop, count: int = 25) -> list[dict]:
    """An admin (registered with JSON, promoted by the CLI) and `count` products."""
    admin = Api(shop.base)
    admin.call("POST", "/users/register", {"name": "Avery Admin", "email": "admin@example.com", "password": PASSWORD})
    shop.make_admin("admin@example.com")
    # Signing in again puts the new role into the session.
    assert admin.call("POST", "/users/login", {"email": "admin@example.com", "password": PASSWORD})["role"] == "admin"
    # Checkout needs a way to deliver.
    admin.call("POST", "/delivery-methods", {"name": "Standard delivery", "price_minor": 490, "free_above_minor": 5000})
    products = []
    for n in range(1, count + 1):
        body = {"name": f"Product {n:02}", "description": f"Thing number {n}.", "price_minor": 100 * n + 99, "stock": 10}
        products.append(admin.call("POST", "/products", body))
    check(f"seeded an admin and {count} products through the JSON API")
    return products


def run(scenario: Callable[[Browsing, str, list[dict]], None], products: int) -> int:
    """Starts a shop, seeds it with `products`, runs `scenario` in Chromium
    and stops the shop; 0 when every check passed."""
    print(f"browser: {CHROMIUM}; screenshots in {SHOTS}", flush=True)
    shop = Shop()
    failed = False
    try:
        seeded = seed(shop, products)
        with sync_playwright() as playwright:
            expect.set_options(timeout=TIMEOUT_MS)
            # A plain launch runs on a fresh, temporary profile (user-data-dir)
            # that is removed when the browser closes; launch_persistent_context
            # would give one context only, and the admin needs cookies of its own.
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            browsing = Browsing(browser, shop.dir / "data")
            try:
                scenario(browsing, shop.base, seeded)
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
