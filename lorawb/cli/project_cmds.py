"""`lorawb init` and `lorawb doctor`."""

from __future__ import annotations

import argparse
import json
import sys

from lorawb.cli import add_project_arg, project_dir
from lorawb.words import plural


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a project folder", usage="lorawb init PROJECT [options]")
    p.add_argument("project", nargs="?", default=None, help="folder to create (or -p PROJECT)")
    p.add_argument("-p", "--project", dest="project_opt", metavar="PROJECT", default=None, help="folder to create")
    p.add_argument("--images", metavar="DIR", help="copy this image folder (with its captions) into dataset/")
    p.add_argument("--link", action="store_true", help="with --images: make dataset/ a symlink to DIR instead")
    p.add_argument("--trigger", default="", help="the trigger phrase, e.g. zkx_mira")
    p.add_argument(
        "--model",
        metavar="PATH",
        help="the base model (diffusers folder or .safetensors); resolution and bucket step follow its recommendation",
    )
    p.add_argument(
        "--model-config",
        metavar="DIR",
        default="",
        help="for a single-file transformer (Flux, Klein, Z-Image ...): a diffusers folder of the same model "
        "whose text encoders, VAE and tokenizers to use",
    )
    p.set_defaults(func=cmd_init, normalize=_init_project)

    p = sub.add_parser(
        "doctor",
        help="print a health report of the dataset (exit status 1 when it finds problems)",
        description="A health report of the dataset. Exit status: 0 no problems, 1 problems found "
        "(the report lists them), 2 the project could not be read.",
    )
    add_project_arg(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--all", action="store_true", help="list every file in each section (default: 10)")
    p.set_defaults(func=cmd_doctor)


def _init_project(args: argparse.Namespace) -> None:
    from lorawb.errors import LorawbError

    if not (args.project or args.project_opt):
        raise LorawbError("which folder? `lorawb init PROJECT` (or -p PROJECT)")
    args.project = project_dir(args.project_opt, args.project)
    _offer_images(args)


def _offer_images(args: argparse.Namespace) -> None:
    """`lorawb init FOLDER` on a folder of images: at a terminal, offer the project beside it that uses them
    (elsewhere init refuses, naming the command)."""
    from lorawb.core.project import images_folder

    found = images_folder(args.project) if not args.images else None
    if found is None or not sys.stdin.isatty():
        return
    print(f"{found.folder} holds {plural(found.images, 'image')}.", file=sys.stderr)
    answer = input(f"Make the project {found.project}/ beside it, with them as its dataset? [Y/n] ").strip().lower()
    if answer in ("", "y", "yes"):
        args.project, args.images = found.project, found.folder


def cmd_init(args: argparse.Namespace) -> int:
    from lorawb.core.index import ProjectIndex
    from lorawb.core.project import init_project

    rec = None
    if args.model:
        from lorawb.train.modelpath import check_single_file_parts, recommend

        rec = recommend(args.model, args.model_config)
        if rec is None:
            from lorawb.errors import ModelError

            raise ModelError("not a base model (no model_index.json, not a .safetensors file)", path=args.model)
        check_single_file_parts(args.model, args.model_config)
    project = init_project(args.project, trigger=args.trigger, images=args.images, link=args.link)
    print(f"created {project.root}")
    if rec is not None:
        set_model(project, args.model, rec, args.model_config)
        print(f"  model {args.model}: resolution {rec.resolution}, bucket step {rec.bucket_step} ({rec.source})")
    if args.images:
        index = ProjectIndex(project)  # the first scan fills the index the app and the doctor read
        try:
            counts = index.refresh().counts()
        finally:
            index.close()
        how = "linked" if args.link else "copied"
        print(
            f"  dataset/ {how} from {args.images}: {plural(counts.images, 'image')}, {counts.caption_files} with captions"
        )
        from lorawb.core.project import survey_dataset

        found = survey_dataset(project.dataset_dir)
        for folder, n in sorted(found.repeats.items()):
            print(f"  {folder}/: {plural(n, 'repeat')}")
        if len(found.characters) > 1:
            print(f"  {len(found.characters)} characters, one per kohya folder (lorawb.toml's [characters.<name>]):")
            for cname, (trigger, folder) in found.characters.items():
                print(f"    {cname}: trigger {trigger!r}, {folder}/")
        elif found.trigger and not args.trigger and project.trigger == found.trigger:
            print(f"  trigger {found.trigger!r}, from {found.trigger_from} (--trigger NAME to choose another)")
        if found.top_tags:
            print(
                f"  sample prompts and a commented tag group from the {min(3, len(found.top_tags))} most frequent tags"
            )
        if counts.unreadable:
            print(f"  {plural(len(counts.unreadable), 'unreadable image')}: `lorawb doctor {project.root}` names them")
    what = [w for w, need in (("the trigger", not project.trigger), ("the base model", not args.model)) if need]
    what = " and ".join(what) or "what else you want"
    print(f"  edit {project.config_path.name} to set {what}, then run `lorawb {project.root}`")
    return 0


def set_model(project, model: str, rec, config: str = "") -> None:
    """Point lorawb.toml at ``model`` (and a single file's ``config`` folder) with the resolution and
    bucket step it recommends (comments say so)."""
    import tomlkit

    why = f"the model's recommendation ({rec.source})"
    project.save_setting("model.path", _shown(project, model))
    if config:
        project.save_setting("model.config", _shown(project, config))
    project.save_setting("project.resolution", tomlkit.item(rec.resolution).comment(why))
    if rec.resolution < 2 * project.config.project.min_resolution:
        project.save_setting(
            "project.min_resolution",
            tomlkit.item(max(1, rec.resolution // 2)).comment("half the model's resolution"),
        )
    project.save_setting("dataset.bucket_step", tomlkit.item(rec.bucket_step).comment(why))


def _shown(project, path: str) -> str:
    """``path`` as lorawb.toml writes it: relative to the project when inside it, else absolute."""
    from pathlib import Path

    full = Path(path).expanduser().resolve()
    try:
        return str(full.relative_to(project.root))
    except ValueError:
        return str(full)


def cmd_doctor(args: argparse.Namespace) -> int:
    from lorawb.core.doctor import render_text
    from lorawb.core.project import Project
    from lorawb.train.doctor import doctor

    project = Project.load(args.project)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # file names in any script, on any terminal encoding
    report = doctor(project, progress=_progress_line() if sys.stderr.isatty() else None)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report, limit=None if args.all else 10))
    return 1 if report.problem_count else 0


def _progress_line():
    """A `scanning 120/10000` line on the terminal, rewritten at most 10 times a second, erased at the end."""
    import time

    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < 0.1:
            return
        last[0] = now
        if done >= total:
            sys.stderr.write("\r\x1b[K")
        else:
            sys.stderr.write(f"\rscanning {done}/{total} images")
        sys.stderr.flush()

    return show
