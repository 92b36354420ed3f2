"""A few lines of test runner shared by the tests/ops scripts: each check is
a function that raises (AssertionError or anything else) to fail; every check
runs even after one fails, and the last line says how many passed and failed,
like the project's other Python tests."""

from __future__ import annotations

import sys
import traceback
from typing import Callable


class Checks:
    def __init__(self, name: str):
        self.name = name
        self.checks: list[tuple[str, Callable[[], None]]] = []

    def __call__(self, title: str):
        """Decorator: registers a check under a readable title."""

        def register(function: Callable[[], None]) -> Callable[[], None]:
            self.checks.append((title, function))
            return function

        return register

    def run(self) -> int:
        passed = failed = 0
        for title, function in self.checks:
            try:
                function()
            except AssertionError as error:
                failed += 1
                print(f"  FAIL  {title}\n" + "".join(f"        {line}\n" for line in str(error).splitlines()))
            except Exception:  # noqa: BLE001 - a crash is a failure with its traceback
                failed += 1
                print(f"  FAIL  {title}")
                traceback.print_exc(file=sys.stdout)
            else:
                passed += 1
                print(f"  ok    {title}")
        print(f"{self.name}: {passed} passed, {failed} failed")
        return 1 if failed else 0


def problems(found: list[str], what: str) -> None:
    """Fails with every problem at once, not only the first."""
    assert not found, f"{len(found)} {what}:\n" + "\n".join(f"- {p}" for p in found)
