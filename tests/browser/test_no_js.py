"""The shop with JavaScript turned off, in headless Chromium: every action is
a plain HTML form or link that works alone (htmx only enhances it).

A customer (at phone width) registers, signs out and in, adds to the cart
from a product page and from the list, removes a line, checks out in steps
(address, delivery, payment, review: each a plain form) to the order's
confirmation page, orders and cancels another, edits the profile (name and
password) and deletes the account; an admin adds, edits and deletes
products (from the card and from a tile), marks the bank transfer paid and
moves the order on from the list and from its page. After each form the browser lands, by a 303, on the page that shows
the result and its message. No URL the browser asked for, across the whole
run, holds a password.

The shop, Chromium and their settings: harness.py.
"""

from __future__ import annotations

import re
import sys

from playwright.sync_api import Page, expect

import harness
from harness import PASSWORD, PHONE, Browsing, check, check_out, money, place_order, shot, sign_in

NEW_PASSWORD = "a new password, longer"


def flash(page: Page, text: str) -> None:
    """The message the last form left, on the page it landed on."""
    expect(page.locator("#flash .alert")).to_contain_text(text)


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways at phone width ({width}px)"


def customer_without_scripts(customer: Page, base: str, products: list[dict]) -> int:
    """Returns the id of the order it placed and kept."""
    first, second, third = products[0], products[1], products[2]

    customer.goto(f"{base}/users/register")
    customer.get_by_label("Your name").fill("Noa Noscript")
    customer.get_by_label("Email").fill("noa@example.com")
    customer.get_by_label("Password").fill(PASSWORD)
    customer.get_by_role("button", name="Create account").click()
    expect(customer).to_have_url(f"{base}/")
    expect(customer.get_by_test_id("nav-user")).to_have_text("Noa Noscript")
    no_sideways_scroll(customer)
    check("no JS: registering signs in and lands on the home page")

    customer.get_by_role("button", name="Sign out").click()
    expect(customer.get_by_role("link", name="Sign in")).to_be_visible()
    expect(customer.get_by_test_id("nav-user")).to_have_count(0)
    check("no JS: signing out")

    sign_in(customer, base, "noa@example.com")
    expect(customer.get_by_test_id("nav-user")).to_have_text("Noa Noscript")
    check("no JS: signing in")

    customer.goto(f"{base}/products/{first['id']}")
    customer.get_by_label("Quantity").fill("2")
    customer.get_by_role("button", name="Add to cart").click()
    expect(customer).to_have_url(f"{base}/cart")
    flash(customer, f"Added 2 × {first['name']} to your cart.")
    expect(customer.locator("#cart-count")).to_have_text("2")
    customer.goto(f"{base}/products")
    customer.locator(f"#product-tile-{second['id']}").get_by_role("button", name="Add to cart").click()
    expect(customer).to_have_url(f"{base}/cart")
    flash(customer, f"Added 1 × {second['name']} to your cart.")
    expect(customer.locator("#cart")).to_contain_text(first["name"])
    expect(customer.locator("#cart")).to_contain_text(second["name"])
    expect(customer.locator("#cart-count")).to_have_text("3")
    no_sideways_scroll(customer)
    check("no JS: add to cart from a product page and from the list lands on the cart with a message")

    customer.get_by_label(f"Quantity of {second['name']}").fill("2")
    customer.get_by_role("button", name=f"Update the quantity of {second['name']}").click()
    expect(customer).to_have_url(f"{base}/cart")
    flash(customer, f"{second['name']}: 2 in your cart.")
    expect(customer.locator("#cart-count")).to_have_text("4")
    check("no JS: changing a quantity in the cart")

    customer.get_by_role("button", name=f"Remove {second['name']}").click()
    expect(customer).to_have_url(f"{base}/cart")
    flash(customer, f"Removed {second['name']} from your cart.")
    expect(customer.locator("#cart")).not_to_contain_text(second["name"])
    expect(customer.locator("#cart-count")).to_have_text("2")
    check("no JS: removing a cart line")

    shot(customer, "nojs-cart-phone")
    # Checkout in steps, each a plain form: a new address, the delivery
    # method (€4.90 under €50), bank transfer, then the review.
    total = 2 * first["price_minor"] + 490
    check_out(customer, base)
    expect(customer.get_by_test_id("review-total")).to_have_text(money(total))
    no_sideways_scroll(customer)
    shot(customer, "nojs-checkout-review-phone")
    placed = place_order(customer)
    expect(customer.locator("main h1")).to_have_text(f"Thank you: order #{placed} is confirmed")
    expect(customer.get_by_test_id("amount")).to_have_text(money(total))
    expect(customer.locator("#cart-count")).to_have_text("0")
    no_sideways_scroll(customer)
    customer.get_by_role("link", name="See your order").click()
    expect(customer).to_have_url(f"{base}/orders/{placed}")
    expect(customer.get_by_test_id("order-status")).to_have_text("confirmed")
    expect(customer.locator("#order-detail tfoot")).to_contain_text(money(total))
    check(f"no JS: checking out in steps lands on /orders/{placed}/confirmation, confirmed, {money(total)}")

    customer.goto(f"{base}/products/{third['id']}")
    customer.get_by_role("button", name="Add to cart").click()
    check_out(customer, base)  # the saved address is chosen this time
    expect(customer.locator(".review")).to_contain_text("1 rue de la Paix")
    to_cancel = place_order(customer)
    customer.get_by_role("link", name="See your order").click()
    expect(customer).to_have_url(f"{base}/orders/{to_cancel}")
    # Without scripts there is no confirmation dialog: the button is the decision.
    customer.get_by_role("button", name="Cancel order").click()
    expect(customer).to_have_url(f"{base}/orders/{to_cancel}")
    flash(customer, f"Order #{to_cancel} is now cancelled.")
    expect(customer.get_by_test_id("order-status")).to_have_text("cancelled")
    expect(customer.get_by_role("button", name="Cancel order")).to_have_count(0)
    check(f"no JS: cancelling order {to_cancel}")

    customer.get_by_test_id("nav-user").click()
    expect(customer).to_have_url(re.compile(r"/users/\d+$"))
    profile = customer.url
    customer.get_by_role("link", name="Edit profile").click()
    expect(customer).to_have_url(f"{profile}/edit")
    customer.get_by_label("Name").fill("Noa Renamed")
    customer.get_by_label("New password").fill(NEW_PASSWORD)
    shot(customer, "nojs-profile-edit-phone")
    customer.get_by_role("button", name="Save").click()
    expect(customer).to_have_url(profile)
    flash(customer, "The profile was saved.")
    expect(customer.locator("#profile h1")).to_have_text("Noa Renamed")
    expect(customer.get_by_test_id("nav-user")).to_have_text("Noa Renamed")
    customer.get_by_role("button", name="Sign out").click()
    customer.goto(f"{base}/users/login")
    customer.get_by_label("Email").fill("noa@example.com")
    customer.get_by_label("Password").fill(NEW_PASSWORD)
    customer.get_by_role("button", name="Sign in").click()
    expect(customer.get_by_test_id("nav-user")).to_have_text("Noa Renamed")
    check("no JS: editing the profile posts the form (name and password changed; the new password signs in)")

    customer.goto(profile)
    customer.get_by_role("button", name="Delete account").click()
    expect(customer).to_have_url(f"{base}/")
    flash(customer, "The account was deleted.")
    expect(customer.get_by_test_id("nav-user")).to_have_count(0)
    customer.goto(f"{base}/users/login")
    customer.get_by_label("Email").fill("noa@example.com")
    customer.get_by_label("Password").fill(NEW_PASSWORD)
    customer.get_by_role("button", name="Sign in").click()
    expect(customer.locator("#login-form")).to_contain_text("Invalid email or password.")
    check("no JS: deleting the account signs out, and the account is gone")
    return placed


