"""`lorawb watch RUN` (a plain-text live monitor) and `lorawb compare RUN_A RUN_B`.

Both read the run folders only (lorawb.train.monitor / compare); they never touch the
training process, so watching can start, stop and restart freely over SSH.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lorawb.cli import RUN_HELP, add_project_arg, is_project, split_words
from lorawb.train.monitor import MonitorView, RunMonitor, format_duration, format_size
from lorawb.train.runfolder import RunFolder, find_run

EXIT_CODES = {"finished": 0, "stopped": 0, "failed": 1, "dead": 1}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="follow a training run as plain text; exits when the run ends",
        usage="lorawb watch [PROJECT] [RUN] [options]",
    )
    p.add_argument("words", nargs="*", metavar="[PROJECT] [RUN]", help=f"RUN: {RUN_HELP} (default 'last')")
    add_project_arg(p, positional=False)
    p.set_defaults(normalize=_split_watch)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--once", action="store_true", help="print the current state once and exit")
    p.add_argument(
        "--smoothing", type=float, default=0.9, help="EMA strength of the smoothed loss, 0..0.999 (default 0.9)"
    )
    p.set_defaults(func=cmd_watch)

    c = sub.add_parser(
        "compare",
        help="config and dataset differences and loss figures of two runs",
        usage="lorawb compare [PROJECT] A B [options]",
    )
    c.add_argument("words", nargs="+", metavar="[PROJECT] A B", help=f"two runs, each {RUN_HELP}")
    add_project_arg(c, positional=False)
    c.set_defaults(normalize=_split_compare)
    c.add_argument("--all", action="store_true", help="list every config key, not only the ones that differ")
    c.set_defaults(func=cmd_compare)


def _is_run_folder(word: str) -> bool:
    p = Path(word)
    return p.is_dir() and ((p / "events.jsonl").exists() or (p / "config.toml").exists())


def _split_watch(args: argparse.Namespace) -> None:
    words = list(args.words)
    if len(words) == 1 and is_project(words[0]) and not _is_run_folder(words[0]):
        words.append("last")  # `lorawb watch PROJECT`: its last run
    (args.run,) = split_words(args, words or ["last"], 1, "lorawb watch [PROJECT] [RUN]")


def _split_compare(args: argparse.Namespace) -> None:
    args.run_a, args.run_b = split_words(args, args.words, 2, "lorawb compare [PROJECT] A B")


def resolve_run(ref: str, project: str) -> RunFolder:
    """A run folder given directly, else a run of the project found by id/prefix/'last'."""
    p = Path(ref)
    if p.is_dir() and ((p / "events.jsonl").exists() or (p / "config.toml").exists()):
        return RunFolder(p.resolve())
    from lorawb.core.project import Project

    return find_run(Project.load(project).runs_dir, ref)


# --------------------------------------------------------------------------- watch
def cmd_watch(args: argparse.Namespace) -> int:
    run = resolve_run(args.run, args.project)
    monitor = RunMonitor(run, smoothing=args.smoothing, log_lines=20)
    monitor.catch_up()
    if args.once:
        _print_rich(render(monitor.snapshot(points=2)))
        return 0
    if sys.stdout.isatty():
        return _watch_live(monitor, args.interval)
    return _watch_lines(monitor, args.interval)


def _watch_live(monitor: RunMonitor, interval: float) -> int:
    from rich.live import Live

    view = monitor.snapshot(points=2)
    with Live(render(view), refresh_per_second=4, screen=False) as live:
        while not view.ended:
            time.sleep(interval)
            monitor.catch_up(budget_s=0.2)
            view = monitor.snapshot(points=2)
            live.update(render(view))
    return EXIT_CODES.get(view.display_state, 1)


def _watch_lines(monitor: RunMonitor, interval: float) -> int:
    """For a pipe or a log file: one line per change, no cursor movement."""
    view = monitor.snapshot(points=2)
    print(f"run {view.run_id}  {view.display_state}", flush=True)
    seen_samples = {s.step for s in view.samples[:-1]}  # the latest sample step is shown at once
    seen_ckpt = {c.path for c in view.checkpoints}
    last_step = None
    while True:
        if view.step != last_step and view.loss is not None:
            print(_step_line(view), flush=True)
            last_step = view.step
        for s in view.samples:
            if s.step not in seen_samples:
                seen_samples.add(s.step)
                for im in s.images:
                    print(f"sample  step {s.step}  {_show(im.path)}  {im.prompt}", flush=True)
                if s.sheet is not None:
                    print(f"sheet  step {s.step}  {_show(s.sheet)}", flush=True)
        for c in view.checkpoints:
            if c.path not in seen_ckpt:
                seen_ckpt.add(c.path)
                print(f"checkpoint  step {c.step}  {_show(c.path)}  {format_size(c.size)}", flush=True)
        if view.ended:
            break
        time.sleep(interval)
        monitor.catch_up(budget_s=0.2)
        view = monitor.snapshot(points=2)
    print(_end_line(view), flush=True)
    return EXIT_CODES.get(view.display_state, 1)


def _step_line(v: MonitorView) -> str:
    total = f"/{v.max_steps}" if v.max_steps else ""
    parts = [f"step {v.step}{total}", f"epoch {v.epoch}", f"loss {_f(v.loss)}", f"smoothed {_f(v.loss_smooth)}"]
    if v.val_loss is not None:
        parts.append(f"val {_f(v.val_loss)}")
    if v.lr is not None:
        parts.append(f"lr {v.lr:.3g}")
    if v.it_s:
        parts.append(f"{v.it_s:.2f} it/s")
    if v.mem_gb is not None:
        parts.append(f"{v.mem_gb:.1f} GB")
    if v.eta is not None:
        parts.append(f"ETA {format_duration(v.eta)}")
    return "  ".join(parts)


def _end_line(v: MonitorView) -> str:
    if v.state == "unknown":
        text = f"run {v.run_id} is not running: no training process, and no state in its events.jsonl (see train.log)"
    else:
        text = f"run {v.run_id} {v.display_state} at step {v.step} after {format_duration(v.elapsed)}"
    if v.display_state == "dead":
        text += " (its process is gone without recording an end: see train.log)"
    if v.error:
        text += f"\n{v.error}"
    if v.problems:
        text += "\n" + _problems_line(v)
    return text


def _problems_line(v: MonitorView) -> str:
    """The malformed lines of events.jsonl that were skipped, named."""
    return "events.jsonl: malformed lines skipped: " + "; ".join(v.problems)


def _show(path: Path) -> str:
    """Paths relative to the current folder when they are under it: short and ready to paste."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def render(v: MonitorView):
    """The live view as a rich renderable: header, progress, recent losses, samples, checkpoints."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    colour = {"running": "green", "finished": "cyan", "stopped": "yellow", "failed": "red", "dead": "red"}
    head = Text.assemble(
        ("run ", "dim"),
        (v.run_id, "bold"),
        "  ",
        (v.display_state, colour.get(v.display_state, "white")),
        (f"  elapsed {format_duration(v.elapsed)}  ETA {format_duration(v.eta)}", "dim"),
    )
    parts: list = [head]
    if v.max_steps:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=v.max_steps, completed=v.step, width=40),
            Text(f"{v.step}/{v.max_steps} ({(v.progress or 0) * 100:.0f}%)"),
        )
        parts.append(bar)
    parts.append(Text(_step_line(v)) if v.loss is not None else Text("no steps yet", style="dim"))
    if v.recent:
        recent = Table(box=None, padding=(0, 2), show_edge=False)
        recent.add_column("step", justify="right", style="dim")
        recent.add_column("loss", justify="right")
        recent.add_column("smoothed", justify="right")
        for step, loss, smooth in v.recent[-5:]:
            recent.add_row(str(step), f"{loss:.4f}", f"{smooth:.4f}")
        parts.append(recent)
    if v.samples:
        last = v.samples[-1]
        parts.append(Text(f"latest samples (step {last.step}):", style="bold"))
        for im in last.images:
            parts.append(Text(f"  {_show(im.path)}  {im.prompt}"))
        if last.sheet is not None:
            parts.append(Text(f"  sheet: {_show(last.sheet)}"))
    if v.checkpoints:
        c = v.checkpoints[-1]
        parts.append(Text(f"checkpoints ({len(v.checkpoints)}), latest:", style="bold"))
        parts.append(Text(f"  {_show(c.path)}  {format_size(c.size)}  step {c.step}"))
    if v.error:
        parts.append(Text(v.error, style="red"))
    if v.problems:
        parts.append(Text(_problems_line(v), style="yellow"))
    return Group(*parts)


def _print_rich(renderable) -> None:
    from rich.console import Console

    Console().print(renderable)


# --------------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lorawb.core.run_dataset import dataset_changes, describe
    from lorawb.matrix.lorafile import run_dataset
    from lorawb.train.compare import MISSING, compare_runs, flatten, format_value, read_config

    a, b = resolve_run(args.run_a, args.project), resolve_run(args.run_b, args.project)
    cmp = compare_runs(a, b, points=2)
    console = Console()
    table = Table(title="config" + ("" if args.all else " differences"), show_lines=False)
    table.add_column("key")
    table.add_column(a.id)
    table.add_column(b.id)
    if args.all:
        changed = {r.key for r in cmp.diff}
        fa, fb = flatten(read_config(a)), flatten(read_config(b))
        for key in list(fa) + [k for k in fb if k not in fa]:
            style = "bold" if key in changed else "dim"
            table.add_row(key, format_value(fa.get(key, MISSING)), format_value(fb.get(key, MISSING)), style=style)
    else:
        for key, va, vb in cmp.diff:
            table.add_row(key, format_value(va), format_value(vb))
    ds_a, ds_b = run_dataset(a), run_dataset(b)
    changes = dataset_changes(ds_a, ds_b)
    if not cmp.diff and not args.all:
        console.print("the two runs have the same config" + ("; their datasets differ:" if changes else " and dataset"))
    else:
        console.print(table)
    data = Table(title="dataset" + (" differences" if changes else ""), show_lines=False)
    data.add_column("")
    data.add_column(a.id)
    data.add_column(b.id)
    data.add_row("dataset", Text(describe(ds_a)), Text(describe(ds_b)))
    for row in changes:
        data.add_row(Text(row.what.removeprefix("dataset: ")), Text(row.a), Text(row.b))
    console.print(data)
    loss = Table(title="loss (smoothed)")
    loss.add_column("run")
    loss.add_column("state")
    loss.add_column("steps", justify="right")
    loss.add_column("final", justify="right")
    loss.add_column("lowest", justify="right")
    loss.add_column(f"at step {cmp.common_step}" if cmp.common_step else "at common step", justify="right")
    for c, at in zip(cmp.curves, cmp.loss_at_common, strict=True):
        loss.add_row(c.run_id, c.state, str(c.steps), _f(c.final_loss), _f(c.min_loss), _f(at))
    console.print(loss)
    ra, rb = cmp.regularisation
    console.print(f"kept general by: {a.id} {ra} │ {b.id} {rb}")
    return 0
