"""schemathesis against the gateway's /openapi.json, signed in as an admin.

Starts its own `shop all` (embedded, free ports), makes an admin and a few
products, then lets schemathesis generate requests for every documented
operation from the schema (examples, boundary values, fuzzing and stateful
sequences). It fails on any 5xx and on any response that breaks the schema.
Sign-out and deletes are left out so the session and the data stay for the
whole run (the gateway tests cover them). The seed is fixed so a CI failure
can be replayed; set SCHEMATHESIS_SEED to explore others.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from harness import PASSWORD, Api, Shop  # noqa: E402  (shares the browser tests' shop launcher)


def session_cookie(api: Api) -> str:
    for handler in api.opener.handlers:
        jar = getattr(handler, "cookiejar", None)
        if jar is not None:
            for cookie in jar:
                if cookie.name == "shop_session":
                    return cookie.value
    raise RuntimeError("no session cookie after signing in")


def main() -> int:
    shop = Shop()
    status = 1
    try:
        admin = Api(shop.base)
        admin.call("POST", "/users/register", {"name": "Schema Admin", "email": "schema@example.com", "password": PASSWORD})
        shop.make_admin("schema@example.com")
        admin.call("POST", "/users/login", {"email": "schema@example.com", "password": PASSWORD})
        for n in range(3):
            admin.call("POST", "/products", {"name": f"Schema product {n}", "price_minor": 250, "stock": 100})
        command = [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{shop.base}/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--header", "Accept: application/json",
            "--header", f"Cookie: shop_session={session_cookie(admin)}",
            "--exclude-path", "/users/logout",
            "--exclude-method", "DELETE",
            "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "30"),
            "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261125"),
            "--request-timeout", "10",
        ]
        print("running:", " ".join(c if "shop_session" not in c else "Cookie: shop_session=***" for c in command), flush=True)
        status = subprocess.run(command, check=False).returncode
        failed = [line for line in shop.log_path.read_text(errors="replace").splitlines() if "request failed" in line]
        if failed:
            print(f"the shop logged {len(failed)} server error(s):", *failed[:5], sep="\n", file=sys.stderr)
            status = status or 1
    finally:
        if shop.stop() != 0:
            print("the shop did not exit cleanly", file=sys.stderr)
            status = status or 1
        if status:
            shop.print_log_tail()
    print("openapi: schemathesis found no server error and no response breaking the schema" if status == 0 else "openapi: FAILED")
    return status


if __name__ == "__main__":
    sys.exit(main())
