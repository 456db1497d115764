#!/usr/bin/env python3
"""Side-by-side ingest benchmark: tripline against the tools people use, same data, same run, same machine.

Groups (every tool runs as its own process; wall time and peak RSS of that process tree are measured):
  CSV -> PostgreSQL   tripline ingest | pandas read_csv + to_sql (the course's method) | psql \\copy
  CSV -> Parquet      tripline ingest into a lake dir | DuckDB COPY ... TO parquet | Polars scan_csv().sink_parquet()

Every run is verified: the rows that arrived (table count, Parquet row count) must equal the data rows of the file
(and tripline's own read/written/quarantined report must add up). Tools are interleaved round by round so drift on
the machine hits every tool alike; the median of --repeat rounds is reported.

    cargo build --release -p tripline-cli && python3 bench/ingest/run.py
    python3 bench/ingest/run.py --smoke --bin "$CARGO_TARGET_DIR/debug/tripline"   # what CI runs

Writes bench/out/ingest-<timestamp>.md and .json (bench/out/smoke/... with --smoke) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
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

# Python module -> PyPI package, installed at start when missing.
PY_PACKAGES = {
    "pandas": "pandas",
    "duckdb": "duckdb",
    "polars": "polars",
    "pyarrow": "pyarrow",
    "sqlalchemy": "sqlalchemy",
    "psycopg2": "psycopg2-binary",
}

# PostgreSQL types of the yellow trip CSV columns (2009-2024 eras), for the \copy target table. Unknown columns
# become text; integer columns whose sampled values are not integers are widened to double precision.
YELLOW_PG_TYPES = {
    "vendorid": "integer",
    "tpep_pickup_datetime": "timestamp",
    "tpep_dropoff_datetime": "timestamp",
    "passenger_count": "integer",
    "trip_distance": "double precision",
    "ratecodeid": "integer",
    "store_and_fwd_flag": "text",
    "pulocationid": "integer",
    "dolocationid": "integer",
    "payment_type": "integer",
    "fare_amount": "double precision",
    "extra": "double precision",
    "mta_tax": "double precision",
    "tip_amount": "double precision",
    "tolls_amount": "double precision",
    "improvement_surcharge": "double precision",
    "total_amount": "double precision",
    "congestion_surcharge": "double precision",
    "airport_fee": "double precision",
    "cbd_congestion_fee": "double precision",
}

PG_TABLES = {"tripline": "bench_tripline", "pandas": "bench_pandas", "copy": "bench_copy"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class VerifyError(Exception):
    """A run finished but its output is wrong (row count, missing file, unreadable report)."""


# ---------------------------------------------------------------------------------------------------------------
# Measuring one process


@dataclass
class Run:
    """One timed execution of one tool."""

    tool: str
    round: int
    wall_s: float
    peak_rss_kib: int
    exit_code: int
    timed_out: bool
    stdout: str
    stderr: str
    ok: bool = False
    rows: int | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


GNU_TIME = Path("/usr/bin/time")


def rss_probe() -> str:
    """How peak RSS is measured. Linux charges a child, at exec, the peak RSS of the process it was forked from
    (exec records the old mm's high-water mark), so wait4 straight from this runner would report at least the
    runner's own peak. GNU time is a ~2 MiB process between us and the tool, which removes that floor."""
    return "gnu-time" if GNU_TIME.is_file() and os.access(GNU_TIME, os.X_OK) else "wait4"


def run_measured(cmd: list[str], log_stem: Path, timeout_s: float, tool: str, rnd: int) -> Run:
    """Run `cmd` in its own process group. Wall time from spawn to reap; peak RSS is the largest resident set of the
    process and its waited-for descendants (wait4's ru_maxrss, KiB), read through GNU time when available."""
    out_path, err_path = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    rss_path = log_stem.with_suffix(".rss")
    rss_path.unlink(missing_ok=True)
    probe = rss_probe()
    argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss_path), *cmd] if probe == "gnu-time" else cmd
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        (log_stem.parent / (log_stem.name + ".cmd")).write_text(shlex.join(cmd) + "\n")
        timed_out = threading.Event()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    peak = usage.ru_maxrss
    if probe == "gnu-time":
        # GNU time writes "Command exited with non-zero status N" before the number when the tool fails.
        try:
            peak = int(rss_path.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            peak = 0  # killed before GNU time could report
    return Run(
        tool=tool,
        round=rnd,
        wall_s=wall,
        peak_rss_kib=peak,
        exit_code=proc.returncode,
        timed_out=timed_out.is_set(),
        stdout=str(out_path),
        stderr=str(err_path),
    )


def tail(path: str, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------------------
# Data


def count_data_rows(path: Path) -> int:
    """Lines after the header (TLC CSVs have no quoted newlines); a missing final newline still counts."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


def ensure_data(args, bin_path: Path, out_dir: Path) -> tuple[Path, dict]:
    """The benchmark CSV: --input as given, else `tripline datagen` output, reused when rows/seed/size match."""
    if args.input:
        path = Path(args.input).resolve()
        if not path.is_file():
            raise SystemExit(f"--input {path}: no such file")
        return path, {"source": "input file", "generated": False}

    path = (out_dir / f"yellow_{args.month}.csv").resolve()
    meta_path = path.with_name(path.name + ".meta.json")
    # The generator's version is part of the key: another tripline version may generate other rows.
    want = {"kind": "yellow", "month": args.month, "rows": args.rows, "seed": args.seed, "dirty_rate": 0,
            "generator": tripline_version(bin_path)}
    if path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if {k: meta.get(k) for k in want} == want and meta.get("bytes") == path.stat().st_size:
            log(f"reusing {path} ({args.rows:,} rows)")
            return path, {"source": "tripline datagen (reused)", "generated": False, **want}

    cmd = [
        str(bin_path), "datagen", "--kind", "yellow", "--month", args.month, "--rows", str(args.rows),
        "--format", "csv", "--output", str(path), "--seed", str(args.seed), "--dirty-rate", "0",
    ]
    log(f"generating data: {shlex.join(cmd)}")
    path.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if res.returncode != 0 or not path.is_file():
        raise SystemExit(
            f"tripline datagen failed (exit {res.returncode}):\n{res.stderr.strip()[-2000:]}\n"
            "The benchmark needs `tripline datagen` (or pass --input FILE to use an existing yellow CSV)."
        )
    rows = count_data_rows(path)
    if rows != args.rows:
        raise SystemExit(f"tripline datagen wrote {rows:,} data rows to {path}, asked for {args.rows:,}")
    meta = {**want, "bytes": path.stat().st_size, "datagen_s": round(took, 3), "command": shlex.join(cmd)}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return path, {"source": "tripline datagen", "generated": True, **meta}


def tripline_version(bin_path: Path) -> str | None:
    try:
        res = subprocess.run([str(bin_path), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = res.stdout.strip()
    return out.removeprefix("tripline ").strip() if res.returncode == 0 and out else None


def csv_header(path: Path) -> list[str]:
    import csv

    with open(path, newline="") as f:
        return next(csv.reader(f))


def copy_table_ddl(path: Path, table: str, sample_rows: int = 20_000) -> str:
    """CREATE TABLE for \\copy: typed from the header, integer columns widened if the sample holds non-integers."""
    import csv

    header = csv_header(path)
    types = [YELLOW_PG_TYPES.get(c.lower(), "text") for c in header]
    int_re = re.compile(r"^\s*-?\d+\s*$")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for i, row in enumerate(reader):
            if i >= sample_rows:
                break
            for j, v in enumerate(row[: len(types)]):
                if types[j] == "integer" and v != "" and not int_re.match(v):
                    types[j] = "double precision"
    cols = ",\n  ".join(f'"{c}" {t}' for c, t in zip(header, types))
    return f'DROP TABLE IF EXISTS "{table}";\nCREATE TABLE "{table}" (\n  {cols}\n);'


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL


class Postgres:
    """The server every PostgreSQL tool loads into: --pg-url, $TRIPLINE_TEST_PG_URL, or a throwaway cluster."""

    def __init__(self, url: str | None):
        self.url = url
        self.dir: str | None = None
        self.started = False

    def __enter__(self) -> "Postgres":
        if not self.url:
            log("no --pg-url / TRIPLINE_TEST_PG_URL: starting a throwaway PostgreSQL with scripts/pg-throwaway")
            res = subprocess.run([str(REPO / "scripts" / "pg-throwaway"), "start"], stdout=subprocess.PIPE, text=True)
            if res.returncode != 0:
                raise SystemExit("scripts/pg-throwaway start failed (see above)")
            env = dict(re.findall(r"^export (\w+)=(.*)$", res.stdout, re.M))
            self.url, self.dir, self.started = env["TRIPLINE_TEST_PG_URL"], env["TRIPLINE_TEST_PG_DIR"], True
        return self

    def __exit__(self, *exc) -> None:
        if self.started and self.dir:
            subprocess.run([str(REPO / "scripts" / "pg-throwaway"), "stop", self.dir])

    def connect(self):
        import psycopg2

        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        return conn

    def execute(self, sql: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def scalar(self, sql: str):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchone()[0]
        finally:
            conn.close()

    def count(self, table: str) -> int:
        return int(self.scalar(f'SELECT count(*) FROM "{table}"'))

    def checkpoint(self) -> None:
        """Flush the previous tool's dirty pages so they are not charged to the next tool (needs superuser)."""
        try:
            self.execute("CHECKPOINT")
        except Exception:  # noqa: BLE001 - a non-superuser URL only loses this bit of fairness
            pass

    def describe(self) -> dict:
        info = {"url": re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", self.url or ""), "throwaway": self.started}
        try:
            info["server_version"] = self.scalar("SHOW server_version")
            for name in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "max_wal_size"):
                info[name] = self.scalar(f"SHOW {name}")
        except Exception as e:  # noqa: BLE001
            info["error"] = str(e)
        return info


# ---------------------------------------------------------------------------------------------------------------
# Tools


@dataclass
class Tool:
    """One contender: how to prepare a run, the command to time, and how to check what it produced."""

    id: str
    group: str
    label: str
    command: Callable[[], list[str]]
    setup: Callable[[], None] = lambda: None
    verify: Callable[[Run], None] = lambda run: None
    needs_tripline: bool = False


def parse_tripline_report(run: Run) -> dict:
    text = Path(run.stdout).read_text(errors="replace").strip()
    candidates = [text] + [line for line in reversed(text.splitlines()) if line.lstrip().startswith("{")]
    for cand in candidates:
        try:
            report = json.loads(cand)
        except ValueError:
            continue
        if isinstance(report, dict) and isinstance(report.get("total"), dict):
            total = report["total"]
            try:
                return {k: int(total[k]) for k in ("read", "written", "quarantined")}
            except (KeyError, TypeError, ValueError) as e:
                raise VerifyError(f"tripline --json total lacks read/written/quarantined: {total}") from e
    raise VerifyError(f"no JSON object with a 'total' on tripline's stdout: {text[:300]!r}")


def check_tripline_totals(run: Run, data_rows: int) -> dict:
    totals = parse_tripline_report(run)
    run.extra.update(totals)
    if totals["read"] != data_rows:
        raise VerifyError(f"tripline read {totals['read']:,} rows, the file has {data_rows:,}")
    if totals["written"] + totals["quarantined"] != totals["read"]:
        raise VerifyError(f"tripline accounting does not add up: {totals}")
    if totals["quarantined"]:
        run.extra["note"] = f"{totals['quarantined']:,} rows quarantined"
    return totals


def parquet_rows(paths: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def dir_bytes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def build_tools(args, bin_path: Path, data: Path, data_rows: int, pg: Postgres | None, work: Path) -> list[Tool]:
    py = sys.executable
    tools: list[Tool] = []

    if pg is not None:
        url = pg.url

        def verify_pg(key: str, expected: Callable[[Run], int]) -> Callable[[Run], None]:
            def verify(run: Run) -> None:
                want = expected(run)
                got = pg.count(PG_TABLES[key])
                run.rows = got
                if got != want:
                    raise VerifyError(f"{PG_TABLES[key]} has {got:,} rows, expected {want:,}")

            return verify

        def tripline_pg_expected(run: Run) -> int:
            return check_tripline_totals(run, data_rows)["written"]

        tools.append(Tool(
            id="tripline-pg", group="postgres", label="tripline ingest",
            command=lambda: [str(bin_path), "ingest", str(data), "--kind", "yellow", "--to", url,
                             "--table", PG_TABLES["tripline"], "--mode", "replace", "--json", "-q"],
            setup=pg.checkpoint,
            verify=verify_pg("tripline", tripline_pg_expected),
            needs_tripline=True,
        ))
        tools.append(Tool(
            id="pandas", group="postgres", label="pandas read_csv + to_sql (course)",
            command=lambda: [py, str(HERE / "pandas_load.py"), str(data), url, PG_TABLES["pandas"]],
            setup=pg.checkpoint,
            verify=verify_pg("pandas", lambda run: data_rows),
        ))
        copy_ddl = copy_table_ddl(data, PG_TABLES["copy"])
        quoted = str(data).replace("'", "''")

        def copy_setup() -> None:
            pg.execute(copy_ddl)
            pg.checkpoint()

        tools.append(Tool(
            id="copy", group="postgres", label="psql \\copy",
            command=lambda: ["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                             f"\\copy \"{PG_TABLES['copy']}\" FROM '{quoted}' WITH (FORMAT csv, HEADER true)"],
            setup=copy_setup,
            verify=verify_pg("copy", lambda run: data_rows),
        ))

    lake = work / "lake"
    duck_out = work / "duckdb.parquet"
    polars_out = work / "polars.parquet"

    def lake_setup() -> None:
        shutil.rmtree(lake, ignore_errors=True)
        lake.mkdir(parents=True)

    def lake_verify(run: Run) -> None:
        totals = check_tripline_totals(run, data_rows)
        files = sorted(p for p in lake.rglob("*.parquet") if "_delta_log" not in p.parts)
        if not files:
            raise VerifyError(f"tripline wrote no Parquet files under {lake}")
        run.rows = parquet_rows(files)
        run.extra["output_bytes"] = dir_bytes(files)
        run.extra["files"] = [str(p.relative_to(lake)) for p in files][:20]
        if run.rows != totals["written"]:
            raise VerifyError(f"Parquet under {lake} holds {run.rows:,} rows, tripline reported {totals['written']:,}")

    def file_setup(path: Path) -> Callable[[], None]:
        return lambda: path.unlink(missing_ok=True)

    def file_verify(path: Path) -> Callable[[Run], None]:
        def verify(run: Run) -> None:
            if not path.is_file():
                raise VerifyError(f"{path} was not written")
            run.rows = parquet_rows([path])
            run.extra["output_bytes"] = path.stat().st_size
            if run.rows != data_rows:
                raise VerifyError(f"{path} holds {run.rows:,} rows, the file has {data_rows:,}")

        return verify

    tools.append(Tool(
        id="tripline-parquet", group="parquet", label="tripline ingest (lake)",
        command=lambda: [str(bin_path), "ingest", str(data), "--kind", "yellow", "--to", str(lake), "--json", "-q"],
        setup=lake_setup, verify=lake_verify, needs_tripline=True,
    ))
    tools.append(Tool(
        id="duckdb", group="parquet", label="DuckDB COPY TO parquet",
        command=lambda: [py, str(HERE / "parquet_peers.py"), "duckdb", str(data), str(duck_out)],
        setup=file_setup(duck_out), verify=file_verify(duck_out),
    ))
    tools.append(Tool(
        id="polars", group="parquet", label="Polars scan_csv.sink_parquet",
        command=lambda: [py, str(HERE / "parquet_peers.py"), "polars", str(data), str(polars_out)],
        setup=file_setup(polars_out), verify=file_verify(polars_out),
    ))

    if args.tools:
        wanted = {t.strip() for t in args.tools.split(",") if t.strip()}
        unknown = wanted - {t.id for t in tools}
        if unknown:
            raise SystemExit(f"--tools: unknown {sorted(unknown)}; known: {[t.id for t in tools]}")
        tools = [t for t in tools if t.id in wanted]
    return tools


def explain_failure(tool: Tool, run: Run, bin_path: Path) -> str:
    if run.timed_out:
        return f"timed out after {run.wall_s:.1f} s (--timeout)"
    if run.error:
        return run.error
    err = tail(run.stderr)
    msg = f"exit {run.exit_code}"
    if tool.needs_tripline and re.search(r"unrecognized subcommand|unexpected argument|Usage:", err):
        msg += f" - {bin_path} does not accept this command yet (CLI contract: `tripline ingest SOURCE --kind K --to ...`)"
    return msg + (f"\n{err}" if err else "")


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


def versions(bin_path: Path, need_tripline: bool) -> dict:
    v = {"python": platform.python_version()}
    for mod, pkg in PY_PACKAGES.items():
        try:
            v[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        psql = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
        v["psql"] = psql.removeprefix("psql (PostgreSQL) ")
    except OSError:
        pass
    if need_tripline:
        v["tripline"] = tripline_version(bin_path) or "(no --version)"
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        v["git"] = (commit or "no commits") + (" (dirty)" if dirty else "")
    except OSError:
        pass
    return v


def summarise(tools: list[Tool], runs: list[Run], data_rows: int) -> dict:
    out = {}
    for t in tools:
        mine = [r for r in runs if r.tool == t.id]
        good = [r for r in mine if r.ok]
        s = {"label": t.label, "group": t.group, "runs": len(mine), "ok": len(good) == len(mine) and bool(mine),
             "wall_s": [round(r.wall_s, 3) for r in mine]}
        if good:
            med = statistics.median(r.wall_s for r in good)
            s.update(median_s=med, rows_per_s=data_rows / med if med > 0 else None,
                     peak_rss_mib=max(r.peak_rss_kib for r in good) / 1024)
            sizes = [r.extra["output_bytes"] for r in good if "output_bytes" in r.extra]
            if sizes:
                s["output_mib"] = sizes[-1] / (1 << 20)
            notes = {r.extra["note"] for r in good if r.extra.get("note")}
            if notes:
                s["notes"] = sorted(notes)
        out[t.id] = s
    return out


def fmt_num(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def markdown(meta: dict, summary: dict, failures: list[str]) -> str:
    d = meta["data"]
    m = meta["machine"]
    lines = [
        f"# Ingest benchmark, {meta['date']}",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB RAM, "
        f"Linux {m.get('kernel')}; 1-minute load average {m.get('loadavg_1m_before')} before, "
        f"{m.get('loadavg_1m_after')} after (other work on the machine skews the times)",
        f"- data: `{d['path']}`: {d['rows']:,} rows, {d['bytes'] / (1 << 20):.1f} MiB CSV ({d['source']})",
        f"- runs: median of {meta['repeat']} (tools interleaved round by round); peak RSS is the largest resident set "
        "of any process in the tool's process tree (wait4 ru_maxrss), the maximum over the runs"
        + (" (measured through GNU time)" if meta["rss_probe"] == "gnu-time" else
           "; **/usr/bin/time missing: every figure includes the benchmark runner's own peak RSS as a floor**"),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
    ]
    if meta.get("postgres"):
        p = meta["postgres"]
        lines.append(
            f"- PostgreSQL {p.get('server_version', '?')} "
            f"({'throwaway cluster' if p.get('throwaway') else 'given URL'}; fsync={p.get('fsync')}, "
            f"synchronous_commit={p.get('synchronous_commit')}, full_page_writes={p.get('full_page_writes')}, "
            f"shared_buffers={p.get('shared_buffers')})"
        )
    if meta.get("smoke"):
        lines.append("- **smoke run**: tiny data, one round; checks that every tool still runs, not how fast")

    def table(group: str, title: str, note: str, with_output: bool) -> None:
        ids = [i for i, s in summary.items() if s["group"] == group]
        if not ids:
            return
        base_id = next((i for i in ids if i.startswith("tripline")), None)
        base = summary.get(base_id, {}).get("median_s") if base_id else None
        lines.extend(["", f"## {title}", ""])
        head = "| tool | median wall (s) | rows/s | peak RSS (MiB) |"
        rule = "|---|---:|---:|---:|"
        if with_output:
            head += " output (MiB) |"
            rule += "---:|"
        head += " tripline speedup (tool time / tripline time) | runs (s) |"
        rule += "---:|---|"
        lines.extend([head, rule])
        for i in ids:
            s = summary[i]
            if not s.get("median_s"):
                cells = [s["label"], "FAILED", "—", "—"] + (["—"] if with_output else []) + ["—",
                                                                                              " ".join(map(str, s["wall_s"]))]
                lines.append("| " + " | ".join(cells) + " |")
                continue
            if i == base_id:
                ratio = "baseline"
            elif base:
                ratio = f"{s['median_s'] / base:.2f}x"
            elif base_id:
                ratio = "n/a (tripline failed)"
            else:
                ratio = "n/a (tripline not run)"
            cells = [
                s["label"] + ("" if s["ok"] else " (some runs failed)"),
                f"{s['median_s']:.2f}",
                f"{s['rows_per_s']:,.0f}",
                f"{s['peak_rss_mib']:.0f}",
            ]
            if with_output:
                cells.append(fmt_num(s.get("output_mib"), ".1f"))
            cells += [ratio, " ".join(f"{w:.2f}" for w in s["wall_s"])]
            if s.get("notes"):
                cells[0] += " (" + "; ".join(s["notes"]) + ")"
            lines.append("| " + " | ".join(cells) + " |")
        lines.extend(["", note])

    table("postgres", "CSV -> PostgreSQL", "Every tool loads into the same server; the peak RSS is the client's "
          "only (the server's memory is not included for any tool). pandas uses `to_sql(index=False)`.", False)
    table("parquet", "CSV -> Parquet", "Each tool uses its own defaults for compression and row groups (hence the "
          "output sizes); DuckDB and Polars infer the schema from the data, tripline applies the TLC schema.", True)
    if failures:
        lines.extend(["", "## Failures", ""])
        for f in failures:
            lines.append("```\n" + f + "\n```")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Main


def ensure_python_packages() -> None:
    missing = [pkg for mod, pkg in PY_PACKAGES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        log(f"installing Python packages: {' '.join(missing)}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
        importlib.invalidate_caches()


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=DEFAULT_BIN, help=f"tripline binary (default {DEFAULT_BIN})")
    ap.add_argument("--rows", type=int, help="rows to generate (default 1,400,000; --smoke 20,000)")
    ap.add_argument("--repeat", type=int, help="rounds; the median is reported (default 3; --smoke 1)")
    ap.add_argument("--smoke", action="store_true", help="tiny data, one round: does every tool still run?")
    ap.add_argument("--pg-url", help="PostgreSQL URL (default $TRIPLINE_TEST_PG_URL, else a throwaway cluster)")
    ap.add_argument("--input", help="use this yellow CSV instead of generating one")
    ap.add_argument("--month", default="2021-01", help="month of the generated data (default 2021-01)")
    ap.add_argument("--seed", type=int, default=42, help="datagen seed (default 42)")
    ap.add_argument("--tools", help="comma-separated subset of: tripline-pg,pandas,copy,tripline-parquet,duckdb,polars")
    ap.add_argument("--no-postgres", action="store_true", help="skip the CSV -> PostgreSQL group")
    ap.add_argument("--out-dir", type=Path, help="where data and reports go (default bench/out, bench/out/smoke)")
    ap.add_argument("--timeout", type=float, help="seconds per run before it is killed (default 3600; smoke 300)")
    args = ap.parse_args(argv)
    args.rows = args.rows or (20_000 if args.smoke else 1_400_000)
    args.repeat = args.repeat or (1 if args.smoke else 3)
    args.timeout = args.timeout or (300.0 if args.smoke else 3600.0)
    args.out_dir = (args.out_dir or (REPO / "bench" / "out" / ("smoke" if args.smoke else ""))).resolve()
    args.bin = args.bin.resolve()
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup (throwaway PostgreSQL) on TERM
    ensure_python_packages()
    if shutil.which("psql") is None and not args.no_postgres:
        raise SystemExit("psql not found: install postgresql-client-15 (scripts/pg-throwaway install does)")

    selected = set(args.tools.split(",")) if args.tools else None
    tripline_needed = (not args.input) or selected is None or any(t.startswith("tripline") for t in selected)
    if tripline_needed and not (args.bin.is_file() and os.access(args.bin, os.X_OK)):
        log(f"tripline binary not found: {args.bin}")
        log("build it with:  cargo build --release -p tripline-cli   (it lands in "
            "${CARGO_TARGET_DIR:-~/.cache/tripline-target}/release/tripline)")
        log("or pass --bin PATH (e.g. the debug build); peers alone: --input FILE --tools pandas,copy,duckdb,polars")
        return 2

    args.out_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    stamp = now.strftime("%Y-%m-%d-%H%M%S")
    logs = args.out_dir / "logs" / f"ingest-{stamp}"
    work = args.out_dir / "work"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    data, data_meta = ensure_data(args, args.bin, args.out_dir)
    data_rows = count_data_rows(data)
    if data_rows == 0:
        raise SystemExit(f"{data} has no data rows")

    load_before = os.getloadavg()
    use_pg = not args.no_postgres and (selected is None or bool(selected & {"tripline-pg", "pandas", "copy"}))
    pg_url = args.pg_url or os.environ.get("TRIPLINE_TEST_PG_URL")
    runs: list[Run] = []
    failures: list[str] = []
    pg_info = None
    with (Postgres(pg_url) if use_pg else _Null()) as pg:
        if pg is not None:
            pg_info = pg.describe()
            if "error" in pg_info:
                raise SystemExit(f"cannot reach PostgreSQL at {pg_info['url']}: {pg_info['error']}")
        tools = build_tools(args, args.bin, data, data_rows, pg, work)
        log(f"benchmarking {len(tools)} tools on {data} ({data_rows:,} rows), {args.repeat} round(s)")
        for rnd in range(1, args.repeat + 1):
            for tool in tools:
                try:
                    tool.setup()
                except Exception as e:  # noqa: BLE001
                    run = Run(tool.id, rnd, 0.0, 0, -1, False, "", "", error=f"setup failed: {e}")
                else:
                    run = run_measured(tool.command(), logs / f"{tool.id}-{rnd}", args.timeout, tool.id, rnd)
                    if run.exit_code == 0 and not run.timed_out:
                        try:
                            tool.verify(run)
                            run.ok = True
                        except VerifyError as e:
                            run.error = f"wrong result: {e}"
                        except Exception as e:  # noqa: BLE001
                            run.error = f"verification failed: {type(e).__name__}: {e}"
                runs.append(run)
                status = "ok" if run.ok else "FAILED: " + explain_failure(tool, run, args.bin)
                log(f"[{tool.group}] {tool.id} round {rnd}/{args.repeat}: {run.wall_s:.2f} s, "
                    f"{run.peak_rss_kib / 1024:.0f} MiB, rows={run.rows}, {status}")
                if not run.ok:
                    failures.append(f"{tool.id} round {rnd}: {explain_failure(tool, run, args.bin)}\n"
                                    f"(logs: {run.stdout} / {run.stderr})")
        if pg is not None:
            for table in PG_TABLES.values():
                try:
                    pg.execute(f'DROP TABLE IF EXISTS "{table}"')
                except Exception:  # noqa: BLE001
                    pass
    shutil.rmtree(work, ignore_errors=True)

    summary = summarise(tools, runs, data_rows)
    meta = {
        "benchmark": "ingest",
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "smoke": args.smoke,
        "repeat": args.repeat,
        "machine": {**machine_info(), "loadavg_1m_before": round(load_before[0], 2),
                    "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "versions": versions(args.bin, any(t.needs_tripline for t in tools)),
        "data": {"path": str(data), "rows": data_rows, "bytes": data.stat().st_size, **data_meta},
        "postgres": pg_info,
        "tripline_bin": str(args.bin),
        "rss_probe": rss_probe(),
    }
    md = markdown(meta, summary, failures)
    md_path = args.out_dir / f"ingest-{stamp}.md"
    json_path = args.out_dir / f"ingest-{stamp}.json"
    md_path.write_text(md)
    json_path.write_text(json.dumps({**meta, "summary": summary, "runs": [asdict(r) for r in runs]}, indent=2) + "\n")
    print(md)
    log(f"wrote {md_path} and {json_path}")
    if failures:
        log(f"{len(failures)} run(s) failed; see the Failures section above")
        return 1
    return 0


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
