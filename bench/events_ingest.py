"""How fast the Train tab's monitor ingests and follows events.jsonl.

Prints:
  1. a cold ingest of a 100,000-event file (time, events/s), then one chart snapshot
     (downsampling every series to 400 points) and an EMA-strength change;
  2. the per-poll cost of following a live file: a writer thread appends 20 events/s
     (DESIGN's fast trainer) while a follower polls every 0.25 s, as the app does;
     the cost of a poll that finds nothing new, and one that ingests new lines.

    PYTHONPATH=. python bench/events_ingest.py [--events 100000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorawb.train.events import EventWriter  # noqa: E402
from lorawb.train.monitor import RunMonitor  # noqa: E402
from lorawb.train.runfolder import RunFolder  # noqa: E402


def write_events(path: Path, n: int) -> None:
    """A realistic mix: step events, a sample group every 500 steps, a checkpoint every 2,000."""
    t0 = time.time() - n
    lines = []
    for s in range(1, n + 1):
        lines.append(
            json.dumps(
                {
                    "type": "step",
                    "step": s,
                    "epoch": s // 1000,
                    "loss": 0.1 + 0.05 * ((s * 7919) % 100) / 100,
                    "lr": 1e-4,
                    "it_s": 3.2,
                    "mem_gb": 11.5,
                    "time": t0 + s,
                },
                separators=(",", ":"),
            )
        )
        if s % 500 == 0:
            for i in range(4):
                lines.append(
                    json.dumps({"type": "sample", "step": s, "prompt": f"p{i}", "path": f"samples/{s}-{i}.png"})
                )
        if s % 2000 == 0:
            lines.append(json.dumps({"type": "checkpoint", "step": s, "path": f"checkpoints/x-{s}.safetensors"}))
    path.write_text("\n".join(lines) + "\n")


def cold_ingest(root: Path, n: int) -> None:
    run = RunFolder(root / "runs" / "cold").create()
    write_events(run.events, n)
    size_mb = run.events.stat().st_size / 2**20
    m = RunMonitor(run)
    t = time.perf_counter()
    count = m.catch_up()
    dt = time.perf_counter() - t
    print(f"cold ingest: {count:,} events ({size_mb:.1f} MB) in {dt:.3f} s = {count / dt:,.0f} events/s")
    m.snapshot(points=400)  # the first one also reads config.toml for the step total
    t = time.perf_counter()
    m.snapshot(points=400)
    print(f"chart snapshot (4 series -> 400 points each): {(time.perf_counter() - t) * 1e3:.2f} ms")
    t = time.perf_counter()
    m.set_smoothing(0.95)
    print(f"change EMA strength (recompute {len(m.fold.loss):,} points): {(time.perf_counter() - t) * 1e3:.1f} ms")


def follow_live(root: Path, seconds: float, rate: float, interval: float) -> None:
    run = RunFolder(root / "runs" / "live").create()
    write_events(run.events, 100_000)
    m = RunMonitor(run)
    m.catch_up()
    w = EventWriter(run.events)
    stop = threading.Event()

    def writer() -> None:
        s = 100_001
        while not stop.is_set():
            w.step(s, 100, 0.1, 1e-4, rate, mem_gb=11.5)
            s += 1
            time.sleep(1 / rate)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    busy, idle, got = [], [], 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        n = m.poll()
        dt = time.perf_counter() - t
        (busy if n else idle).append(dt)
        got += n
        t = time.perf_counter()
        m.snapshot(points=400)
        snap = time.perf_counter() - t
        time.sleep(max(0.0, interval - dt - snap))
    stop.set()
    th.join()
    w.close()
    t = time.perf_counter()
    for _ in range(200):
        m.poll()
    nothing = (time.perf_counter() - t) / 200
    print(f"following at {rate:g} events/s, poll every {interval:g} s for {seconds:g} s: {got} events ingested")
    if busy:
        print(f"  poll with new lines: median {statistics.median(busy) * 1e3:.3f} ms, max {max(busy) * 1e3:.3f} ms")
    print(f"  poll with nothing new: {nothing * 1e6:.0f} us (stat + lock probe, file of 100,000 events)")
    t = time.perf_counter()
    m.snapshot(points=400)
    print(f"  snapshot for a redraw: {(time.perf_counter() - t) * 1e3:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=20.0, help="events per second written by the fake trainer")
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between polls")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cold_ingest(Path(tmp), args.events)
        follow_live(Path(tmp), args.seconds, args.rate, args.interval)


if __name__ == "__main__":
    main()
