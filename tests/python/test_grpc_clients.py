#!/usr/bin/env python3
"""The shop's gRPC services as a client that is not ours sees them.

Generates Python stubs from proto/*.proto at run time, starts `shop all`
(SHOP_BIN, default target/debug/shop) on random free ports with a fresh SQLite
data directory, and drives every service through grpcio: health, reflection
(v1 and v1alpha), users, inventory, orders, then graceful shutdown on SIGTERM.

Run it with ops/test.sh, or by hand from a virtualenv holding
tests/python/requirements.txt. Exits non-zero when any check fails; the last
line says how many passed and failed.
"""

from __future__ import annotations

import importlib
import importlib.resources
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_tools import protoc
from google.protobuf import descriptor_pool

ROOT = Path(__file__).resolve().parents[2]
RPC_TIMEOUT = 20.0  # seconds; argon2 in a debug build on a loaded 2-core machine is slow
READY_TIMEOUT = 60.0  # seconds for all four listeners to come up
SHUTDOWN_TIMEOUT = 10.0  # seconds the shop may take to exit after SIGTERM

SERVICES = {
    "users": "shop.users.v1.UserService",
    "inventory": "shop.inventory.v1.InventoryService",
    "orders": "shop.orders.v1.OrderService",
}

# Faster reconnects than gRPC's default 1 s+ backoff: channels are opened
# before the server listens, and readiness should be seen as soon as it is.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def log(message: str) -> None:
    print(message, flush=True)


def generate_stubs(out_dir: Path) -> dict[str, object]:
    """Compiles proto/*.proto with grpc_tools and imports the modules."""
    protos = sorted((ROOT / "proto").glob("*.proto"))
    assert protos, f"no .proto files in {ROOT / 'proto'}"
    # google/protobuf/timestamp.proto comes with grpc_tools, not with us.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *map(str, protos),
    ]
    status = protoc.main(args)
    assert status == 0, f"protoc failed ({status}) on {[p.name for p in protos]}"
    sys.path.insert(0, str(out_dir))
    modules = {}
    for proto in protos:
        for suffix in ("_pb2", "_pb2_grpc"):
            name = proto.stem + suffix
            modules[name] = importlib.import_module(name)
    log(f"generated stubs for {', '.join(p.name for p in protos)}")
    modules["rich_error_pb2"] = rich_error_stubs(out_dir, well_known)
    return modules


# The messages of google/rpc/status.proto and google/rpc/error_details.proto
# this test reads, with their field numbers: what any client of gRPC's rich
# error model decodes from the `grpc-status-details-bin` trailer. (Only the
# bytes matter, so they live in a package of their own.)
RICH_ERROR_PROTO = """
syntax = "proto3";
package shop_test.rpc;
import "google/protobuf/any.proto";
message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
message BadRequest {
  message FieldViolation { string field = 1; string description = 2; }
  repeated FieldViolation field_violations = 1;
}
"""


def rich_error_stubs(out_dir: Path, well_known: object) -> object:
    proto_dir = out_dir / "rich_error"
    proto_dir.mkdir()
    (proto_dir / "rich_error.proto").write_text(RICH_ERROR_PROTO)
    args = ["grpc_tools.protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out_dir}", "rich_error.proto"]
    assert protoc.main(args) == 0, "protoc failed on the rich error messages"
    return importlib.import_module("rich_error_pb2")


def refusal(error: grpc.RpcError, rich_error: object) -> tuple[str | None, dict[str, str], list[str]]:
    """The shop's reason, its metadata and the fields a BadRequest names."""
    details = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    if details is None:
        return None, {}, []
    status = rich_error.Status.FromString(details)
    reason, metadata, fields = None, {}, []
    for detail in status.details:
        if detail.type_url.endswith("/google.rpc.ErrorInfo"):
            info = rich_error.ErrorInfo.FromString(detail.value)
            assert info.domain == "shop", info
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.type_url.endswith("/google.rpc.BadRequest"):
            fields = [v.field for v in rich_error.BadRequest.FromString(detail.value).field_violations]
    return reason, metadata, fields


