#!/usr/bin/env python3
"""dbt benchmark: `tripline dbt` against dbt-core on the example project (examples/nyc-taxi/dbt), same data, same run,
and a parity check of what each builds.

Contenders (each a fresh process per run):
  tripline       `tripline -C <project> dbt build` on the embedded warehouse (Delta tables in the lake; sources are
                 external tables over the lake's Parquet, declared by the project's on-run-start hook)
  dbt-duckdb     dbt-core + dbt-duckdb: `dbt build --target duckdb`, over DuckDB views `raw.<service>_taxi_data` on
                 the same Parquet files (made by this script before the runs, like tripline's hook)
  tripline-pg    `tripline dbt build --target postgres`, over the tables `tripline ingest --to postgres://` made
  dbt-postgres   dbt-core + dbt-postgres: `dbt build --target postgres`, same database, same raw tables
The two tools on PostgreSQL write to their own schemas (tripline_nyc, dbtcore_nyc) of one database.

dbt-core runs on a copy of the example project whose packages.yml points at bench/dbt/dbt_utils_subset, a local
package with the dbt_utils macros the project uses (generate_surrogate_key, the expression_is_true test): `dbt deps`
cannot reach the package hub from here. tripline serves dbt_utils from its built-in macros. Nothing else differs:
same models, tests, seeds, vars; dbt-core's profile is bench/dbt/profiles.yml.

Measured:
  parse   tripline: `dbt ls` (the quickest command that parses the whole project: every file read, every model's
          Jinja rendered, the DAG built); dbt-core: `dbt parse --no-partial-parse` (no cache) and `dbt ls` (with the
          partial-parse cache the parse left, dbt's everyday case)
  build   `dbt build` from an empty schema (the dataset / schema is dropped before each run, untimed) at each data
          size; dbt-core keeps its partial-parse cache (its best case)
Per run: wall time from spawn to reap (interpreter start and imports count for dbt-core, as for a user), peak RSS of
the tool's process tree through GNU time (the servers' memory is not included). Tools are interleaved round by
round; the report gives medians and ratios dbt-core / tripline (above 1: tripline is faster).

Checked (a failure makes the exit code non-zero): every run exits 0 with every model, seed and test passing; both
tools see the same nodes; and after the builds, parity: per model, row counts, sums (total_amount, fares,
distance...), distinct trip ids and pickup ranges equal across all four builds, every PostgreSQL relation identical
row for row between tripline and dbt-core (EXCEPT ALL both ways, same columns and types), and the embedded
warehouse's tables identical row for row to dbt-duckdb's (read from the Delta files with DuckDB), surrogate trip ids
included (both engines write a timestamp as text as `2024-01-01 00:40:05` before hashing it).

    python3 -m venv /opt/dbt-venv && /opt/dbt-venv/bin/pip install dbt-core==1.12.0 \\
        dbt-core-experimental-parser==2.0.0a4 dbt-duckdb dbt-postgres     # scripts/test does this
    python3 bench/dbt/run.py --bin ~/.cache/tripline-target/release-fast/tripline
    python3 bench/dbt/run.py --smoke --bin "$CARGO_TARGET_DIR/debug/tripline"     # what CI runs

Writes bench/out/dbt-<timestamp>.md and .json (bench/out/smoke/... with --smoke) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
EXAMPLE = REPO / "examples" / "nyc-taxi" / "dbt"
DBT_UTILS_SUBSET = HERE / "dbt_utils_subset"
DEFAULT_TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "tripline-target")
DEFAULT_VENV = Path(os.environ.get("BENCH_DBT_VENV", "/opt/dbt-venv"))
GNU_TIME = Path("/usr/bin/time")

SERVICES = ("green", "yellow")
EMBEDDED_SCHEMA = "dbt_nyc"
PG_SCHEMAS = {"tripline-pg": "tripline_nyc", "dbt-postgres": "dbtcore_nyc"}
# Models, seeds and tests a build must report (5 models, 2 seeds, 23 generic + 1 singular test).
EXPECTED_NODES = 31

# Every tool process: a fixed zone (the trip timestamps are zone-less), no telemetry, no inherited dbt settings.
BASE_ENV = {k: v for k, v in os.environ.items()
            if not k.startswith(("TRIPLINE_", "DBT_")) and k not in ("PGDATABASE", "PGHOST", "PGPORT")}
BASE_ENV.update({"TZ": "UTC", "PYTHONWARNINGS": "ignore", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                 "DO_NOT_TRACK": "1"})


def log(msg: str) -> None:
    print(f"[dbt-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class VerifyError(Exception):
    """A run finished but what it produced is wrong or unreadable."""


@dataclass
class Run:
    tool: str
    phase: str  # parse | build
    size: str
    round: int
    wall_s: float
    peak_rss_kib: int
    exit_code: int
    timed_out: bool
    stdout: str
    stderr: str
    ok: bool = False
    error: str | None = None
    extra: dict = field(default_factory=dict)


def run_measured(cmd: list[str], log_stem: Path, timeout_s: float, env: dict, cwd: Path) -> Run:
    """Run `cmd` in its own process group: wall seconds spawn to reap, peak RSS KiB through GNU time (so the
    runner's own peak RSS, which Linux hands a child at exec, is not charged to the tool)."""
    out_path, err_path, rss_path = (log_stem.with_suffix(s) for s in (".out", ".err", ".rss"))
    rss_path.unlink(missing_ok=True)
    use_time = GNU_TIME.is_file() and os.access(GNU_TIME, os.X_OK)
    argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss_path), *cmd] if use_time else cmd
    (log_stem.parent / (log_stem.name + ".cmd")).write_text(shlex.join(cmd) + "\n")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        timed_out = threading.Event()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=env, cwd=cwd)

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
        code = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss
    if use_time:
        try:
            peak = int(rss_path.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            peak = 0
    return Run("", "", "", 0, wall, peak, code, timed_out.is_set(), str(out_path), str(err_path))


def tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return ""


def checked(cmd: list[str], what: str, env: dict | None = None, cwd: Path | None = None,
            stdin: str | None = None, timeout: float = 3600) -> str:
    """Run an untimed preparation or inspection command; its stdout, or SystemExit with its output."""
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env or BASE_ENV, cwd=cwd,
                         timeout=timeout)
    if res.returncode != 0:
        raise SystemExit(f"{what} failed (exit {res.returncode}): {shlex.join(cmd)}\n{res.stdout[-2000:]}\n"
                         f"{res.stderr[-3000:]}")
    return res.stdout


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL


