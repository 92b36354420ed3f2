"""Browser tests of the storefront's catalogue in headless Chromium: the
demo catalogue loaded from a fresh shop's home page, pictures, search as you
type (a misspelt name still finds its product), category, price and stock
filters and sort kept in the URL (Back, Forward, reload), categories kept by
an admin, a picture uploaded and a bad one refused; then the same searches,
filters and upload with JavaScript off; axe-core and phone width on every
page this adds. Screenshots land in ci-artifacts/screenshots/.

The shop, Chromium and their settings: harness.py.
"""

from __future__ import annotations

import re
import struct
import sys
import zlib

from playwright.sync_api import expect

import harness
from harness import DESKTOP, PHONE, Api, Browsing, accessibility_violations, assert_still_marked, check, mark, shot, sign_in


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour, written by hand (no imaging library)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def tiles(page) -> list[str]:
    return page.locator("#product-list .product-tile .product-name").all_inner_texts()


def prices(page) -> list[float]:
    return [float(p.strip("€")) for p in page.locator("#product-list .product-tile .price").all_inner_texts()]


def no_sideways_scroll(page, path: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{path} scrolls sideways at phone width ({width}px)"


def pictures_load(page, where: str) -> None:
    broken = page.evaluate(
        "() => [...document.querySelectorAll('main img')].filter(i => i.complete && i.naturalWidth === 0).map(i => i.src)"
    )
    assert not broken, f"{where}: pictures that did not load: {broken}"


def catalogue(browsing: Browsing, base: str, _products: list[dict]) -> None:
    # A fresh shop: its admin loads the demo catalogue from the home page.
    admin = browsing.page("admin")
    sign_in(admin, base, "admin@example.com")
    expect(admin.get_by_test_id("nav-user")).to_be_visible()
    admin.goto(f"{base}/")
    admin.get_by_role("button", name="Load the demo catalogue").click()
    expect(admin.locator("#product-list .product-tile").first).to_be_visible()
    expect(admin.locator("#flash")).to_contain_text("demo products")
    api = Api(base)
    listed = api.call("GET", "/products?page_size=100")
    assert listed["total"] >= 20, listed["total"]
    assert all(p["images"] and p["categories"] for p in listed["products"]), "every demo product has a picture and a category"
    check(f"the admin loads the demo catalogue from the home page: {listed['total']} products, each with a picture and a category")

    visitor = browsing.page("visitor")
    visitor.goto(f"{base}/")
    expect(visitor.locator(".category-chips a").first).to_be_visible()
    visitor.wait_for_load_state("load")
    pictures_load(visitor, "/")
    shot(visitor, "home-demo")
    image_url = listed["products"][0]["images"][0]["thumbnail"]["url"]
    reply = visitor.request.get(f"{base}{image_url}")
    assert reply.status == 200 and reply.headers["content-type"].startswith("image/"), reply.headers
    assert "immutable" in reply.headers["cache-control"], reply.headers["cache-control"]
    again = visitor.request.get(f"{base}{image_url}", headers={"If-None-Match": reply.headers["etag"]})
    assert again.status == 304, again.status
    check("pictures load on the home page; a picture's URL is cached for a year (immutable) and revalidates with 304")

    # Search as you type: a misspelt name finds its product; the URL follows.
    visitor.goto(f"{base}/products")
    mark(visitor)
    visitor.get_by_label("Search").press_sequentially("earl gery", delay=30)
    expect(visitor.locator("#product-list")).to_contain_text("Earl Grey")
    expect(visitor.locator("#product-list")).to_contain_text("showing results for")
    expect(visitor).to_have_url(re.compile(r"/products\?q=earl\+gery$"))
    expect(visitor.get_by_label("Search")).to_be_focused()
    assert_still_marked(visitor, "searching as you type")
    check("typing 'earl gery' swaps in Earl Grey ('showing results for …'), pushes /products?q=earl+gery, keeps the focus in the box")
    shot(visitor, "products-search")

    # Filters and sort: each choice swaps the list and pushes its URL.
    earl = api.call("GET", "/products?q=earl+grey")["products"][0]
    category = earl["categories"][0]
    visitor.goto(f"{base}/products")
    mark(visitor)
    visitor.get_by_label("Category").select_option(category["slug"])
    expect(visitor).to_have_url(re.compile(rf"/products\?category={category['slug']}$"))
    expect(visitor.locator("#product-list")).to_contain_text("Earl Grey")
    in_category = len(tiles(visitor))
    visitor.get_by_label("Sort by").select_option("price-high")
    expect(visitor).to_have_url(re.compile(rf"/products\?category={category['slug']}&sort=price-high$"))
    expect(visitor.locator("#product-list .product-tile")).to_have_count(in_category)
    high_first = prices(visitor)
    assert high_first == sorted(high_first, reverse=True), high_first
    visitor.get_by_label("In stock only").check()
    expect(visitor).to_have_url(re.compile(r"sort=price-high&in_stock=1$"))
    assert_still_marked(visitor, "choosing filters")
    check(f"category ({category['name']}), sort by price and 'in stock only' each swap the list and push their URL")
    visitor.go_back()
    expect(visitor).to_have_url(re.compile(rf"/products\?category={category['slug']}&sort=price-high$"))
    expect(visitor.get_by_label("In stock only")).not_to_be_checked()
    visitor.go_back()
    expect(visitor).to_have_url(re.compile(rf"/products\?category={category['slug']}$"))
    expect(visitor.get_by_label("Sort by")).to_have_value("")
    visitor.go_forward()
    expect(visitor).to_have_url(re.compile(r"sort=price-high$"))
    expect(visitor.get_by_label("Sort by")).to_have_value("price-high")
    assert prices(visitor) == high_first
    visitor.reload()
    expect(visitor.get_by_label("Category")).to_have_value(category["slug"])
    assert prices(visitor) == high_first
    check("Back, Forward and reload show the list and the form of their URL")
    visitor.goto(f"{base}/products?min_price=10&max_price=20&sort=price-low")
    low_first = prices(visitor)
    assert low_first and low_first == sorted(low_first) and all(10 <= p <= 20 for p in low_first), low_first
    visitor.goto(f"{base}/products?min_price=abc")
    expect(visitor.locator("main")).to_contain_text("min_price")
    check("a price range sorted low to high shows only prices in it; a malformed price is refused with its field named")

    # The product page: its picture, its categories, related products.
    visitor.goto(f"{base}/products/{earl['id']}")
    expect(visitor.locator(".gallery-main")).to_have_attribute("alt", earl["images"][0]["alt"])
    expect(visitor.get_by_role("heading", name=f"More in {category['name']}")).to_be_visible()
    visitor.wait_for_load_state("load")
    pictures_load(visitor, "the product page")
    shot(visitor, "product-demo")
    check("the product page shows its picture with its alt text, its category and related products")

    # Categories, kept by the admin.
    admin.goto(f"{base}/categories")
    mark(admin)
    admin.get_by_label("Name", exact=True).fill("Gifts")
    admin.get_by_role("button", name="Add category").click()
    expect(admin.locator("#categories")).to_contain_text("Gifts")
    admin.get_by_label("New name for Gifts").fill("Gift sets")
    admin.get_by_role("button", name="Rename Gifts").click()
    expect(admin.locator("#categories")).to_contain_text("Gift sets")
    admin.get_by_label("Name", exact=True).fill("gift SETS")
    admin.get_by_role("button", name="Add category").click()
    expect(admin.locator("#category-name-error")).to_contain_text("already exists")
    assert_still_marked(admin, "keeping categories")
    shot(admin, "categories-admin")
    check("the admin adds and renames a category in place; a name taken (in another case) is refused beside the field")
    teapot = api.call("GET", "/products?q=glass+teapot")["products"][0]
    admin.goto(f"{base}/products/{teapot['id']}/edit")
    admin.get_by_label("Gift sets").check()
    admin.get_by_role("button", name="Save").click()
    expect(admin.locator("#flash")).to_contain_text("Saved")
    assert any(c["name"] == "Gift sets" for c in api.call("GET", f"/products/{teapot['id']}")["categories"])
    check("ticking a category on the product form puts the product in it")

    # A picture uploaded; a file that is not a picture refused.
    admin.goto(f"{base}/products/{teapot['id']}/edit")
    mark(admin)
    pictures = admin.locator("#pictures")
    before = pictures.locator(".picture-list li").count()
    admin.get_by_label("Picture file").set_input_files({"name": "fake.png", "mimeType": "image/png", "buffer": b"this is not a picture"})
    admin.get_by_label("What it shows").fill("Not a picture")
    admin.get_by_role("button", name="Add the picture").click()
    expect(admin.locator("#picture-image-error")).to_contain_text("not a PNG, JPEG")
    expect(pictures.locator(".picture-list li")).to_have_count(before)
    admin.get_by_label("Picture file").set_input_files({"name": "red.png", "mimeType": "image/png", "buffer": png(640, 480, (200, 30, 40))})
    admin.get_by_label("What it shows").fill("A red square of glass")
    admin.get_by_role("button", name="Add the picture").click()
    expect(pictures.get_by_alt_text("A red square of glass")).to_be_visible()
    expect(admin.locator("#flash")).to_contain_text("Added a picture")
    assert_still_marked(admin, "uploading a picture")
    shot(admin, "product-pictures")
    large = api.call("GET", f"/products/{teapot['id']}")["images"][-1]["large"]
    assert (large["width"], large["height"]) == (640, 480), large
    check("a text file called fake.png is refused beside its field, nothing stored; a real PNG is added in place (640x480 kept)")

    # Scripts off: the same search, filters, sort and upload by plain forms.
    plain = browsing.page("no-js", PHONE, scripts=False)
    plain.goto(f"{base}/products")
    plain.get_by_label("Search").fill("tepot")
    plain.get_by_role("button", name="Search").click()
    expect(plain).to_have_url(re.compile(r"/products\?q=tepot"))
    names = tiles(plain)
    assert names and all("teapot" in n.lower() for n in names[:2]), names
    plain.get_by_label("Sort by").select_option("name")
    plain.get_by_role("button", name="Search").click()
    expect(plain).to_have_url(re.compile(r"sort=name"))
    assert tiles(plain) == sorted(tiles(plain), key=str.lower), tiles(plain)
    plain.get_by_label("Category").select_option(category["slug"])
    plain.get_by_label("Search").fill("")
    plain.get_by_role("button", name="Search").click()
    expect(plain.locator("#product-list")).to_contain_text("Earl Grey")
    expect(plain.get_by_role("heading", level=1)).to_have_text(category["name"])
    check("without JavaScript: 'tepot' finds teapots, sort by name and a category filter work by the plain GET form")
    plain_admin = browsing.page("no-js-admin", PHONE, scripts=False)
    sign_in(plain_admin, base, "admin@example.com")
    plain_admin.goto(f"{base}/products/{teapot['id']}/edit")
    plain_admin.get_by_label("Picture file").set_input_files({"name": "blue.png", "mimeType": "image/png", "buffer": png(300, 300, (20, 60, 200))})
    plain_admin.get_by_label("What it shows").fill("A blue square")
    plain_admin.get_by_role("button", name="Add the picture").click()
    expect(plain_admin).to_have_url(re.compile(rf"/products/{teapot['id']}/edit#pictures$"))
    expect(plain_admin.locator("#pictures").get_by_alt_text("A blue square")).to_be_visible()
    expect(plain_admin.locator("#flash")).to_contain_text("Added a picture")
    check("without JavaScript the admin uploads a picture by the multipart form and lands back on the pictures")

    # Every page this adds: no sideways scroll at phone width, axe-core clean
    # of serious and critical at both widths, as a visitor and as an admin.
    pages = [
        ("visitor", "/"),
        ("visitor", "/products"),
        ("visitor", "/products?q=earl+gery"),
        ("visitor", f"/products?category={category['slug']}&sort=price-high&in_stock=1"),
        ("visitor", f"/products/{earl['id']}"),
        ("visitor", "/categories"),
        ("admin", "/categories"),
        ("admin", f"/products/{teapot['id']}/edit"),
        ("admin", "/products/new"),
    ]
    audited = 0
    for viewport, width in [(PHONE, "phone"), (DESKTOP, "desktop")]:
        who = {"visitor": browsing.page(f"audit-visitor-{width}", viewport, audit=True)}
        who["admin"] = browsing.page(f"audit-admin-{width}", viewport, audit=True)
        sign_in(who["admin"], base, "admin@example.com")
        expect(who["admin"].get_by_test_id("nav-user")).to_be_visible()
        for viewer, path in pages:
            page = who[viewer]
            page.goto(f"{base}{path}")
            expect(page.locator("main h1").first).to_be_visible()
            if width == "phone":
                no_sideways_scroll(page, path)
            shot(page, f"catalogue-{viewer}-{re.sub(r'[^a-z0-9]+', '-', path).strip('-') or 'home'}-{width}")
            serious = [v for v in accessibility_violations(page) if v["impact"] in ("serious", "critical")]
            assert not serious, f"{path} as {viewer} at {width} width: {serious}"
            audited += 1
    check(f"{len(pages)} catalogue pages: none scrolls sideways at 390 px; axe-core {audited} audits, nothing serious")

    browsing.no_script_errors()
    check("no uncaught JavaScript errors on any page")


if __name__ == "__main__":
    sys.exit(harness.run(catalogue, products=0))
