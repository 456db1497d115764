#!/usr/bin/env python3
"""CSV -> Parquet with a peer engine, each the way its documentation shows it, run as its own process so run.py
can time it and read its peak memory.

    python3 bench/ingest/parquet_peers.py duckdb FILE OUT.parquet
    python3 bench/ingest/parquet_peers.py polars FILE OUT.parquet

Both infer the schema from the data (DuckDB's sniffer parses the timestamps; Polars' `scan_csv` keeps them as
strings unless told otherwise): the calls below are the ones users write.
"""

import sys


def duckdb_copy(src: str, out: str) -> None:
    import duckdb

    def lit(s: str) -> str:
        return "'" + s.replace("'", "''") + "'"

    duckdb.sql(f"COPY (SELECT * FROM read_csv({lit(src)})) TO {lit(out)} (FORMAT parquet)")


def polars_sink(src: str, out: str) -> None:
    import polars as pl

    pl.scan_csv(src).sink_parquet(out)


def main() -> int:
    if len(sys.argv) != 4 or sys.argv[1] not in ("duckdb", "polars"):
        print(__doc__, file=sys.stderr)
        return 2
    engine, src, out = sys.argv[1:4]
    {"duckdb": duckdb_copy, "polars": polars_sink}[engine](src, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