class Postgres:
    """The server both PostgreSQL contenders use: --pg-url, $TRIPLINE_TEST_PG_URL, or a throwaway cluster."""

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

    def database_url(self, name: str) -> str:
        server, _, rest = self.url.rpartition("/")
        query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
        return f"{server}/{name}{query}"

    def connect(self, db: str | None = None):
        import psycopg2

        conn = psycopg2.connect(self.database_url(db) if db else self.url)
        conn.autocommit = True
        return conn

    def execute(self, sql: str, db: str | None = None) -> None:
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def query(self, sql: str, db: str | None = None) -> tuple[list[str], list[tuple]]:
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return [d[0] for d in cur.description], cur.fetchall()
        finally:
            conn.close()

    def fresh_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name}")
        self.execute(f"CREATE DATABASE {name}")

    def checkpoint(self) -> None:
        """Flush the previous run's dirty pages so they are not charged to the next tool (needs superuser)."""
        try:
            self.execute("CHECKPOINT")
        except Exception:  # noqa: BLE001 - a non-superuser URL only loses this bit of fairness
            pass

    def dbt_env(self, db: str) -> dict:
        """The DBT_POSTGRES_* variables both profiles read, for database `db`."""
        from urllib.parse import unquote, urlsplit

        u = urlsplit(self.url)
        return {"DBT_POSTGRES_HOST": u.hostname or "localhost", "DBT_POSTGRES_PORT": str(u.port or 5432),
                "DBT_POSTGRES_USER": unquote(u.username or "postgres"),
                "DBT_POSTGRES_PASSWORD": unquote(u.password or ""), "DBT_POSTGRES_DBNAME": db}

    def describe(self) -> dict:
        info = {"url": re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", self.url or ""), "throwaway": self.started}
        try:
            for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers",
                         "work_mem"):
                info[name] = self.query(f"SHOW {name}")[1][0][0]
        except Exception as e:  # noqa: BLE001
            info["error"] = str(e)
        return info


# ---------------------------------------------------------------------------------------------------------------
# Data and projects


@dataclass
class Size:
    name: str
    months: list[str]
    rows: dict  # kind -> rows a month


def months_range(spec: str) -> list[str]:
    m = re.fullmatch(r"(\d{4})-(\d{2})(?:\.\.(\d{4})-(\d{2}))?", spec)
    if not m:
        raise SystemExit(f"{spec!r}: expected YYYY-MM or YYYY-MM..YYYY-MM")
    y, mo = int(m[1]), int(m[2])
    y2, mo2 = (int(m[3]), int(m[4])) if m[3] else (y, mo)
    out = []
    while (y, mo) <= (y2, mo2):
        out.append(f"{y:04d}-{mo:02d}")
        y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
    return out


