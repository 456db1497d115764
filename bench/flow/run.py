#!/usr/bin/env python3
"""Orchestrator overhead benchmark: a flow of N trivial tasks in tripline against the same flow in Prefect 3.

What is measured is the orchestrator itself: each task does nothing but return its input, so the time is the
engine's (scheduling, recording every task run and attempt in its state store, passing outputs). For tripline the
tasks are of the built-in `echo` type (a `shell` task would measure process spawning instead); for Prefect they are
`@task` functions submitted from a `@flow`, against Prefect's ephemeral local server.

Every run starts from an empty state store (tripline: a fresh <project>/.tripline; Prefect: a fresh PREFECT_HOME)
and is verified: tripline's run must end Completed with N Completed tasks, Prefect's flow must return all N results.
Per run: wall time from spawn to reap (interpreter start and imports count for Prefect, process start for
tripline) and peak RSS of the process tree (GNU time). Per-task overhead is (wall(N) - wall(1)) / (N - 1), from the
medians, so process start and store creation are not charged to the tasks.

    cargo build --profile release-fast -p tripline-cli && python3 bench/flow/run.py
    python3 bench/flow/run.py --smoke --bin "$CARGO_TARGET_DIR/debug/tripline"     # what CI runs

Writes bench/out/flow-<timestamp>.md and .json (bench/out/smoke/... with --smoke) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "tripline-target")
GNU_TIME = Path("/usr/bin/time")


def log(msg: str) -> None:
    print(f"[flow-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Run:
    tool: str
    tasks: int
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


def run_measured(cmd: list[str], log_stem: Path, timeout_s: float, env: dict, cwd: Path) -> tuple[float, int, int, bool]:
    """Run `cmd` in its own process group: (wall seconds, peak RSS KiB of the tree via GNU time, exit code,
    timed out)."""
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
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss
    if use_time:
        try:
            peak = int(rss_path.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            peak = 0
    return wall, peak, proc.returncode, timed_out.is_set()


def tail(path: str, lines: int = 12) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------------------------
# The two tools


def tripline_flow_yaml(n: int) -> str:
    """N independent `echo` tasks: every task returns its input."""
    lines = [f"name: bench_{n}", "description: flow overhead benchmark (echo tasks)", "tasks:"]
    for i in range(n):
        lines += [f"  - id: t{i}", "    type: echo", f"    value: {i}"]
    return "\n".join(lines) + "\n"


def run_tripline(bin_path: Path, n: int, rnd: int, work: Path, logs: Path, timeout_s: float) -> Run:
    project = work / "tripline"
    flows = project / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    flow_file = flows / f"bench_{n}.yaml"
    if not flow_file.exists():
        for old in flows.glob("*.yaml"):
            old.unlink()
        flow_file.write_text(tripline_flow_yaml(n))
    shutil.rmtree(project / ".tripline", ignore_errors=True)
    stem = logs / f"tripline-{n}-r{rnd}"
    cmd = [str(bin_path), "-C", str(project), "-q", "flow", "run", f"bench_{n}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPLINE_")}
    wall, peak, code, timed_out = run_measured(cmd, stem, timeout_s, env, REPO)
    run = Run("tripline", n, rnd, wall, peak, code, timed_out, str(stem.with_suffix(".out")),
              str(stem.with_suffix(".err")))
    if code != 0 or timed_out:
        run.error = f"exit {code}{' (timed out)' if timed_out else ''}: {tail(run.stderr)}"
        return run
    # Verify from the state store the run wrote: one run, Completed, N Completed tasks.
    show = subprocess.run([str(bin_path), "-C", str(project), "--json", "flow", "runs"], capture_output=True,
                          text=True, env=env)
    try:
        runs = json.loads(show.stdout)
        run_id = runs[0]["id"]
        detail = json.loads(subprocess.run([str(bin_path), "-C", str(project), "--json", "flow", "show", run_id],
                                           capture_output=True, text=True, env=env).stdout)
        done = sum(1 for t in detail["tasks"] if t["state"] == "Completed")
        values = sum(t["output"]["value"] for t in detail["tasks"])
    except (ValueError, KeyError, IndexError) as e:
        run.error = f"cannot read the run back: {e}: {show.stderr[-500:]}"
        return run
    if detail["run"]["state"] != "Completed" or done != n or values != n * (n - 1) // 2:
        run.error = f"run {run_id}: {detail['run']['state']}, {done} of {n} tasks completed, sum {values}"
        return run
    run.ok = True
    run.extra["run_id"] = run_id
    return run


def prefect_available() -> bool:
    return importlib.util.find_spec("prefect") is not None


def run_prefect(n: int, rnd: int, work: Path, logs: Path, timeout_s: float) -> Run:
    home = work / "prefect-home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": "",
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        # The ephemeral server's default 20 s start-up limit is too short on a loaded 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    })
    stem = logs / f"prefect-{n}-r{rnd}"
    cmd = [sys.executable, str(HERE / "prefect_flow.py"), str(n)]
    wall, peak, code, timed_out = run_measured(cmd, stem, timeout_s, env, work)
    run = Run("prefect", n, rnd, wall, peak, code, timed_out, str(stem.with_suffix(".out")),
              str(stem.with_suffix(".err")))
    if code != 0 or timed_out:
        run.error = f"exit {code}{' (timed out)' if timed_out else ''}: {tail(run.stderr)}"
        return run
    try:
        result = json.loads(Path(run.stdout).read_text().strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        run.error = f"no result line: {e}"
        return run
    if result.get("results") != n:
        run.error = f"{result.get('results')} of {n} results"
        return run
    run.ok = True
    return run


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


def versions(bin_path: Path) -> dict:
    v = {"python": platform.python_version()}
    for pkg in ("prefect", "fastapi"):
        try:
            v[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        v["tripline"] = subprocess.run([str(bin_path), "--version"], capture_output=True, text=True).stdout.strip()
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        v["git"] = commit + (" (dirty)" if dirty else "")
    except OSError:
        pass
    return v


def summarise(runs: list[Run], sizes: list[int], tools: list[str]) -> dict:
    out: dict = {}
    for tool in tools:
        per_size = {}
        for n in sizes:
            mine = [r for r in runs if r.tool == tool and r.tasks == n]
            good = [r for r in mine if r.ok]
            s = {"runs": len(mine), "ok": bool(mine) and len(good) == len(mine),
                 "wall_s": [round(r.wall_s, 3) for r in mine]}
            if good:
                s["median_s"] = statistics.median(r.wall_s for r in good)
                s["peak_rss_mib"] = max(r.peak_rss_kib for r in good) / 1024
            per_size[n] = s
        base = per_size.get(1, {}).get("median_s")
        for n, s in per_size.items():
            if n > 1 and base is not None and "median_s" in s:
                s["per_task_ms"] = max(s["median_s"] - base, 0.0) / (n - 1) * 1000
        out[tool] = per_size
    return out


def markdown(meta: dict, summary: dict, failures: list[str]) -> str:
    m, v = meta["machine"], meta["versions"]
    lines = [
        f"# flow benchmark {meta['started']}",
        "",
        f"- machine: {m.get('nproc')} CPUs ({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB RAM, Linux "
        f"{m.get('kernel')}, load average at start {' '.join(m.get('loadavg', []))}",
        f"- versions: tripline {v.get('tripline', '?')} (git {v.get('git', '?')}), Prefect {v.get('prefect', 'absent')}"
        f" (fastapi {v.get('fastapi', '-')}), Python {v['python']}",
        f"- command: `{meta['command']}`",
        f"- tasks: trivial (return the input); tripline `echo` tasks, Prefect `@task` submitted from a `@flow` on the "
        f"ephemeral server; fresh state store per run; median of {meta['repeat']}",
        "",
        "| tool | tasks | median wall (s) | per-task overhead (ms) | peak RSS (MiB) | runs (s) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for tool, per_size in summary.items():
        for n, s in per_size.items():
            med = s.get("median_s")
            per = s.get("per_task_ms")
            rss = s.get("peak_rss_mib")
            lines.append(
                f"| {tool} | {n:,} | {'—' if med is None else f'{med:.2f}'} | "
                f"{'—' if per is None else f'{per:.3f}'} | {'—' if rss is None else f'{rss:.0f}'} | "
                f"{', '.join(f'{w:.2f}' for w in s['wall_s'])} |")
    t, p = summary.get("tripline", {}), summary.get("prefect", {})
    ratios = []
    for n in sorted(set(t) & set(p)):
        if n > 1 and t[n].get("per_task_ms") and p[n].get("per_task_ms"):
            ratios.append(f"{n:,} tasks: Prefect's per-task overhead is {p[n]['per_task_ms'] / t[n]['per_task_ms']:.0f}x "
                          f"tripline's; wall time {p[n]['median_s'] / t[n]['median_s']:.1f}x")
    if ratios:
        lines += ["", "Ratios: " + "; ".join(ratios) + "."]
    if meta.get("notes"):
        lines += [""] + [f"Note: {n}" for n in meta["notes"]]
    if failures:
        lines += ["", "## failures", ""] + [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, default=None,
                    help="tripline binary (default: $CARGO_TARGET_DIR/release-fast/tripline, else release/)")
    ap.add_argument("--sizes", default="1,100,10000", help="flow sizes in tasks (1 is the baseline)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tools", default="tripline,prefect")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--smoke", action="store_true", help="sizes 1 and 20, one round (CI): checks, not speed")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.sizes, args.repeat = "1,20", 1
    sizes = sorted({int(s) for s in args.sizes.split(",")} | {1})
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bin_path = args.bin
    if bin_path is None:
        for profile in ("release-fast", "release"):
            if (DEFAULT_TARGET / profile / "tripline").exists():
                bin_path = DEFAULT_TARGET / profile / "tripline"
                break
        else:
            bin_path = DEFAULT_TARGET / "release" / "tripline"
    notes = []
    if "tripline" in tools and not bin_path.exists():
        print(f"error: no tripline binary at {bin_path} (build it, or pass --bin)", file=sys.stderr)
        return 2
    if "prefect" in tools and not prefect_available():
        msg = "Prefect is not importable (pip install prefect): its runs are skipped"
        print(f"note: {msg}", file=sys.stderr)
        notes.append(msg)
        tools.remove("prefect")
    out_dir = REPO / "bench" / "out" / ("smoke" if args.smoke else "")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = out_dir / f"flow-work-{stamp}"
    logs = out_dir / "logs" / f"flow-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    meta = {"started": stamp, "command": shlex.join([sys.executable, *sys.argv]), "repeat": args.repeat,
            "sizes": sizes, "machine": machine_info(), "versions": versions(bin_path), "notes": notes}
    runs: list[Run] = []
    failures: list[str] = []
    for rnd in range(1, args.repeat + 1):
        for n in sizes:
            for tool in tools:
                log(f"round {rnd}: {tool}, {n} tasks")
                if tool == "tripline":
                    r = run_tripline(bin_path, n, rnd, work, logs, args.timeout)
                else:
                    r = run_prefect(n, rnd, work, logs, args.timeout)
                runs.append(r)
                log(f"  {r.wall_s:.2f} s, {r.peak_rss_kib / 1024:.0f} MiB" + ("" if r.ok else f"  FAILED: {r.error}"))
                if not r.ok:
                    failures.append(f"{tool} {n} tasks round {rnd}: {r.error}")
    summary = summarise(runs, sizes, tools)
    report = markdown(meta, summary, failures)
    stem = out_dir / f"flow-{stamp}"
    stem.with_suffix(".md").write_text(report)
    stem.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "runs": [asdict(r) for r in runs], "failures": failures}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(report)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
