#!/usr/bin/env python3
"""The course's way to load a trip CSV into PostgreSQL: pandas `read_csv` in chunks of 100,000 rows, timestamps
parsed, each chunk written with `DataFrame.to_sql` through SQLAlchemy + psycopg2 (`replace` for the first chunk,
then `append`).

    python3 bench/ingest/pandas_load.py FILE postgres://user@host:port/db TABLE

Runs as its own process so run.py can time it and read its peak memory. Prints `{"rows": N}` on stdout.
"""

import json
import sys

import pandas as pd
from sqlalchemy import create_engine

CHUNK_ROWS = 100_000
TIMESTAMP_COLUMNS = ("tpep_pickup_datetime", "tpep_dropoff_datetime")


def sqlalchemy_url(url: str) -> str:
    """postgres://... (libpq style) -> postgresql+psycopg2://... (SQLAlchemy style)."""
    for scheme in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme):]
    raise SystemExit(f"pandas_load: not a PostgreSQL URL: {url}")


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, url, table = sys.argv[1:4]
    engine = create_engine(sqlalchemy_url(url))
    header = pd.read_csv(path, nrows=0).columns
    parse_dates = [c for c in TIMESTAMP_COLUMNS if c in header]

    rows = 0
    first = True
    for chunk in pd.read_csv(path, chunksize=CHUNK_ROWS, parse_dates=parse_dates):
        chunk.to_sql(name=table, con=engine, if_exists="replace" if first else "append", index=False)
        first = False
        rows += len(chunk)
    engine.dispose()
    print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