def tripline_version(bin_path: Path) -> str | None:
    try:
        res = subprocess.run([str(bin_path), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = res.stdout.strip()
    return out.removeprefix("tripline ").strip() if res.returncode == 0 and out else None


def generate(args, size: Size, data_dir: Path, prep: list) -> dict:
    """One Parquet file per kind and month from `tripline datagen`, reused while rows, seed and generator match."""
    data_dir.mkdir(parents=True, exist_ok=True)
    version = tripline_version(args.bin)
    files, total_rows, total_bytes = {k: [] for k in SERVICES}, 0, 0
    for kind in SERVICES:
        for month in size.months:
            path = data_dir / f"{kind}_tripdata_{month}.parquet"
            meta_path = path.with_name(path.name + ".meta.json")
            want = {"kind": kind, "month": month, "rows": size.rows[kind], "seed": args.seed, "generator": version}
            fresh = True
            if path.is_file() and meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text())
                except ValueError:
                    meta = {}
                fresh = not ({k: meta.get(k) for k in want} == want and meta.get("bytes") == path.stat().st_size)
            if fresh:
                path.unlink(missing_ok=True)
                t0 = time.perf_counter()
                checked([str(args.bin), "-q", "datagen", "--kind", kind, "--month", month, "--rows",
                         str(size.rows[kind]), "--format", "parquet", "--output", str(path), "--seed",
                         str(args.seed)], f"datagen {kind} {month}")
                prep.append({"step": f"{size.name}: datagen {kind} {month}", "wall_s": round(time.perf_counter() - t0, 2)})
                meta_path.write_text(json.dumps({**want, "bytes": path.stat().st_size}) + "\n")
            files[kind].append(path)
            total_rows += size.rows[kind]
            total_bytes += path.stat().st_size
    return {"files": {k: [str(p) for p in v] for k, v in files.items()}, "rows": total_rows, "bytes": total_bytes}


def copy_project(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("target", "target-*", "dbt_packages", "logs",
                                                                 "package-lock.yml"))


def timed_step(prep: list, name: str, cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> str:
    t0 = time.perf_counter()
    out = checked(cmd, name, env=env, cwd=cwd)
    took = time.perf_counter() - t0
    prep.append({"step": name, "wall_s": round(took, 2)})
    log(f"prep {name}: {took:.2f} s")
    return out


class Duck:
    """DuckDB through the dbt venv's Python (bench/dbt/duck.py), on one database file."""

    def __init__(self, python: Path, db: Path):
        self.python, self.db = python, db

    def __call__(self, statements: list[str] = (), queries: dict | None = None, read_only: bool = False) -> dict:
        spec = {"db": str(self.db), "read_only": read_only, "statements": list(statements), "queries": queries or {}}
        out = checked([str(self.python), str(HERE / "duck.py")], "duckdb step", stdin=json.dumps(spec))
        return json.loads(out)


@dataclass
class Workspace:
    """Everything one data size needs: the tripline project (lake + dbt project), the dbt-core project copy, the
    DuckDB file and the PostgreSQL database."""

    size: Size
    tripline: Path
    dbt_core: Path
    duckdb: Path
    pg_db: str | None
    data: dict


def prepare(args, size: Size, work: Path, pg: Postgres | None, prep: list) -> Workspace:
    data = generate(args, size, REPO / "bench" / "out" / ("smoke" if args.smoke else "") / "dbt-data" / size.name, prep)
    root = work / size.name
    tl = root / "tripline"
    tl.mkdir(parents=True)
    copy_project(tl / "dbt")
    env = dict(BASE_ENV)
    for kind in SERVICES:
        out = timed_step(prep, f"{size.name}: tripline ingest {kind} -> lake",
                         [str(args.bin), "-C", str(tl), "--json", "-q", "ingest", *data["files"][kind], "--kind", kind],
                         env=env)
        total = json_stdout_text(out).get("total", {})
        want = size.rows[kind] * len(size.months)
        if total.get("written") != want:
            raise SystemExit(f"tripline ingest {kind}: wrote {total.get('written')} rows, expected {want}")
    core = root / "dbt-core"
    duck_path = root / "nyc.duckdb"
    if args.dbt_core:
        copy_project(core)
        # The one change dbt-core needs: dbt_utils from the local subset instead of the (unreachable) hub.
        (core / "packages.yml").write_text(
            "# bench/dbt/run.py: the hub is unreachable here; the dbt_utils macros the project uses, as a local package\n"
            f"packages:\n  - local: {DBT_UTILS_SUBSET}\n")
        timed_step(prep, f"{size.name}: dbt deps (local dbt_utils subset)",
                   [str(args.dbt), "deps", "--profiles-dir", str(HERE)], env=dbt_env(args, duck_path), cwd=core)
        if "dbt-duckdb" in args.tool_list:
            views = ["CREATE SCHEMA IF NOT EXISTS raw"]
            for kind in SERVICES:
                glob = tl / "lake" / "raw" / kind / "year=*" / "month=*" / "*.parquet"
                views.append(f"CREATE OR REPLACE VIEW raw.{kind}_taxi_data AS SELECT * FROM read_parquet('{glob}', "
                             "hive_partitioning = false)")
            t0 = time.perf_counter()
            counts = Duck(args.dbt_python, duck_path)(views, {k: f"SELECT count(*) FROM raw.{k}_taxi_data"
                                                              for k in SERVICES})
            prep.append({"step": f"{size.name}: DuckDB views over the lake", "wall_s": round(time.perf_counter() - t0, 2)})
            for kind in SERVICES:
                n = counts["queries"][kind]["rows"][0][0]
                if n != size.rows[kind] * len(size.months):
                    raise SystemExit(f"DuckDB raw.{kind}_taxi_data has {n} rows")
    pg_db = None
    if pg is not None:
        pg_db = f"bench_dbt_{size.name.replace('-', '_')}"
        pg.fresh_database(pg_db)
        for kind in SERVICES:
            timed_step(prep, f"{size.name}: tripline ingest {kind} -> PostgreSQL",
                       [str(args.bin), "-C", str(tl), "--json", "-q", "ingest", *data["files"][kind], "--kind", kind,
                        "--to", pg.database_url(pg_db)], env=env)
        pg.execute("ANALYZE", pg_db)
    return Workspace(size, tl, core, duck_path, pg_db, data)


def json_stdout_text(text: str) -> dict:
    text = text.strip()
    for cand in [text] + [ln for ln in reversed(text.splitlines()) if ln.lstrip().startswith("{")]:
        try:
            obj = json.loads(cand)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    raise SystemExit(f"no JSON object in {text[:300]!r}")


def dbt_env(args, duck_path: Path, extra: dict | None = None) -> dict:
    return {**BASE_ENV, "BENCH_DUCKDB_PATH": str(duck_path), **(extra or {})}


# ---------------------------------------------------------------------------------------------------------------
# The contenders


@dataclass
class Tool:
    id: str
    label: str
    engine: str  # embedded | postgres
    peer: str  # the tool it is compared with


TOOLS = {
    "tripline": Tool("tripline", "tripline dbt build (embedded warehouse)", "embedded", "dbt-duckdb"),
    "dbt-duckdb": Tool("dbt-duckdb", "dbt-core + dbt-duckdb", "embedded", "tripline"),
    "tripline-pg": Tool("tripline-pg", "tripline dbt build --target postgres", "postgres", "dbt-postgres"),
    "dbt-postgres": Tool("dbt-postgres", "dbt-core + dbt-postgres", "postgres", "tripline-pg"),
}


def build_command(args, ws: Workspace, pg: Postgres | None, tool: str) -> tuple[list[str], dict, Path]:
    """(argv, environment, cwd) of one `dbt build` of `tool`."""
    if tool == "tripline":
        return [str(args.bin), "-C", str(ws.tripline), "dbt", "build"], dict(BASE_ENV), REPO
    if tool == "tripline-pg":
        env = {**BASE_ENV, **pg.dbt_env(ws.pg_db), "DBT_SCHEMA": PG_SCHEMAS[tool]}
        return [str(args.bin), "-C", str(ws.tripline), "dbt", "build", "--target", "postgres"], env, REPO
    target = "duckdb" if tool == "dbt-duckdb" else "postgres"
    extra = pg.dbt_env(ws.pg_db) if tool == "dbt-postgres" else {}
    extra["DBT_SCHEMA"] = PG_SCHEMAS.get(tool, EMBEDDED_SCHEMA)
    return ([str(args.dbt), "build", "--target", target, "--target-path", f"target-{target}", "--profiles-dir",
             str(HERE)], dbt_env(args, ws.duckdb, extra), ws.dbt_core)


def reset(args, ws: Workspace, pg: Postgres | None, tool: str) -> None:
    """An empty target for the next build: drop what the previous build made (untimed)."""
    if tool == "tripline":
        shutil.rmtree(ws.tripline / "lake" / "warehouse" / EMBEDDED_SCHEMA, ignore_errors=True)
    elif tool == "dbt-duckdb":
        Duck(args.dbt_python, ws.duckdb)([f"DROP SCHEMA IF EXISTS {EMBEDDED_SCHEMA} CASCADE", "CHECKPOINT"])
    else:
        pg.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMAS[tool]} CASCADE", ws.pg_db)
        pg.checkpoint()


def run_results(path: Path) -> tuple[dict, dict, float | None]:
    """From a run_results.json: the status and the execution seconds of each model, seed and test (hooks and
    operations left out), and the run's elapsed seconds."""
    try:
        doc = json.loads(path.read_text())
        results = doc["results"]
    except (OSError, ValueError, KeyError) as e:
        raise VerifyError(f"cannot read {path}: {e}")
    nodes = [r for r in results if r["unique_id"].split(".", 1)[0] in ("model", "seed", "test", "snapshot")]
    return ({r["unique_id"]: r["status"] for r in nodes},
            {r["unique_id"]: r.get("execution_time") for r in nodes}, doc.get("elapsed_time"))


def verify_build(ws: Workspace, tool: str, run: Run) -> None:
    if tool.startswith("tripline"):
        results = ws.tripline / "dbt" / "target" / "run_results.json"
    else:
        results = ws.dbt_core / ("target-duckdb" if tool == "dbt-duckdb" else "target-postgres") / "run_results.json"
    statuses, seconds, elapsed = run_results(results)
    bad = {k: v for k, v in statuses.items() if v not in ("success", "pass")}
    if bad or len(statuses) != EXPECTED_NODES:
        raise VerifyError(f"{len(statuses)} nodes (expected {EXPECTED_NODES}), not passing: {bad}")
    run.extra["node_seconds"] = seconds
    run.extra["elapsed_s"] = elapsed
    text = Path(run.stdout).read_text(errors="replace")
    run.extra["done_line"] = next((ln.strip() for ln in text.splitlines() if "Done. PASS=" in ln), None)
    if tool.startswith("dbt-"):
        # Whether dbt-core could reuse its partial-parse cache (it should: nothing changes between runs).
        run.extra["partial_parse"] = "Unable to do partial parsing" not in text


# ---------------------------------------------------------------------------------------------------------------
# Parse


def parse_commands(args, ws: Workspace) -> list[tuple[str, str, list[str], dict, Path]]:
    """(id, label, argv, env, cwd) of each parse measurement."""
    out = [("tripline ls", "tripline dbt ls", [str(args.bin), "-C", str(ws.tripline), "dbt", "ls"], dict(BASE_ENV),
            REPO)]
    if args.dbt_core:
        env = dbt_env(args, ws.duckdb, {"DBT_SCHEMA": EMBEDDED_SCHEMA})
        common = ["--target", "duckdb", "--target-path", "target-parse", "--profiles-dir", str(HERE)]
        out.append(("dbt-core parse", "dbt parse --no-partial-parse",
                    [str(args.dbt), "parse", "--no-partial-parse", *common], env, ws.dbt_core))
        out.append(("dbt-core ls", "dbt ls (partial-parse cache warm)", [str(args.dbt), "-q", "ls", *common], env,
                    ws.dbt_core))
    return out


def verify_parse(ws: Workspace, tool: str, run: Run, reference: dict) -> None:
    text = Path(run.stdout).read_text(errors="replace")
    if tool in ("tripline ls", "dbt-core ls"):
        nodes = sorted(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("\x1b", "[")))
        run.extra["nodes"] = len(nodes)
        if tool == "dbt-core ls" and len(nodes) != len(reference["ls_lines"]):
            raise VerifyError(f"dbt ls listed {len(nodes)} nodes, tripline {len(reference['ls_lines'])}")
    else:
        manifest = json.loads((ws.dbt_core / "target-parse" / "manifest.json").read_text())
        run.extra["nodes"] = len(manifest["nodes"]) + len(manifest["sources"])


