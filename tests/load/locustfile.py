"""Shoppers for Locust: people browsing, searching and buying in the shop.

Run through `ops/load.sh [BASE_URL] [DURATION] [USERS]`, or by hand:

    locust -f tests/load/locustfile.py --headless --host http://127.0.0.1:8080 -u 10 -r 2 -t 1m

Each simulated shopper registers an account of its own when it starts (and
stays signed in), then, with a pause to think between steps
(`SHOP_LOAD_WAIT`), does what people do in a shop, in about these shares:

    looks at a product page                 27 %
    browses the list (home, pages, sort)    22 %   (the home page, /products, page 2..5, a sort)
    searches                                16 %   (the full search page, or as you type: HTMX)
    opens a category                        11 %   (/categories, then /products?category=<slug>)
    adds to the cart                        11 %   (HTMX mostly, or the plain form)
    checks out the cart                      5 %   (views the cart, POST /orders as JSON, the confirmation)
    looks at their orders                    5 %   (/orders and one of their own /orders/{id})
    changes their cart                       2 %   (GET /cart, takes a line out)
    signs out and in again                   1 %   (rare: sign-in is rate limited per address)

Requests are named by route (`/products/{id}`, `/products?q={query}`), so
the report groups them. A refusal for stock that ran out (409 at checkout, a
422 "only N left" when adding) is an answer a shop gives, not an error: it is
counted as a success under the request's name with " [stock ran out]"
added. Any other answer that is not 2xx or 3xx is a failure.

What it needs from the shop, set up at the test's start:
- products: with an admin's credentials (SHOP_LOAD_ADMIN_EMAIL and
  SHOP_LOAD_ADMIN_PASSWORD) an empty shop gets the demo catalogue
  (`POST /products/demo`); without them the catalogue must not be empty;
- a delivery method for checkout: with the admin's credentials the first
  active one, made if there is none (`POST /delivery-methods`); else
  SHOP_LOAD_DELIVERY_METHOD_ID, else the first shopper to check out finds
  it on the checkout's delivery page, as a person would.

Settings (environment):
  SHOP_LOAD_ADMIN_EMAIL, SHOP_LOAD_ADMIN_PASSWORD   an admin of the shop (optional, above)
  SHOP_LOAD_DELIVERY_METHOD_ID                     the delivery method to order with (optional)
  SHOP_LOAD_WAIT          seconds a shopper thinks between steps: "MIN-MAX" or one number (default 1-3)
  SHOP_LOAD_SIGNUPS_PER_MINUTE   registrations sent in any minute (default 25): the shop lets 30 a
                          minute through from one address (SHOP_SIGNIN_LIMIT_PER_ADDRESS), so shoppers
                          beyond that wait for their turn to register. Raise both together to start
                          many shoppers quickly. Two runs within a minute share the shop's allowance.
  SHOP_LOAD_SIGNINS_PER_MINUTE   sign-ins again in any minute, all shoppers together (default 10),
                          each account at most 8 in a quarter hour (the shop allows 10)
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import random
import re
import time
import uuid

import gevent
import gevent.lock
import requests
from locust import HttpUser, between, constant, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

PASSWORD = "correct horse battery staple"
# Every account this run makes is new: a run id in its email.
RUN = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
SHOPPERS = itertools.count(1)

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
HTMX = {**HTML, "HX-Request": "true"}
JSON = {"Accept": "application/json"}

SEARCHES = ["tea", "green", "oolong", "teapot", "earl grey", "jasmin", "cup", "mint", "pu-erh", "sencha", "matcha", "gift"]
SORTS = ["price-low", "price-high", "name", "newest"]
ADDRESSES = [
    {"name": "Ada Lovelace", "line1": "12 St James's Square", "postcode": "SW1Y 4JH", "city": "London", "country": "GB"},
    {"name": "Marie Curie", "line1": "1 rue de la Paix", "postcode": "75002", "city": "Paris", "country": "FR",
     "phone": "+33 1 23 45 67 89"},
    {"name": "Hedy Lamarr", "line1": "Keizersgracht 1", "postcode": "1015 CJ", "city": "Amsterdam", "country": "NL"},
]
# The problem types of a checkout refused because stock ran out meanwhile.
STOCK_REFUSALS = ("/problems/stock-short", "/problems/order-rejected", "/problems/stock-would-go-negative")
RAN_OUT = " [stock ran out]"

log = logging.getLogger("shop-load")


def wait_setting():
    """SHOP_LOAD_WAIT as a Locust wait_time: "1-3", "0.5" or "0"."""
    value = os.environ.get("SHOP_LOAD_WAIT", "1-3").strip()
    low, _, high = value.partition("-")
    return between(float(low), float(high)) if high else constant(float(low))


class Pacer:
    """At most `limit` events in any `window` seconds, in this process: the
    shop counts registrations and sign-ins per client address (a minute)
    and per account (a quarter hour) in fixed windows, and a sliding window
    never holds more than any fixed one. A second of margin covers requests
    that arrive later than they were sent."""

    def __init__(self, limit: int, window: float = 60):
        self.limit = limit
        self.window = window + 1
        self.times: collections.deque[float] = collections.deque()

    def _wait(self) -> float:
        now = time.monotonic()
        while self.times and now - self.times[0] >= self.window:
            self.times.popleft()
        return 0 if len(self.times) < self.limit else self.window - (now - self.times[0])

    def has_room(self) -> bool:
        return self._wait() == 0

    def try_take(self) -> bool:
        # Greenlets switch only at I/O: nothing runs between the check and the take.
        if self._wait() > 0:
            return False
        self.times.append(time.monotonic())
        return True

    def take(self):
        while not self.try_take():
            gevent.sleep(self._wait() + 0.05)


REGISTRATIONS = Pacer(int(os.environ.get("SHOP_LOAD_SIGNUPS_PER_MINUTE", "25")))
SIGN_INS = Pacer(int(os.environ.get("SHOP_LOAD_SIGNINS_PER_MINUTE", "10")))


class Shop:
    """What the shoppers know of the shop, read once per process: the
    products (id and stock when the test started), the categories with
    products, how many list pages there are, and the delivery method."""

    def __init__(self):
        self.lock = gevent.lock.Semaphore()
        self.loaded = False
        self.unusable = False
        self.products: list[dict] = []
        self.categories: list[str] = []
        self.pages = 1
        self.page_paths = []
        self.delivery_method_id = int(os.environ.get("SHOP_LOAD_DELIVERY_METHOD_ID") or 0) or None

    def load(self, base: str):
        with self.lock:
            if self.loaded:
                return
            http = requests.Session()
            http.headers.update(JSON)
            # The list pages by cursor: a few of its pages' URLs, as Next links them.
            path = "/products"
            while path and len(self.page_paths) < 5:
                listed = get_json(http, f"{base}{path}")
                path = listed.get("next")
                if path:
                    self.page_paths.append(path)
            self.pages = 1 + len(self.page_paths)
            path = "/products?page_size=100"
            for _ in range(10):  # the first thousand products are plenty to pick from
                listed = get_json(http, f"{base}{path}")
                self.products += [{"id": p["id"], "stock": p["stock"]} for p in listed["products"]]
                path = listed.get("next")
                if not path:
                    break
            self.categories = [c["slug"] for c in get_json(http, f"{base}/categories") if c.get("product_count")]
            if not self.products:
                raise RuntimeError(
                    f"the shop at {base} has no products: give an admin's SHOP_LOAD_ADMIN_EMAIL and "
                    "SHOP_LOAD_ADMIN_PASSWORD to load the demo catalogue, or add products"
                )
            self.loaded = True
            log.info("the shop has %d products, %d categories with products, %d list pages",
                     len(self.products), len(self.categories), self.pages)

    def product(self) -> int:
        return random.choice(self.products)["id"]

    def product_in_stock(self) -> int:
        """A product that had stock when the test started (any, if none had)."""
        in_stock = [p for p in self.products if p["stock"] > 0] or self.products
        return random.choice(in_stock)["id"]


SHOP = Shop()


def get_json(http: requests.Session, url: str, **kwargs):
    response = http.get(url, timeout=30, **kwargs)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def prepare(base: str):
    """Before any shopper starts: the demo catalogue in an empty shop and a
    delivery method, when an admin's credentials are given."""
    email = os.environ.get("SHOP_LOAD_ADMIN_EMAIL")
    password = os.environ.get("SHOP_LOAD_ADMIN_PASSWORD")
    if email and password:
        admin = requests.Session()
        admin.headers.update(JSON)
        SIGN_INS.take()
        signed_in = admin.post(f"{base}/users/login", json={"email": email, "password": password}, timeout=30)
        if signed_in.status_code != 200 or signed_in.json().get("role") != "admin":
            raise RuntimeError(f"cannot sign in as the admin {email}: HTTP {signed_in.status_code} {signed_in.text[:300]}")
        if get_json(admin, f"{base}/products", params={"page_size": 1})["total"] == 0:
            loaded = admin.post(f"{base}/products/demo", timeout=120)
            if loaded.status_code != 200:
                raise RuntimeError(f"POST /products/demo: HTTP {loaded.status_code} {loaded.text[:300]}")
            log.info("the shop was empty: loaded the demo catalogue (%s products)", loaded.json().get("added"))
        if SHOP.delivery_method_id is None:
            active = [m for m in get_json(admin, f"{base}/delivery-methods") if m.get("active")]
            if not active:
                made = admin.post(f"{base}/delivery-methods", timeout=30,
                                  json={"name": "Standard delivery", "price_minor": 490, "free_above_minor": 5000})
                if made.status_code != 201:
                    raise RuntimeError(f"POST /delivery-methods: HTTP {made.status_code} {made.text[:300]}")
                active = [made.json()]
                log.info("the shop had no delivery method: made %r", active[0]["name"])
            SHOP.delivery_method_id = active[0]["id"]
        admin.post(f"{base}/users/logout", timeout=30)
    SHOP.load(base)