def free_ports(count: int) -> list[int]:
    """Ports the kernel picked as free; held together so they differ."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()



# The secret the shop checks callers' identities with; the token format is
# backend/grpc/src/identity.rs's: v1|u|<user id>|<admin>|<expiry ms>|<HMAC-SHA256 hex>.
INTERNAL_SECRET = "python client test secret, not a real one"


def admin_token(user_id: int = 99) -> str:
    payload = f"v1|u|{user_id}|1|{int(time.time() * 1000) + 60_000}"
    signature = hmac.new(INTERNAL_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}|{signature}"


class SignAsAdmin(grpc.UnaryUnaryClientInterceptor):
    """Adds a signed admin identity to every unary call."""

    def intercept_unary_unary(self, continuation, details, request):
        metadata = list(details.metadata or []) + [("x-shop-caller", admin_token())]
        details = details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)
        return continuation(details, request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, details, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)

class Shop:
    """`shop all` as a subprocess with its own ports and data directory."""

    def __init__(self, binary: Path, work_dir: Path):
        self.binary = binary
        self.work_dir = work_dir
        self.log_path = work_dir / "shop-0.log"
        self.starts = 0
        self.process: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.work_dir / f"shop-{self.starts}.log"
        users, inventory, orders, http = free_ports(4)
        self.ports = {"users": users, "inventory": inventory, "orders": orders, "http": http}
        # Nothing inherited may point the shop elsewhere (PostgreSQL, Redis,
        # other ports): this run owns its whole configuration.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SHOP_", "POSTGRES_DB_", "REDIS_", "NATS_", "OTEL_"))
        }
        env.update(
            SHOP_DATA_DIR=str(self.work_dir / "data"),
            SHOP_USERS_ADDR=f"127.0.0.1:{users}",
            SHOP_INVENTORY_ADDR=f"127.0.0.1:{inventory}",
            SHOP_ORDERS_ADDR=f"127.0.0.1:{orders}",
            SHOP_HTTP_ADDR=f"127.0.0.1:{http}",
            SHOP_METRICS_ADDR="127.0.0.1:0",
            SHOP_INTERNAL_SECRET=INTERNAL_SECRET,  # not the default :2112, which a running shop may hold
            RUST_LOG=env.get("RUST_LOG", "info"),
            NO_COLOR="1",  # the log goes to a file
        )
        log(f"starting {self.binary} all on {self.ports}")
        # cwd is the temp dir so that a developer's .env in the repo is not read.
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "all"],
                cwd=self.work_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def channel(self, name: str) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.ports[name]}", options=CHANNEL_OPTIONS)

    def kill(self) -> None:
        if self.running():
            self.process.kill()
            self.process.wait()


def wait_until_serving(shop: Shop) -> None:
    """Health/Check on every gRPC port until SERVING; the process must not die."""
    deadline = time.monotonic() + READY_TIMEOUT
    for name, service in SERVICES.items():
        with shop.channel(name) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            attempts = 0
            while True:
                if not shop.running():
                    raise AssertionError(f"shop exited with {shop.process.returncode} before serving")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{name} not SERVING after {READY_TIMEOUT:.0f}s ({attempts} checks)")
                attempts += 1
                try:
                    # wait_for_ready: gRPC waits for the connection itself,
                    # bounded by the timeout, so no sleeping here.
                    reply = health.Check(
                        health_pb2.HealthCheckRequest(service=service),
                        timeout=min(1.0, remaining),
                        wait_for_ready=True,
                    )
                except grpc.RpcError as error:
                    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        continue
                    raise
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                # NOT_SERVING/UNKNOWN while starting up: ask again once the
                # server has had a moment (a real wait, not a guess at startup time).
                time.sleep(0.1)
            # The whole server ("") is healthy too, as load balancers ask it.
            overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
            assert overall.status == health_pb2.HealthCheckResponse.SERVING, overall
            log(f"  {name} :{shop.ports[name]} SERVING for {service} after {attempts} health check(s)")


def expect_error(
    pb: dict[str, object],
    code: grpc.StatusCode,
    reason: str,
    call: Callable[[], object],
    what: str,
    fields: list[str] | None = None,
) -> dict[str, str]:
    """Expects `call` refused with `code` and the shop's stable `reason` (and
    a BadRequest naming `fields`); returns the reason's metadata."""
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() == code, f"{what}: expected {code.name}, got {error.code().name}: {error.details()}"
        got, metadata, violated = refusal(error, pb["rich_error_pb2"])
        assert got == reason, f"{what}: expected reason {reason}, got {got} ({error.details()})"
        if fields is not None:
            assert violated == fields, f"{what}: expected field violations {fields}, got {violated}"
        log(f"  {what} -> {code.name} {reason} {metadata or ''}{violated or ''} ({error.details()})")
        return metadata
    raise AssertionError(f"{what}: expected {code.name}, but the call succeeded")


