"""`lorawb train`, `runs`, `stop`, `resume` and `make-tiny-model`: thin wrappers over lorawb.train."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from lorawb.cli import RUN_HELP, add_project_arg, split_words
from lorawb.cli.queue_cmds import add_queue_option, report_queued


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="start a training run (foreground, or --detach)")
    add_project_arg(p)
    p.add_argument("--config", metavar="FILE", help="a TOML file with training settings (over lorawb.toml's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set train.max_steps=500 (repeatable)",
    )
    p.add_argument("--detach", action="store_true", help="train in a separate process that survives the terminal")
    add_queue_option(p)
    p.add_argument("--allow-pickle", action="store_true", help="allow a .ckpt/.pt/.bin base model (can run code)")
    p.add_argument("--name", default="", help="a word for the run id (default: the output name)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plan", help="the peak GPU memory a run's settings take, and the levers that make it fit")
    add_project_arg(p)
    p.add_argument("--config", metavar="FILE", help="a TOML file with training settings (over lorawb.toml's)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="as for `lorawb train`"
    )
    p.add_argument("--gpu", default="24GB", help="the card's memory, e.g. 24GB, 16GB, 80GB (default 24GB)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("runs", help="list the project's training runs")
    add_project_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "stop", help="ask a run to save a checkpoint and its resume state, then stop", usage=RUN_USAGE.format("stop")
    )
    _run_words(p)
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait until it has stopped")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("resume", help="continue a stopped run from its saved state", usage=RUN_USAGE.format("resume"))
    _run_words(p)
    p.add_argument("--detach", action="store_true", help="continue in a separate process")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one memory setting first, e.g. --set model.quantize=nf4 (recorded in the run's events)",
    )
    add_queue_option(p)
    p.set_defaults(func=cmd_resume)

    from lorawb.toyworld.tiny import FAMILIES
    from lorawb.toyworld.tiny_transformers import TRANSFORMER_FAMILIES, VARIANTS

    p = sub.add_parser(
        "make-tiny-model", help="build a tiny random base model (a diffusers folder: SD1/SDXL or a transformer family)"
    )
    p.add_argument("dest", help="folder to create")
    p.add_argument("--family", choices=[*FAMILIES, *TRANSFORMER_FAMILIES], default="sd1")
    variants = sorted({v for vs in VARIANTS.values() for v in vs})
    p.add_argument("--variant", choices=variants, help="flux: dev (guidance embedding, the default) or schnell (none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=32, help="native image size in pixels (default 32)")
    p.add_argument("--single-file", metavar="FILE", help="also write the model as one .safetensors checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a model already in DEST")
    p.set_defaults(func=cmd_make_tiny_model)


RUN_USAGE = "lorawb {} [PROJECT] RUN [options]"


def _run_words(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="+", metavar="[PROJECT] RUN", help=f"RUN: {RUN_HELP}")
    add_project_arg(p, positional=False)
    p.set_defaults(normalize=_split_run)


def _split_run(args: argparse.Namespace) -> None:
    (args.run,) = split_words(args, args.words, 1, RUN_USAGE.format(args.command))


def cmd_train(args: argparse.Namespace) -> int:
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config
    from lorawb.train.process import create_run, launch

    project = Project.load(args.project)
    overrides = list(args.overrides) + (["model.allow_pickle=true"] if args.allow_pickle else [])
    config = resolve_config(project, args.config, overrides)
    from lorawb.train.modelpath import recommend, resolution_warning

    warning = resolution_warning(config.dataset.resolution, recommend(config.model.path, config.model.config))
    if warning:
        print(f"lorawb: warning: {warning}", file=sys.stderr)
    if args.queue:
        from lorawb.queue import queue_train

        report_queued(queue_train(project, config, args.name))
        return 0
    run = create_run(project, config, args.name)
    if args.detach:
        launch(run, detach=True)
        # stdout is the run id alone (`rid=$(lorawb train --detach)`); the hint goes to the terminal
        print(run.id, flush=True)
        print(f"training in the background; follow it with `lorawb watch {run.id}` or `lorawb runs`", file=sys.stderr)
        return 0
    print(run.id, flush=True)
    return _foreground(run, lambda progress: launch(run, detach=False, progress=progress))


def cmd_plan(args: argparse.Namespace) -> int:
    from lorawb.core.project import Project
    from lorawb.train import memplan
    from lorawb.train.config import resolve_config

    budget = memplan.parse_gb(args.gpu)
    config = resolve_config(Project.load(args.project), args.config, args.overrides)
    advice = memplan.advise(config, budget)
    if args.json:
        print(json.dumps(memplan.as_dict(advice), indent=2))
    else:
        print("\n".join(memplan.render(advice)))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from lorawb.train.process import change_on_resume, check_resumable, resume_run
    from lorawb.train.runfolder import summarize

    run = _find_run(args.run, args.project)
    check_resumable(run)  # before printing the id: a script reading stdout must not get a run that didn't resume
    for key, old, new in change_on_resume(run, args.overrides):
        print(f"{key}: {old} -> {new} from the resumed step on (recorded in the run's events)", file=sys.stderr)
    s = summarize(run)
    if s.resumable_step is not None:
        redo = (
            f"; steps {s.resumable_step + 1}-{s.step} ran after it and are trained again"
            if s.step > s.resumable_step
            else ""
        )
        print(f"resuming from step {s.resumable_step} (the last saved state){redo}", file=sys.stderr)
    if args.queue:
        from lorawb.core.project import Project
        from lorawb.queue import enqueue
        from lorawb.train.config import load_run_config

        cfg = load_run_config(run.config)
        project = Project.load(args.project)
        report_queued(enqueue(project, "train", f"resume {run.id}", folder=run.path, gpus=cfg.train.num_processes))
        return 0
    if args.detach:
        resume_run(run, detach=True)
        print(run.id, flush=True)
        print(f"resumed in the background; follow it with `lorawb watch {run.id}`", file=sys.stderr)
        return 0
    print(run.id, flush=True)
    return _foreground(run, lambda progress: resume_run(run, detach=False, progress=progress))


def _foreground(run: Any, go: Any) -> int:
    """Train in this process with a one-line progress display; Ctrl-C stops cleanly (twice: at once)."""
    from lorawb.train.runfolder import summarize

    line = ProgressLine()
    go(line.update)
    line.done()
    s = summarize(run)
    last = s.checkpoints[-1]["path"] if s.checkpoints else "no checkpoint"
    print(f"{run.id}: {s.state} at step {s.step}/{s.max_steps or '?'}; {last}")
    if s.state == "stopped":
        print(f"  continue with `lorawb resume {run.id}`")
    return 0 if s.state in ("finished", "stopped") else 1


class ProgressLine:
    """`step 120/500 24% | loss 0.0913 (avg 0.1002) | lr 1.0e-04 | 3.2 it/s | eta 1m58s` on one line."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.ema: float | None = None
        self.last_print = 0.0
        self.shown = False

    def update(self, ev: dict[str, Any]) -> None:
        loss = float(ev["loss"])
        self.ema = loss if self.ema is None else 0.9 * self.ema + 0.1 * loss
        step, total = ev["step"], ev.get("max_steps") or 0
        it_s = ev.get("it_s") or 0.0
        eta = (total - step) / it_s if it_s and total else 0.0
        pct = f" {100 * step // total:3d}%" if total else ""
        text = (
            f"step {step}/{total}{pct} | loss {loss:.4f} (avg {self.ema:.4f}) | lr {ev.get('lr', 0):.1e} | "
            f"{it_s:.2f} it/s | eta {_duration(eta)}"
        )
        now = time.time()
        if self.tty:
            sys.stdout.write("\r\x1b[2K" + text)
            sys.stdout.flush()
            self.shown = True
        elif now - self.last_print >= 5 or step == total:
            print(text, flush=True)
            self.last_print = now

    def done(self) -> None:
        if self.shown:
            sys.stdout.write("\n")
            sys.stdout.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def cmd_runs(args: argparse.Namespace) -> int:
    from lorawb.core.project import Project
    from lorawb.train.runfolder import list_runs, summarize

    project = Project.load(args.project)
    rows = []
    for run in list_runs(project.runs_dir):
        s = summarize(run)
        rows.append(
            {
                "id": s.id,
                "state": s.display_state,
                "alive": s.alive,
                "step": s.step,
                "max_steps": s.max_steps,
                "loss": s.loss,
                "loss_ema": s.loss_smooth,
                "it_s": s.it_s,
                "elapsed": round(s.elapsed, 1),
                "checkpoints": len(s.checkpoints),
                "resumable_from": s.resumable_step if s.resumable else None,
                "error": s.error,
                "path": str(s.path),
                "malformed_lines": list(s.problems),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs yet in {project.runs_dir}; start one with `lorawb train`")
        return 0
    width = max(len(r["id"]) for r in rows)
    print(f"{'RUN':<{width}}  {'STATE':<9} {'STEP':>11}  {'LOSS':>8}  {'ELAPSED':>8}  CKPTS")
    for r in rows:
        step = f"{r['step']}/{r['max_steps'] or '?'}"
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else "-"
        print(
            f"{r['id']:<{width}}  {r['state']:<9} {step:>11}  {loss:>8}  {_duration(r['elapsed']):>8}  {r['checkpoints']}"
        )
        if r["state"] == "failed" and r["error"]:
            print(f"{'':<{width}}  error: {r['error']}")
        if r["malformed_lines"]:
            print(f"{'':<{width}}  events.jsonl: malformed lines skipped: " + "; ".join(r["malformed_lines"]))
        if r["resumable_from"] is not None:
            print(f"{'':<{width}}  resumable from step {r['resumable_from']}: `lorawb resume {r['id']}`")
    return 0


def _find_run(ref: str, project_dir: str) -> Any:
    from pathlib import Path

    from lorawb.core.project import Project
    from lorawb.train.runfolder import RunFolder, find_run

    p = Path(ref)
    if (p / "config.toml").is_file() or (p / "events.jsonl").is_file():
        return RunFolder(p.resolve())
    return find_run(Project.load(project_dir).runs_dir, ref)


def cmd_stop(args: argparse.Namespace) -> int:
    from lorawb.queue import stop_folder
    from lorawb.train.process import stop_run

    run = _find_run(args.run, args.project)
    queued = stop_folder(run.path)  # a queue job (here or on Slurm): the queue must not start it again
    if queued is None:
        stopped = stop_run(run, wait=args.wait)
    else:
        print(f"{run.id}: {queued}")
        deadline = time.time() + args.wait
        while run.is_alive() and time.time() < deadline:
            time.sleep(0.2)
        stopped = not run.is_alive()
    if stopped:
        print(f"{run.id} stopped; continue with `lorawb resume {run.id}`")
    else:
        print(f"{run.id}: stop requested; it saves a checkpoint and its resume state after the current step")
    return 0


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from lorawb.errors import LorawbError
    from lorawb.toyworld.tiny import FAMILIES, build_tiny_model
    from lorawb.toyworld.tiny_transformers import VARIANTS, build_tiny_transformer

    if args.family in FAMILIES:
        if args.variant:
            raise LorawbError(f"{args.family} has no variants", hint="leave --variant out")
        path = build_tiny_model(
            args.dest, family=args.family, seed=args.seed, image_size=args.size, overwrite=args.force
        )
    else:
        if args.single_file:
            raise LorawbError("--single-file writes SD1 models only", hint="leave --single-file out")
        path = build_tiny_transformer(
            args.dest,
            args.family,
            seed=args.seed,
            image_size=args.size,
            overwrite=args.force,
            variant=args.variant,
        )
    variant = args.variant or VARIANTS.get(args.family, (None,))[0]
    name = f"{args.family} {variant}" if variant else args.family
    print(f"built a tiny {name} model in {path}")
    if args.single_file:
        from lorawb.toyworld.tiny import write_single_file

        out = write_single_file(path, args.single_file)
        print(f"wrote {out}")
    return 0