def admin_without_scripts(admin: Page, base: str, products: list[dict], order_id: int) -> None:
    sign_in(admin, base, "admin@example.com")
    expect(admin.get_by_test_id("nav-user")).to_have_text("Avery Admin")

    # A bank transfer ships once the money is there: marked paid on its page.
    admin.goto(f"{base}/orders/{order_id}")
    expect(admin.get_by_test_id("payment-state")).to_have_text("unpaid")
    admin.get_by_role("button", name="Mark paid").click()
    expect(admin).to_have_url(f"{base}/orders/{order_id}")
    flash(admin, f"Order #{order_id} is marked paid.")
    expect(admin.get_by_test_id("payment-state")).to_have_text("paid")
    check("no JS: the admin marks a bank transfer paid from the order's page")

    admin.goto(f"{base}/orders")
    row = admin.locator(f"#order-row-{order_id}")
    row.get_by_label(f"New status for order {order_id}").select_option("shipped")
    row.get_by_role("button", name="Update").click()
    expect(admin).to_have_url(f"{base}/orders")
    flash(admin, f"Order #{order_id} is now shipped.")
    expect(admin.get_by_test_id(f"order-status-{order_id}")).to_have_text("shipped")
    check("no JS: the admin ships an order from the list and lands back on it")

    admin.goto(f"{base}/orders/{order_id}")
    admin.get_by_label("Change status").select_option("delivered")
    admin.get_by_role("button", name="Update").click()
    expect(admin).to_have_url(f"{base}/orders/{order_id}")
    flash(admin, f"Order #{order_id} is now delivered.")
    expect(admin.get_by_test_id("order-status")).to_have_text("delivered")
    check("no JS: the admin moves an order on from its page")

    admin.goto(f"{base}/products/new")
    admin.get_by_label("Name").fill("Plain HTML kettle")
    admin.get_by_label("Price (€)").fill("24.50")
    admin.get_by_label("Stock on hand").fill("4")
    admin.get_by_role("button", name="Add product").click()
    expect(admin).to_have_url(re.compile(r"/products/\d+$"))
    flash(admin, "Added Plain HTML kettle at €24.50.")
    check("no JS: the admin adds a product")

    edited = products[3]
    admin.goto(f"{base}/products/{edited['id']}")
    admin.get_by_role("link", name="Edit").click()
    expect(admin).to_have_url(f"{base}/products/{edited['id']}/edit")
    admin.get_by_label("Price (€)").fill("12.34")
    admin.get_by_label("Add to stock").fill("5")
    admin.get_by_role("button", name="Save").click()
    expect(admin).to_have_url(f"{base}/products/{edited['id']}")
    flash(admin, f"Saved {edited['name']}.")
    expect(admin.locator("#product .price")).to_have_text("€12.34")
    expect(admin.locator("#product .stock")).to_contain_text(f"{edited['stock'] + 5} in stock")
    check("no JS: the admin edits a product (price and stock)")

    deleted = products[4]
    admin.goto(f"{base}/products/{deleted['id']}")
    admin.get_by_role("button", name="Delete").click()
    expect(admin).to_have_url(f"{base}/products")
    flash(admin, "The product was deleted.")
    assert admin.goto(f"{base}/products/{deleted['id']}").status == 404
    check("no JS: the admin deletes a product from its page")

    from_tile = products[5]
    admin.goto(f"{base}/products")
    admin.get_by_role("button", name=f"Delete {from_tile['name']}").click()
    expect(admin).to_have_url(f"{base}/products")
    flash(admin, "The product was deleted.")
    expect(admin.locator(f"#product-tile-{from_tile['id']}")).to_have_count(0)
    check("no JS: the admin deletes a product from the list")


def shop_without_scripts(browsing: Browsing, base: str, products: list[dict]) -> None:
    customer = browsing.page("nojs-customer", PHONE, scripts=False)
    admin = browsing.page("nojs-admin", scripts=False)
    asked: list[str] = []
    for page in (customer, admin):
        page.on("request", lambda request: asked.append(request.url))
    order_id = customer_without_scripts(customer, base, products)
    admin_without_scripts(admin, base, products, order_id)
    shot(admin, "nojs-admin-product-list")

    assert asked, "the pages made no requests"
    leaked = [url for url in asked if "password" in url.lower() or PASSWORD.replace(" ", "+") in url]
    assert not leaked, f"URLs with a password: {leaked}"
    check(f"no password in any of the {len(asked)} URLs the browser asked for")


if __name__ == "__main__":
    sys.exit(harness.run(shop_without_scripts, products=6))
