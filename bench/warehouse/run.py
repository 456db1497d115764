#!/usr/bin/env python3
"""Warehouse benchmark: the course's warehouse queries through tripline, DuckDB and PySpark, same Parquet, same run.

Data (prepared, timed, not part of the comparison): a year of generated yellow + green trips (`tripline datagen`,
Parquet), loaded with `tripline ingest` into a lake under bench/out/, then with `tripline sql`: an external table
per service over the raw files and a Delta table per service, `PARTITION BY DATE(pickup) CLUSTER BY VendorID`.

Queries, each over two paths (raw: the external tables over the ingested Parquet; delta: the partitioned and
clustered Delta tables), same SQL text for every engine, results cross-checked between engines:
  q1  monthly zone revenue: per service, pickup month and PULocationID, sum(total_amount) and count(*)
  q2  trips per day: per service and pickup date, count(*)
  q3  the partition-filtered count: yellow trips of one week with VendorID = 1

Per tool and query, two numbers:
  query time    in an already-started process: tripline's statement `seconds` from `tripline sql --json` (one
                process runs all queries), DuckDB / Spark the time around execute+fetch / sql+collect in one
                Python process per tool that runs all queries
  first result  wall time of a fresh process that runs just that query: `tripline sql -e`, a Python process
                importing duckdb, a Python process starting a local[2] Spark session (JVM start included)
Tools are interleaved round by round (and query by query for the first results); medians of --repeat rounds.

    cargo build --release -p tripline-cli    # the profile users install (thin LTO); published numbers use it
    python3 bench/warehouse/run.py
    python3 bench/warehouse/run.py --smoke --bin "$CARGO_TARGET_DIR/debug/tripline"   # what CI runs

Writes bench/out/warehouse-<timestamp>.md and .json (bench/out/smoke/... with --smoke) and prints the Markdown.
Exits non-zero when a run fails or engines disagree on a result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "tripline-target")
DEFAULT_BIN = DEFAULT_TARGET / "release" / "tripline"

# Tool processes get a fixed zone: the trip timestamps are zone-less and every engine must read them alike.
TOOL_ENV = {**os.environ, "TZ": "UTC", "PYTHONWARNINGS": "ignore"}

SERVICES = {
    # kind -> (pickup column, service_type label in the results)
    "yellow": ("tpep_pickup_datetime", "Yellow"),
    "green": ("lpep_pickup_datetime", "Green"),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class VerifyError(Exception):
    """A run finished but its output is wrong or unreadable."""


# ---------------------------------------------------------------------------------------------------------------
# Queries


@dataclass
class Query:
    id: str
    path: str  # raw | delta
    title: str
    sql: str  # with {yellow} / {green} placeholders for the table names
    keys: int  # leading key columns; the rest are numbers compared with a tolerance


def trips_union(cols: str = "") -> str:
    """yellow and green as one relation (the course's fact_trips in small): service_type, pickup_datetime, ..."""
    parts = []
    for kind, (pickup, label) in SERVICES.items():
        parts.append(f"SELECT '{label}' AS service_type, {pickup} AS pickup_datetime{cols} FROM {{{kind}}}")
    return " UNION ALL ".join(parts)


def build_queries(week_start: dt.date) -> list[Query]:
    week_end = week_start + dt.timedelta(days=6)
    a, b = week_start.isoformat(), week_end.isoformat()
    q1 = (
        "SELECT service_type, date_trunc('month', pickup_datetime) AS revenue_month, PULocationID AS revenue_zone, "
        "sum(total_amount) AS revenue_monthly_total_amount, count(*) AS total_monthly_trips "
        f"FROM ({trips_union(', PULocationID, total_amount')}) trips GROUP BY 1, 2, 3"
    )
    q2 = (
        "SELECT service_type, CAST(pickup_datetime AS DATE) AS pickup_date, count(*) AS trips "
        f"FROM ({trips_union()}) trips GROUP BY 1, 2"
    )
    q3_raw = (
        "SELECT count(*) AS trips FROM {yellow} "
        f"WHERE CAST(tpep_pickup_datetime AS DATE) BETWEEN DATE '{a}' AND DATE '{b}' AND VendorID = 1"
    )
    q3_delta = (
        "SELECT count(*) AS trips FROM {yellow} "
        f"WHERE tpep_pickup_datetime_date BETWEEN DATE '{a}' AND DATE '{b}' AND VendorID = 1"
    )
    out = []
    for path in ("raw", "delta"):
        out.append(Query(f"q1_{path}", path, "monthly zone revenue", q1, 3))
        out.append(Query(f"q2_{path}", path, "trips per day", q2, 2))
        out.append(Query(f"q3_{path}", path, f"partition-filtered count ({a}..{b}, VendorID = 1)",
                         q3_raw if path == "raw" else q3_delta, 0))
    return out


TABLE_NAMES = {"raw": {"yellow": "yellow_ext", "green": "green_ext"}, "delta": {"yellow": "yellow", "green": "green"}}
DATASET = "trips"


# ---------------------------------------------------------------------------------------------------------------
# Measuring one process (as bench/ingest/run.py, plus an optional sampler for multi-process tools)


@dataclass
class Run:
    tool: str
    kind: str  # session | first | prep
    round: int
    queries: list[str]
    wall_s: float
    peak_rss_kib: int
    exit_code: int
    timed_out: bool
    stdout: str
    stderr: str
    ok: bool = False
    error: str | None = None
    results: dict = field(default_factory=dict)  # query id -> {"seconds", "columns", "rows", ...}
    extra: dict = field(default_factory=dict)


GNU_TIME = Path("/usr/bin/time")


def rss_probe() -> str:
    """See bench/ingest/run.py: GNU time between the runner and the tool keeps the runner's own peak RSS (which
    Linux hands to a child at exec) out of the tool's figure."""
    return "gnu-time" if GNU_TIME.is_file() and os.access(GNU_TIME, os.X_OK) else "wait4"


def _tree_rss_kib(root: int) -> int:
    """Summed RSS of `root` and all its descendants (one /proc scan)."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses
        rest = stat[stat.rfind(b")") + 2:].split()
        parent[int(name)] = int(rest[1])
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for child, pp in parent.items():
            if pp == p and child not in tree:
                tree.add(child)
                frontier.append(child)
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page_kib
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_measured(cmd: list[str], log_stem: Path, timeout_s: float, sample_tree: bool = False) -> tuple:
    """Run `cmd` in its own process group; wall time from spawn to reap. Peak RSS: wait4's ru_maxrss of the tool
    (through GNU time when available), i.e. the largest single process among those it waited for. With
    `sample_tree`, the process tree's summed RSS is also sampled every 250 ms and the larger figure is kept:
    PySpark starts its JVM as a child the Python process never waits for, so ru_maxrss alone misses the JVM."""
    out_path, err_path = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    rss_path = log_stem.with_suffix(".rss")
    rss_path.unlink(missing_ok=True)
    probe = rss_probe()
    argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss_path), *cmd] if probe == "gnu-time" else cmd
    (log_stem.parent / (log_stem.name + ".cmd")).write_text(shlex.join(cmd) + "\n")
    sampled = [0]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        timed_out = threading.Event()
        done = threading.Event()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=TOOL_ENV)

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def sample() -> None:
            while not done.wait(0.25):
                try:
                    sampled[0] = max(sampled[0], _tree_rss_kib(proc.pid))
                except Exception:  # noqa: BLE001 - a vanished process mid-scan
                    pass

        sampler = threading.Thread(target=sample, daemon=True) if sample_tree else None
        if sampler:
            sampler.start()
        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill()
            raise
        finally:
            timer.cancel()
            done.set()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if sampler:
            sampler.join()
        # Whatever the tool left behind in its group (an orphaned JVM) must not run into the next measurement.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    peak = usage.ru_maxrss
    if probe == "gnu-time":
        try:
            peak = int(rss_path.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            peak = 0
    peak = max(peak, sampled[0])
    return wall, peak, proc.returncode, timed_out.is_set(), str(out_path), str(err_path)


def tail(path: str, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def json_stdout(path: str) -> dict:
    text = Path(path).read_text(errors="replace").strip()
    for cand in [text] + [ln for ln in reversed(text.splitlines()) if ln.lstrip().startswith("{")]:
        try:
            obj = json.loads(cand)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    raise VerifyError(f"no JSON object on stdout: {text[:300]!r}")


# ---------------------------------------------------------------------------------------------------------------
# Tools


@dataclass
class Tool:
    id: str
    label: str
    session_cmd: Callable[[list[Query]], list[str]]
    first_cmd: Callable[[Query], list[str]]
    parse: Callable[[str, list[Query]], dict]  # stdout path -> {query id: result}
    sample_tree: bool = False
    first_result: bool = True  # smoke mode skips Spark's per-query JVM starts
    only: set[str] | None = None  # smoke mode: Spark's session runs one query per path


def tripline_sql(bin_path: Path, project: Path, queries: list[Query]) -> list[str]:
    stmts = [q.sql.format(**{k: f"{DATASET}.{v}" for k, v in TABLE_NAMES[q.path].items()}) for q in queries]
    return [str(bin_path), "-C", str(project), "--json", "sql", "-e", "; ".join(stmts)]


def parse_tripline(stdout: str, queries: list[Query]) -> dict:
    report = json_stdout(stdout)
    stmts = report.get("statements")
    if not isinstance(stmts, list) or len(stmts) != len(queries):
        raise VerifyError(f"tripline --json: expected {len(queries)} statements, got {report!r:.300}")
    out = {}
    for q, st in zip(queries, stmts):
        cols = [c["name"] for c in st["columns"]]
        rows = [[r.get(c) for c in cols] for r in st["rows"]]
        if st.get("row_count") is not None and st["row_count"] != len(rows):
            raise VerifyError(f"{q.id}: tripline reports row_count {st['row_count']} but printed {len(rows)} rows")
        out[q.id] = {"seconds": float(st["seconds"]), "columns": cols, "rows": rows,
                     "bytes_scanned": st.get("bytes_scanned"), "files_read": st.get("files_read")}
    return out


def parse_peer(stdout: str, queries: list[Query]) -> dict:
    report = json_stdout(stdout)
    got = {q["id"]: q for q in report.get("queries", [])}
    out = {}
    for q in queries:
        if q.id not in got:
            raise VerifyError(f"{q.id}: missing from the output")
        r = got[q.id]
        out[q.id] = {"seconds": float(r["seconds"]), "columns": r["columns"], "rows": r["rows"]}
    meta = {k: v for k, v in report.items() if k != "queries"}
    for q in queries:
        out[q.id]["process"] = meta
    return out


def build_tools(args, project: Path, spec_path: Path, spark_ok: bool) -> list[Tool]:
    py = sys.executable
    tools = [
        Tool("tripline", "tripline sql",
             session_cmd=lambda qs: tripline_sql(args.bin, project, qs),
             first_cmd=lambda q: tripline_sql(args.bin, project, [q]),
             parse=parse_tripline),
        Tool("duckdb", "DuckDB",
             session_cmd=lambda qs: [py, str(HERE / "duckdb_q.py"), str(spec_path), ",".join(q.id for q in qs)],
             first_cmd=lambda q: [py, str(HERE / "duckdb_q.py"), str(spec_path), q.id],
             parse=parse_peer),
    ]
    if spark_ok:
        tools.append(Tool(
            "spark", "PySpark local[2]",
            session_cmd=lambda qs: [py, str(HERE / "spark_q.py"), str(spec_path), ",".join(q.id for q in qs)],
            first_cmd=lambda q: [py, str(HERE / "spark_q.py"), str(spec_path), q.id],
            parse=parse_peer, sample_tree=True, first_result=not args.smoke,
            only={"q1_raw", "q3_delta"} if args.smoke else None,
        ))
    return [t for t in tools if t.id in args.tools]


# ---------------------------------------------------------------------------------------------------------------
# Results: normalising and cross-checking


def norm_key(v) -> str:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()[:10]
    if isinstance(v, str) and re.match(r"^\d{4}-\d{2}-\d{2}([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?$", v):
        return v[:10]  # a month or day as timestamp/date text: the date is the key
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return "NULL" if v is None else str(v)


def normalise(q: Query, rows: list[list]) -> dict:
    out: dict = {}
    for r in rows:
        key = tuple(norm_key(v) for v in r[: q.keys])
        vals = tuple(None if v is None else float(v) for v in r[q.keys:])
        if key in out:
            raise VerifyError(f"{q.id}: duplicate group {key}")
        out[key] = vals
    return out


def compare(q: Query, ref: dict, got: dict) -> str | None:
    """None if equal (sums within 1e-9 relative: engines add doubles in different orders), else what differs."""
    if ref.keys() != got.keys():
        missing = sorted(ref.keys() - got.keys())[:3]
        extra = sorted(got.keys() - ref.keys())[:3]
        return f"{len(ref)} vs {len(got)} groups; missing {missing}, unexpected {extra}"
    for k, a in ref.items():
        b = got[k]
        for x, y in zip(a, b):
            if (x is None) != (y is None) or (x is not None and not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6)):
                return f"group {k}: {a} vs {b}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# Data preparation


def months_range(spec: str) -> list[str]:
    m = re.fullmatch(r"(\d{4})-(\d{2})(?:\.\.(\d{4})-(\d{2}))?", spec)
    if not m:
        raise SystemExit(f"--months {spec!r}: expected YYYY-MM or YYYY-MM..YYYY-MM")
    y, mo = int(m[1]), int(m[2])
    y2, mo2 = (int(m[3]), int(m[4])) if m[3] else (y, mo)
    out = []
    while (y, mo) <= (y2, mo2):
        out.append(f"{y:04d}-{mo:02d}")
        y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
    if not out or not all(1 <= int(x[5:]) <= 12 for x in out):
        raise SystemExit(f"--months {spec!r}: empty or invalid range")
    return out


def tripline_version(bin_path: Path) -> str | None:
    try:
        res = subprocess.run([str(bin_path), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = res.stdout.strip()
    return out.removeprefix("tripline ").strip() if res.returncode == 0 and out else None


class Prep:
    """Runs and records the untimed-in-comparison preparation steps (each one measured like a tool run)."""

    def __init__(self, logs: Path, timeout: float):
        self.logs, self.timeout, self.steps = logs, timeout, []

    def run(self, name: str, cmd: list[str], note: str = "") -> tuple[str, float]:
        wall, peak, code, timed_out, out, err = run_measured(cmd, self.logs / f"prep-{name}", self.timeout)
        step = {"step": name, "command": shlex.join(cmd), "wall_s": round(wall, 3), "peak_rss_mib": peak / 1024,
                "note": note}
        self.steps.append(step)
        if code != 0 or timed_out:
            raise SystemExit(f"preparation step {name} failed ({'timed out' if timed_out else f'exit {code}'}): "
                             f"{shlex.join(cmd)}\n{tail(err, 25)}")
        log(f"prep {name}: {wall:.2f} s, {peak / 1024:.0f} MiB")
        return out, wall


def generate(args, prep: Prep, data_dir: Path) -> dict:
    """One Parquet file per kind and month from `tripline datagen`, reused when rows, seed and generator match."""
    data_dir.mkdir(parents=True, exist_ok=True)
    version = tripline_version(args.bin)
    rows = {"yellow": args.rows_per_month, "green": args.green_rows_per_month}
    total_rows, total_bytes, reused, took = 0, 0, 0, 0.0
    for kind in SERVICES:
        for month in args.month_list:
            path = data_dir / f"{kind}_tripdata_{month}.parquet"
            meta_path = path.with_name(path.name + ".meta.json")
            want = {"kind": kind, "month": month, "rows": rows[kind], "seed": args.seed, "generator": version}
            if path.is_file() and meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text())
                except ValueError:
                    meta = {}
                if {k: meta.get(k) for k in want} == want and meta.get("bytes") == path.stat().st_size:
                    reused += 1
                    total_rows += rows[kind]
                    total_bytes += path.stat().st_size
                    continue
            path.unlink(missing_ok=True)
            cmd = [str(args.bin), "datagen", "--kind", kind, "--month", month, "--rows", str(rows[kind]),
                   "--format", "parquet", "--output", str(path), "--seed", str(args.seed), "-q"]
            _, wall = prep.run(f"datagen-{kind}-{month}", cmd)
            took += wall
            meta_path.write_text(json.dumps({**want, "bytes": path.stat().st_size}) + "\n")
            total_rows += rows[kind]
            total_bytes += path.stat().st_size
    return {"rows": total_rows, "bytes": total_bytes, "files_reused": reused, "datagen_s": round(took, 2),
            "rows_per_month": rows, "months": [args.month_list[0], args.month_list[-1]], "seed": args.seed}


def delta_active_files(table_dir: Path) -> list[str]:
    """The data files of a Delta table's latest version: replay add/remove actions of the JSON commits."""
    log_dir = table_dir / "_delta_log"
    commits = sorted(log_dir.glob("[0-9]*.json"))
    if not commits or int(commits[0].stem) != 0:
        # Older commits folded into a checkpoint: let the deltalake package read the log instead.
        from deltalake import DeltaTable

        return sorted(DeltaTable(str(table_dir)).file_uris())
    files: dict[str, None] = {}
    for c in commits:
        for line in c.read_text().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "add" in action:
                files[action["add"]["path"]] = None
            elif "remove" in action:
                files.pop(action["remove"]["path"], None)
    from urllib.parse import unquote

    return sorted(str(table_dir / unquote(p)) for p in files)


def prepare_lake(args, prep: Prep, project: Path, data_dir: Path, data: dict) -> dict:
    """Fresh lake: ingest every generated file, then the external tables and the Delta tables."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    ingested = {}
    for kind in SERVICES:
        out, _ = prep.run(f"ingest-{kind}", [str(args.bin), "-C", str(project), "--json", "-q", "ingest",
                                              str(data_dir / f"{kind}_tripdata_*.parquet"), "--kind", kind])
        total = json_stdout(out).get("total", {})
        want = data["rows_per_month"][kind] * len(args.month_list)
        if total.get("read") != want or total.get("written") != want:
            raise SystemExit(f"tripline ingest {kind}: read {total.get('read')}, written {total.get('written')}, "
                             f"expected {want}")
        ingested[kind] = total
    ddl = [f"CREATE OR REPLACE EXTERNAL TABLE {DATASET}.{TABLE_NAMES['raw'][k]} OPTIONS (format = 'PARQUET', "
           f"uris = ['lake/raw/{k}/*'])" for k in SERVICES]
    prep.run("external-tables", [str(args.bin), "-C", str(project), "--json", "-q", "sql", "-e", "; ".join(ddl)])
    ctas_s = {}
    for kind, (pickup, _) in SERVICES.items():
        sql = (f"CREATE OR REPLACE TABLE {DATASET}.{TABLE_NAMES['delta'][kind]} PARTITION BY DATE({pickup}) "
               f"CLUSTER BY VendorID AS SELECT * FROM {DATASET}.{TABLE_NAMES['raw'][kind]}")
        out, _ = prep.run(f"create-table-{kind}", [str(args.bin), "-C", str(project), "--json", "-q", "sql",
                                                   "-e", sql])
        st = json_stdout(out)["statements"][0]
        ctas_s[kind] = {"seconds": st.get("seconds"), "message": st.get("message")}
    # Every table holds every row.
    counts_sql = "; ".join(f"SELECT count(*) AS n FROM {DATASET}.{TABLE_NAMES[p][k]}"
                           for p in ("raw", "delta") for k in SERVICES)
    out, _ = prep.run("count-check", [str(args.bin), "-C", str(project), "--json", "-q", "sql", "-e", counts_sql])
    stmts = json_stdout(out)["statements"]
    i = 0
    for p in ("raw", "delta"):
        for k in SERVICES:
            n = stmts[i]["rows"][0]["n"]
            i += 1
            if n != ingested[k]["written"]:
                raise SystemExit(f"{DATASET}.{TABLE_NAMES[p][k]} has {n} rows, ingest wrote {ingested[k]['written']}")
    lake = project / "lake"
    tables: dict = {"raw": {}, "delta": {}}
    files_info = {}
    for kind in SERVICES:
        raw_dir = lake / "raw" / kind
        raw_files = sorted(str(p) for p in raw_dir.glob("year=*/month=*/*.parquet"))
        tables["raw"][kind] = {"name": TABLE_NAMES["raw"][kind], "dir": str(raw_dir),
                               "glob": str(raw_dir / "year=*" / "month=*" / "*.parquet"), "files": raw_files}
        ddir = lake / "warehouse" / DATASET / TABLE_NAMES["delta"][kind]
        dfiles = delta_active_files(ddir)
        tables["delta"][kind] = {"name": TABLE_NAMES["delta"][kind], "dir": str(ddir), "files": dfiles}
        files_info[kind] = {
            "raw_files": len(raw_files), "raw_bytes": sum(os.path.getsize(f) for f in raw_files),
            "delta_files": len(dfiles), "delta_bytes": sum(os.path.getsize(f) for f in dfiles),
        }
    return {"tables": tables, "files": files_info, "ctas": ctas_s, "ingest": ingested}


# ---------------------------------------------------------------------------------------------------------------
# Report


def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "kernel": platform.release()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def versions(args) -> dict:
    v = {"python": platform.python_version(), "tripline": tripline_version(args.bin) or "(no --version)"}
    for pkg in ("duckdb", "pyspark"):
        try:
            v[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
        v["java"] = java[0] if java else "?"
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        v["git"] = (commit or "no commits") + (" (dirty)" if dirty else "")
    except OSError:
        pass
    return v


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarise(tools: list[Tool], queries: list[Query], runs: list[Run]) -> dict:
    out: dict = {}
    for q in queries:
        out[q.id] = {}
        for t in tools:
            sess = [r for r in runs if r.tool == t.id and r.kind == "session"]
            first = [r for r in runs if r.tool == t.id and r.kind == "first" and r.queries == [q.id]]
            qs = [r.results[q.id]["seconds"] for r in sess if r.ok and q.id in r.results]
            fs = [r.wall_s for r in first if r.ok]
            s = {
                "query_s": qs, "first_s": [round(x, 3) for x in fs],
                "query_median_s": med(qs), "first_median_s": med(fs),
                "first_peak_rss_mib": max((r.peak_rss_kib for r in first if r.ok), default=0) / 1024 or None,
                "session_peak_rss_mib": max((r.peak_rss_kib for r in sess if r.ok), default=0) / 1024 or None,
                "failed_runs": sum(1 for r in sess + first if not r.ok),
            }
            if t.id == "tripline":
                for r in sess:
                    if r.ok and q.id in r.results:
                        s["bytes_scanned"] = r.results[q.id].get("bytes_scanned")
                        s["files_read"] = r.results[q.id].get("files_read")
            out[q.id][t.id] = s
    return out


def ratio(x: float | None, base: float | None) -> float | None:
    return x / base if x is not None and base else None


def fmt(x, spec: str = ".2f", suffix: str = "") -> str:
    return "—" if x is None else format(x, spec) + suffix


def targets(summary: dict, queries: list[Query]) -> list[dict]:
    rows = []
    for q in queries:
        s = summary[q.id]
        tl = s.get("tripline", {})
        duck, spark = s.get("duckdb", {}), s.get("spark", {})
        rows.append({
            "query": q.id,
            # tripline within 1.1x of DuckDB: tripline / DuckDB <= 1.1
            "vs_duckdb": ratio(tl.get("query_median_s"), duck.get("query_median_s")),
            "spark_query": ratio(spark.get("query_median_s"), tl.get("query_median_s")),
            "spark_first": ratio(spark.get("first_median_s"), tl.get("first_median_s")),
        })
    return rows


def markdown(meta: dict, tools: list[Tool], queries: list[Query], summary: dict, failures: list[str]) -> str:
    d, m = meta["data"], meta["machine"]
    lines = [
        f"# Warehouse benchmark, {meta['date']}",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB RAM, "
        f"Linux {m.get('kernel')}; 1-minute load average {m.get('loadavg_1m_before')} before, "
        f"{m.get('loadavg_1m_after')} after (other work on the machine skews the times)",
        f"- data: `tripline datagen --seed {d['seed']}` yellow {d['rows_per_month']['yellow']:,} + green "
        f"{d['rows_per_month']['green']:,} rows per month, {d['months'][0]}..{d['months'][1]}: {d['rows']:,} rows, "
        f"{d['bytes'] / (1 << 20):.0f} MiB of generated Parquet ({d['files_reused']} files reused from an earlier run)",
        "- lake: " + "; ".join(
            f"{k}: raw {f['raw_files']} files {f['raw_bytes'] / (1 << 20):.0f} MiB, Delta {f['delta_files']} files "
            f"{f['delta_bytes'] / (1 << 20):.0f} MiB" for k, f in meta["lake_files"].items()),
        f"- runs: median of {meta['repeat']} rounds, tools interleaved within each round. **query time**: inside an "
        "already-started process (tripline: the statement's `seconds` from `sql --json`, one process running all six "
        "queries; DuckDB / Spark: time around execute+fetch / sql+collect in one Python process running all six). "
        "**first result**: wall time of a fresh process running only that query, from spawn to exit (interpreter, "
        "imports, Spark's JVM and session, table setup included). **peak RSS**: of the first-result process "
        "(GNU time" + ("; Spark: the sampled sum over its process tree, JVM included" if
                       any(t.id == "spark" for t in tools) else "") + "), the maximum over the rounds",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
    ]
    if meta.get("smoke"):
        lines.append("- **smoke run**: tiny data, one round; checks that every tool still runs and agrees, not how fast")
    for note in meta.get("notes", []):
        lines.append(f"- {note}")

    lines.extend(["", "## Preparation (not compared)", "", "| step | wall (s) | peak RSS (MiB) |", "|---|---:|---:|"])
    for st in meta["prep"]:
        if st["step"].startswith("datagen-"):
            continue
        lines.append(f"| {st['step']} | {st['wall_s']:.2f} | {st['peak_rss_mib']:.0f} |")
    dg = [st for st in meta["prep"] if st["step"].startswith("datagen-")]
    if dg:
        lines.append(f"| datagen ({len(dg)} files) | {sum(s['wall_s'] for s in dg):.2f} | "
                     f"{max(s['peak_rss_mib'] for s in dg):.0f} |")

    ids = [t.id for t in tools]
    labels = {t.id: t.label for t in tools}
    for path, title in (("raw", "External tables over the ingested Parquet (`lake/raw/<kind>/year=/month=/`)"),
                        ("delta", "Delta tables, PARTITION BY DATE(pickup) CLUSTER BY VendorID")):
        lines.extend(["", f"## {title}", "",
                      "| query | tool | query time (s) | first result (s) | peak RSS (MiB) | query: tool / tripline "
                      "| first result: tool / tripline | query runs (s) | first-result runs (s) |",
                      "|---|---|---:|---:|---:|---:|---:|---|---|"])
        for q in [q for q in queries if q.path == path]:
            base = summary[q.id].get("tripline", {})
            for tid in ids:
                s = summary[q.id][tid]
                if tid == "tripline":
                    rq = rf = "baseline"
                else:
                    rq = fmt(ratio(s["query_median_s"], base.get("query_median_s")), ".2f", "x")
                    rf = fmt(ratio(s["first_median_s"], base.get("first_median_s")), ".2f", "x")
                label = labels[tid] + (f" ({s['failed_runs']} runs FAILED)" if s["failed_runs"] else "")
                first_runs = " ".join(f"{x:.2f}" for x in s["first_s"]) or "—"
                lines.append(
                    f"| {q.id} {q.title} | {label} | {fmt(s['query_median_s'], '.3f')} | "
                    f"{fmt(s['first_median_s'])} | {fmt(s['first_peak_rss_mib'], '.0f')} | {rq} | {rf} | "
                    f"{' '.join(f'{x:.3f}' for x in s['query_s']) or '—'} | {first_runs} |")
        tl_read = [(q.id, summary[q.id].get("tripline", {})) for q in queries if q.path == path]
        if any(s.get("bytes_scanned") is not None for _, s in tl_read):
            lines.extend(["", "tripline read: " + "; ".join(
                f"{qid} {s['bytes_scanned'] / (1 << 20):.1f} MiB in {s.get('files_read')} files"
                for qid, s in tl_read if s.get("bytes_scanned") is not None)])

    if ids and "tripline" in ids and len(ids) > 1:
        lines.extend(["", "## Targets", "",
                      "| query | tripline / DuckDB query time (target <= 1.10) | Spark / tripline query time "
                      "(target >= 15) | Spark / tripline first result (target >= 50) |", "|---|---:|---:|---:|"])

        def cell(x, ok) -> str:
            return "—" if x is None else f"{x:.2f} {'met' if ok(x) else '**missed**'}"

        for row in targets(summary, queries):
            lines.append(f"| {row['query']} | {cell(row['vs_duckdb'], lambda x: x <= 1.1)} | "
                         f"{cell(row['spark_query'], lambda x: x >= 15)} | "
                         f"{cell(row['spark_first'], lambda x: x >= 50)} |")
    sess_rss = {tid: max((summary[q.id][tid].get("session_peak_rss_mib") or 0) for q in queries) for tid in ids}
    lines.extend(["", "Peak RSS of the process running all the queries: " + ", ".join(
        f"{labels[t]} {v:.0f} MiB" for t, v in sess_rss.items() if v)])
    if failures:
        lines.extend(["", "## Failures", ""])
        for f in failures:
            lines.append("```\n" + f + "\n```")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=DEFAULT_BIN, help=f"tripline binary (default {DEFAULT_BIN})")
    ap.add_argument("--smoke", action="store_true", help="tiny data, one round: does every tool still run and agree?")
    ap.add_argument("--rows-per-month", type=int, help="yellow rows per month (default 2,000,000; smoke 20,000)")
    ap.add_argument("--green-rows-per-month", type=int, help="green rows per month (default a quarter of yellow)")
    ap.add_argument("--months", help="YYYY-MM..YYYY-MM (default 2023-01..2023-12; smoke 2023-01..2023-02)")
    ap.add_argument("--repeat", type=int, help="rounds; medians are reported (default 3; smoke 1)")
    ap.add_argument("--tools", default="tripline,duckdb,spark", help="subset of tripline,duckdb,spark")
    ap.add_argument("--seed", type=int, default=42, help="datagen seed (default 42)")
    ap.add_argument("--spark-driver-memory", default="4g", help="spark.driver.memory (default 4g)")
    ap.add_argument("--spark-first-rounds", type=int,
                    help="run Spark's fresh per-query processes (a JVM start each) in the first N rounds only "
                         "(default: every round)")
    ap.add_argument("--out-dir", type=Path, help="where data, lake and reports go (default bench/out, bench/out/smoke)")
    ap.add_argument("--timeout", type=float, help="seconds per process before it is killed (default 3600; smoke 300)")
    args = ap.parse_args(argv)
    args.rows_per_month = args.rows_per_month or (20_000 if args.smoke else 2_000_000)
    args.green_rows_per_month = args.green_rows_per_month or max(args.rows_per_month // 4, 1)
    args.month_list = months_range(args.months or ("2023-01..2023-02" if args.smoke else "2023-01..2023-12"))
    args.repeat = args.repeat or (1 if args.smoke else 3)
    args.timeout = args.timeout or (300.0 if args.smoke else 3600.0)
    args.out_dir = (args.out_dir or (REPO / "bench" / "out" / ("smoke" if args.smoke else ""))).resolve()
    args.bin = args.bin.resolve()
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - {"tripline", "duckdb", "spark"}
    if unknown or "tripline" not in args.tools:
        raise SystemExit(f"--tools: must include tripline (it prepares the lake); unknown: {sorted(unknown)}")
    return args


def ensure_packages(args, notes: list[str]) -> bool:
    """duckdb is installed when missing; pyspark (~300 MB) only for a full run. Returns whether Spark can run."""
    if "duckdb" in args.tools and importlib.util.find_spec("duckdb") is None:
        log("installing Python package duckdb")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "duckdb"], check=True)
    if "spark" not in args.tools:
        return False
    if importlib.util.find_spec("pyspark") is None and not args.smoke:
        log("installing Python package pyspark (large)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pyspark"], check=True)
        importlib.invalidate_caches()
    if subprocess.run([sys.executable, "-c", "import pyspark"], capture_output=True).returncode != 0:
        msg = "PySpark skipped: `import pyspark` fails (pip install pyspark to include it)"
        log(msg)
        notes.append(msg)
        return False
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        msg = "PySpark skipped: no java on PATH and no JAVA_HOME"
        log(msg)
        notes.append(msg)
        return False
    return True


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (args.bin.is_file() and os.access(args.bin, os.X_OK)):
        log(f"tripline binary not found: {args.bin}; build it with `cargo build --release -p tripline-cli` "
            "or pass --bin PATH")
        return 2
    notes: list[str] = []
    spark_ok = ensure_packages(args, notes)
    if "spark" in args.tools and not spark_ok:
        args.tools.remove("spark")
    if spark_ok and args.spark_first_rounds is not None and args.spark_first_rounds < args.repeat:
        notes.append(f"Spark's fresh per-query processes ran in the first {args.spark_first_rounds} of "
                     f"{args.repeat} rounds only (--spark-first-rounds)")
    if args.smoke and spark_ok:
        notes.append("smoke: Spark runs one process with q1_raw and q3_delta only (a JVM start per query would "
                     "take minutes)")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    stamp = now.strftime("%Y-%m-%d-%H%M%S")
    logs = args.out_dir / "logs" / f"warehouse-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    data_dir = args.out_dir / "warehouse-data"
    project = args.out_dir / "warehouse-project"

    usage = shutil.disk_usage(args.out_dir)
    rows_total = (args.rows_per_month + args.green_rows_per_month) * len(args.month_list)
    need = rows_total * 100  # generated Parquet + raw lake + Delta copy, ~30-35 bytes per row each, with margin
    if usage.free < need:
        raise SystemExit(f"{args.out_dir}: {usage.free / 2**30:.1f} GiB free, the data needs about "
                         f"{need / 2**30:.1f} GiB")

    prep = Prep(logs, args.timeout)
    t0 = time.perf_counter()
    data = generate(args, prep, data_dir)
    lake = prepare_lake(args, prep, project, data_dir, data)
    prep_s = time.perf_counter() - t0
    log(f"prepared {data['rows']:,} rows in {prep_s:.1f} s")

    months = args.month_list
    mid = months[len(months) // 2]
    queries = build_queries(dt.date(int(mid[:4]), int(mid[5:]), 1))
    spec_path = args.out_dir / "warehouse-spec.json"
    spec = {"tables": lake["tables"], "spark_driver_memory": args.spark_driver_memory,
            "queries": {q.id: {"path": q.path, "sql": q.sql} for q in queries}}
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    tools = build_tools(args, project, spec_path, spark_ok)

    load_before = os.getloadavg()
    runs: list[Run] = []
    failures: list[str] = []
    reference: dict = {}  # query id -> (tool id, normalised result)

    def check(run: Run, t: Tool, qs: list[Query]) -> None:
        if run.exit_code != 0 or run.timed_out:
            run.error = (f"timed out after {run.wall_s:.0f} s" if run.timed_out else f"exit {run.exit_code}") + \
                "\n" + tail(run.stderr)
            return
        try:
            run.results = t.parse(run.stdout, qs)
            for q in qs:
                got = normalise(q, run.results[q.id]["rows"])
                if q.id.startswith("q2_"):
                    total = sum(v[0] for v in got.values())
                    if total != data["rows"]:
                        raise VerifyError(f"{q.id}: trips per day add up to {total:,.0f}, the lake has {data['rows']:,}")
                if q.id not in reference:
                    reference[q.id] = (t.id, got)
                else:
                    diff = compare(q, reference[q.id][1], got)
                    if diff:
                        raise VerifyError(f"{q.id}: {t.id} disagrees with {reference[q.id][0]}: {diff}")
            run.ok = True
        except VerifyError as e:
            run.error = f"WRONG RESULT: {e}"
        except Exception as e:  # noqa: BLE001
            run.error = f"unreadable output: {type(e).__name__}: {e}"
        # The rows were checked; the JSON report keeps their count only.
        for q in qs:
            if q.id in run.results:
                run.results[q.id]["rows"] = len(run.results[q.id]["rows"])

    def measure(t: Tool, kind: str, rnd: int, qs: list[Query], cmd: list[str]) -> None:
        stem = logs / f"{t.id}-{kind}-{'all' if len(qs) > 1 else qs[0].id}-{rnd}"
        wall, peak, code, timed_out, out, err = run_measured(cmd, stem, args.timeout, t.sample_tree)
        run = Run(t.id, kind, rnd, [q.id for q in qs], wall, peak, code, timed_out, out, err)
        check(run, t, qs)
        runs.append(run)
        if run.ok:
            times = ", ".join(f"{q.id} {run.results[q.id]['seconds']:.3f}" for q in qs) if kind == "session" else ""
            log(f"round {rnd}/{args.repeat} {t.id} {kind} {'all' if len(qs) > 1 else qs[0].id}: wall {wall:.2f} s, "
                f"{peak / 1024:.0f} MiB" + (f" ({times})" if times else ""))
        else:
            log(f"round {rnd}/{args.repeat} {t.id} {kind}: FAILED: {run.error}")
            failures.append(f"{t.id} {kind} {','.join(run.queries)} round {rnd}: {run.error}\n"
                            f"(logs: {out} / {err})")

    log(f"benchmarking {', '.join(t.id for t in tools)}: {len(queries)} queries, {args.repeat} round(s)")
    for rnd in range(1, args.repeat + 1):
        for t in tools:
            qs = [q for q in queries if t.only is None or q.id in t.only]
            measure(t, "session", rnd, qs, t.session_cmd(qs))
        for q in queries:
            for t in tools:
                if t.first_result and not (t.id == "spark" and args.spark_first_rounds is not None
                                           and rnd > args.spark_first_rounds):
                    measure(t, "first", rnd, [q], t.first_cmd(q))

    summary = summarise(tools, queries, runs)
    if reference:
        notes.append("results agree between " + ", ".join(t.id for t in tools) + " for every query and run "
                     "(groups equal, sums within 1e-9 relative)" if not any("WRONG" in f for f in failures)
                     else "**engines disagree on a result: see Failures**")
    notes.append("DuckDB and Spark read the Delta tables as Parquet: the data files of the current version listed "
                 "from `_delta_log` (DuckDB's delta extension and Spark's delta-spark JARs need downloads this "
                 "machine cannot make), with hive partitioning so `tpep_pickup_datetime_date` is a DATE column")
    meta = {
        "benchmark": "warehouse",
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "smoke": args.smoke,
        "repeat": args.repeat,
        "machine": {**machine_info(), "loadavg_1m_before": round(load_before[0], 2),
                    "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "versions": versions(args),
        "data": data,
        "lake_files": lake["files"],
        "ctas": lake["ctas"],
        "prep": prep.steps,
        "prep_s": round(prep_s, 2),
        "queries": [asdict(q) for q in queries],
        "tripline_bin": str(args.bin),
        "rss_probe": rss_probe(),
        "notes": notes,
    }
    md = markdown(meta, tools, queries, summary, failures)
    md_path = args.out_dir / f"warehouse-{stamp}.md"
    json_path = args.out_dir / f"warehouse-{stamp}.json"
    md_path.write_text(md)
    json_path.write_text(json.dumps({**meta, "summary": summary, "targets": targets(summary, queries),
                                     "runs": [asdict(r) for r in runs]}, indent=2, default=str) + "\n")
    print(md)
    log(f"wrote {md_path} and {json_path}")
    if failures:
        log(f"{len(failures)} run(s) failed; see the Failures section above")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
