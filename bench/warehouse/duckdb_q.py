#!/usr/bin/env python3
"""DuckDB side of the warehouse benchmark: run the benchmark's queries over the lake's Parquet in one process.

    python3 bench/warehouse/duckdb_q.py SPEC.json q1_raw,q2_raw,...

SPEC.json is written by run.py: the Parquet files of each table and the queries' SQL (with {yellow} / {green}
placeholders for the tables). The raw tables are `read_parquet` over the files `tripline ingest` wrote; the Delta
tables are `read_parquet` over the data files of the table's current version (listed from its `_delta_log` by
run.py: DuckDB's `delta` extension needs a download, and this machine is offline), with hive partitioning so the
`tpep_pickup_datetime_date=...` folders become a DATE column that DuckDB prunes on.

Prints one JSON object on stdout: the DuckDB version, the setup time and, per query, the seconds around
`execute(sql).fetchall()` in this already-started process, the column names and the rows.
"""

from __future__ import annotations

import json
import sys
import time

T_START = time.perf_counter()

import duckdb  # noqa: E402


def sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[0]).read())
    wanted = [q for q in argv[1].split(",") if q]
    con = duckdb.connect()
    t0 = time.perf_counter()
    made: set[str] = set()
    for qid in wanted:
        path = spec["queries"][qid]["path"]
        for kind, table in spec["tables"][path].items():
            name = table["name"]
            if name in made:
                continue
            if path == "raw":
                src = f"read_parquet('{table['glob']}', hive_partitioning = false)"
            else:
                src = f"read_parquet({sql_list(table['files'])}, hive_partitioning = true)"
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {src}")
            made.add(name)
    setup_s = time.perf_counter() - t0
    out = {"engine": "duckdb", "version": duckdb.__version__, "import_s": t0 - T_START, "setup_s": setup_s,
           "queries": []}
    for qid in wanted:
        q = spec["queries"][qid]
        names = {kind: t["name"] for kind, t in spec["tables"][q["path"]].items()}
        sql = q["sql"].format(**names)
        t = time.perf_counter()
        cur = con.execute(sql)
        rows = cur.fetchall()
        secs = time.perf_counter() - t
        cols = [d[0] for d in cur.description]
        out["queries"].append({"id": qid, "seconds": secs, "columns": cols, "rows": [list(r) for r in rows]})
    json.dump(out, sys.stdout, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
