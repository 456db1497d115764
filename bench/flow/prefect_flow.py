"""Prefect 3 side of the flow benchmark: one flow of N trivial tasks, each returning its input.

    python3 bench/flow/prefect_flow.py N

Runs against Prefect's ephemeral local server (no server to start, nothing on the network); PREFECT_HOME is set by
run.py to a fresh directory per run so every run starts from the same empty database, as tripline's does. The
tasks are submitted to Prefect's default task runner (a thread pool), the way a flow fans out independent work,
and the flow waits for every result. Prints one JSON line: {"tasks": N, "results": n, "sum": s}.
"""

from __future__ import annotations

import json
import sys

from prefect import flow, task


@task
def noop(i: int) -> int:
    return i


@flow(name="bench", log_prints=False)
def bench(n: int) -> list[int]:
    futures = [noop.submit(i) for i in range(n)]
    return [f.result() for f in futures]


def main() -> int:
    n = int(sys.argv[1])
    results = bench(n)
    print(json.dumps({"tasks": n, "results": len(results), "sum": sum(results)}))
    return 0 if len(results) == n and sum(results) == n * (n - 1) // 2 else 1


if __name__ == "__main__":
    sys.exit(main())