def node_parity(args, ws: Workspace) -> dict:
    """The nodes each tool sees: tripline's `dbt ls --output json` against dbt-core's manifest (untimed)."""
    out = checked([str(args.bin), "-C", str(ws.tripline), "dbt", "ls", "--output", "json"], "tripline dbt ls")
    tl = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    tl_ids = {n["unique_id"]: n.get("resource_type") or n["unique_id"].split(".")[0] for n in tl}
    manifest = json.loads((ws.dbt_core / "target-parse" / "manifest.json").read_text())
    core_ids = {k: v["resource_type"] for k, v in manifest["nodes"].items() if v["resource_type"] != "operation"}
    core_ids.update({k: "source" for k in manifest["sources"]})

    def by_type(ids: dict) -> dict:
        out: dict = {}
        for t in ids.values():
            out[t] = out.get(t, 0) + 1
        return dict(sorted(out.items()))

    non_test = lambda ids: {k for k, t in ids.items() if t != "test"}  # noqa: E731
    tests = lambda ids: {k for k, t in ids.items() if t == "test"}  # noqa: E731
    # A test's unique id ends in a hash; compare the names as well, which is what users select by.
    test_names = lambda ids: {k.split(".")[2] for k in tests(ids)}  # noqa: E731
    result = {
        "tripline": by_type(tl_ids), "dbt_core": by_type(core_ids),
        "non_test_ids_equal": non_test(tl_ids) == non_test(core_ids),
        "only_tripline": sorted(non_test(tl_ids) - non_test(core_ids)),
        "only_dbt_core": sorted(non_test(core_ids) - non_test(tl_ids)),
        "test_ids_equal": tests(tl_ids) == tests(core_ids),
        "test_names_only_tripline": sorted(test_names(tl_ids) - test_names(core_ids)),
        "test_names_only_dbt_core": sorted(test_names(core_ids) - test_names(tl_ids)),
    }
    result["ok"] = result["tripline"] == result["dbt_core"] and result["non_test_ids_equal"]
    return result


# ---------------------------------------------------------------------------------------------------------------
# Parity of what the builds made

TRIP_METRICS = [
    ("rows", "count(*)"),
    ("tripids", "count(DISTINCT tripid)"),
    ("total_amount", "CAST(sum(total_amount) AS DOUBLE PRECISION)"),
    ("fare_amount", "CAST(sum(fare_amount) AS DOUBLE PRECISION)"),
    ("tip_amount", "CAST(sum(tip_amount) AS DOUBLE PRECISION)"),
    ("trip_distance", "CAST(sum(trip_distance) AS DOUBLE PRECISION)"),
    ("passengers", "CAST(sum(passenger_count) AS BIGINT)"),
    ("payment_types", "CAST(sum(payment_type) AS BIGINT)"),
    ("pickup_zones", "count(DISTINCT pickup_locationid)"),
    ("first_pickup", "min(pickup_datetime)"),
    ("last_pickup", "max(pickup_datetime)"),
]
METRICS = {
    "stg_green_tripdata": TRIP_METRICS,
    "stg_yellow_tripdata": TRIP_METRICS,
    "fact_trips": TRIP_METRICS + [("zoned_pickups", "count(pickup_zone)"), ("green", "count(CASE WHEN service_type = "
                                                                                  "'Green' THEN 1 END)")],
    "dm_monthly_zone_revenue": [
        ("rows", "count(*)"),
        ("revenue", "CAST(sum(revenue_monthly_total_amount) AS DOUBLE PRECISION)"),
        ("fares", "CAST(sum(revenue_monthly_fare) AS DOUBLE PRECISION)"),
        ("tips", "CAST(sum(revenue_monthly_tip_amount) AS DOUBLE PRECISION)"),
        ("trips", "CAST(sum(total_monthly_trips) AS BIGINT)"),
        ("zones", "count(DISTINCT revenue_zone)"),
        ("first_month", "min(revenue_month)"),
        ("last_month", "max(revenue_month)"),
        ("avg_distance_sum", "CAST(sum(avg_monthly_trip_distance) AS DOUBLE PRECISION)"),
    ],
    "dim_zones": [("rows", "count(*)"), ("ids", "CAST(sum(locationid) AS BIGINT)"),
                  ("boroughs", "count(DISTINCT borough)"), ("service_zones", "count(DISTINCT service_zone)")],
    "taxi_zone_lookup": [("rows", "count(*)"), ("ids", "CAST(sum(locationid) AS BIGINT)")],
    "payment_type_lookup": [("rows", "count(*)"), ("codes", "CAST(sum(payment_type) AS BIGINT)")],
}
# The relations that are tables (Delta tables on the embedded warehouse, so DuckDB can read their files).
TABLES = ["fact_trips", "dm_monthly_zone_revenue", "dim_zones", "taxi_zone_lookup", "payment_type_lookup"]


def metric_sql(model: str, schema: str) -> str:
    cols = ", ".join(f"{expr} AS {name}" for name, expr in METRICS[model])
    return f"SELECT {cols} FROM {schema}.{model}"


