"""The cart kept by the shop, in headless Chromium, with JavaScript on and
then off (each run with products and a customer of its own):

- a quantity changed on the cart page is bounded by the stock, and the
  reason is shown ("Gyokuro: only 2 left");
- signed out, the customer's kept cart stays with the shop; a guest cart
  filled meanwhile is merged at sign-in, cut to the stock, and the customer
  is told once what was cut;
- signed in on a second device, the same cart;
- a product deleted since it went into the cart is marked "No longer sold"
  and left out of checkout (the review step and the confirmation say so by
  name); the line stays in the cart.

The shop, Chromium and their settings: harness.py.
"""

from __future__ import annotations

import sys

from playwright.sync_api import Page, expect

import harness
from harness import PASSWORD, Api, Browsing, check, check_out, place_order, shot, sign_in


def register(page: Page, base: str, name: str, email: str) -> None:
    page.goto(f"{base}/users/register")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_test_id("nav-user")).to_have_text(name)


def add_to_cart(page: Page, base: str, product: dict, badge: str) -> None:
    page.goto(f"{base}/products/{product['id']}")
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-count")).to_have_text(badge)


def set_quantity(page: Page, name: str, quantity: int) -> None:
    page.get_by_label(f"Quantity of {name}").fill(str(quantity))
    page.get_by_role("button", name=f"Update the quantity of {name}").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()


def kept_cart(browsing: Browsing, base: str, admin: Api, scripts: bool) -> None:
    mode = "js" if scripts else "nojs"
    label = "with JS" if scripts else "no JS"

    def product(name: str, stock: int) -> dict:
        body = {"name": f"{name} {mode}", "description": "", "price_minor": 1_000, "stock": stock}
        return admin.call("POST", "/products", body)

    gyokuro, teapot = product("Gyokuro", 3), product("Teapot", 5)
    g, t = gyokuro["name"], teapot["name"]
    email = f"kim-{mode}@example.com"
    customer = browsing.page(f"cart-{mode}", scripts=scripts)
    register(customer, base, "Kim Keeper", email)

    # A quantity bounded by the stock, and the reason shown.
    add_to_cart(customer, base, gyokuro, "1")
    customer.goto(f"{base}/cart")
    set_quantity(customer, g, 3)
    expect(customer.get_by_label(f"Quantity of {g}")).to_have_value("3")
    expect(customer.locator("#cart-count")).to_have_text("3")
    admin.call("PUT", f"/products/{gyokuro['id']}", {"stock_delta": -1})  # 2 left, the page still says 3
    set_quantity(customer, g, 3)
    expect(customer.locator("body")).to_contain_text(f"{g}: only 2 left")
    customer.goto(f"{base}/cart")
    expect(customer.locator("#cart")).to_contain_text("Only 2 left")
    set_quantity(customer, g, 2)
    expect(customer.get_by_label(f"Quantity of {g}")).to_have_value("2")
    expect(customer.locator("#cart-count")).to_have_text("2")
    check(f"{label}: a quantity is bounded by the stock, and the reason is shown")

    # Signed out: a guest's cart, merged at sign-in within the stock.
    sign_out(customer)
    expect(customer.locator("#cart-count")).to_have_text("0")
    add_to_cart(customer, base, gyokuro, "1")
    add_to_cart(customer, base, teapot, "2")
    sign_in(customer, base, email)
    expect(customer.get_by_test_id("nav-user")).to_have_text("Kim Keeper")
    expect(customer.locator("#flash")).to_contain_text(f"Only 2 {g} left: your cart has 2.")
    expect(customer.locator("#cart-count")).to_have_text("3")
    customer.goto(f"{base}/cart")
    expect(customer.get_by_label(f"Quantity of {g}")).to_have_value("2")
    expect(customer.get_by_label(f"Quantity of {t}")).to_have_value("1")
    expect(customer.locator("#flash")).not_to_contain_text("Only 2")  # told once
    check(f"{label}: a guest cart is merged at sign-in, cut to the stock, and the cut is told once")

    # Signed out and in again, and on a second device: the same cart.
    sign_out(customer)
    sign_in(customer, base, email)
    expect(customer.locator("#cart-count")).to_have_text("3")
    phone = browsing.page(f"cart-{mode}-phone", harness.PHONE, scripts=scripts)
    sign_in(phone, base, email)
    expect(phone.locator("#cart-count")).to_have_text("3")
    phone.goto(f"{base}/cart")
    expect(phone.get_by_label(f"Quantity of {g}")).to_have_value("2")
    expect(phone.get_by_label(f"Quantity of {t}")).to_have_value("1")
    check(f"{label}: the cart is there after signing out and in, and on a second device")

    # A product deleted since: marked, and left out of checkout by name.
    admin.call("DELETE", f"/products/{teapot['id']}")
    customer.goto(f"{base}/cart")
    expect(customer.locator("#cart tr.gone")).to_contain_text(t)
    expect(customer.locator("#cart tr.gone")).to_contain_text("No longer sold")
    expect(customer.locator("#cart")).to_contain_text("left out of the order")
    shot(customer, f"cart-{mode}-no-longer-sold")
    check_out(customer, base)
    expect(customer.locator(".review")).to_contain_text(f"Not in this order (they stay in your cart): {t}.")
    order_id = place_order(customer)
    expect(customer.locator("#flash")).to_contain_text(f"{t} is no longer sold: it stayed in your cart.")
    expect(customer.locator("#cart-count")).to_have_text("1")
    customer.get_by_role("link", name="See your order").click()
    expect(customer).to_have_url(f"{base}/orders/{order_id}")
    expect(customer.locator("#order-detail")).to_contain_text(g)
    expect(customer.locator("#order-detail")).not_to_contain_text(t)
    customer.goto(f"{base}/cart")
    expect(customer.locator("#cart tr.gone")).to_contain_text(t)
    expect(customer.locator("#cart")).not_to_contain_text(g)
    check(f"{label}: a deleted product's line is marked, left out of checkout, and stays in the cart")
    customer.get_by_role("button", name=f"Remove {t}").click()
    expect(customer.locator("#cart")).to_contain_text("Your cart is empty")
    expect(customer.locator("#cart-count")).to_have_text("0")
    check(f"{label}: the line no longer sold is taken out by name")


def carts(browsing: Browsing, base: str, _products: list[dict]) -> None:
    admin = Api(base)
    admin.call("POST", "/users/login", {"email": "admin@example.com", "password": PASSWORD})
    for scripts in (True, False):
        kept_cart(browsing, base, admin, scripts)
    browsing.no_script_errors()


if __name__ == "__main__":
    sys.exit(harness.run(carts, products=1))