@events.test_start.add_listener
def on_test_start(environment, **_kwargs):
    if isinstance(environment.runner, WorkerRunner):
        return  # the master prepares; each worker reads the shop when its first shopper starts
    try:
        prepare(environment.host.rstrip("/"))
    except Exception as error:  # noqa: BLE001 — any failure here ends the run, said plainly
        log.error("cannot prepare the shop for the load test: %s", error)
        SHOP.unusable = True
        environment.process_exit_code = 2
        gevent.spawn(environment.runner.quit)


_told = itertools.count()


@events.request.add_listener
def tell_failure(request_type, name, response, exception, **_kwargs):
    """The shop's own words for the first failures (a problem's detail),
    which Locust's report leaves out."""
    if exception is not None and response is not None and next(_told) < 20:
        status = getattr(response, "status_code", None)
        body = (getattr(response, "text", "") or "")[:300].replace("\n", " ")
        log.warning("%s %s failed: HTTP %s %s", request_type, name, status, body)


class Shopper(HttpUser):
    wait_time = wait_setting()

    def on_start(self):
        if SHOP.unusable:
            raise StopUser("not started: the shop could not be prepared (said above)")
        SHOP.load(self.host.rstrip("/"))
        self.cart_units = 0
        self.orders: list[int] = []
        self.email = f"load-{RUN}-{next(SHOPPERS)}@example.com"
        # The shop lets 10 sign-ins an account through in a quarter hour.
        self.sign_ins = Pacer(8, 15 * 60)
        # Wait for a turn rather than be refused by the shop's limit.
        REGISTRATIONS.take()
        account = {"name": "Load Shopper", "email": self.email, "password": PASSWORD}
        for _attempt in range(3):
            registered = self.client.post("/users/register", json=account, headers=JSON)
            if registered.status_code != 429:
                break
            # Refused by the shop's limit all the same (another client from
            # this address, an earlier run this minute): counted as a
            # failure, then tried again when the shop says.
            gevent.sleep(float(registered.headers.get("Retry-After", "10")) + 0.5)
        if registered.status_code != 201:  # counted as a failure
            raise StopUser(f"not started: registering {self.email} answered HTTP {registered.status_code}")

    # ------------------------------------------------------------ browsing

    @task(6)
    def home(self):
        self.client.get("/", headers=HTML)

    @task(8)
    def product_list(self):
        self.client.get("/products", headers=HTML)

    @task(4)
    def another_page(self):
        if not SHOP.page_paths:
            self.client.get("/products", headers=HTML, name="/products?after={cursor}")
            return
        self.client.get(random.choice(SHOP.page_paths), headers=HTML, name="/products?after={cursor}")

    @task(4)
    def sorted_list(self):
        self.client.get(f"/products?sort={random.choice(SORTS)}", headers=HTML, name="/products?sort={sort}")

    @task(9)
    def search(self):
        query = random.choice(SEARCHES)
        self.client.get("/products", params={"q": query}, headers=HTML, name="/products?q={query}")

    @task(7)
    def search_as_you_type(self):
        # The search box's HTMX requests: the results as the words grow.
        words = random.choice(SEARCHES)
        for length in sorted({min(3, len(words)), len(words)}):
            self.client.get("/products", params={"q": words[:length]}, headers=HTMX,
                            name="/products?q={query} (as you type)")

    @task(3)
    def categories(self):
        self.client.get("/categories", headers=HTML)

    @task(8)
    def category(self):
        if not SHOP.categories:
            self.client.get("/categories", headers=HTML)
            return
        slug = random.choice(SHOP.categories)
        params = {"category": slug}
        if random.random() < 0.3:
            params["sort"] = random.choice(SORTS)
        self.client.get("/products", params=params, headers=HTML, name="/products?category={slug}")

    @task(27)
    def product_page(self):
        self.client.get(f"/products/{SHOP.product()}", headers=HTML, name="/products/{id}")

    # ---------------------------------------------------------------- cart

    @task(11)
    def add_to_cart(self):
        product = SHOP.product_in_stock()
        self.client.get(f"/products/{product}", headers=HTML, name="/products/{id}")
        quantity = random.choice([1, 1, 1, 2])
        if random.random() < 0.75:
            # The product page's button, through HTMX: the "added" fragment.
            added = self.post_cart(product, quantity, HTMX, "/cart/items (HTMX)")
        else:
            # Scripts off: the plain form, a 303 to the cart page.
            added = self.post_cart(product, quantity, HTML, "/cart/items (form)")
            if added:
                self.client.get("/cart", headers=HTML)
        if added:
            self.cart_units += quantity

    def post_cart(self, product: int, quantity: int, headers: dict, name: str) -> bool:
        with self.client.post("/cart/items", data={"product_id": product, "quantity": quantity}, headers=headers,
                              name=name, allow_redirects=False, catch_response=True) as response:
            if response.status_code in (200, 303):
                return True
            if response.status_code == 422 and re.search(r"out of stock|left", response.text):
                response.request_meta["name"] = name + RAN_OUT
                response.success()
            return False

    @task(2)
    def change_cart(self):
        cart = self.client.get("/cart", headers=JSON).json()
        if cart["lines"]:
            line = random.choice(cart["lines"])
            self.client.delete(f"/cart/items/{line['product']['id']}", headers=JSON, name="/cart/items/{id}")
            self.cart_units = max(0, cart["count"] - line["quantity"])

    # ------------------------------------------------------------ checkout

    @task(5)
    def checkout(self):
        if self.cart_units == 0:
            # Buy now: one thing into the cart first.
            product = SHOP.product_in_stock()
            self.client.get(f"/products/{product}", headers=HTML, name="/products/{id}")
            if not self.post_cart(product, 1, HTMX, "/cart/items (HTMX)"):
                return
            self.cart_units = 1
        self.client.get("/cart", headers=HTML)
        if SHOP.delivery_method_id is None and not self.find_delivery_method():
            return
        order = {
            "delivery_address": random.choice(ADDRESSES),
            "delivery_method_id": SHOP.delivery_method_id,
            "payment_method": "bank_transfer",
            "terms_accepted": True,
        }
        headers = {**JSON, "Idempotency-Key": f"load-{uuid.uuid4()}"}
        with self.client.post("/orders", json=order, headers=headers, catch_response=True) as response:
            if response.status_code == 201:
                placed = response.json()
                self.orders.append(placed["id"])
            elif response.status_code == 409 and problem_type(response) in STOCK_REFUSALS:
                response.request_meta["name"] = "/orders" + RAN_OUT
                response.success()
                placed = None
            else:
                return  # counted as a failure
        if placed is None:
            self.take_out_unavailable()
            return
        self.cart_units = 0
        self.client.get(f"/orders/{placed['id']}/confirmation", headers=HTML, name="/orders/{id}/confirmation")

    def take_out_unavailable(self):
        """What a shopper does on hearing something ran out: looks at the
        cart and takes out what cannot be ordered."""
        cart = self.client.get("/cart", headers=JSON).json()
        for line in cart["lines"]:
            if line.get("status") != "available":
                self.client.delete(f"/cart/items/{line['product']['id']}", headers=JSON, name="/cart/items/{id}")
        for gone in cart.get("gone", []):
            product = gone.get("id") or gone.get("product", {}).get("id")
            if product:
                self.client.delete(f"/cart/items/{product}", headers=JSON, name="/cart/items/{id}")
        self.cart_units = sum(line["quantity"] for line in cart["lines"] if line.get("status") == "available")

    def find_delivery_method(self) -> bool:
        """Without an admin, the delivery methods are on the checkout's
        delivery page: an address first, then that page."""
        address = {"address_id": "new", **random.choice(ADDRESSES)}
        self.client.post("/checkout/address", data=address, headers=HTML, allow_redirects=False)
        page = self.client.get("/checkout/delivery", headers=HTML, allow_redirects=False)
        found = re.search(r'name="delivery_method_id" value="(\d+)"', page.text)
        if found and SHOP.delivery_method_id is None:
            SHOP.delivery_method_id = int(found.group(1))
            log.info("found delivery method %s on the checkout's delivery page", SHOP.delivery_method_id)
        return SHOP.delivery_method_id is not None

    # ------------------------------------------------------------- account

    @task(5)
    def my_orders(self):
        self.client.get("/orders", headers=HTML)
        if self.orders:
            order = random.choice(self.orders[-10:])
            self.client.get(f"/orders/{order}", headers=HTML, name="/orders/{id}")

    @task(1)
    def sign_in_again(self):
        # Only when the shop's limits have room, for the address and for
        # this account: sign-ins stay rare.
        if not self.sign_ins.has_room() or not SIGN_INS.try_take():
            return
        self.sign_ins.try_take()
        self.client.post("/users/logout", headers=JSON)
        signed_in = self.client.post("/users/login", json={"email": self.email, "password": PASSWORD}, headers=JSON)
        if signed_in.status_code != 200:  # counted as a failure
            raise StopUser(f"stopped: signing in as {self.email} answered HTTP {signed_in.status_code}")


def problem_type(response) -> str:
    try:
        return str(response.json().get("type", ""))
    except ValueError:
        return ""