def norm(value):
    """One text form for timestamps from every engine; numbers as they are."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?", value):
        return value.replace(" ", "T")
    if hasattr(value, "as_integer_ratio") and not isinstance(value, (int, float)):  # Decimal
        return float(value)
    return value


def same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b or math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def metrics_tripline(args, ws: Workspace) -> dict:
    models = list(METRICS)
    out = checked([str(args.bin), "-C", str(ws.tripline), "--json", "-q", "sql", "-e",
                   "; ".join(metric_sql(m, EMBEDDED_SCHEMA) for m in models)], "tripline sql (parity)")
    stmts = json_stdout_text(out)["statements"]
    return {m: {k: norm(v) for k, v in st["rows"][0].items()} for m, st in zip(models, stmts)}


def metrics_duckdb(args, ws: Workspace) -> dict:
    res = Duck(args.dbt_python, ws.duckdb)(queries={m: metric_sql(m, EMBEDDED_SCHEMA) for m in METRICS},
                                           read_only=True)["queries"]
    return {m: {c: norm(v) for c, v in zip(r["columns"], r["rows"][0])} for m, r in res.items()}


def metrics_pg(pg: Postgres, ws: Workspace, schema: str) -> dict:
    out = {}
    for m in METRICS:
        cols, rows = pg.query(metric_sql(m, schema), ws.pg_db)
        out[m] = {c: norm(v) for c, v in zip(cols, rows[0])}
    return out


def delta_active_files(table_dir: Path) -> list[str]:
    """The data files of a Delta table's latest version: replay the add/remove actions of its JSON commits."""
    from urllib.parse import unquote

    commits = sorted((table_dir / "_delta_log").glob("[0-9]*.json"))
    if not commits or int(commits[0].stem) != 0:
        raise VerifyError(f"{table_dir}: no JSON commit log from version 0 (checkpointed?)")
    files: dict[str, None] = {}
    for c in commits:
        for line in c.read_text().splitlines():
            if line.strip():
                action = json.loads(line)
                if "add" in action:
                    files[action["add"]["path"]] = None
                elif "remove" in action:
                    files.pop(action["remove"]["path"], None)
    return sorted(str(table_dir / unquote(p)) for p in files)


def row_diff_sql(a: str, b: str, cols: str) -> str:
    return f"SELECT count(*) FROM (SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}) d"


# Averages are compared to 6 decimals: DuckDB's avg(decimal) is a double, DataFusion's a decimal(32, 10).
DM_COLS = ("revenue_zone, revenue_month, service_type, revenue_monthly_fare, revenue_monthly_extra, "
           "revenue_monthly_mta_tax, revenue_monthly_tip_amount, revenue_monthly_tolls_amount, "
           "revenue_monthly_improvement_surcharge, revenue_monthly_total_amount, total_monthly_trips, "
           "round(CAST(avg_monthly_passenger_count AS DOUBLE), 6), round(CAST(avg_monthly_trip_distance AS DOUBLE), 6)")


def rows_embedded_vs_duckdb(args, ws: Workspace) -> dict:
    """Each Delta table of tripline's build against dbt-duckdb's table, row for row (both read by DuckDB), tripid
    (an md5 of the pickup time's text) included. Also the column names and types of both."""
    statements, queries = [], {}
    for m in TABLES:
        files = delta_active_files(ws.tripline / "lake" / "warehouse" / EMBEDDED_SCHEMA / m)
        statements.append(f"CREATE OR REPLACE TEMP VIEW tl_{m} AS SELECT * FROM read_parquet({files!r})")
        cols = {"dm_monthly_zone_revenue": DM_COLS}.get(m, "*")
        queries[f"{m}:only_tripline"] = row_diff_sql(f"tl_{m}", f"{EMBEDDED_SCHEMA}.{m}", cols)
        queries[f"{m}:only_peer"] = row_diff_sql(f"{EMBEDDED_SCHEMA}.{m}", f"tl_{m}", cols)
        queries[f"{m}:columns_tripline"] = f"SELECT column_name, column_type FROM (DESCRIBE tl_{m})"
        queries[f"{m}:columns_peer"] = f"SELECT column_name, column_type FROM (DESCRIBE {EMBEDDED_SCHEMA}.{m})"
    res = Duck(args.dbt_python, ws.duckdb)(statements, queries, read_only=True)["queries"]
    out = {}
    for m in TABLES:
        ct = [tuple(r) for r in res[f"{m}:columns_tripline"]["rows"]]
        cp = [tuple(r) for r in res[f"{m}:columns_peer"]["rows"]]
        out[m] = {
            "only_tripline": res[f"{m}:only_tripline"]["rows"][0][0],
            "only_peer": res[f"{m}:only_peer"]["rows"][0][0],
            "column_names_equal": [c[0] for c in ct] == [c[0] for c in cp],
            "type_differences": [f"{a[0]}: {a[1]} vs {b[1]}" for a, b in zip(ct, cp) if a[1] != b[1]],
        }
    return out


def rows_pg(pg: Postgres, ws: Workspace) -> dict:
    """tripline's and dbt-core's relations on PostgreSQL, row for row (EXCEPT ALL both ways), with their kind,
    column names and types."""
    a, b = PG_SCHEMAS["tripline-pg"], PG_SCHEMAS["dbt-postgres"]
    out = {}
    for m in METRICS:
        only_a = pg.query(row_diff_sql(f"{a}.{m}", f"{b}.{m}", "*"), ws.pg_db)[1][0][0]
        only_b = pg.query(row_diff_sql(f"{b}.{m}", f"{a}.{m}", "*"), ws.pg_db)[1][0][0]
        shape = {}
        for s in (a, b):
            kind = pg.query(f"SELECT table_type FROM information_schema.tables WHERE table_schema = '{s}' "
                            f"AND table_name = '{m}'", ws.pg_db)[1]
            cols = pg.query(f"SELECT column_name, data_type, numeric_precision, numeric_scale FROM "
                            f"information_schema.columns WHERE table_schema = '{s}' AND table_name = '{m}' "
                            "ORDER BY ordinal_position", ws.pg_db)[1]
            shape[s] = {"kind": kind[0][0] if kind else None, "columns": [list(c) for c in cols]}
        out[m] = {"only_tripline": only_a, "only_peer": only_b, "kind": shape[a]["kind"],
                  "kind_equal": shape[a]["kind"] == shape[b]["kind"],
                  "columns_equal": shape[a]["columns"] == shape[b]["columns"],
                  "columns_tripline": shape[a]["columns"], "columns_peer": shape[b]["columns"]}
    return out


def parity(args, ws: Workspace, pg: Postgres | None, tools: list[str]) -> tuple[dict, list[str]]:
    """Compare what the last builds left: metrics across all builds, rows between each tripline build and its peer."""
    metrics: dict = {}
    if "tripline" in tools:
        metrics["tripline"] = metrics_tripline(args, ws)
    if "dbt-duckdb" in tools:
        metrics["dbt-duckdb"] = metrics_duckdb(args, ws)
    for t in ("tripline-pg", "dbt-postgres"):
        if t in tools:
            metrics[t] = metrics_pg(pg, ws, PG_SCHEMAS[t])
    failures = []
    names = list(metrics)
    for m, spec in METRICS.items():
        for metric, _ in spec:
            values = {t: metrics[t][m].get(metric) for t in names}
            ref = values[names[0]]
            if not all(same(ref, v) for v in values.values()):
                failures.append(f"{ws.size.name}: {m}.{metric} differs: {values}")
    rows: dict = {}
    if "tripline" in tools and "dbt-duckdb" in tools:
        rows["embedded vs dbt-duckdb"] = r = rows_embedded_vs_duckdb(args, ws)
        for m, d in r.items():
            if d["only_tripline"] or d["only_peer"] or not d["column_names_equal"]:
                failures.append(f"{ws.size.name}: embedded {m} vs dbt-duckdb: {d}")
    if "tripline-pg" in tools and "dbt-postgres" in tools:
        rows["postgres: tripline vs dbt-core"] = r = rows_pg(pg, ws)
        for m, d in r.items():
            if d["only_tripline"] or d["only_peer"] or not d["kind_equal"] or not d["columns_equal"]:
                failures.append(f"{ws.size.name}: PostgreSQL {m}, tripline vs dbt-core: "
                                f"{ {k: v for k, v in d.items() if not k.startswith('columns_')} }")
    return {"metrics": metrics, "rows": rows}, failures


