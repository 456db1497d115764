#!/usr/bin/env python3
"""PySpark side of the warehouse benchmark: start a local[2] session and run the benchmark's queries in it.

    python3 bench/warehouse/spark_q.py SPEC.json q1_raw,q2_raw,...

SPEC.json is written by run.py (see duckdb_q.py). The raw tables are `spark.read.parquet(<lake>/raw/<kind>)`
(Spark discovers the year=/month= folders itself); the Delta tables are `spark.read.parquet` over the data files of
the table's current version with `basePath` set, so the `tpep_pickup_datetime_date=` folders become a DATE
partition column that Spark prunes on. Reading them as Delta would need the delta-spark JARs from Maven, which
this machine cannot reach.

Configuration: Spark's defaults except `spark.driver.memory` (from the spec), the session time zone pinned to UTC
(the trip timestamps are zone-less; Spark reads them as TIMESTAMP_NTZ anyway) and the console progress bar off.
One tiny warm-up job runs after the session starts and before the timed queries, so the first timed query does
not also pay for starting the executor threads.

Prints one JSON object on stdout: versions, session start time, and per query the seconds around
`spark.sql(sql).collect()`, the column names and the rows.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

T_START = time.perf_counter()
warnings.filterwarnings("ignore")

from pyspark.sql import SparkSession  # noqa: E402


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[0]).read())
    wanted = [q for q in argv[1].split(",") if q]
    t0 = time.perf_counter()
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("tripline-warehouse-bench")
        .config("spark.driver.memory", spec.get("spark_driver_memory", "4g"))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.perf_counter() - t0
    t = time.perf_counter()
    spark.range(1000).selectExpr("sum(id)").collect()
    warmup_s = time.perf_counter() - t

    t = time.perf_counter()
    made: set[str] = set()
    for qid in wanted:
        path = spec["queries"][qid]["path"]
        for kind, table in spec["tables"][path].items():
            name = table["name"]
            if name in made:
                continue
            if path == "raw":
                df = spark.read.parquet(table["dir"])
            else:
                df = spark.read.option("basePath", table["dir"]).parquet(*table["files"])
            df.createOrReplaceTempView(name)
            made.add(name)
    setup_s = time.perf_counter() - t

    out = {"engine": "spark", "version": spark.version, "import_s": t0 - T_START, "session_s": session_s,
           "warmup_s": warmup_s, "setup_s": setup_s, "queries": []}
    for qid in wanted:
        q = spec["queries"][qid]
        names = {kind: tb["name"] for kind, tb in spec["tables"][q["path"]].items()}
        sql = q["sql"].format(**names)
        t = time.perf_counter()
        df = spark.sql(sql)
        rows = df.collect()
        secs = time.perf_counter() - t
        out["queries"].append({"id": qid, "seconds": secs, "columns": df.columns,
                               "rows": [list(r) for r in rows]})
    json.dump(out, sys.stdout, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()
    spark.stop()  # inside the measured wall time: the JVM must be gone before the next tool runs
    # The JVM gateway is gone; skip interpreter teardown (py4j threads can delay exit by seconds).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
