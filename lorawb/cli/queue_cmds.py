"""`lorawb queue [list|add|move|pause|resume|cancel|log]`: the machine's job queue (lorawb.queue).

``lorawb queue add -- COMMAND ...`` queues any command that has a ``--queue`` option
(``train``, ``resume``, ``matrix run``, ``reg generate``): it is the same as adding ``--queue``
to it. Every queue command starts the runner when there is work and none is running (after a
reboot or a kill, `lorawb queue` picks the queue up where it was).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from lorawb.words import plural


def register(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("queue", help="the machine's job queue: list, add, move, pause, resume, cancel, log")
    _list_options(top)
    top.set_defaults(func=cmd_list)
    qsub = top.add_subparsers(dest="queue_command", metavar="ACTION")

    p = qsub.add_parser("list", help="the queued and running jobs (the default action)")
    _list_options(p)
    p.set_defaults(func=cmd_list)

    p = qsub.add_parser(
        "add",
        help="queue a command: lorawb queue add -- train --set train.max_steps=500",
        usage="lorawb queue add -- COMMAND [ARGS ...]",
    )
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    p.set_defaults(func=cmd_add)

    p = qsub.add_parser("move", help="put a queued job at a position (1: the next to start)")
    p.add_argument("job", metavar="ID")
    p.add_argument("position", type=int, metavar="POS")
    p.set_defaults(func=cmd_move)

    p = qsub.add_parser("pause", help="start no new jobs (the running ones go on)")
    p.set_defaults(func=cmd_pause, paused=True)
    p = qsub.add_parser("resume", help="start queued jobs again")
    p.set_defaults(func=cmd_pause, paused=False)

    p = qsub.add_parser("cancel", help="take queued jobs out; a running one saves and stops")
    p.add_argument("jobs", nargs="+", metavar="ID")
    p.set_defaults(func=cmd_cancel)

    p = qsub.add_parser("log", help="what the queue runner did (starts, ends, requeues)")
    p.add_argument("-n", "--lines", type=int, default=30, help="the last N lines (default 30)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    p.set_defaults(func=cmd_log)


def _list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true", help="also the jobs that ended")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_queue_option(p: argparse.ArgumentParser) -> None:
    """``--queue`` on a command that can be queued (its handler calls lorawb.queue when it is set)."""
    p.add_argument(
        "--queue",
        action="store_true",
        help="add it to this machine's job queue (`lorawb queue` lists it) instead of starting it now",
    )


def report_queued(job: Any) -> None:
    """stdout: the job id alone (`jid=$(lorawb train --queue)`); the terminal gets where it stands."""
    from lorawb.queue import store

    q = store.load()
    now = q.get(job.id)
    pos = q.position(now)
    ahead = f"position {pos} of {len(q.pending)}" if pos else now.state
    print(job.id, flush=True)
    where = " on Slurm" if job.executor == "slurm" else ""
    paused = "; the queue is paused (`lorawb queue resume`)" if q.paused else ""
    print(f"queued as job {job.id}{where} ({ahead}){paused}; `lorawb queue` lists the queue", file=sys.stderr)


# --- commands ---------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from lorawb.queue import store
    from lorawb.queue.rows import RowMaker
    from lorawb.queue.runner import ensure_runner, runner_dir
    from lorawb.train.monitor import format_duration

    ensure_runner()
    q = store.load()
    rows = RowMaker().rows(q, ended=args.all)
    if args.json:
        data = {"paused": q.paused, "runner": runner_dir().is_alive(), "jobs": [r.as_dict() for r in rows]}
        print(json.dumps(data, indent=2))
        return 0
    runner = "running" if runner_dir().is_alive() else "not running"
    head = f"queue: {plural(len(q.pending), 'job')} waiting, {len(q.running)} running; runner {runner}"
    print(head + ("; PAUSED (`lorawb queue resume`)" if q.paused else ""))
    if not rows:
        print("  nothing queued; `lorawb train --queue`, `lorawb queue add -- COMMAND` or `lorawb sweep` add jobs")
        return 0
    print(f"{'ID':>4} {'POS':>3}  {'STATE':<9} {'WHERE':<12} {'PROGRESS':<16} {'ETA':>8}  JOB")
    for r in rows:
        if r.state == "queued":
            eta = ("in " + format_duration(r.starts_in)) if r.starts_in is not None else "-"
        else:
            eta = format_duration(r.eta)
        title = f"{r.title} · {r.project}" + (f" (after {r.after})" if r.after and r.state == "queued" else "")
        print(
            f"{r.id:>4} {r.position or '':>3}  {r.state:<9} {r.where[:12]:<12} {r.progress[:16]:<16} {eta:>8}  {title}"
        )
        if r.error and r.state in ("failed", "cancelled") and r.error != "cancelled":
            print(f"{'':>10}{r.error}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from lorawb.cli import parse
    from lorawb.errors import LorawbError

    words = list(args.words)
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise LorawbError("nothing to queue", hint="usage: lorawb queue add -- train [options]")
    inner = parse(words)
    if not hasattr(inner, "queue"):
        raise LorawbError(
            f"`lorawb {' '.join(words[:2])}` cannot be queued",
            hint="queueable: train, resume, matrix run, reg generate (and sweep, which queues its own jobs)",
        )
    inner.queue = True
    return int(inner.func(inner) or 0)


def cmd_move(args: argparse.Namespace) -> int:
    from lorawb.queue import move

    pos = move(args.job, args.position)
    print(f"job {args.job} is now at position {pos}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    from lorawb.queue import set_paused

    set_paused(args.paused)
    print("queue paused: no new job starts (running jobs go on)" if args.paused else "queue resumed")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from lorawb.queue import cancel

    for job_id in args.jobs:
        print(cancel(job_id))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from lorawb.queue.runner import runner_dir

    path = runner_dir().log
    if not path.is_file():
        print(f"no queue log yet ({path})")
        return 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()
        for line in lines[-args.lines :] if args.lines > 0 else lines:
            sys.stdout.write(line)
        sys.stdout.flush()
        while args.follow:
            line = fh.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.5)
    return 0
