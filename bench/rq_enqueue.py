"""RQ's enqueue rate, for a peer row: run under an interpreter that has rq (not the project venv).

Several processes each call `Queue.enqueue` in a loop for DURATION seconds against one Redis, and
the parent prints one JSON line: ok, window_s, processes. No worker runs: this measures enqueue.

    /usr/bin/python3 -m bench.rq_enqueue --port 6379 --duration-s 5 --processes 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time

JOB_FUNCTION = "bench.rq_enqueue.noop"


def noop(url: str, params: dict[str, str]) -> None:
    """The job a worker would run; never runs here."""


def _enqueue_loop(
    port: int, start_at_s: float, stop_at_s: float, results: multiprocessing.Queue[int]
) -> None:
    from redis import Redis  # type: ignore[import-not-found]
    from rq import Queue  # type: ignore[import-not-found]

    queue = Queue("bench", connection=Redis(host="127.0.0.1", port=port))
    count = 0
    time.sleep(max(0.0, start_at_s - time.time()))
    while time.time() < stop_at_s:
        queue.enqueue(JOB_FUNCTION, "http://127.0.0.1:9/w", {"x": "1"})
        count += 1
    results.put(count)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rq_enqueue", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    start_at_s = time.time() + 0.5
    stop_at_s = start_at_s + args.duration_s
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(
            target=_enqueue_loop, args=(args.port, start_at_s, stop_at_s, results)
        )
        for _ in range(args.processes)
    ]
    for process in processes:
        process.start()
    total = sum(results.get(timeout=args.duration_s + 60) for _ in processes)
    for process in processes:
        process.join(timeout=10)
    print(json.dumps({"ok": total, "window_s": args.duration_s, "processes": args.processes}))


if __name__ == "__main__":
    main()
