"""Scale figures for an N-image project: scans, app start, grid, editor, bulk edits, tables, watcher, hashing, RSS.

    OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py 10000 [--project DIR] [--keep DIR] [--quick]

Builds a project with bench/make_big_project.py (N images + an inbox of N/5; --keep DIR keeps
it there and reuses it next time; --project DIR measures an existing one: the bench's edits are
undone and the captions the watcher test rewrites are put back), then prints one table:
each figure, its target at 10,000 images (DESIGN.md / issue 17), and the 1-minute load average
when it was taken. Two references are measured in the same run so figures read as ratios on a
loaded machine: **cpu ref** (a fixed Python + zlib workload) and **disk ref** (create + rename
1,000 small files in the project's folder, as the caption writer does).

The app figures come from child processes running the whole app headless (Textual's
``run_test``): the start is timed from before the process is launched to the first frame that
lists the Triage grid (warm: the index is stored); a second child walks the grid, types in the
Captions editor, changes a Triage filter and times outside writes through the file watcher,
then reports its peak RSS. With tmux installed the start is also timed in a real terminal
(tmux, 120x40) until the header's counts appear.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ROWS: list[tuple[str, str, str, str]] = []  # (what, figure, target, load)


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def row(what: str, figure: str, target: str = "") -> None:
    ROWS.append((what, figure, target, load()))
    print(f"  {what:<44} {figure:<34} {target:<10} load {ROWS[-1][3]}", flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


# --------------------------------------------------------------------------- references


def cpu_ref() -> float:
    """A fixed single-core workload: a Python loop and zlib over 8 MB (about 0.3 s on a quiet 2020s core)."""
    t = time.perf_counter()
    acc = 0
    for i in range(1_000_000):
        acc += i % 7
    zlib.compress(bytes(range(256)) * 32768, 6)
    return time.perf_counter() - t


def disk_ref(folder: Path) -> float:
    """Create, write, close and rename over 1,000 small files in ``folder`` (no fsync)."""
    d = Path(tempfile.mkdtemp(prefix=".lorawb-diskref-", dir=folder))
    try:
        for i in range(1000):
            (d / f"f{i}.txt").write_bytes(b"old caption text, " * 10)
        t = time.perf_counter()
        for i in range(1000):
            tmp = d / f".f{i}.tmp"
            tmp.write_bytes(b"new caption text, " * 10)
            os.replace(tmp, d / f"f{i}.txt")
        return time.perf_counter() - t
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- core figures


def core_figures(project_root: Path, n: int) -> None:
    from lorawb.core import caption_history, caption_ops, dedupe, fsutil, layout
    from lorawb.core.caption_stats import tag_stats
    from lorawb.core.composition import composition
    from lorawb.core.index import ProjectIndex
    from lorawb.core.project import Project

    project = Project.load(project_root)
    files_on_disk = sum(
        1 for area in ("dataset", "inbox") for p in (project_root / area).rglob("*") if layout.is_image(p)
    )
    index = ProjectIndex(project)
    index.clear()
    cold, t_cold = timed(index.refresh)
    row("cold scan (empty index)", f"{t_cold:.1f} s, decoded {cold.opened} of {files_on_disk} files", "< 60 s")
    warm, t_warm = timed(index.refresh)
    row("warm rescan (nothing changed)", f"{ms(t_warm)}, decoded {warm.opened}")
    index.close()
    _, t_cached = timed(lambda: ProjectIndex(project).load_cached())
    row("stored index load (what the app paints first)", ms(t_cached))

    files, t_read = timed(lambda: caption_ops.load_captions(project))
    row("read every caption", f"{ms(t_read)} ({len(files)} files)")
    op = caption_ops.AddTag("masterpiece", at="after-trigger", trigger=project.trigger)

    def bulk_add():
        cs = caption_ops.build_changeset(project, op, files=files)
        return cs, caption_history.apply_changeset(project, cs)

    (cs, res), t_add = timed(bulk_add)
    assert not res.conflicts, res.conflicts[:3]
    row("bulk tag add, all captions (build + write)", f"{t_add:.2f} s ({len(res.written)} files)", "< 1.5 s")
    (und,), t_undo = timed(lambda: caption_history.undo(project))
    assert len(und.written) == len(res.written) and not und.conflicts
    row("its undo", f"{t_undo:.2f} s", "< 1.5 s")
    _, t_clean = timed(lambda: fsutil.wait_for_cleanup(120))
    row("  then, in the background: old versions freed", f"{t_clean:.2f} s")

    stats, t_stats = timed(lambda: tag_stats(files, project.trigger))
    row("tag statistics", f"{ms(t_stats)} ({len(stats.vocabulary())} tags)")
    groups = project.config.tags.groups
    _, t_comp = timed(lambda: composition(files, groups))
    row("composition table", ms(t_comp))

    rels = [f.key for f in ProjectIndex(project).load_cached().images() if f.error is None]  # type: ignore[union-attr]
    conn = dedupe.connect(project.state_dir)  # forget every stored hash: a new dataset
    try:
        dedupe.ensure_schema(conn, "dedupe", dedupe.SCHEMA)
        conn.execute("DELETE FROM dedupe_hashes")
        conn.commit()
    finally:
        conn.close()
    cores = dedupe.allowed_cores()
    (hashes, _), t_hash = timed(lambda: dedupe.compute_hashes(project, rels, workers=cores))
    groups_found = dedupe.group_hashes(hashes, project.config.triage.dup_threshold)
    row(
        f"near-dup hashing, new dataset ({cores} cores)",
        f"{t_hash:.1f} s, {len(hashes)} images, {len(groups_found)} groups",
    )


# --------------------------------------------------------------------------- app children


async def _wait(pred, timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not pred():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the app did not get there in time")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def child_paint(project_root: Path) -> dict:
    from lorawb.core.project import Project
    from lorawb.tui.app import LorawbApp
    from lorawb.tui.tabs.triage import TriageTab

    t_imported = time.time()
    app = LorawbApp(Project.load(project_root))
    out: dict = {"imported": t_imported}
    async with app.run_test(size=(120, 40)) as pilot:
        tab = app.query_one(TriageTab)
        await _wait(lambda: len(tab.all_items) > 0)
        await pilot.pause()  # the frame with the listed grid
        out["painted"] = time.time()
        out["cpu"] = time.process_time()  # CPU of this process since it started (imports included)
        grid = tab.grid
        await asyncio.get_running_loop().run_in_executor(None, grid.painted.wait, 60)
        out["thumbs"] = time.time()
        out["items"] = len(tab.all_items)
    return out


async def child_ui(project_root: Path) -> dict:
    import resource

    from textual import events

    from lorawb.core.project import Project
    from lorawb.tui.app import LorawbApp
    from lorawb.tui.tabs.triage import TriageTab
    from lorawb.tui.widgets.caption_editor import CaptionEditor

    project = Project.load(project_root)
    app = LorawbApp(project)
    out: dict = {}
    async with app.run_test(size=(120, 40)) as pilot:
        tab = app.query_one(TriageTab)
        await _wait(lambda: len(tab.all_items) > 0 and app.watcher is not None)
        await pilot.pause()
        grid = tab.grid
        # Selection: 100 moves right through the grid, each timed until the cursor is there.
        moves = []
        for _ in range(100):
            want = grid.cursor + 1
            t0 = time.perf_counter()
            app.post_message(events.Key("right", None))
            moves.append(await _wait(lambda want=want: grid.cursor == want) - t0)
        await pilot.pause()
        out["moves"] = moves
        # Triage filter change: "c" (no caption) and back.
        full = len(app.image_list)
        filt = []
        for _ in range(3):
            t0 = time.perf_counter()
            app.post_message(events.Key("c", "c"))
            filt.append(await _wait(lambda: len(app.image_list) != full) - t0)
            await pilot.pause()
            t0 = time.perf_counter()
            app.post_message(events.Key("c", "c"))
            filt.append(await _wait(lambda: len(app.image_list) == full) - t0)
            await pilot.pause()
        out["filter"] = filt
        # Watcher: an outside program rewrites a caption (temp + rename); timed until Triage lists the text.
        by_rel: dict = {}
        seen: dict = {"list": None}

        def text_of(rel: str):
            if seen["list"] is not tab.all_items:
                seen["list"] = tab.all_items
                by_rel.clear()
                by_rel.update({it.rel: it for it in tab.all_items})
            it = by_rel.get(rel)
            return it.caption_text if it is not None else None

        items = [it for it in tab.all_items if it.caption_text and it.rel.startswith("dataset/")]
        lat = []
        originals: dict[Path, bytes] = {}
        for k in range(20):
            it = items[(k * 37) % len(items)]
            cap = (project.root / it.rel).with_suffix(".txt")
            if not cap.exists():
                continue
            text = f"{project.trigger}, outside edit {k}, forest\n"
            originals.setdefault(cap, cap.read_bytes())

            def editor(cap=cap, text=text) -> None:
                tmp = cap.with_name(f".{cap.name}.swp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, cap)

            t0 = time.perf_counter()
            threading.Thread(target=editor).start()
            lat.append(await _wait(lambda rel=it.rel, text=text: text_of(rel) == text, 30) - t0)
        out["watch"] = lat
        for cap, data in originals.items():  # put the captions back as they were
            tmp = cap.with_name(f".{cap.name}.swp")
            tmp.write_bytes(data)
            os.replace(tmp, cap)
        # Captions editor: type 60 characters, each timed until the editor holds it.
        await pilot.press("2")
        await pilot.pause()
        await asyncio.sleep(0.5)
        await pilot.pause()
        editor_w = app.query_one(CaptionEditor)
        await pilot.press("e")
        await _wait(lambda: editor_w.has_focus, 30)
        await pilot.press("end")
        await pilot.pause()
        keys = []
        for ch in ", some more words typed here" * 2:
            before = editor_w.text
            key = "space" if ch == " " else "comma" if ch == "," else ch
            t0 = time.perf_counter()
            app.post_message(events.Key(key, ch))
            keys.append(await _wait(lambda before=before: editor_w.text != before, 10) - t0)
            await asyncio.sleep(0.005)  # a fast typist: ~100 keys a second at most
        out["keys"] = keys
        await pilot.press("ctrl+r")  # revert the typing: the caption stays as it was
        await pilot.pause()
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(mode: str, project_root: Path) -> tuple[dict, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(project_root)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"the {mode} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), t0


def app_figures(project_root: Path) -> None:
    starts, thumbs, cpus = [], [], []
    for _ in range(3):
        out, t0 = run_child("paint", project_root)
        starts.append(out["painted"] - t0)
        thumbs.append(out["thumbs"] - t0)
        cpus.append(out["cpu"])
    row(
        "app start -> Triage painted (headless, warm)",
        f"median {statistics.median(starts):.2f} s ({statistics.median(cpus):.2f} s CPU)",
        "< 1.0 s",
    )
    row("  -> visible thumbnails drawn", f"median {statistics.median(thumbs):.2f} s")
    tmux = tmux_start(project_root)
    if tmux is not None:
        row("app start -> header counts (tmux 120x40)", f"{tmux:.2f} s", "< 1.0 s")
    out, _ = run_child("ui", project_root)
    m = out["moves"]
    row("move selection 100 images", f"{sum(m):.2f} s total, p95 {ms(pct(m, 0.95))} a move")
    k = out["keys"]
    row("Captions editor keystroke", f"median {ms(statistics.median(k))}, p95 {ms(pct(k, 0.95))}", "p95 < 50 ms")
    f = out["filter"]
    row("Triage filter change (c, and back)", f"median {ms(statistics.median(f))}, max {ms(max(f))}", "< 100 ms")
    w = out["watch"]
    row(
        f"watcher: outside write -> Triage ({len(w)} writes)",
        f"median {ms(statistics.median(w))}, p95 {ms(pct(w, 0.95))}",
        "p95 < 0.5 s",
    )
    row("app peak RSS (the whole session)", f"{out['rss_mb']:.0f} MB", "< 400 MB")


def tmux_start(project_root: Path) -> float | None:
    if shutil.which("tmux") is None:
        return None
    sock = f"lorawb-bench-{os.getpid()}"
    lorawb = [sys.executable, "-m", "lorawb", str(project_root)]
    cmd = " ".join(f"'{a}'" for a in lorawb)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-x", "120", "-y", "40", cmd], env=env, check=True)
    try:
        while time.perf_counter() - t0 < 60:
            pane = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p"], capture_output=True, text=True).stdout
            if " images · " in pane:
                return time.perf_counter() - t0
            time.sleep(0.01)
        return None
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=1000, help="dataset images (default 1000; the inbox adds N/5)")
    ap.add_argument("--project", type=Path, help="measure this existing project instead of generating one")
    ap.add_argument("--keep", type=Path, help="generate into this folder (reused when it already holds a project)")
    ap.add_argument("--no-app", action="store_true", help="core figures only (no app children)")
    ap.add_argument("--app-only", action="store_true", help="app figures only (the project's index already stored)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "PROJECT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = child_paint if args.child[0] == "paint" else child_ui
        print(json.dumps(asyncio.run(fn(Path(args.child[1])))))
        return 0

    from make_big_project import make_big_project

    tmp: Path | None = None
    if args.project:
        root = args.project.resolve()
    else:
        root = (args.keep or Path(tempfile.mkdtemp(prefix="lorawb-scale-")) / "project").resolve()
        tmp = None if args.keep else root.parent
        if not (root / "lorawb.toml").exists():
            _, t_gen = timed(lambda: make_big_project(args.n, root))
            print(f"generated {args.n} images + {args.n // 5} in the inbox in {t_gen:.0f} s: {root}")
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"lorawb scale bench, N = {args.n}: {cores} cores, Python {sys.version.split()[0]}, {root}")
        row("cpu ref (fixed Python + zlib work)", ms(cpu_ref()))
        row("disk ref (create + rename 1,000 small files)", ms(disk_ref(root / "dataset")))
        if not args.app_only:
            core_figures(root, args.n)
        if not args.no_app:
            app_figures(root)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n| figure (N = {args.n}) | measured | target at 10,000 | load |")
    print("|---|---|---|---|")
    for what, fig, target, ld in ROWS:
        print(f"| {what.strip()} | {fig} | {target} | {ld} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