class Checks:
    """The checks in order; each may use what the earlier ones made."""

    def __init__(self, shop: Shop, pb: dict[str, object]):
        self.shop = shop
        self.pb = pb
        self.channels = {name: shop.channel(name) for name in SERVICES}
        # The services check who calls: these stubs call as an admin, signed
        # with the secret the test gave the shop; the plain channels stay
        # anonymous for health, reflection and the refusal checks.
        signed = {name: grpc.intercept_channel(channel, SignAsAdmin()) for name, channel in self.channels.items()}
        self.users = pb["users_pb2_grpc"].UserServiceStub(signed["users"])
        self.inventory = pb["inventory_pb2_grpc"].InventoryServiceStub(signed["inventory"])
        self.orders = pb["orders_pb2_grpc"].OrderServiceStub(signed["orders"])
        self.anonymous_inventory = pb["inventory_pb2_grpc"].InventoryServiceStub(self.channels["inventory"])
        self.user = None
        self.products = []
        self.order = None

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()

    def reflection_v1alpha_lists_each_service(self) -> None:
        for name, service in SERVICES.items():
            database = ProtoReflectionDescriptorDatabase(self.channels[name])
            listed = set(database.get_services())
            log(f"  {name}: {sorted(listed)}")
            assert service in listed, f"{service} not listed on the {name} port: {listed}"
            # A service listed on a port that does not serve it would answer
            # UNIMPLEMENTED and mislead clients.
            elsewhere = sorted(set(SERVICES.values()) & listed - {service})
            assert not elsewhere, f"the {name} port also lists {elsewhere}, which it does not serve"
            assert "grpc.health.v1.Health" in listed, f"health is not listed on the {name} port: {listed}"
            # Full descriptors, imports included, so a client can build calls
            # from reflection alone.
            pool = descriptor_pool.DescriptorPool(database)
            methods = [m.name for m in pool.FindServiceByName(service).methods]
            assert methods, f"{service} has no methods by reflection"
            log(f"  {service} methods by reflection: {', '.join(methods)}")

    def reflection_v1_lists_each_service(self) -> None:
        # grpcio-reflection has a v1alpha client only; v1 is the same messages
        # on another path.
        for name, service in SERVICES.items():
            call = self.channels[name].stream_stream(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            replies = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=RPC_TIMEOUT))
            assert len(replies) == 1, replies
            listed = {s.name for s in replies[0].list_services_response.service}
            assert service in listed, f"{service} not listed by reflection v1 on the {name} port: {listed}"
            log(f"  {name}: v1 lists {service}")

    def unsigned_writes_are_refused(self) -> None:
        inventory = self.pb["inventory_pb2"]
        expect_error(
            self.pb,
            grpc.StatusCode.UNAUTHENTICATED,
            "SIGN_IN_REQUIRED",
            lambda: self.anonymous_inventory.CreateProduct(
                inventory.CreateProductRequest(name="Nope", price_minor=1, stock=1), timeout=RPC_TIMEOUT
            ),
            "CreateProduct without a signed identity",
        )
        listed = self.anonymous_inventory.ListProducts(inventory.ListProductsRequest(), timeout=RPC_TIMEOUT)
        log(f"  ListProducts without one -> OK ({listed.total} products): the catalogue is public")

    def gateway_listens_on_its_port(self) -> None:
        url = f"http://127.0.0.1:{self.shop.ports['http']}/healthz"
        with urllib.request.urlopen(url, timeout=RPC_TIMEOUT) as reply:
            assert reply.status == 200, reply.status
        log(f"  GET {url} -> 200")

    def register_and_authenticate(self) -> None:
        users = self.pb["users_pb2"]
        reply = self.users.RegisterUser(
            users.RegisterUserRequest(email="  Alice@Example.COM ", name="Alice", password="correct horse battery"),
            timeout=RPC_TIMEOUT,
        )
        self.user = reply.user
        assert self.user.id > 0, self.user
        assert self.user.email == "alice@example.com", f"email not trimmed and lower-cased: {self.user.email!r}"
        assert self.user.role == users.ROLE_CUSTOMER, self.user
        log(f"  RegisterUser -> id {self.user.id}, email {self.user.email!r}, role CUSTOMER")

        reply = self.users.AuthenticateUser(
            users.AuthenticateUserRequest(email="alice@example.com", password="correct horse battery"),
            timeout=RPC_TIMEOUT,
        )
        assert reply.user.id == self.user.id, reply
        log(f"  AuthenticateUser with the right password -> id {reply.user.id}")

    def users_errors(self) -> None:
        users = self.pb["users_pb2"]
        expect_error(
            self.pb,
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
            lambda: self.users.AuthenticateUser(
                users.AuthenticateUserRequest(email="alice@example.com", password="wrong password!"),
                timeout=RPC_TIMEOUT,
            ),
            "AuthenticateUser with a wrong password",
        )
        expect_error(
            self.pb,
            grpc.StatusCode.UNAUTHENTICATED,
            "INVALID_CREDENTIALS",
            lambda: self.users.AuthenticateUser(
                users.AuthenticateUserRequest(email="nobody@example.com", password="correct horse battery"),
                timeout=RPC_TIMEOUT,
            ),
            "AuthenticateUser with an unknown email",
        )
        expect_error(
            self.pb,
            grpc.StatusCode.ALREADY_EXISTS,
            "EMAIL_TAKEN",
            lambda: self.users.RegisterUser(
                users.RegisterUserRequest(email="ALICE@example.com", name="Alice 2", password="another password"),
                timeout=RPC_TIMEOUT,
            ),
            "RegisterUser with a taken email (other case)",
            fields=["email"],
        )
        expect_error(
            self.pb,
            grpc.StatusCode.INVALID_ARGUMENT,
            "FIELD_INVALID",
            lambda: self.users.RegisterUser(
                users.RegisterUserRequest(email="not-an-email", name="Mallory", password="long enough password"),
                timeout=RPC_TIMEOUT,
            ),
            "RegisterUser with a malformed email",
            fields=["email"],
        )

    def create_and_list_products(self) -> None:
        inventory = self.pb["inventory_pb2"]
        for name, price, stock in (("Teapot", 1250, 10), ("Cup", 399, 5)):
            reply = self.inventory.CreateProduct(
                inventory.CreateProductRequest(name=name, description=f"A {name.lower()}", price_minor=price, stock=stock),
                timeout=RPC_TIMEOUT,
            )
            product = reply.product
            assert product.id > 0 and (product.name, product.price_minor, product.stock) == (name, price, stock), product
            self.products.append(product)
            log(f"  CreateProduct {name!r} -> id {product.id}, price {price}, stock {stock}")

        reply = self.inventory.ListProducts(inventory.ListProductsRequest(page=1, page_size=10), timeout=RPC_TIMEOUT)
        listed = {p.id: p for p in reply.products}
        assert reply.total == 2, f"total {reply.total}, expected 2"
        for product in self.products:
            assert listed.get(product.id) == product, f"{product.id} listed as {listed.get(product.id)}"
        # Newest first.
        assert [p.id for p in reply.products] == sorted(listed, reverse=True), [p.id for p in reply.products]
        log(f"  ListProducts -> {[p.name for p in reply.products]}, total {reply.total}")

    def create_and_get_order(self) -> None:
        orders = self.pb["orders_pb2"]
        inventory = self.pb["inventory_pb2"]
        teapot, cup = self.products
        lines = [(teapot, 3), (cup, 2)]
        reply = self.orders.CreateOrder(
            orders.CreateOrderRequest(
                user_id=self.user.id,
                items=[orders.OrderLine(product_id=p.id, quantity=q) for p, q in lines],
            ),
            timeout=RPC_TIMEOUT,
        )
        self.order = reply.order
        expected_total = sum(p.price_minor * q for p, q in lines)
        assert self.order.status == orders.ORDER_STATUS_CONFIRMED, orders.OrderStatus.Name(self.order.status)
        assert self.order.user_id == self.user.id, self.order
        assert self.order.total_minor == expected_total, f"total {self.order.total_minor}, expected {expected_total}"
        log(f"  CreateOrder -> id {self.order.id}, CONFIRMED, total {self.order.total_minor} (= 3x1250 + 2x399)")

        got = self.orders.GetOrder(orders.GetOrderRequest(id=self.order.id), timeout=RPC_TIMEOUT).order
        assert got.total_minor == expected_total, got
        items = {i.product_id: i for i in got.items}
        for product, quantity in lines:
            item = items[product.id]
            assert (item.product_name, item.quantity, item.unit_price_minor) == (
                product.name,
                quantity,
                product.price_minor,
            ), item
        assert got.history and got.history[-1].status == orders.ORDER_STATUS_CONFIRMED, got.history
        log(f"  GetOrder -> items priced by inventory, history {[orders.OrderStatus.Name(h.status) for h in got.history]}")

        for product, quantity in lines:
            now = self.inventory.GetProduct(inventory.GetProductRequest(id=product.id), timeout=RPC_TIMEOUT).product
            assert now.stock == product.stock - quantity, f"{product.name}: stock {now.stock}, expected {product.stock - quantity}"
            log(f"  {product.name} stock {product.stock} -> {now.stock}")

    def ship_order(self) -> None:
        orders = self.pb["orders_pb2"]
        reply = self.orders.UpdateOrderStatus(
            orders.UpdateOrderStatusRequest(id=self.order.id, status=orders.ORDER_STATUS_SHIPPED),
            timeout=RPC_TIMEOUT,
        )
        assert reply.order.status == orders.ORDER_STATUS_SHIPPED, orders.OrderStatus.Name(reply.order.status)
        got = self.orders.GetOrder(orders.GetOrderRequest(id=self.order.id), timeout=RPC_TIMEOUT).order
        statuses = [orders.OrderStatus.Name(h.status) for h in got.history]
        assert statuses[-2:] == ["ORDER_STATUS_CONFIRMED", "ORDER_STATUS_SHIPPED"], statuses
        # History names the caller the service verified (the signed admin,
        # user 99), and says what that admin may do next.
        assert got.history[-1].actor == "user:99", got.history[-1]
        assert list(got.allowed_transitions) == [orders.ORDER_STATUS_DELIVERED], got.allowed_transitions
        log(f"  UpdateOrderStatus CONFIRMED -> SHIPPED; history {statuses}")
        # And the state machine refuses to go back.
        refused = expect_error(
            self.pb,
            grpc.StatusCode.FAILED_PRECONDITION,
            "TRANSITION_FORBIDDEN",
            lambda: self.orders.UpdateOrderStatus(
                orders.UpdateOrderStatusRequest(id=self.order.id, status=orders.ORDER_STATUS_PENDING),
                timeout=RPC_TIMEOUT,
            ),
            "UpdateOrderStatus SHIPPED -> PENDING",
        )
        assert (refused.get("from"), refused.get("to")) == ("shipped", "pending"), refused

    def short_stock_rejects_the_order(self) -> None:
        orders = self.pb["orders_pb2"]
        teapot, _ = self.products
        refused = expect_error(
            self.pb,
            grpc.StatusCode.FAILED_PRECONDITION,
            "ORDER_REJECTED",
            lambda: self.orders.CreateOrder(
                orders.CreateOrderRequest(
                    user_id=self.user.id, items=[orders.OrderLine(product_id=teapot.id, quantity=1000)]
                ),
                timeout=RPC_TIMEOUT,
            ),
            "CreateOrder for more teapots than there are",
        )
        assert (refused.get("rejection"), refused.get("product_id")) == ("stock_short", str(teapot.id)), refused


