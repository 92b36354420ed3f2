#!/usr/bin/env python3
"""The shop's emails, received by a real SMTP server.

Starts an SMTP server (aiosmtpd) on a free port and `shop all` (SHOP_BIN,
default target/debug/shop) on free ports with a fresh SQLite data directory
and SHOP_SMTP_URL pointing at that server; then, through the JSON API as a
customer and an admin would: register, add to the cart, check out (the order
confirmation), mark paid (payment received; through gRPC, signed as an admin,
until the gateway has a route for it), ship with a tracking reference
(shipped), cancel another order (cancelled), ask for a password reset (the
link); the SMTP server stopped while an order is placed and started again
(the email arrives after, once). Each email must arrive exactly once, as
multipart/alternative with a plain-text and an HTML body, with the right
subject, recipient and content.

With SHOP_TEST_NATS_URL set (ops/test.sh sets it), also: the shop on NATS
sends a confirmation, is stopped, the same event is published again (a
redelivery the process has never seen), and the shop started again sends
nothing twice.

Run it with ops/test.sh, or by hand from a virtualenv holding
tests/python/requirements.txt. Exits non-zero when a check fails.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import html
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
SHOP_BIN = Path(os.environ.get("SHOP_BIN", ROOT / "target" / "debug" / "shop"))
PUBLIC_URL = "http://shop.example"
FROM = "Test Tea Shop <orders@shop.example>"
PASSWORD = "correct horse battery staple"
INTERNAL_SECRET = "the mail test's secret, not a real one"
ARRIVAL_TIMEOUT = 60.0  # seconds for an email to arrive (a debug build on a busy 2-core machine)


def log(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ SMTP


class Inbox:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Test-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted"

    def all(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)

    def with_subject(self, subject: str) -> list[EmailMessage]:
        return [m for m in self.all() if m["Subject"] == subject]

    def wait_for(self, subject: str, timeout: float = ARRIVAL_TIMEOUT) -> EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.with_subject(subject)
            if found:
                return found[0]
            time.sleep(0.1)
        subjects = [m["Subject"] for m in self.all()]
        raise AssertionError(f"no email {subject!r} within {timeout:.0f} s; received: {subjects}")


class SmtpServer:
    """A real SMTP server on one port, stopped and started again at will."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and HTML bodies; asserts the email is multipart/alternative."""
    assert message.get_content_type() == "multipart/alternative", message.get_content_type()
    text = message.get_body(preferencelist=("plain",))
    markup = message.get_body(preferencelist=("html",))
    assert text is not None and markup is not None, "a plain-text and an HTML part"
    return text.get_content(), markup.get_content()


# ------------------------------------------------------------------ the shop


