"""The load run's report, from Locust's CSV files (`--csv PREFIX`): one line
per request name with its count, failures, rate and p50/p95/p99/max, then
every failure and every exception in the shoppers' code. Exits 1 when there
was any failure or exception, or no request at all.

    python tests/load/report.py PREFIX
"""

import csv
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def main(prefix: str) -> int:
    stats = rows(Path(f"{prefix}_stats.csv"))
    failures = rows(Path(f"{prefix}_failures.csv"))
    exceptions = rows(Path(f"{prefix}_exceptions.csv"))
    lines = [row for row in stats if row["Name"] != "Aggregated"]
    total = next((row for row in stats if row["Name"] == "Aggregated"), None)
    if total is None or int(total["Request Count"]) == 0:
        print("load: no request was made (see Locust's log above)")
        return 1

    width = max(len(f"{row['Type']} {row['Name']}") for row in lines)
    header = f"{'request':<{width}} {'count':>7} {'fails':>6} {'req/s':>8} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6}"
    print(header + "   (ms)")
    print("-" * len(header))

    def line(label: str, row: dict) -> str:
        return (f"{label:<{width}} {int(row['Request Count']):>7} {int(row['Failure Count']):>6} "
                f"{float(row['Requests/s']):>8.2f} {row['50%']:>6} {row['95%']:>6} {row['99%']:>6} "
                f"{round(float(row['Max Response Time'])):>6}")

    for row in sorted(lines, key=lambda row: (row["Name"], row["Type"])):
        print(line(f"{row['Type']} {row['Name']}", row))
    print("-" * len(header))
    print(line("all requests", total))

    placed = next((row for row in lines if row["Type"] == "POST" and row["Name"] == "/orders"), None)
    ran_out = sum(int(row["Request Count"]) for row in lines if row["Name"].endswith("[stock ran out]"))
    if placed:
        print(f"orders placed: {int(placed['Request Count']) - int(placed['Failure Count'])} "
              f"({float(placed['Requests/s']) - float(placed['Failures/s']):.2f}/s), p99 {placed['99%']} ms")
    if ran_out:
        print(f"refused because stock ran out (expected, not failures): {ran_out}")

    failed = int(total["Failure Count"])
    for row in failures:
        print(f"FAILURE x{row['Occurrences']}: {row['Method']} {row['Name']}: {row['Error']}")
    for row in exceptions:
        print(f"EXCEPTION x{row['Count']} in the shoppers' code: {row['Message']}\n{row['Traceback']}")
    if failed or exceptions:
        print(f"load: {failed} failed request(s), {len(exceptions)} kind(s) of exception")
        return 1
    print("load: no failures")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