# ---------------------------------------------------------------------------------------------------------------
# Report


def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        info["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return info


def versions(args) -> dict:
    v = {"python": platform.python_version(), "tripline": tripline_version(args.bin)}
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        v["git"] = commit + (" (dirty)" if dirty else "")
    except OSError:
        pass
    if args.dbt_core:
        code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
                "('dbt-core', 'dbt-duckdb', 'dbt-postgres', 'duckdb', 'dbt-core-experimental-parser')}))")
        try:
            v.update(json.loads(checked([str(args.dbt_python), "-c", code], "dbt versions")))
            v["dbt_python"] = checked([str(args.dbt_python), "-c", "import platform; print(platform.python_version())"],
                                      "python version").strip()
        except (SystemExit, ValueError):
            pass
    return v


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarise(runs: list[Run]) -> dict:
    out: dict = {}
    for r in runs:
        key = f"{r.phase}|{r.size}|{r.tool}"
        s = out.setdefault(key, {"phase": r.phase, "size": r.size, "tool": r.tool, "walls": [], "ok_walls": [],
                                 "rss": [], "failed": 0})
        s["walls"].append(round(r.wall_s, 3))
        if r.ok:
            s["ok_walls"].append(r.wall_s)
            s["rss"].append(r.peak_rss_kib)
        else:
            s["failed"] += 1
    for r in runs:
        if r.ok and r.phase == "build":
            s = out[f"{r.phase}|{r.size}|{r.tool}"]
            if r.extra.get("elapsed_s") is not None:
                s.setdefault("elapsed", []).append(r.extra["elapsed_s"])
            for node, sec in (r.extra.get("node_seconds") or {}).items():
                if sec is not None:
                    s.setdefault("nodes", {}).setdefault(node, []).append(sec)
    for s in out.values():
        if "elapsed" in s:
            s["median_elapsed_s"] = med(s.pop("elapsed"))
        if "nodes" in s:
            s["median_node_s"] = {k: med(v) for k, v in s.pop("nodes").items()}
        s["median_s"] = med(s.pop("ok_walls"))
        rss = s.pop("rss")
        s["peak_rss_mib"] = max(rss) / 1024 if rss else None
    return out


def fmt(x, spec: str = ".2f", suffix: str = "") -> str:
    return "—" if x is None else f"{x:{spec}}{suffix}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


TARGETS = {"parse": 50.0, "build-small": 5.0, "build-large": 1.0}