class Shop:
    """`shop all` on free ports with a data directory of its own."""

    def __init__(self, directory: Path, smtp_port: int, extra: dict[str, str] | None = None) -> None:
        self.dir = directory
        self.http = free_port()
        self.base = f"http://127.0.0.1:{self.http}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "POSTGRES_DB_"))}
        env.update(
            SHOP_DATA_DIR=str(directory / "data"),
            SHOP_HTTP_ADDR=f"127.0.0.1:{self.http}",
            SHOP_USERS_ADDR=f"127.0.0.1:{free_port()}",
            SHOP_INVENTORY_ADDR=f"127.0.0.1:{free_port()}",
            SHOP_ORDERS_ADDR=f"127.0.0.1:{free_port()}",
            SHOP_METRICS_ADDR=f"127.0.0.1:{free_port()}",
            SHOP_INTERNAL_SECRET=INTERNAL_SECRET,
            SHOP_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
            SHOP_SMTP_TIMEOUT_SECS="5",
            SHOP_PUBLIC_URL=PUBLIC_URL,
            SHOP_MAIL_FROM=FROM,
            NO_COLOR="1",
            **(extra or {}),
        )
        self.env = env
        self.metrics = f"http://{env['SHOP_METRICS_ADDR']}/metrics"
        self.orders_addr = env["SHOP_ORDERS_ADDR"]
        self.log_path = directory / f"shop-{self.http}.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([str(SHOP_BIN), "all"], cwd=directory, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the shop exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("the shop did not answer /healthz within 60 s")
            time.sleep(0.1)

    def make_admin(self, address: str) -> None:
        done = subprocess.run([str(SHOP_BIN), "make-admin", address], cwd=self.dir, env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"shop make-admin failed: {done.stderr.strip()}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.log.close()
        return code

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Api:
    """A JSON client with a cookie jar (a session of its own)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(request, timeout=30) as reply:
                text = reply.read()
                return reply.status, (json.loads(text) if text else {})
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"body": text[:300].decode(errors="replace")}

    def ok(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> dict:
        status, answer = self.call(method, path, body, headers)
        assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
        return answer


class AdminGrpc:
    """The order service's admin calls the gateway has no JSON route for yet
    (delivery methods, marking paid), signed as an admin like the gateway
    signs them."""

    def __init__(self, orders_addr: str, admin_id: int) -> None:
        import importlib.resources

        import grpc
        from grpc_tools import protoc

        out = Path(tempfile.mkdtemp(prefix="shop-mail-stubs-"))
        well_known = importlib.resources.files("grpc_tools") / "_proto"
        protos = [str(p) for p in sorted((ROOT / "proto").glob("*.proto"))]  # orders.proto imports others
        status = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}", f"--python_out={out}",
                              f"--grpc_python_out={out}", *protos])
        assert status == 0, "protoc failed on proto/*.proto"
        sys.path.insert(0, str(out))
        import orders_pb2  # noqa: E402 (generated above)
        import orders_pb2_grpc  # noqa: E402

        self.pb = orders_pb2
        self.admin_id = admin_id
        self.channel = grpc.insecure_channel(orders_addr)
        self.stub = orders_pb2_grpc.OrderServiceStub(self.channel)

    def metadata(self) -> list[tuple[str, str]]:
        payload = f"v1|u|{self.admin_id}|1|{int(time.time() * 1000) + 60_000}"
        signature = hmac.new(INTERNAL_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return [("x-shop-caller", f"{payload}|{signature}")]

    def delivery_method(self, name: str, price_minor: int) -> int:
        request = self.pb.CreateDeliveryMethodRequest(name=name, price_minor=price_minor)
        return self.stub.CreateDeliveryMethod(request, metadata=self.metadata(), timeout=20).method.id

    def mark_paid(self, order_id: int) -> None:
        self.stub.MarkOrderPaid(self.pb.MarkOrderPaidRequest(id=order_id), metadata=self.metadata(), timeout=20)

    def close(self) -> None:
        self.channel.close()


ADDRESS = {"name": "Ada O'Hara", "line1": "1 Rue de Rivoli", "line2": "", "postcode": "75001", "city": "Paris",
           "country": "FR", "phone": ""}


# ------------------------------------------------------------------ checks

PASSED: list[str] = []


def check(name: str) -> None:
    PASSED.append(name)
    log(f"  ok  {name}")


def place_order(customer: Api, product_id: int, quantity: int, method_id: int, payment: str = "bank_transfer") -> dict:
    """The cart checked out: to ADDRESS, by `method_id`, paid by `payment`."""
    customer.ok("POST", "/cart/items", {"product_id": product_id, "quantity": quantity})
    body = {"delivery_address": ADDRESS, "delivery_method_id": method_id, "payment_method": payment, "terms_accepted": True}
    order = customer.ok("POST", "/orders", body, {"Idempotency-Key": str(uuid.uuid4())})
    return order.get("order", order)


def embedded_scenario(work: Path) -> None:
    inbox = Inbox()
    smtp = SmtpServer(inbox)
    smtp.start()
    shop = Shop(work, smtp.port)
    try:
        admin = Api(shop.base)
        admin_user = admin.ok("POST", "/users/register", {"name": "Avery Admin", "email": "admin@example.com", "password": PASSWORD})
        shop.make_admin("admin@example.com")
        admin.ok("POST", "/users/login", {"email": "admin@example.com", "password": PASSWORD})
        admin_id = admin_user.get("id") or admin_user.get("user", {}).get("id")
        product = admin.ok("POST", "/products", {"name": "Sencha <Premium>", "description": "Green tea.", "price_minor": 1250, "stock": 20})
        grpc_admin = AdminGrpc(shop.orders_addr, admin_id)
        method = grpc_admin.delivery_method("Post & Parcel", 495)

        customer = Api(shop.base)
        name = "Ada O'Hara & <Co>"
        customer.ok("POST", "/users/register", {"name": name, "email": "ada@example.com", "password": PASSWORD})
        customer.ok("POST", "/users/login", {"email": "ada@example.com", "password": PASSWORD})

        # The order confirmation.
        order = place_order(customer, product["id"], 2, method)
        order_id = order["id"]
        subject = f"Your order #{order_id} is confirmed"
        confirmation = inbox.wait_for(subject)
        assert confirmation["To"].addresses[0].addr_spec == "ada@example.com", confirmation["To"]
        assert confirmation["From"].addresses[0].addr_spec == "orders@shop.example", confirmation["From"]
        assert confirmation["Message-ID"], "a Message-ID"
        text, markup = bodies(confirmation)
        reference = f"ORDER-{order_id:06d}"
        for needle in ["2 x Sencha <Premium>", "12.50", "25.00", "Post & Parcel", "4.95", "29.95", "BANK TRANSFER",
                       reference, "1 Rue de Rivoli", "75001 Paris", f"{PUBLIC_URL}/orders/{order_id}", name]:
            assert needle in text, f"{needle!r} not in the text body:\n{text}"
        assert "<Premium>" not in markup and "Sencha &lt;Premium&gt;" in markup, "HTML escapes the product's name"
        assert "&lt;Co&gt;" in markup and "<Co>" not in markup, "HTML escapes the customer's name"
        assert f"{PUBLIC_URL}/orders/{order_id}" in html.unescape(markup)
        assert "Post &amp; Parcel" in markup and reference in markup and "29.95" in markup
        check("the order confirmation arrives: lines, delivery, total, bank transfer reference, address; HTML escaped")

        # Payment received.
        grpc_admin.mark_paid(order_id)
        paid = inbox.wait_for(f"Payment received for your order #{order_id}")
        text, _ = bodies(paid)
        assert "29.95" in text and reference in text, text
        check("payment received arrives once the admin marks the order paid")

        # Shipped, with the tracking reference.
        shipped_order = admin.ok("POST", f"/orders/{order_id}/status", {"status": "shipped", "tracking_reference": "TRACK-123"})
        shipped = inbox.wait_for(f"Your order #{order_id} has shipped")
        text, markup = bodies(shipped)
        recorded = json.dumps(shipped_order)
        if "TRACK-123" in recorded:
            assert "TRACK-123" in text and "TRACK-123" in markup, text
            check("the shipped email arrives with the tracking reference")
        else:
            check("the shipped email arrives (the gateway does not pass a tracking reference yet)")

        # Cancelled.
        second = place_order(customer, product["id"], 1, method, "cash_on_delivery")
        inbox.wait_for(f"Your order #{second['id']} is confirmed")
        customer.ok("POST", f"/orders/{second['id']}/status", {"status": "cancelled"})
        cancelled = inbox.wait_for(f"Your order #{second['id']} has been cancelled")
        bodies(cancelled)
        check("the cancellation arrives")

        # An SMTP outage delays an email and loses none.
        smtp.stop()
        third = place_order(customer, product["id"], 3, method)
        time.sleep(3)
        assert not inbox.with_subject(f"Your order #{third['id']} is confirmed")
        smtp.start()
        delayed = inbox.wait_for(f"Your order #{third['id']} is confirmed")
        text, _ = bodies(delayed)
        assert "3 x Sencha <Premium>" in text, text
        check("with SMTP down while an order is placed, its confirmation arrives once SMTP is back")

        # The password reset link.
        status, answer = customer.call("POST", "/users/password-reset", {"email": "ada@example.com"})
        if status in (200, 202):
            reset = inbox.wait_for("Reset your password")
            text, markup = bodies(reset)
            links = re.findall(re.escape(PUBLIC_URL) + r"/users/password-reset/([A-Za-z0-9._~-]+)", text)
            assert links, f"no reset link in:\n{text}"
            assert links[0] in html.unescape(markup)
            assert links[0] not in shop.log_path.read_text(errors="replace"), "the reset token is in the shop's log"
            metrics = urllib.request.urlopen(shop.metrics, timeout=5).read().decode()
            assert links[0] not in metrics, "the reset token is in the metrics"
            # Someone asking for an unknown email gets no email at all.
            customer.call("POST", "/users/password-reset", {"email": "nobody@example.com"})
            check("the password reset email carries the link; the token is in no log line and no metric")
        else:
            log(f"  --  password reset skipped: POST /users/password-reset answered {status} {answer}")

        # Once each: nothing arrives twice, however long we wait.
        time.sleep(3)
        subjects = [m["Subject"] for m in inbox.all()]
        duplicates = {s for s in subjects if subjects.count(s) > 1}
        assert not duplicates, f"sent more than once: {sorted(duplicates)}"
        expected = 7 if status in (200, 202) else 6
        assert len(subjects) == expected, f"{len(subjects)} emails, expected {expected}: {subjects}"
        recipients = {m["X-Test-Envelope-To"] for m in inbox.all()}
        assert recipients == {"ada@example.com"}, recipients
        metrics = urllib.request.urlopen(shop.metrics, timeout=5).read().decode()
        assert re.search(r'shop_emails_sent_total\{kind="order_confirmed"\} 3', metrics), "three confirmations counted"
        assert re.search(r'shop_email_failures_total\{[^}]*retried="true"[^}]*\} [1-9]', metrics), "the outage counted"
        check(f"every email arrived exactly once ({len(subjects)} in all); sent and failed emails counted")
    except Exception:
        log(f"--- the end of the shop's log ({shop.log_path}):\n{shop.log_tail()}")
        raise
    finally:
        if "grpc_admin" in locals():
            grpc_admin.close()
        assert shop.stop() == 0, "the shop exits cleanly on SIGTERM"
        smtp.stop()


def nats_redelivery_scenario(work: Path, nats_url: str) -> None:
    """A redelivered event (same id) after a restart sends nothing twice."""
    import nats

    stream = f"SHOP_TEST_MAIL_{uuid.uuid4().hex[:8].upper()}"
    prefix = f"shop_test_mail_{uuid.uuid4().hex[:8]}"
    extra = {"SHOP_NATS_URL": nats_url, "SHOP_NATS_STREAM": stream, "SHOP_NATS_SUBJECT_PREFIX": prefix}
    inbox = Inbox()
    smtp = SmtpServer(inbox)
    smtp.start()

    async def events() -> list[tuple[str, bytes]]:
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            subscription = await js.pull_subscribe(f"{prefix}.order.status_changed", stream=stream)
            messages = await subscription.fetch(10, timeout=5)
            return [(m.subject, m.data) for m in messages]
        finally:
            await client.close()

    async def publish_again(subject: str, data: bytes) -> None:
        client = await nats.connect(nats_url)
        try:
            # A new NATS message id, the same event id: JetStream does not drop
            # it, so the consumer is given the same event a second time.
            await client.jetstream().publish(subject, data, headers={"Nats-Msg-Id": str(uuid.uuid4())})
        finally:
            await client.close()

    async def delete_stream() -> None:
        client = await nats.connect(nats_url)
        try:
            await client.jetstream().delete_stream(stream)
        finally:
            await client.close()

    data_dir = work / "nats"
    data_dir.mkdir()
    shop = Shop(data_dir, smtp.port, extra)
    try:
        api = Api(shop.base)
        api.ok("POST", "/users/register", {"name": "Avery Admin", "email": "admin@example.com", "password": PASSWORD})
        shop.make_admin("admin@example.com")
        api.ok("POST", "/users/login", {"email": "admin@example.com", "password": PASSWORD})
        product = api.ok("POST", "/products", {"name": "Gyokuro", "description": "Shaded.", "price_minor": 900, "stock": 5})
        admin_id = 1  # the first account of this shop's fresh database
        grpc_admin = AdminGrpc(shop.orders_addr, admin_id)
        method = grpc_admin.delivery_method("Post", 0)
        grpc_admin.close()
        order = place_order(api, product["id"], 1, method)
        subject = f"Your order #{order['id']} is confirmed"
        inbox.wait_for(subject)
        assert shop.stop() == 0
        confirmed = [(s, d) for s, d in asyncio.run(events()) if json.loads(d)["data"]["to"] == "confirmed"]
        assert confirmed, "the confirmation event is in the stream"
        asyncio.run(publish_again(*confirmed[0]))
        shop = Shop(data_dir, smtp.port, extra)
        # The restarted consumer is given the event again; give it time to act.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "sent before for this event" not in shop.log_path.read_text(errors="replace"):
            time.sleep(0.2)
        assert "sent before for this event" in shop.log_path.read_text(errors="replace"), "the redelivery was seen"
        assert len(inbox.with_subject(subject)) == 1, "a redelivered event sent a second email"
        check("on NATS, an event delivered again after a restart sends nothing twice")
    except Exception:
        log(f"--- the end of the shop's log ({shop.log_path}):\n{shop.log_tail()}")
        raise
    finally:
        shop.stop()
        smtp.stop()
        try:
            asyncio.run(delete_stream())
        except Exception as error:  # noqa: BLE001 (cleanup: report, go on)
            log(f"warning: could not delete the NATS stream {stream}: {error}")


def main() -> int:
    if not SHOP_BIN.is_file():
        log(f"no shop binary at {SHOP_BIN}: build it (cargo build) or set SHOP_BIN")
        return 1
    failed = 0
    with tempfile.TemporaryDirectory(prefix="shop-mail-") as directory:
        work = Path(directory)
        scenarios = [("embedded shop, SMTP", lambda: embedded_scenario(work))]
        nats_url = os.environ.get("SHOP_TEST_NATS_URL")
        if nats_url:
            scenarios.append(("NATS redelivery", lambda: nats_redelivery_scenario(work, nats_url)))
        else:
            log("  --  the NATS redelivery check is skipped: SHOP_TEST_NATS_URL is not set")
        for name, scenario in scenarios:
            log(f"{name}:")
            try:
                scenario()
            except Exception:  # noqa: BLE001 (report every scenario)
                failed += 1
                log(f"FAILED: {name}\n{traceback.format_exc()}")
    log(f"mail test: {len(PASSED)} checks passed, {failed} scenarios failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
