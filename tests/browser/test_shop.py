"""Browser tests of the shop's HTMX flows in headless Chromium.

Starts its own `shop all` (embedded: SQLite, in-memory sessions) on free
ports, seeds it through the JSON API, then shops as people do: registers,
signs in and out, fills a cart, checks out in steps (address, delivery,
payment, review, confirmation), watches the order; an admin marks it paid
and ships it from the orders list without a page load; pagination follows the
URL, back and forward included. Screenshots of the main pages land in
ci-artifacts/screenshots/ (and failure-*.png of every open page when a check
fails).

Every wait is on a condition (Playwright's expect and wait_for_*), never a
fixed sleep. The shop, Chromium and their settings: harness.py.
"""

from __future__ import annotations

import re
import sys

from playwright.sync_api import expect

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
    check_out,
    mark,
    money,
    place_order,
    seed,
    shot,
    sign_in,
)


def no_sideways_scroll(page, path: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{path} scrolls sideways at phone width ({width}px)"


def tab_to(page, target, what: str, presses: int = 80) -> None:
    """Presses Tab until `target` has the focus (as a keyboard user would)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{what} cannot be reached with Tab")


def checkout_by_keyboard(browsing: Browsing, base: str, product: dict) -> None:
    """From a product page to a placed order with the keyboard alone: every
    checkout step's controls reached with Tab, chosen with Space or the
    arrow keys, submitted with Enter."""
    keys = browsing.page("keyboard")
    sign_in(keys, base, "casey@example.com")
    expect(keys.get_by_test_id("nav-user")).to_be_visible()
    keys.goto(f"{base}/products/{product['id']}")
    tab_to(keys, keys.get_by_role("button", name="Add to cart"), "Add to cart")
    keys.keyboard.press("Enter")
    expect(keys.locator("#cart-count")).to_have_text("1")
    tab_to(keys, keys.locator("nav a[href='/cart']"), "the cart link")
    keys.keyboard.press("Enter")
    expect(keys).to_have_url(f"{base}/cart")
    tab_to(keys, keys.get_by_role("link", name="Check out"), "Check out")
    keys.keyboard.press("Enter")
    expect(keys).to_have_url(f"{base}/checkout/address")

    # The address saved at the first checkout, chosen again.
    saved = keys.get_by_role("radio", name=re.compile("1 rue de la Paix"))
    tab_to(keys, saved, "the saved address")
    keys.keyboard.press("Space")
    expect(saved).to_be_checked()
    tab_to(keys, keys.get_by_role("button", name="Continue to delivery"), "Continue to delivery")
    keys.keyboard.press("Enter")
    expect(keys).to_have_url(f"{base}/checkout/delivery")
    method = keys.get_by_role("radio", name=re.compile("Standard delivery"))
    tab_to(keys, method, "the delivery method")
    keys.keyboard.press("Space")
    expect(method).to_be_checked()
    tab_to(keys, keys.get_by_role("button", name="Continue to payment"), "Continue to payment")
    keys.keyboard.press("Enter")
    expect(keys).to_have_url(f"{base}/checkout/payment")
    # Tab lands on the group's chosen radio; an arrow key chooses another.
    tab_to(keys, keys.get_by_role("radio", name=re.compile("^Bank transfer")), "the payment choices")
    keys.keyboard.press("ArrowDown")
    expect(keys.get_by_role("radio", name=re.compile("^Cash on delivery"))).to_be_checked()
    tab_to(keys, keys.get_by_role("button", name="Review your order"), "Review your order")
    keys.keyboard.press("Enter")
    expect(keys).to_have_url(f"{base}/checkout/review")

    total = money(product["price_minor"] + 490)
    terms = keys.get_by_label("I accept the shop's terms of sale.")
    tab_to(keys, terms, "the terms box")
    keys.keyboard.press("Space")
    expect(terms).to_be_checked()
    tab_to(keys, keys.get_by_role("button", name=f"Place order · {total}"), "Place order")
    keys.keyboard.press("Enter")
    keys.wait_for_url(re.compile(r"/orders/\d+/confirmation$"))
    expect(keys.locator("main h1")).to_contain_text("is confirmed")
    expect(keys.locator("main")).to_contain_text(f"Pay the carrier {total} when it arrives.")
    tab_to(keys, keys.get_by_role("link", name="See your order"), "See your order")
    keys.keyboard.press("Enter")
    expect(keys).to_have_url(re.compile(r"/orders/\d+$"))
    expect(keys.get_by_test_id("order-status")).to_have_text("confirmed")
    check("keyboard only: add to cart, open the cart, every checkout step (address, delivery, cash on delivery, terms), place the order")


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

    # A line added and removed again, in place.
    third = products[2]
    customer.goto(f"{base}/products/{third['id']}")
    customer.get_by_role("button", name="Add to cart").click()
    expect(customer.locator("#cart-count")).to_have_text("4")
    customer.goto(f"{base}/cart")
    mark(customer)
    customer.get_by_label(f"Quantity of {third['name']}").fill("3")
    customer.get_by_role("button", name=f"Update the quantity of {third['name']}").click()
    expect(customer.locator("#cart-count")).to_have_text("6")
    expect(customer.get_by_label(f"Quantity of {third['name']}")).to_have_value("3")
    assert_still_marked(customer, "changing a quantity")
    # The browser itself stops more than the stock (the gateway refuses it too).
    expect(customer.get_by_label(f"Quantity of {third['name']}")).to_have_attribute("max", "10")
    check("a quantity changes in place, bounded by the stock")
    customer.get_by_role("button", name=f"Remove {third['name']}").click()
    expect(customer.locator("#cart")).not_to_contain_text(third["name"])
    expect(customer.locator("#cart-count")).to_have_text("3")
    assert_still_marked(customer, "removing a cart line")
    check("Remove takes a line out of the cart without a page load")

    # Checkout.
    total = first["price_minor"] + 2 * second["price_minor"]
    customer.goto(f"{base}/cart")
    expect(customer.locator("#cart")).to_contain_text(first["name"])
    expect(customer.locator("#cart")).to_contain_text(second["name"])
    expect(customer.locator("#cart tfoot")).to_contain_text(money(total))
    shot(customer, "cart")
    # The steps: a new address, "Standard delivery" (€4.90 under €50), bank transfer.
    total += 490
    check_out(customer, base)
    expect(customer.get_by_test_id("review-total")).to_have_text(money(total))
    expect(customer.get_by_role("button", name=f"Place order · {money(total)}")).to_be_visible()
    shot(customer, "checkout-review")
    order_id = place_order(customer)
    expect(customer.locator("main h1")).to_have_text(f"Thank you: order #{order_id} is confirmed")
    expect(customer.get_by_test_id("amount")).to_have_text(money(total))
    expect(customer.get_by_test_id("payment-reference")).not_to_be_empty()
    expect(customer.locator("#cart-count")).to_have_text("0")
    shot(customer, "order-confirmation")
    customer.get_by_role("link", name="See your order").click()
    expect(customer).to_have_url(f"{base}/orders/{order_id}")
    expect(customer.get_by_test_id("order-status")).to_have_text("confirmed")
    expect(customer.locator("#order-detail tfoot")).to_contain_text(money(total))
    check(f"Place order lands on /orders/{order_id}/confirmation: confirmed, {money(total)} with delivery, cart emptied")
    shot(customer, "order")

    # An admin marks the bank transfer paid, then ships it from the list; the
    # row updates in place.
    customer.wait_for_function("window.__sseOpen === true")  # the order page listens for changes
    admin = browsing.page("admin")
    sign_in(admin, base, "admin@example.com")
    expect(admin.get_by_test_id("nav-user")).to_have_text("Avery Admin")
    admin.goto(f"{base}/orders/{order_id}")
    expect(admin.get_by_test_id("payment-state")).to_have_text("unpaid")
    mark(admin)
    admin.get_by_role("button", name="Mark paid").click()
    expect(admin.get_by_test_id("payment-state")).to_have_text("paid")
    expect(admin.locator("#flash")).to_contain_text(f"Order #{order_id} is marked paid.")
    assert_still_marked(admin, "marking paid")
    check("the admin marks the bank transfer paid on the order's page without a page load")
    admin.goto(f"{base}/orders")
    expect(admin.get_by_test_id(f"order-status-{order_id}")).to_have_text("confirmed")
    shot(admin, "admin-orders")
    mark(admin)
    row = admin.locator(f"#order-row-{order_id}")
    row.get_by_label(f"New status for order {order_id}").select_option("shipped")
    row.get_by_role("button", name="Update").click()
    expect(admin.get_by_test_id(f"order-status-{order_id}")).to_have_text("shipped")
    expect(admin.locator("#flash")).to_contain_text(f"Order #{order_id} is now shipped.")
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

    # Pagination by cursor: HTMX swaps push the URL; back, forward and reload agree.
    page = browsing.page("visitor")
    page.goto(f"{base}/products")
    list_ = page.locator("#product-list")
    expect(list_).to_contain_text("25 products")
    expect(list_).to_contain_text("Product 25")  # newest first
    shot(page, "products")
    mark(page)
    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(re.compile(r"/products\?after=[\w.-]+$"))
    second = page.url
    expect(list_).to_contain_text("Product 05")
    expect(list_).not_to_contain_text("Product 25")
    assert_still_marked(page, "Next")
    assert page.evaluate("document.activeElement.id") == "product-list", "the focus follows the new page of the list"
    check("Next swaps in page 2 and pushes its /products?after=<cursor> (no page load); the list has the focus")
    page.get_by_role("link", name="← Previous").click()
    expect(page).to_have_url(re.compile(r"/products\?before=[\w.-]+$"))
    expect(list_).to_contain_text("Product 25")
    expect(list_).not_to_contain_text("Product 05")
    assert_still_marked(page, "Previous")
    check("Previous swaps page 1 back and pushes its /products?before=<cursor>")
    page.go_back()
    expect(page).to_have_url(second)
    expect(list_).to_contain_text("Product 05")
    page.go_forward()
    expect(page).to_have_url(re.compile(r"/products\?before=[\w.-]+$"))
    expect(list_).to_contain_text("Product 25")
    page.go_back()
    expect(page).to_have_url(second)
    expect(list_).to_contain_text("Product 05")
    check("Back and Forward follow the URL and show its page")
    page.reload()
    expect(list_).to_contain_text("Product 05")
    expect(list_).not_to_contain_text("Product 25")
    page.get_by_role("link", name="First").click()
    expect(page).to_have_url(re.compile(r"/products$"))
    expect(list_).to_contain_text("Product 25")
    page.get_by_role("link", name="Last").click()
    expect(page).to_have_url(re.compile(r"/products\?last=1$"))
    expect(list_).to_contain_text("Product 01")
    page.goto(f"{base}/products?page=2")
    expect(list_).to_contain_text("Product 05")
    expect(list_).not_to_contain_text("Product 25")
    check("reloading page 2, First, Last, and an old /products?page=2 link show their pages")

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
    expect(stranger.get_by_label("Email")).to_be_focused()
    check("a taken email is shown beside its field, which has the focus; name and email kept (not the password)")

    # The profile edited in place: the form, then the saved card, take the focus.
    customer.goto(f"{base}{customer.get_by_test_id('nav-user').get_attribute('href')}")
    mark(customer)
    customer.get_by_role("link", name="Edit profile").click()
    expect(customer.get_by_label("Name")).to_be_focused()
    customer.get_by_label("Name").fill("Casey Renamed")
    customer.get_by_role("button", name="Save").click()
    expect(customer.locator("#profile h1")).to_have_text("Casey Renamed")
    expect(customer.locator("#profile h1")).to_be_focused()
    expect(customer.locator("#flash")).to_contain_text("The profile was saved.")
    expect(customer.get_by_test_id("nav-user")).to_have_text("Casey Renamed")
    assert_still_marked(customer, "editing the profile")
    check("the profile is edited in place: focus follows, the message and the navigation bar say so")

    # Phone width: every page, as a visitor, a customer and an admin, does
    # not scroll sideways; each is photographed at 390 px.
    phone = browsing.page("phone", PHONE)
    for path, name in [("/", "home-phone"), ("/products", "products-phone")]:
        phone.goto(f"{base}{path}")
        expect(phone.locator(".product-tile").first).to_be_visible()
        shot(phone, name)
        no_sideways_scroll(phone, path)
    customer_phone = browsing.page("customer-phone", PHONE)
    sign_in(customer_phone, base, "casey@example.com")
    expect(customer_phone.get_by_test_id("nav-user")).to_be_visible()
    customer_id = customer_phone.get_by_test_id("nav-user").get_attribute("href")
    admin_phone = browsing.page("admin-phone", PHONE)
    sign_in(admin_phone, base, "admin@example.com")
    expect(admin_phone.get_by_test_id("nav-user")).to_be_visible()
    # Checkout at phone width, by a shopper of its own: each step, an order
    # placed by bank transfer (its confirmation says how to pay), then a cart
    # again so that the steps can be opened (an empty cart sends to /cart).
    Api(base).call("POST", "/users/register", {"name": "Sam Shopper", "email": "sam@example.com", "password": PASSWORD})
    shopper_phone = browsing.page("shopper-phone", PHONE)
    sign_in(shopper_phone, base, "sam@example.com")
    expect(shopper_phone.get_by_test_id("nav-user")).to_be_visible()

    def into_cart(product: dict) -> None:
        shopper_phone.goto(f"{base}/products/{product['id']}")
        shopper_phone.get_by_role("button", name="Add to cart").click()
        expect(shopper_phone.locator("#cart-count")).to_have_text("1")

    def step(path: str, button: str) -> None:
        expect(shopper_phone).to_have_url(f"{base}{path}")
        no_sideways_scroll(shopper_phone, path)
        shopper_phone.get_by_role("button", name=button).click()

    into_cart(products[4])
    shopper_phone.goto(f"{base}/cart")
    shopper_phone.get_by_role("link", name="Check out").click()
    expect(shopper_phone).to_have_url(f"{base}/checkout/address")
    shopper_phone.get_by_label("Recipient's name").fill("Sam Shopper")
    shopper_phone.get_by_label("Street and number").fill("12 Long Street Name That Wraps")
    shopper_phone.get_by_label("Building, floor (optional)").fill("Flat 3")
    shopper_phone.get_by_label("Postcode").fill("1012 AB")
    shopper_phone.get_by_label("City").fill("Amsterdam")
    shopper_phone.get_by_label("Country").select_option("NL")
    shot(shopper_phone, "checkout-address-new-phone")  # the steps as they are later: the page list below
    step("/checkout/address", "Continue to delivery")
    step("/checkout/delivery", "Continue to payment")
    shopper_phone.get_by_label("Bank transfer").check()
    step("/checkout/payment", "Review your order")
    expect(shopper_phone).to_have_url(f"{base}/checkout/review")
    no_sideways_scroll(shopper_phone, "/checkout/review")
    shopper_order = place_order(shopper_phone)
    no_sideways_scroll(shopper_phone, f"/orders/{shopper_order}/confirmation")
    expect(shopper_phone.get_by_test_id("payment-reference")).not_to_be_empty()
    into_cart(products[5])
    check("checkout at phone width: address, delivery, payment, review, confirmation; none scrolls sideways")
    pages = [
        (phone, "/users/login", "login"),
        (phone, "/users/register", "register"),
        (phone, f"/products/{first['id']}", "product"),
        (phone, "/problems/order-rejected", "problem"),
        (phone, "/categories", "categories"),
        (phone, "/products?q=product+1&sort=price-high", "search"),
        (phone, "/no/such/page", "not-found"),
        (customer_phone, "/cart", "cart"),
        (customer_phone, "/orders", "orders"),
        (customer_phone, f"/orders/{order_id}", "order"),
        (customer_phone, customer_id, "profile"),
        (shopper_phone, "/checkout/address", "checkout-address"),
        (shopper_phone, "/checkout/delivery", "checkout-delivery"),
        (shopper_phone, "/checkout/payment", "checkout-payment"),
        (shopper_phone, "/checkout/review", "checkout-review"),
        (shopper_phone, f"/orders/{shopper_order}/confirmation", "order-confirmation"),
        (customer_phone, f"{customer_id}/edit", "profile-edit"),
        (admin_phone, "/orders", "admin-orders"),
        (admin_phone, f"/orders/{order_id}", "admin-order"),
        (admin_phone, "/products/new", "product-new"),
        (admin_phone, f"/products/{first['id']}/edit", "product-edit"),
    ]
    for page_, path, name in pages:
        page_.goto(f"{base}{path}")
        expect(page_.locator("main h1").first).to_be_visible()
        shot(page_, f"{name}-phone")
        no_sideways_scroll(page_, path)
    check(f"phone width (390x844): {len(pages) + 2} pages, none scrolls sideways")

    # axe-core on every page, as a visitor, a customer and an admin, at phone
    # and desktop width: nothing serious or critical; the rest is listed.
    audited = 0
    minor: dict[str, set[str]] = {}
    for viewport, width in [(PHONE, "phone"), (DESKTOP, "desktop")]:
        visitor = browsing.page(f"audit-visitor-{width}", viewport, audit=True)
        customer_audit = browsing.page(f"audit-customer-{width}", viewport, audit=True)
        sign_in(customer_audit, base, "casey@example.com")
        expect(customer_audit.get_by_test_id("nav-user")).to_be_visible()
        admin_audit = browsing.page(f"audit-admin-{width}", viewport, audit=True)
        sign_in(admin_audit, base, "admin@example.com")
        expect(admin_audit.get_by_test_id("nav-user")).to_be_visible()
        shopper_audit = browsing.page(f"audit-shopper-{width}", viewport, audit=True)
        sign_in(shopper_audit, base, "sam@example.com")
        expect(shopper_audit.get_by_test_id("nav-user")).to_be_visible()
        check_out(shopper_audit, base)  # what checkout chose is kept per session
        who = {phone: visitor, customer_phone: customer_audit, admin_phone: admin_audit, shopper_phone: shopper_audit}
        for page_, path, name in [(phone, "/", "home"), (phone, "/products", "products"), *pages]:
            audit = who[page_]
            audit.goto(f"{base}{path}")
            expect(audit.locator("main h1").first).to_be_visible()
            if width == "desktop":
                shot(audit, f"{name}-desktop")  # the phone ones were taken above
            found = accessibility_violations(audit)
            serious = [v for v in found if v["impact"] in ("serious", "critical")]
            assert not serious, f"{path} at {width} width: {serious}"
            for v in found:
                minor.setdefault(f"{v['id']} ({v['impact']})", set()).add(path)
            audited += 1
    for rule, paths in sorted(minor.items()):
        print(f"    axe, not serious: {rule} on {', '.join(sorted(paths))}", flush=True)
    check(f"axe-core {audited} audits (every page, 4 viewers, 2 widths): no serious or critical violation")

    checkout_by_keyboard(browsing, base, products[3])

    browsing.no_script_errors()
    check("no uncaught JavaScript errors on any page")


if __name__ == "__main__":
    sys.exit(harness.run(shop_as_people_do, products=25))