def graceful_shutdown(shop: Shop) -> None:
    assert shop.running(), f"shop already exited with {shop.process.returncode}:\n{shop.log_tail()}"
    started = time.monotonic()
    shop.process.send_signal(signal.SIGTERM)
    try:
        code = shop.process.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"shop still running {SHUTDOWN_TIMEOUT:.0f}s after SIGTERM:\n{shop.log_tail()}") from None
    assert code == 0, f"shop exited with {code} after SIGTERM:\n{shop.log_tail()}"
    log(f"  SIGTERM -> exit 0 after {time.monotonic() - started:.2f}s")


def main() -> int:
    # Stopped from outside: still run the finally blocks that end the shop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = Path(os.environ.get("SHOP_BIN", ROOT / "target" / "debug" / "shop"))
    if not os.access(binary, os.X_OK):
        print(f"FAIL: no shop binary at {binary} (run `cargo build`, or set SHOP_BIN)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="shop-grpc-clients-") as tmp:
        work_dir = Path(tmp)
        (work_dir / "stubs").mkdir()
        shop = Shop(binary, work_dir)
        pb: dict[str, object] = {}
        checks: list[Checks] = []

        def start() -> None:
            # Another process may take a port between our probe and the
            # shop's bind: start again on fresh ports, a bounded number of times.
            for attempt in range(1, 4):
                shop.start()
                try:
                    wait_until_serving(shop)
                    break
                except AssertionError:
                    if shop.running() or attempt == 3 or "Address already in use" not in shop.log_tail():
                        raise
                    log("  a port was taken meanwhile; starting again on other ports")
            checks.append(Checks(shop, pb))

        def step(name: str) -> Callable[[], None]:
            return lambda: getattr(checks[0], name)()

        # Each step builds on the ones before it: after a failure the rest
        # are skipped, not reported as failures of their own. Shutdown is
        # checked whenever the shop was started.
        steps = [
            ("stubs are generated from proto/*.proto", lambda: pb.update(generate_stubs(work_dir / "stubs"))),
            ("the shop starts and every port answers Health/Check with SERVING", start),
            ("reflection v1alpha lists each port's service", step("reflection_v1alpha_lists_each_service")),
            ("reflection v1 lists each port's service", step("reflection_v1_lists_each_service")),
            ("the gateway listens on SHOP_HTTP_ADDR", step("gateway_listens_on_its_port")),
            ("a service refuses writes without a signed identity", step("unsigned_writes_are_refused")),
            ("RegisterUser and AuthenticateUser", step("register_and_authenticate")),
            ("users: wrong password, taken email, malformed email, each with its reason", step("users_errors")),
            ("CreateProduct and ListProducts", step("create_and_list_products")),
            ("CreateOrder and GetOrder: priced by inventory, stock taken", step("create_and_get_order")),
            ("UpdateOrderStatus confirmed -> shipped", step("ship_order")),
            ("CreateOrder short of stock: rejected, with its reason", step("short_stock_rejects_the_order")),
        ]
        passed = failed = skipped = 0
        try:
            for index, (name, check) in enumerate(steps):
                log(f"check: {name}")
                try:
                    check()
                except Exception:  # noqa: BLE001 - every failure is reported the same way
                    failed += 1
                    log(f"FAIL: {name}\n{traceback.format_exc()}")
                    if shop.process is not None:
                        log(f"--- last lines of the shop's log ---\n{shop.log_tail()}\n---")
                    skipped = len(steps) - index - 1
                    break
                passed += 1
                log(f"ok: {name}")
            if checks:
                checks[0].close()
            if shop.running():
                name = "SIGTERM stops the shop with exit 0 within 10 s"
                log(f"check: {name}")
                try:
                    graceful_shutdown(shop)
                    passed += 1
                    log(f"ok: {name}")
                except AssertionError as error:
                    failed += 1
                    log(f"FAIL: {name}: {error}")
            else:
                skipped += 1
        finally:
            shop.kill()

    # The closing line CI reads.
    print(f"python-grpc-clients: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