def markdown(meta: dict, summary: dict, parity_by_size: dict, nodes: dict | None, failures: list[str]) -> str:
    m, v = meta["machine"], meta["versions"]
    sizes = meta["sizes"]
    lines = [
        f"# dbt benchmark {meta['started']}{' (smoke: tiny data, one round; times mean nothing)' if meta['smoke'] else ''}",
        "",
        f"- machine: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB RAM, Linux "
        f"{m.get('kernel')}, load average at start {' '.join(m.get('loadavg', []))}",
        f"- versions: tripline {v.get('tripline', '?')} (git {v.get('git', '?')}); dbt-core {v.get('dbt-core', '—')} "
        f"(experimental parser {v.get('dbt-core-experimental-parser', '—')}), dbt-duckdb {v.get('dbt-duckdb', '—')} "
        f"(DuckDB {v.get('duckdb', '—')}), dbt-postgres {v.get('dbt-postgres', '—')}, Python {v.get('dbt_python', '?')}"
        f"; PostgreSQL {meta.get('postgres', {}).get('server_version', '—')}",
        f"- command: `{meta['command']}`",
        "- project: examples/nyc-taxi/dbt (5 models, 2 seeds, 24 tests, 2 sources, an on-run-start hook); dbt-core "
        "gets dbt_utils from bench/dbt/dbt_utils_subset (a local package: no hub access here), tripline from its "
        "built-in macros; threads 4 on both",
        f"- medians of {meta['repeat']} rounds (parse: {meta['parse_repeat']}), tools interleaved; builds start from "
        "an empty schema; dbt-core keeps its partial-parse cache between builds",
        "",
        "| data size | months | yellow + green rows a month | rows | Parquet (MiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for s in sizes:
        lines.append(f"| {s['name']} | {s['months'][0]}..{s['months'][-1]} | {s['rows']['yellow']:,} + "
                     f"{s['rows']['green']:,} | {s['data_rows']:,} | {s['data_bytes'] / 2**20:.1f} |")
    lines += ["", "## parse", "", "| command | median (s) | peak RSS (MiB) | runs (s) | time / tripline's |",
              "|---|---:|---:|---|---:|"]
    base = summary.get(f"parse|{sizes[0]['name']}|tripline ls", {}).get("median_s")
    for key, s in summary.items():
        if s["phase"] != "parse":
            continue
        r = ratio(s["median_s"], base)
        lines.append(f"| {meta['parse_labels'].get(s['tool'], s['tool'])} | {fmt(s['median_s'], '.3f')} | "
                     f"{fmt(s['peak_rss_mib'], '.0f')} | {', '.join(f'{w:.3f}' for w in s['walls'])} | "
                     f"{'baseline' if s['tool'] == 'tripline ls' else fmt(r, '.1f', 'x')} |")
    lines += ["", "## build", "", "| data size | target | tool | median wall (s) | of which running nodes (s) | "
              "peak RSS (MiB) | runs (s) | dbt-core / tripline |", "|---|---|---|---:|---:|---:|---|---:|"]
    for s in sizes:
        for tool in meta["tools"]:
            st = summary.get(f"build|{s['name']}|{tool}")
            if not st:
                continue
            t = TOOLS[tool]
            if tool.startswith("dbt-"):
                base = summary.get(f"build|{s['name']}|{t.peer}", {}).get("median_s")
                rr = fmt(ratio(st["median_s"], base), ".2f", "x")
            else:
                rr = "baseline"
            lines.append(f"| {s['name']} | {t.engine} | {t.label} | {fmt(st['median_s'])} | "
                         f"{fmt(st.get('median_elapsed_s'))} | "
                         f"{fmt(st['peak_rss_mib'], '.0f')} | {', '.join(f'{w:.2f}' for w in st['walls'])} | {rr} |")
    lines += ["", "(of which running nodes: the elapsed time in run_results.json, from the first node to the last; the "
              "rest is process start, parsing and compiling the project and writing artifacts.)"]
    largest = sizes[-1]["name"]
    per_tool = {t: summary.get(f"build|{largest}|{t}", {}).get("median_node_s") for t in meta["tools"]}
    per_tool = {t: v for t, v in per_tool.items() if v}
    if per_tool:
        first = next(iter(per_tool.values()))
        top = sorted(first, key=lambda k: -(first[k] or 0))[:8]
        lines += ["", f"Slowest nodes of {next(iter(per_tool))}'s build, {largest} (median seconds per node; nodes run "
                  "4 at a time, so a node's time includes waiting for the CPU):", "",
                  "| node | " + " | ".join(per_tool) + " |", "|---|" + "---:|" * len(per_tool)]
        for node in top:
            lines.append(f"| {node.split('.')[2]} | "
                         + " | ".join(fmt(v.get(node)) for v in per_tool.values()) + " |")
    if meta.get("targets"):
        lines += ["", "Against the issue's targets:", "", "| target | wanted | measured | met |", "|---|---:|---:|---|"]
        for t in meta["targets"]:
            lines.append(f"| {t['what']} | ≥ {t['wanted']:g}x | {fmt(t['measured'], '.2f', 'x')} | "
                         f"{'yes' if t['met'] else 'no'} |")
    lines += ["", "## parity", ""]
    if nodes:
        lines.append(f"Nodes: tripline {nodes['tripline']}, dbt-core {nodes['dbt_core']}; models, seeds and sources "
                     f"{'have the same unique ids' if nodes['non_test_ids_equal'] else 'DIFFER'}; test unique ids "
                     f"{'are equal' if nodes['test_ids_equal'] else 'differ (names and hashes, see the JSON)'}.")
        lines.append("")
    for size, p in parity_by_size.items():
        metrics = p["metrics"]
        tools = list(metrics)
        lines += [f"{size}: per model, every metric of {', '.join(tools)}"
                  f" ({sum(len(x) for x in METRICS.values())} in all):", "",
                  "| model | rows | sum of amount | " + " | ".join(f"{t}" for t in tools[1:]) + " |",
                  "|---|---:|---:|" + "---|" * (len(tools) - 1)]
        for mname, spec in METRICS.items():
            ref = metrics[tools[0]][mname]
            amount = next((k for k in ("total_amount", "revenue", "ids", "codes") if k in ref), None)
            cells = []
            for t in tools[1:]:
                diff = [k for k, _ in spec if not same(ref.get(k), metrics[t][mname].get(k))]
                cells.append("all equal" if not diff else "DIFFER: " + ", ".join(diff))
            amount_text = f"{ref[amount]:,.2f}" if isinstance(ref.get(amount), float) else f"{ref.get(amount)}"
            lines.append(f"| {mname} | {ref['rows']:,} | {amount_text} | " + " | ".join(cells) + " |")
        for label, r in p["rows"].items():
            bad = {mm: d for mm, d in r.items() if d["only_tripline"] or d["only_peer"]}
            notes = sorted({x for d in r.values() for x in d.get("type_differences", [])})
            shape_bad = [mm for mm, d in r.items() if not d.get("columns_equal", True) or not d.get("kind_equal", True)
                         or not d.get("column_names_equal", True)]
            lines.append("")
            lines.append(f"Row for row, {label}: {len(r)} relations, "
                         + ("every row equal" if not bad else f"DIFFERENT rows in {sorted(bad)}")
                         + ("" if not shape_bad else f"; columns differ in {shape_bad}")
                         + (f"; column types differ (values equal): {'; '.join(notes)}" if notes else "")
                         + ("." if label.startswith("postgres") else
                            " (surrogate trip ids included)."))
        lines.append("")
    if meta.get("notes"):
        lines += [f"Note: {n}" for n in meta["notes"]] + [""]
    if failures:
        lines += ["## failures", ""] + [f"- {f}" for f in failures]
    return "\n".join(lines).rstrip() + "\n"


def targets(summary: dict, sizes: list[dict]) -> list[dict]:
    out = []
    base = summary.get(f"parse|{sizes[0]['name']}|tripline ls", {}).get("median_s")
    core = summary.get(f"parse|{sizes[0]['name']}|dbt-core parse", {}).get("median_s")
    if base and core:
        out.append({"what": "parse: dbt parse (no cache) / tripline dbt ls", "wanted": TARGETS["parse"],
                    "measured": core / base, "met": core / base >= TARGETS["parse"]})
    for i, s in enumerate(sizes):
        key = "build-small" if i == 0 else "build-large"
        for tool, peer in (("dbt-duckdb", "tripline"), ("dbt-postgres", "tripline-pg")):
            a = summary.get(f"build|{s['name']}|{tool}", {}).get("median_s")
            b = summary.get(f"build|{s['name']}|{peer}", {}).get("median_s")
            if a and b:
                out.append({"what": f"build, {s['name']}: {tool} / {peer}", "wanted": TARGETS[key],
                            "measured": a / b, "met": a / b >= TARGETS[key]})
    return out


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=None,
                    help="tripline binary (default: $CARGO_TARGET_DIR/release-fast/tripline, else release/)")
    ap.add_argument("--dbt-venv", type=Path, default=DEFAULT_VENV,
                    help="the virtualenv with dbt-core, dbt-duckdb and dbt-postgres (default: $BENCH_DBT_VENV "
                         "or /opt/dbt-venv)")
    ap.add_argument("--sizes", default="two-months,year", help="data sizes to build: two-months, year")
    ap.add_argument("--yellow-rows-per-month", type=int, default=300_000)
    ap.add_argument("--green-rows-per-month", type=int, default=60_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3, help="build rounds per size")
    ap.add_argument("--parse-repeat", type=int, default=5)
    ap.add_argument("--tools", default="tripline,dbt-duckdb,tripline-pg,dbt-postgres")
    ap.add_argument("--pg-url", default=os.environ.get("TRIPLINE_TEST_PG_URL"),
                    help="PostgreSQL server (default: $TRIPLINE_TEST_PG_URL, else a throwaway cluster)")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--lenient-test-ids", action="store_true",
                    help="report different test unique ids as a note, not a failure (binaries from before tripline "
                         "named generic tests as dbt-core does)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (projects, lake, DuckDB file)")
    ap.add_argument("--smoke", action="store_true",
                    help="two tiny months, one round, every tool once, parity checked (CI): checks, not speed")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.sizes, args.repeat, args.parse_repeat = "smoke", 1, 1
        args.yellow_rows_per_month, args.green_rows_per_month = 2_000, 500
    if args.bin is None:
        for profile in ("release-fast", "release"):
            if (DEFAULT_TARGET / profile / "tripline").exists():
                args.bin = DEFAULT_TARGET / profile / "tripline"
                break
        else:
            args.bin = DEFAULT_TARGET / "release" / "tripline"
    if not args.bin.exists():
        print(f"error: no tripline binary at {args.bin} (build it, or pass --bin)", file=sys.stderr)
        return 2
    args.bin = args.bin.resolve()
    args.tool_list = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in args.tool_list if t not in TOOLS]
    if unknown:
        print(f"error: unknown tools {unknown}; choose from {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    args.dbt, args.dbt_python = args.dbt_venv / "bin" / "dbt", args.dbt_venv / "bin" / "python"
    args.dbt_core = any(t.startswith("dbt-") for t in args.tool_list)
    if args.dbt_core and not args.dbt.exists():
        print(f"error: no dbt at {args.dbt}: install the peers (see this script's --help, or scripts/test), pass "
              "--dbt-venv, or run only --tools tripline,tripline-pg", file=sys.stderr)
        return 2
    wants_pg = any(TOOLS[t].engine == "postgres" for t in args.tool_list)
    size_defs = {
        "smoke": ("2024-01..2024-02",),
        "two-months": ("2024-01..2024-02",),
        "year": ("2024-01..2024-12",),
    }
    sizes = []
    for name in (s.strip() for s in args.sizes.split(",")):
        if name not in size_defs:
            print(f"error: unknown size {name!r} (two-months, year)", file=sys.stderr)
            return 2
        sizes.append(Size(name, months_range(size_defs[name][0]),
                          {"yellow": args.yellow_rows_per_month, "green": args.green_rows_per_month}))

    out_dir = REPO / "bench" / "out" / ("smoke" if args.smoke else "")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = out_dir / f"dbt-work-{stamp}"
    logs = out_dir / "logs" / f"dbt-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    meta = {"started": stamp, "command": shlex.join([sys.executable, *sys.argv]), "smoke": args.smoke,
            "repeat": args.repeat, "parse_repeat": args.parse_repeat, "tools": args.tool_list,
            "machine": machine_info(), "versions": versions(args), "notes": notes, "prep": []}
    runs: list[Run] = []
    failures: list[str] = []
    parity_by_size: dict = {}
    nodes = None
    with Postgres(args.pg_url) if wants_pg else _NoPostgres() as pg:
        pg = pg if wants_pg else None
        if pg:
            meta["postgres"] = pg.describe()
        meta["sizes"] = []
        workspaces = []
        for size in sizes:
            ws = prepare(args, size, work, pg, meta["prep"])
            workspaces.append(ws)
            meta["sizes"].append({"name": size.name, "months": size.months, "rows": size.rows,
                                  "data_rows": ws.data["rows"], "data_bytes": ws.data["bytes"]})

        # Parse: once, on the first size's projects (parsing does not read the data).
        ws0 = workspaces[0]
        cmds = parse_commands(args, ws0)
        meta["parse_labels"] = {c[0]: c[1] for c in cmds}
        reference: dict = {}
        for rnd in range(1, args.parse_repeat + 1):
            for tool, label, cmd, env, cwd in cmds:
                stem = logs / f"parse-{tool.replace(' ', '-')}-r{rnd}"
                r = run_measured(cmd, stem, args.timeout, env, cwd)
                r.tool, r.phase, r.size, r.round = tool, "parse", ws0.size.name, rnd
                if r.exit_code != 0 or r.timed_out:
                    r.error = f"exit {r.exit_code}{' (timed out)' if r.timed_out else ''}: {tail(r.stderr)}{tail(r.stdout)}"
                else:
                    try:
                        if tool == "tripline ls" and not reference:
                            text = Path(r.stdout).read_text()
                            reference["ls_lines"] = sorted(ln.strip() for ln in text.splitlines() if ln.strip())
                        verify_parse(ws0, tool, r, reference)
                        r.ok = True
                    except (VerifyError, OSError, ValueError, KeyError) as e:
                        r.error = str(e)
                runs.append(r)
                log(f"parse round {rnd}: {tool}: {r.wall_s:.3f} s, {r.peak_rss_kib / 1024:.0f} MiB"
                    + ("" if r.ok else f"  FAILED: {r.error}"))
                if not r.ok:
                    failures.append(f"parse {tool} round {rnd}: {r.error}")
        if args.dbt_core and (ws0.dbt_core / "target-parse" / "manifest.json").is_file():
            nodes = node_parity(args, ws0)
            if not nodes["ok"]:
                failures.append(f"the tools see different nodes: {nodes}")
            if not nodes["test_ids_equal"]:
                msg = (f"test unique ids differ between tripline and dbt-core (names only in tripline: "
                       f"{nodes['test_names_only_tripline']}, only in dbt-core: {nodes['test_names_only_dbt_core']})")
                (notes if args.lenient_test_ids else failures).append(msg)

        # Builds, size by size, tools interleaved within each round.
        for ws in workspaces:
            for rnd in range(1, args.repeat + 1):
                for tool in args.tool_list:
                    reset(args, ws, pg, tool)
                    cmd, env, cwd = build_command(args, ws, pg, tool)
                    stem = logs / f"build-{ws.size.name}-{tool}-r{rnd}"
                    r = run_measured(cmd, stem, args.timeout, env, cwd)
                    r.tool, r.phase, r.size, r.round = tool, "build", ws.size.name, rnd
                    if r.exit_code != 0 or r.timed_out:
                        r.error = (f"exit {r.exit_code}{' (timed out)' if r.timed_out else ''}: "
                                   f"{tail(r.stdout)}\n{tail(r.stderr)}")
                    else:
                        try:
                            verify_build(ws, tool, r)
                            r.ok = True
                        except (VerifyError, OSError, ValueError) as e:
                            r.error = str(e)
                    runs.append(r)
                    log(f"{ws.size.name} round {rnd}: {tool}: {r.wall_s:.2f} s, {r.peak_rss_kib / 1024:.0f} MiB"
                        + ("" if r.ok else f"  FAILED: {r.error}"))
                    if not r.ok:
                        failures.append(f"build {ws.size.name} {tool} round {rnd}: {r.error}")
            built = [t for t in args.tool_list
                     if any(r.ok and r.tool == t and r.size == ws.size.name and r.phase == "build" for r in runs)]
            if len(built) >= 2:
                log(f"{ws.size.name}: parity of {', '.join(built)}")
                try:
                    p, bad = parity(args, ws, pg, built)
                except (VerifyError, SystemExit) as e:
                    p, bad = {"metrics": {}, "rows": {}}, [f"{ws.size.name}: parity check failed: {e}"]
                parity_by_size[ws.size.name] = p
                failures += bad
                for b in bad:
                    log(f"PARITY: {b}")
            else:
                failures.append(f"{ws.size.name}: fewer than two successful builds, no parity check")

    summary = summarise(runs)
    meta["targets"] = targets(summary, meta["sizes"])
    report = markdown(meta, summary, {k: v for k, v in parity_by_size.items() if v["metrics"]}, nodes, failures)
    stem = out_dir / f"dbt-{stamp}"
    stem.with_suffix(".md").write_text(report)
    stem.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "runs": [asdict(r) for r in runs], "parity": parity_by_size,
         "nodes": nodes, "failures": failures}, indent=2, default=str))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(report)
    return 1 if failures else 0


class _NoPostgres:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
