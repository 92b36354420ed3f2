"""A customer's account in headless Chromium, with JavaScript on and then
off: the address book (an address refused for its missing postcode, shown
beside the field, which has the focus; then added, edited and deleted), a
forgotten password (the request page answers the same for an unknown email
and a known one; the known one's email, an .eml file in the shop's data
dir, holds the link; the link's page sets a new password; the old password
no longer signs in, the new one does; a browser signed in before the reset
is signed out after it; the link used again is refused), and an admin who
finds the customer by name on /customers and opens them (addresses and
orders).

Every page this covers is looked at twice, at 390 px and at desktop width:
no sideways scroll at 390 px, no serious or critical axe-core violation at
either width, a screenshot at each (account-*.png). axe-core runs in a
separate context with scripts on, on a copy of the page exactly as the
browser under test has it, so the pages seen without scripts are audited
too.

The shop, Chromium and their settings: harness.py.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, Route, expect

import harness
from harness import (
    DESKTOP,
    PASSWORD,
    PHONE,
    Api,
    Browsing,
    accessibility_violations,
    assert_still_marked,
    check,
    mark,
    money,
    shot,
    sign_in,
)

NEW_PASSWORD = "a brand new passphrase"
PUBLIC_URL = "http://localhost:8080"  # SHOP_PUBLIC_URL's default: the harness leaves it unset
LINK = re.compile(re.escape(PUBLIC_URL) + r"/users/password-reset/([0-9a-f]{64})")
MAIL_WAIT_S = 20


@dataclass
class Run:
    """One pass through the account pages: with scripts on or off."""

    browsing: Browsing
    base: str
    scripts: bool
    auditor: Page  # scripts on, CSP bypassed: where axe-core runs
    looked: int = 0

    @property
    def label(self) -> str:
        return "js" if self.scripts else "nojs"

    def page(self, name: str, viewport: dict = PHONE) -> Page:
        return self.browsing.page(f"{self.label}-{name}", viewport, scripts=self.scripts)

    def look(self, page: Page, name: str) -> None:
        """The page as it is now, at both widths: no sideways scroll at
        390 px, a screenshot at each width, and axe-core on a copy."""
        where = f"{name} ({self.label}, {urlsplit(page.url).path})"
        before = page.viewport_size
        copy = page.content()
        for viewport, width in ((PHONE, "phone"), (DESKTOP, "desktop")):
            page.set_viewport_size(viewport)
            if width == "phone":
                scroll = page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= PHONE["width"], f"{where} scrolls sideways at 390 px ({scroll}px)"
            shot(page, f"account-{self.label}-{name}-{width}")
            self.auditor.set_viewport_size(viewport)
            self.copy_into_auditor(page.url, copy)
            serious = [v for v in accessibility_violations(self.auditor) if v["impact"] in ("serious", "critical")]
            assert not serious, f"{where} at {width} width: {serious}"
        page.set_viewport_size(before)
        self.looked += 1

    def copy_into_auditor(self, url: str, document_html: str) -> None:
        """The auditor loads `document_html` as the document at `url` (its styles and
        scripts from the shop), so what was seen without scripts, or after
        a POST, is audited as it was."""

        def document(route: Route) -> None:
            if route.request.resource_type == "document":
                route.fulfill(status=200, content_type="text/html; charset=utf-8", body=document_html)
            else:
                route.continue_()

        self.auditor.route("**/*", document)
        try:
            self.auditor.goto(url)
        finally:
            self.auditor.unroute("**/*", document)


def flash(page: Page, text: str) -> None:
    expect(page.locator("#flash .alert")).to_contain_text(text)


def register(base: str, name: str, address: str) -> tuple[Api, dict]:
    """A customer registered and signed in through the JSON API."""
    api = Api(base)
    user = api.call("POST", "/users/register", {"name": name, "email": address, "password": PASSWORD})
    api.call("POST", "/users/login", {"email": address, "password": PASSWORD})
    return api, user


def address_book(run: Run, customer: Page, who: dict) -> None:
    base, book = run.base, f"{run.base}/users/{who['id']}/addresses"
    sign_in(customer, base, who["email"])
    expect(customer.get_by_test_id("nav-user")).to_have_text(who["name"])
    customer.get_by_test_id("nav-user").click()
    customer.get_by_role("link", name="Addresses").click()
    expect(customer).to_have_url(book)
    expect(customer.get_by_role("heading", level=1)).to_have_text("Your addresses")
    expect(customer.get_by_test_id("address")).to_have_count(1)  # the one added with JSON
    run.look(customer, "address-book")
    check(f"{run.label}: the profile links to the address book, which lists the address already there")

    form = customer.locator("#address-form")
    form.get_by_label("Full name").fill(who["name"])
    form.get_by_label("Address", exact=True).fill("12 rue des Lilas")
    form.get_by_label("City").fill("Lyon")
    form.get_by_label("Country").select_option(label="France")
    # The browser would stop an empty required field itself; the shop must
    # refuse it too (an old browser, a hand-made request).
    form.evaluate("f => f.noValidate = true")
    if run.scripts:
        mark(customer)
    form.get_by_role("button", name="Add address").click()
    postcode = customer.locator("#address-form").get_by_label("Postcode")
    expect(postcode).to_be_focused()
    expect(postcode).to_have_attribute("aria-invalid", "true")
    expect(postcode).to_have_attribute("aria-describedby", "address-postcode-error")
    error = customer.locator("#address-form .field.has-error #address-postcode-error")
    expect(error).to_be_visible()
    expect(customer.locator("#address-form .field.has-error")).to_have_count(1)
    expect(customer.locator("#address-form").get_by_label("City")).to_have_value("Lyon")  # kept
    expect(customer.get_by_test_id("address")).to_have_count(1)
    if run.scripts:
        assert_still_marked(customer, "the refused address")
    run.look(customer, "address-refused")
    check(f"{run.label}: an address without a postcode is refused: “{error.inner_text()}” beside the field, which has the focus; the rest kept")

    customer.locator("#address-form").get_by_label("Postcode").fill("69003")
    customer.locator("#address-form").get_by_role("button", name="Add address").click()
    flash(customer, f"The address for {who['name']} was added.")
    expect(customer).to_have_url(book)
    added = customer.get_by_test_id("address").filter(has_text="12 rue des Lilas")
    expect(added).to_contain_text("69003 Lyon")
    expect(added).to_contain_text("France")
    expect(customer.get_by_test_id("address")).to_have_count(2)
    expect(customer.locator("#address-form").get_by_label("Postcode")).to_have_value("")  # a blank form again
    if run.scripts:
        assert_still_marked(customer, "adding an address")
    check(f"{run.label}: with its postcode the address is added to the book")

    customer.get_by_role("link", name=f"Edit the address for {who['name']}, 12 rue des Lilas").click()
    expect(customer).to_have_url(re.compile(re.escape(book) + r"/\d+/edit$"))
    expect(customer.get_by_label("Postcode")).to_have_value("69003")
    run.look(customer, "address-edit")
    customer.get_by_label("Postcode").fill("69100")
    customer.get_by_label("City").fill("Villeurbanne")
    customer.get_by_role("button", name="Save").click()
    expect(customer).to_have_url(book)
    flash(customer, f"The address for {who['name']} was saved.")
    edited = customer.get_by_test_id("address").filter(has_text="12 rue des Lilas")
    expect(edited).to_contain_text("69100 Villeurbanne")
    expect(customer.get_by_test_id("address")).to_have_count(2)
    check(f"{run.label}: editing the address (postcode and city) lands back on the book")

    asked: list[str] = []
    if run.scripts:
        customer.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    customer.get_by_role("button", name=f"Delete the address for {who['name']}, 12 rue des Lilas").click()
    flash(customer, "The address was deleted.")
    expect(customer.get_by_test_id("address")).to_have_count(1)
    expect(customer.locator("#address-book")).not_to_contain_text("12 rue des Lilas")
    expect(customer.locator("#address-book")).to_contain_text("1 Office Park")
    if run.scripts:
        assert asked == ["Delete this address?"], asked
    check(f"{run.label}: deleting the address{' (after confirming)' if run.scripts else ''}; the other one stays")


def reset_emails(mail: Path, to: str) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted(mail.glob("*.eml")) if mail.is_dir() else []:
        with open(path, "rb") as file:
            message = email.message_from_binary_file(file, policy=email.policy.default)
        if to in str(message["To"]) and message["Subject"] == "Reset your password":
            found.append(message)
    return found


def wait_for_reset_email(mail: Path, to: str) -> email.message.EmailMessage:
    deadline = time.monotonic() + MAIL_WAIT_S
    while True:
        found = reset_emails(mail, to)
        if found:
            assert len(found) == 1, f"{len(found)} reset emails to {to}"
            return found[0]
        if time.monotonic() > deadline:
            listed = sorted(p.name for p in mail.glob("*.eml")) if mail.is_dir() else "no mail dir"
            raise AssertionError(f"no reset email to {to} in {mail} within {MAIL_WAIT_S} s ({listed})")
        time.sleep(0.2)


def ask_for_a_link(run: Run, page: Page, address: str) -> str:
    """The request form sent for `address`; returns what the page says."""
    page.goto(f"{run.base}/users/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page).to_have_url(f"{run.base}/users/password-reset")
    page.get_by_label("Email").fill(address)
    if run.scripts:
        mark(page)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url == f"{run.base}/users/password-reset") as answer:
        page.get_by_role("button", name="Send me a link").click()
    assert answer.value.status == 202, answer.value.status
    expect(page.locator("#reset-request[role=status]")).to_contain_text("If an account has this email")
    if run.scripts:
        assert_still_marked(page, "asking for a reset link")
    return page.locator("main").inner_text()


def forgotten_password(run: Run, customer: Page, who: dict) -> None:
    base, mail = run.base, run.browsing.data_dir / "mail"
    # A second device, signed in before the reset.
    laptop = run.page("laptop", DESKTOP)
    sign_in(laptop, base, who["email"])
    expect(laptop.get_by_test_id("nav-user")).to_have_text(who["name"])
    customer.get_by_role("button", name="Sign out").click()
    expect(customer.get_by_test_id("nav-user")).to_have_count(0)

    customer.goto(f"{base}/users/password-reset")
    run.look(customer, "reset-request")
    unknown = ask_for_a_link(run, customer, f"nobody-{run.label}@example.com")
    run.look(customer, "reset-sent")
    known = ask_for_a_link(run, customer, who["email"])
    assert known == unknown, f"the answers differ:\n{unknown!r}\n{known!r}"
    check(f"{run.label}: the reset request answers 202 and the same page for an unknown email and a known one")

    message = wait_for_reset_email(mail, who["email"])
    body = message.get_body(preferencelist=("plain",)).get_content()
    links = LINK.findall(body)
    assert len(set(links)) == 1, f"the reset email's text holds {links}"
    # The HTML body escapes the link's slashes (&#x2f;), as HTML may.
    html_links = LINK.findall(html.unescape(message.get_body(preferencelist=("html",)).get_content()))
    assert set(html_links) == set(links), f"the HTML body links to {html_links}"
    assert not reset_emails(mail, f"nobody-{run.label}@example.com"), "an email went to an unknown address"
    link = f"{base}/users/password-reset/{links[0]}"
    check(f"{run.label}: the .eml file for the known email holds the link (text and HTML); none for the unknown one")

    answer = customer.goto(link)
    assert answer is not None and answer.headers.get("referrer-policy") == "no-referrer", answer and answer.headers
    expect(customer.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    run.look(customer, "reset-choose")
    customer.get_by_label("New password").fill(NEW_PASSWORD)
    customer.get_by_role("button", name="Set the new password").click()
    expect(customer).to_have_url(f"{base}/users/login")
    flash(customer, "Your password was changed, and every session of your account has been signed out.")
    check(f"{run.label}: the link's page (Referrer-Policy: no-referrer) sets a new password and sends to sign in")

    sign_in(customer, base, who["email"])
    expect(customer.locator("#login-form")).to_contain_text("Invalid email or password.")
    expect(customer.get_by_test_id("nav-user")).to_have_count(0)
    check(f"{run.label}: the old password no longer signs in")

    laptop.goto(f"{base}/")
    expect(laptop.get_by_test_id("nav-user")).to_have_count(0)
    expect(laptop.get_by_role("link", name="Sign in")).to_be_visible()
    laptop.goto(f"{base}/users/{who['id']}/addresses")
    expect(laptop).to_have_url(re.compile(r"/users/login\?next="))
    expect(laptop.locator("#address-book")).to_have_count(0)
    check(f"{run.label}: the browser signed in before the reset is signed out")

    customer.goto(link)
    customer.get_by_label("New password").fill("yet another passphrase")
    with customer.expect_response(lambda r: r.request.method == "POST" and r.url == link) as refused:
        customer.get_by_role("button", name="Set the new password").click()
    assert refused.value.status == 400, refused.value.status
    alert = customer.locator("#reset-choose [role=alert]")
    expect(alert).to_contain_text("This password reset link is no longer valid (used, expired or mistyped)")
    expect(customer.get_by_role("link", name="Ask for a new link")).to_have_attribute("href", "/users/password-reset")
    expect(customer.get_by_label("New password")).to_have_count(0)  # a dead link offers no form
    run.look(customer, "reset-link-used")
    check(f"{run.label}: the link used again is refused: “{alert.inner_text().strip()}”")

    customer.goto(f"{base}/users/login")
    customer.get_by_label("Email").fill(who["email"])
    customer.get_by_label("Password").fill(NEW_PASSWORD)
    customer.get_by_role("button", name="Sign in").click()
    expect(customer.get_by_test_id("nav-user")).to_have_text(who["name"])
    check(f"{run.label}: the new password signs in (the refused second use changed nothing)")


def customers_screen(run: Run, admin: Page, who: dict, order_id: int, total_minor: int, surname: str) -> None:
    base = run.base
    sign_in(admin, base, "admin@example.com")
    admin.get_by_role("link", name="Customers").click()
    expect(admin).to_have_url(f"{base}/customers")
    search = admin.get_by_label("Name or email")
    search.fill(surname)
    if run.scripts:
        mark(admin)  # search as you type: no button, no new page
    else:
        admin.get_by_role("button", name="Search").click()
    expect(admin).to_have_url(f"{base}/customers?q={surname}")
    rows = admin.get_by_test_id("customer")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(who["email"])
    expect(rows.locator("[data-label=Orders]")).to_have_text("1")
    expect(admin.locator("#customer-list [role=status]")).to_contain_text(f"1 customer matching “{surname}”")
    if run.scripts:
        assert_still_marked(admin, "searching customers")
    run.look(admin, "customers")
    check(f"{run.label}: the admin finds the customer by name on /customers?q={surname} (1 order)")

    rows.get_by_role("link", name=who["name"]).click()
    expect(admin).to_have_url(f"{base}/customers/{who['id']}")
    expect(admin.get_by_role("heading", level=1)).to_have_text(who["name"])
    expect(admin.get_by_test_id("address")).to_have_count(1)
    expect(admin.get_by_test_id("address")).to_contain_text("1 Office Park")
    order_row = admin.locator("table.orders tbody tr").filter(has_text=f"#{order_id}")
    expect(order_row.locator("[data-label=Total]")).to_have_text(money(total_minor))
    run.look(admin, "customer")
    check(f"{run.label}: the admin opens the customer: their address and order #{order_id} ({money(total_minor)})")


def account(browsing: Browsing, base: str, products: list[dict]) -> None:
    auditor = browsing.page("auditor", PHONE, audit=True)
    looked = 0
    for scripts, name, surname in ((True, "Robin Scripted", "Scripted"), (False, "Noor Plain", "Plain")):
        run = Run(browsing, base, scripts, auditor)
        api, who = register(base, name, f"{surname.lower()}-{run.label}@example.com")
        api.call("POST", f"/users/{who['id']}/addresses", {
            "name": name, "line1": "1 Office Park", "postcode": "SW1A 1AA", "city": "London", "country": "GB",
        })
        order = api.call("POST", "/orders", {"items": [{"product_id": products[0]["id"], "quantity": 1}]})
        check(f"{run.label}: {name} registered with an address and order #{order['id']} (JSON)")

        customer = run.page("customer")
        address_book(run, customer, who)
        forgotten_password(run, customer, who)
        customers_screen(run, run.page("admin", DESKTOP), who, order["id"], order["total_minor"], surname)
        looked += run.looked

    check(f"{looked} pages looked at: none scrolls sideways at 390 px; axe-core at both widths, nothing serious; screenshots at both")
    browsing.no_script_errors()
    check("no uncaught JavaScript errors on any page")


if __name__ == "__main__":
    sys.exit(harness.run(account, products=2))
