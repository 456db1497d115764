#!/usr/bin/env python3
"""DuckDB steps of the dbt benchmark, run with the dbt venv's Python so the database file is always opened by the
DuckDB that dbt-duckdb itself uses (a file written by one DuckDB version may not open in another).

Reads one JSON object on stdin and prints one JSON object on stdout:
    {"db": PATH, "read_only": false, "statements": [SQL...], "queries": {"name": SQL, ...}}
-> {"queries": {"name": {"columns": [...], "types": [...], "rows": [[...], ...]}}}
Statements run first, in order; values that JSON cannot hold (dates, decimals) are printed as text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys

import duckdb


def plain(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def main() -> int:
    spec = json.load(sys.stdin)
    con = duckdb.connect(spec["db"], read_only=bool(spec.get("read_only")))
    try:
        for sql in spec.get("statements", []):
            con.execute(sql)
        out = {}
        for name, sql in spec.get("queries", {}).items():
            cur = con.execute(sql)
            rows = cur.fetchall()
            out[name] = {
                "columns": [d[0] for d in cur.description],
                "types": [str(d[1]) for d in cur.description],
                "rows": [[plain(v) for v in row] for row in rows],
            }
    finally:
        con.close()
    json.dump({"queries": out, "duckdb": duckdb.__version__}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
