"""Triage tab: thumbnail grid, large preview, image facts, single-key decisions, filters, near-duplicates, inbox.

The tab is a client of lorawb.core.triage / lorawb.core.dedupe: listing,
decisions (file moves) and hashing run in thread workers and hand results back
with ``call_from_thread``; the event loop only filters lists and draws. After a
decision the cursor moves on at once (the grid shows the new state right away)
and the list is corrected when the worker reports what happened on disk.

``G`` draws candidates from the character sheet into the inbox (a detached `lorawb generate` job;
the watcher shows them as they come), ``s`` also sorts them by their pre-sort scores (identity,
prompt following), and the facts show a candidate's provenance (lorawb.generate).

The list is a view of the app's image index: the app refreshes it (at start, ctrl+r)
and the file watcher keeps it up to date, so a change made by another program
(``DatasetChanged``) re-reads the index, not the disk, keeping the selection where
the image still exists and moving to its neighbour where it does not.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import PurePosixPath

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Static
from textual.worker import get_current_worker

from lorawb.core import triage as tri
from lorawb.core.buckets import BucketSettings, bucket_label
from lorawb.core.cast import JOINT, filter_words, held
from lorawb.core.characters import characters_of
from lorawb.core.dedupe import DedupeResult, find_duplicates
from lorawb.core.index import REG, IndexDelta
from lorawb.core.layout import repeats_for
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.generate.presort import SCORE_SORTS, GeneratedFiles, sort_by_score
from lorawb.train.config import bucket_settings
from lorawb.tui.messages import ConfigReloaded, DatasetChanged
from lorawb.tui.palette import command
from lorawb.tui.widgets.image_grid import GridItem, ImageGrid
from lorawb.tui.widgets.image_view import ImageView
from lorawb.tui.widgets.tag_modal import TagScreen, report_applied
from lorawb.tui.workbench import Workbench, workbench
from lorawb.words import plural, size_text

SMALL_DELTA = 64  # changes patched into the list on the event loop (more go to the loader thread)
DEDUPE_DELAY_S = 1.5  # after the first listing, before near-duplicate hashing starts in the background
STATE_CYCLE = (None, tri.UNREVIEWED, tri.KEEP, tri.FLAG, tri.REJECT)
STATE_WORDS = {tri.UNREVIEWED: "unreviewed", tri.KEEP: "kept", tri.REJECT: "rejected", tri.FLAG: "flagged"}


class Ask(ModalScreen[str | None]):
    """A one-line question (tag, folder) with completion; Enter answers, Escape cancels."""

    DEFAULT_CSS = """
    Ask { align: center middle; }
    Ask > Vertical { width: 60; max-width: 95%; height: auto; border: round $accent; background: $panel; padding: 0 1; }
    Ask Label { width: 100%; }
    Ask .hint { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", suggestions: Iterable[str] = (), hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.suggestions = sorted(set(suggestions))
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text))
            yield Input(self.value, suggester=SuggestFromList(self.suggestions, case_sensitive=False), id="ask-input")
            if self.hint:
                yield Label(Text(self.hint), classes="hint")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class TriageTab(Vertical):
    BINDINGS = [
        Binding("y", "decide('keep')", "Keep"),
        Binding("x", "decide('reject')", "Reject"),
        Binding("f", "decide('flag')", "Flag"),
        Binding("u", "decide('clear')", "Clear"),
        Binding("v", "cycle_state", "View"),
        Binding("D", "dupes", "Dupes"),
        Binding("a", "autotag", "Tag"),
        Binding("i", "toggle_inbox", "Area", show=False),
        Binding("backspace", "undo", "Undo", show=False),
        Binding("n", "group(1)", "Next group", show=False),
        Binding("p", "group(-1)", "Prev group", show=False),
        Binding("c", "toggle('missing_caption')", "No caption", show=False),
        Binding("r", "toggle('low_res')", "Low-res", show=False),
        Binding("d", "toggle('duplicates')", "Near-dups", show=False),
        Binding("t", "ask_tag('has_tag')", "Has tag", show=False),
        Binding("T", "ask_tag('lacks_tag')", "Lacks tag", show=False),
        Binding("slash", "ask_folder", "Folder", show=False),
        Binding("C", "ask_character", "Character", show=False),
        Binding("s", "cycle_sort", "Sort", show=False),
        # priority: before the grid's vim-style G (end still jumps); off the footer, which 80 columns fill
        Binding("G", "generate", "Generate", show=False, priority=True),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("z,enter", "zoom", "Zoom", show=False),
        Binding("escape", "reset", "Reset", show=False),
    ]

    @property
    def wb(self) -> Workbench:
        return workbench(self)

    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project
        self.triage: tri.Triage = None  # type: ignore[assignment]  # on mount: a view of the app's index
        self.buckets: BucketSettings | None = None
        self.all_items: list[tri.TriageItem] = []
        self.shown: list[tri.TriageItem] = []
        self.flt = tri.Filter()
        self.sort = "name"
        self.reverse = False
        self.dedupe: DedupeResult | None = None
        self.dedupe_progress: tuple[int, int] | None = None
        self.dupe_view = False
        self.group_index = 0
        self.groups: list[list[str]] = []  # live near-duplicate groups (rejected images left out)
        self.keep_folder: str | None = None  # asked once per session when lorawb.toml has none
        self._skip_version = -1
        self._seen_version = 0
        self._root = str(project.root)
        self._key_before_dupes: str | None = None
        self._loaded_once = False
        self.generated = GeneratedFiles(project)  # candidates' records and pre-sort scores

    # --- layout -----------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="triage-main"):
            yield ImageGrid(id="triage-grid", empty_text="no images match this view (esc resets)")
            with Vertical(id="triage-side"):
                yield ImageView(id="triage-preview")
                yield Static("", id="triage-facts")
        yield Static("", id="triage-status")

    @property
    def grid(self) -> ImageGrid:
        return self.query_one(ImageGrid)

    def focus_target(self) -> ImageGrid:
        return self.grid

    def on_mount(self) -> None:
        self.triage = tri.Triage(self.project, index=self.wb.index)
        self._seen_version = self.wb.dataset_version
        self.watch(self.app, "dataset_version", self._dataset_version_changed, init=False)
        self.watch(self.app, "current_image", self._current_image_changed, init=False)
        # Before the app's first scan of the folders: the last listing from the DB, for the first paint.
        self.load(first=self._seen_version == 0)
        self.call_after_refresh(self._focus_if_active)

    def _focus_if_active(self) -> None:
        # At start-up the grid takes the keys (not the tab bar), so arrows and decisions work at once.
        if self.wb.active_tab == "triage" and not isinstance(self.app.focused, Input):
            self.grid.focus()

    def on_unmount(self) -> None:
        self.triage.close()

    # --- loading ----------------------------------------------------------
    @work(thread=True, exclusive=True, group="triage-load")
    def load(self, first: bool = False, rescan: bool = False, delta: IndexDelta | None = None) -> None:
        """Show the index as it is (``first``: the stored listing; the app's scan follows; ``rescan``: walk
        the disk; ``delta``: only these images changed since the list was built)."""
        worker = get_current_worker()
        try:
            if first:
                cached = self.triage.cached_items()
                if cached and not worker.is_cancelled:
                    self.app.call_from_thread(self._loaded, cached, False)
                return
            if rescan:
                items = self.triage.items()
            elif delta is not None and self._loaded_once:
                items = self.triage.patched(self.all_items, delta, self.triage.index.snapshot())
            else:
                items = self.triage.items_of(self.triage.index.snapshot())
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._loaded, items)

    def on_dataset_changed(self, msg: DatasetChanged) -> None:
        """Another program (or a tab's write the watcher saw first) changed images: re-read them from the index.

        A few images are patched in here and now (no worker hop: an editor's save is on screen at once);
        many go to the loader thread.
        """
        delta = msg.batch.delta
        pending = any(w.group == "triage-load" and not w.is_finished for w in self.app.workers)
        if pending or not self._loaded_once:
            self.load()  # a load in flight would be cancelled by this one: rebuild the whole list
        elif len(delta.keys) <= SMALL_DELTA:
            try:
                items = self.triage.patched(self.all_items, delta, self.triage.index.snapshot())
            except LorawbError as exc:
                self.notify(str(exc), severity="error", markup=False)
                return
            self._loaded(items)
        else:
            self.load(delta=delta)

    def on_config_reloaded(self, msg: ConfigReloaded) -> None:
        self.buckets = None  # resolution / bucket step may have changed
        if self.triage.index is not self.wb.index:
            self.triage.close()
            self.triage = tri.Triage(self.project, index=self.wb.index)
        self.refilter()

    def _loaded(self, items: list[tri.TriageItem], final: bool = True) -> None:
        self.all_items = items
        self.refilter()
        if final and not self._loaded_once:
            self._loaded_once = True
            # Hashing a new 10,000-image dataset takes minutes of one core: let the first screen of
            # thumbnails have the machine first.
            self.set_timer(DEDUPE_DELAY_S, self._start_dedupe)

    def _dataset_version_changed(self, version: int) -> None:
        # The app also calls watchers with the initial value once it is running: ignore repeats.
        if version == self._seen_version:
            return
        self._seen_version = version
        if version != self._skip_version:  # someone else changed files: re-read
            self.load()

    def _changed_files(self) -> None:
        self._skip_version = self.wb.dataset_version + 1
        self.wb.dataset_changed()

    # --- the list ---------------------------------------------------------
    def refilter(self, cursor_key: str | None = None, cursor_index: int | None = None) -> None:
        """Recompute the shown list from all items, the filter, the sort and the dupes view."""
        grid = self.grid
        if cursor_key is None and cursor_index is None and grid.current is not None:
            cursor_key, cursor_index = grid.current.key, grid.cursor
        self.groups = groups = self._live_groups()
        if self.dupe_view and self.dedupe is not None:
            if groups:
                self.group_index %= len(groups)
                by_rel = {i.rel: i for i in self.all_items}
                self.shown = [by_rel[r] for r in groups[self.group_index]]
            else:
                self.shown = []
        else:
            dup_rels = self.dedupe.dup_rels if self.dedupe else set()
            by_score = self.sort in SCORE_SORTS
            self.shown = tri.apply_filter(
                self.all_items,
                self.flt,
                min_resolution=self.project.config.project.min_resolution,
                dup_rels=dup_rels,
                sort="name" if by_score else self.sort,
                reverse=self.reverse and not by_score,
                chars=characters_of(self.project.config),
            )
            if by_score:
                self.shown = sort_by_score(self.shown, self.generated.scores(), self.sort, self.reverse)
        grid.set_items([self._grid_item(i) for i in self.shown], cursor_key=cursor_key, cursor_index=cursor_index)
        self.wb.image_list = tuple(i.rel for i in self.shown)
        self.update_status()

    def _grid_item(self, item: tri.TriageItem) -> GridItem:
        return GridItem(
            key=item.rel, path=f"{self._root}/{item.rel}", label=item.name, state=item.state, stamp=item.mtime_ns
        )

    def _live_groups(self) -> list[list[str]]:
        """Dedupe groups restricted to images still present and not rejected (2+ members)."""
        if self.dedupe is None:
            return []
        alive = {i.rel for i in self.all_items if i.state != tri.REJECT}
        groups = [[r for r in g.rels if r in alive] for g in self.dedupe.groups]
        return [g for g in groups if len(g) > 1]

    @property
    def current_item(self) -> tri.TriageItem | None:
        i = self.grid.cursor
        return self.shown[i] if 0 <= i < len(self.shown) else None

    def on_image_grid_highlighted(self, event: ImageGrid.Highlighted) -> None:
        item = self.current_item
        preview = self.query_one(ImageView)
        if item is None:
            preview.show(None)
            self.query_one("#triage-facts", Static).update("")
            return
        if self.wb.current_image != item.rel:
            self.wb.select_image(item.rel)
        preview.show(self.project.root / item.rel)
        self.update_facts(item)

    def _current_image_changed(self, rel: str | None) -> None:
        """Another tab selected an image: follow it if this view shows it."""
        grid = self.grid
        if rel is None or (grid.current is not None and grid.current.key == rel):
            return
        index = grid.index_of(rel)
        if index >= 0:
            grid.cursor = index

    # --- facts and status -------------------------------------------------
    def update_facts(self, item: tri.TriageItem) -> None:
        t = Text(no_wrap=False, overflow="ellipsis")
        t.append(item.rel, style="bold")
        t.append("\n")
        if item.error:
            t.append(item.error, style="red")
        else:
            t.append(f"{item.width}×{item.height} {item.mode} {item.format} · {size_text(item.size_bytes)}")
            t.append("\n" + self._bucket_text(item))
            if item.area in (tri.DATASET, REG):
                t.append(f" · ×{repeats_for(item.folder)}")
            low = self.project.config.project.low_res(item.short_side)
            if low:
                t.append(f" · low-res: {low}", style="yellow")
        t.append("\n")
        word = STATE_WORDS[item.state]
        t.append(word, style=f"bold {self._state_colour(item.state)}")
        if item.decided_at:
            t.append(time.strftime(" %Y-%m-%d %H:%M", time.localtime(item.decided_at)))
        t.append(" · " + self._dup_text(item.rel))
        t.append("\n")
        chars = characters_of(self.project.config)
        if len(chars) > 1:  # several characters: whom the image holds (its folders, its caption's triggers)
            names = held(item.rel, item.folder, item.caption_text, chars).names
            t.append(("holds " + " + ".join(names)) if names else "holds no character", style="bold")
            t.append(" · ")
        if item.caption_text and item.caption_text.strip():
            t.append(item.caption_text.strip(), style="italic")
        else:
            t.append("(no caption)", style="dim")
        provenance = self.generated.describe(item.rel)
        if provenance:
            t.append("\n" + provenance, style="dim")
        self.query_one("#triage-facts", Static).update(t)

    def _bucket_text(self, item: tri.TriageItem) -> str:
        """The aspect bucket the trainer would use (lorawb.train.config.bucket_settings: the resolved config)."""
        if self.buckets is None:
            self.buckets = bucket_settings(self.project)
        bucket = self.buckets.bucket(item.width, item.height)
        if bucket is None:
            return self.buckets.problem or "bucket: none"
        return f"bucket {bucket_label(bucket)} @{self.buckets.resolution}"

    def _state_colour(self, state: str) -> str:
        name = {"keep": "kept", "reject": "rejected", "flag": "flagged"}.get(state, "unreviewed")
        return self.app.theme_variables.get(name, "white")

    def _dup_text(self, rel: str) -> str:
        if self.dedupe is None:
            if self.dedupe_progress:
                done, total = self.dedupe_progress
                return f"hashing {done}/{total}"
            return "duplicates: not checked"
        for n, g in enumerate(self.groups, 1):
            if rel in g:
                hashes = {i.rel: i.content_hash for i in self.all_items if i.rel in g}
                mine = hashes.get(rel)
                exact = sum(1 for m in g if m != rel and mine and hashes.get(m) == mine)
                near = len(g) - 1 - exact
                parts = [plural(exact, "exact duplicate") + " (same bytes)"] if exact else []
                parts += [plural(near, "near-duplicate")] if near else []
                return f"{', '.join(parts)}, group {n}"
        return "no near-duplicates"

    def update_status(self) -> None:
        area = tri.DATASET if self.dupe_view else self.flt.area
        c = tri.count(self.all_items, area=area, min_resolution=self.project.config.project.min_resolution)
        if self.dupe_view:
            n = self.group_index + 1 if self.groups else 0
            where = f"dup group {n}/{len(self.groups)}: y keeps this one, rejects the rest · n/p"
        else:
            where = f"{self.flt.describe()} · {self.sort}{'↓' if self.reverse else '↑'}"
        dup = ""
        if self.dedupe is None and self.dedupe_progress:
            dup = f" │ hashing {self.dedupe_progress[0]}/{self.dedupe_progress[1]}"
        elif self.dedupe is not None and not self.dupe_view:
            dup = f" │ {len(self.groups)} dup groups"
        # The view first: at 80 columns the end of the line is what gets cut.
        bad = ""
        if c.unreadable:  # the one count: unreadable images are counted, and named
            first = next(i.name for i in self.all_items if i.area == area and i.error and i.state != tri.REJECT)
            bad = f" ⚠{c.unreadable} unreadable: {first}" + ("…" if c.unreadable > 1 else "")
        text = f"{where} │ {len(self.shown)} shown │ new {c.unreviewed} ✓{c.keep} ⚑{c.flag} ✗{c.reject}{bad}{dup}"
        self.query_one("#triage-status", Static).update(text)

    # --- decisions --------------------------------------------------------
    def action_decide(self, action: str) -> None:
        item = self.current_item
        if item is None:
            return
        if self.dupe_view and action == "keep":
            self._keep_one_of_group(item)
            return
        folder = None
        if action == "keep" and item.area == tri.INBOX and item.state != tri.REJECT:
            folder = self.project.config.triage.keep_folder or self.keep_folder
            if not folder:
                self._ask_keep_folder(lambda f: self._decide(action, item, f))
                return
        self._decide(action, item, folder)

    def _decide(self, action: str, item: tri.TriageItem, folder: str | None) -> None:
        # Show the decision at once and move on; the worker does the disk part.
        new_state = {"keep": tri.KEEP, "reject": tri.REJECT, "flag": tri.FLAG, "clear": tri.UNREVIEWED}[action]
        grid = self.grid
        index = grid.cursor
        self.shown[index] = replace(item, state=new_state)
        grid.items[index] = replace(grid.items[index], state=new_state)
        grid.refresh()
        if action != "clear" and index + 1 < len(self.shown):
            grid.cursor = index + 1
        self._decide_worker(action, item.rel, folder)

    @work(thread=True, group="triage-decide")
    def _decide_worker(self, action: str, rel: str, folder: str | None) -> None:
        try:
            d = self.triage.decide(action, rel, keep_folder=folder)
        except LorawbError as exc:
            self.app.call_from_thread(self._failed, exc)
            return
        self.app.call_from_thread(self._decided, [d])

    def _keep_one_of_group(self, keeper: tri.TriageItem) -> None:
        others = [i.rel for i in self.shown if i.rel != keeper.rel]
        folder = None
        if keeper.area == tri.INBOX:
            folder = self.project.config.triage.keep_folder or self.keep_folder
            if not folder:
                self._ask_keep_folder(lambda f: self._group_worker(keeper.rel, others, f))
                return
        self._group_worker(keeper.rel, others, folder)

    @work(thread=True, group="triage-decide")
    def _group_worker(self, keeper: str, others: list[str], folder: str | None) -> None:
        done: list[tri.Decision] = []
        try:
            done.append(self.triage.keep(keeper, folder=folder))
            for rel in others:
                done.append(self.triage.reject(rel))
        except LorawbError as exc:
            self.app.call_from_thread(self._failed, exc)
        if done:
            self.app.call_from_thread(self._decided, done, True)

    def _decided(self, decisions: list[tri.Decision], next_group: bool = False) -> None:
        by_rel = {i.rel: n for n, i in enumerate(self.all_items)}
        patched: dict[str, tri.TriageItem] = {}
        moved = False
        for d in decisions:
            n = by_rel.get(d.rel)
            if n is None:
                continue
            old = self.all_items[n]
            area, _, folder = self.triage.locate(d.new_rel)
            cap = old.caption_rel
            if cap and d.moved:
                cap = str(PurePosixPath(d.new_rel).with_suffix(PurePosixPath(cap).suffix))
            decided = None if d.state == tri.UNREVIEWED else time.time()
            new = replace(
                old, rel=d.new_rel, area=area, folder=folder, state=d.state, decided_at=decided, caption_rel=cap
            )
            self.all_items[n] = patched[d.rel] = new
            moved |= d.moved
        if next_group:
            self.group_index += 1
            self.refilter(cursor_index=0)
        elif self.dupe_view:
            self.refilter()
        else:
            self._patch_shown(patched)
        if moved:
            self._changed_files()
        if any(w.group == "triage-load" and not w.is_finished for w in self.app.workers):
            self.load()  # a scan that started before this move may not have seen it

    def _patch_shown(self, patched: dict[str, tri.TriageItem]) -> None:
        """Apply decisions to the shown list without re-filtering everything (10,000 images: one pass, no sort)."""
        grid = self.grid
        min_res = self.project.config.project.min_resolution
        dup_rels = self.dedupe.dup_rels if self.dedupe else set()
        shown: list[tri.TriageItem] = []
        cells: list[GridItem] = []
        for item, cell in zip(self.shown, grid.items, strict=True):
            new = patched.get(item.rel)
            if new is None:
                shown.append(item)
                cells.append(cell)
            elif self.flt.matches(new, min_resolution=min_res, dup_rels=dup_rels):
                if new.rel != item.rel:
                    self.refilter()  # renamed and still shown: its sort position may change
                    return
                shown.append(new)
                cells.append(self._grid_item(new))
        current = grid.current.key if grid.current else None
        self.shown = shown
        grid.set_items(cells, cursor_key=current, cursor_index=grid.cursor)
        self.wb.image_list = tuple(i.rel for i in shown)
        self.update_status()

    def _failed(self, exc: LorawbError) -> None:
        self.notify(str(exc), severity="error", timeout=8, markup=False)
        self.load(rescan=True)  # the disk is the truth: show it

    def action_undo(self) -> None:
        self._undo_worker()

    @work(thread=True, group="triage-decide")
    def _undo_worker(self) -> None:
        try:
            d = self.triage.undo_last()
        except LorawbError as exc:
            self.app.call_from_thread(self._failed, exc)
            return
        if d is None:
            self.app.call_from_thread(self.notify, "nothing to undo", timeout=2)
            return
        items = self.triage.items_of(self.triage.index.snapshot())  # the moves back updated the index

        def show() -> None:
            self.all_items = items
            self.refilter(cursor_key=d.new_rel)
            self.notify(f"undone: {d.new_rel} is {STATE_WORDS[d.state]} again", timeout=3)
            if d.moved:
                self._changed_files()

        self.app.call_from_thread(show)

    def _ask_keep_folder(self, then) -> None:
        folders = sorted(
            {i.folder for i in self.all_items if i.area == tri.DATASET and i.folder}
            | {p.name for p in self.project.dataset_dir.iterdir() if p.is_dir() and p.name != "rejected"}
            if self.project.dataset_dir.is_dir()
            else set()
        )

        def answered(folder: str | None) -> None:
            if folder:
                self.keep_folder = folder
                then(folder)

        self.app.push_screen(
            Ask(
                "Keep inbox images in which dataset folder?",
                folders[0] if folders else "",
                folders,
                hint="set [triage] keep_folder in lorawb.toml to skip this question",
            ),
            answered,
        )

    # --- filters, sort, views ---------------------------------------------
    def _set_filter(self, **changes) -> None:
        self.flt = replace(self.flt, **changes)
        self.dupe_view = False
        self.refilter()

    def action_cycle_state(self) -> None:
        i = STATE_CYCLE.index(self.flt.state) if self.flt.state in STATE_CYCLE else 0
        self._set_filter(state=STATE_CYCLE[(i + 1) % len(STATE_CYCLE)])

    def action_toggle(self, name: str) -> None:
        if name == "duplicates" and self.dedupe is None:
            self.notify("finding near-duplicates first…", timeout=2)
            self.find_dupes()
        self._set_filter(**{name: not getattr(self.flt, name)})

    def action_toggle_inbox(self) -> None:
        """The next area: dataset, inbox, then reg (the regularisation images) when the project has reg/."""
        names = [a.name for a in self.triage.index.areas] or [tri.DATASET, tri.INBOX]
        at = names.index(self.flt.area) if self.flt.area in names else -1
        self._set_filter(area=names[(at + 1) % len(names)], folder=None)

    def action_ask_tag(self, which: str) -> None:
        vocab = {t for i in self.all_items for t in i.tags}
        current = getattr(self.flt, which) or ""
        title = "Only images whose caption has tag:" if which == "has_tag" else "Only images whose caption lacks tag:"
        self.app.push_screen(
            Ask(title, current, vocab, hint="empty clears this filter"),
            lambda tag: None if tag is None else self._set_filter(**{which: tag or None}),
        )

    def action_ask_folder(self) -> None:
        folders = {i.folder for i in self.all_items if i.area == self.flt.area and i.folder}
        self.app.push_screen(
            Ask("Only images in folder:", self.flt.folder or "", folders, hint="empty shows every folder"),
            lambda f: None if f is None else self._set_filter(folder=f.strip("/") or None),
        )

    def action_ask_character(self) -> None:
        """Only the images holding a character, a pair, or two characters or more (``joint``)."""
        chars = characters_of(self.project.config)
        if len(chars) < 2:
            self.notify("one character: add [characters.<name>] tables to lorawb.toml for a character filter")
            return
        words = filter_words(chars)
        self.app.push_screen(
            Ask("Only images holding:", self.flt.character or "", words, hint=", ".join(words) + " · empty clears"),
            self._character_entered,
        )

    def _character_entered(self, word: str | None) -> None:
        if word is None:
            return
        try:
            self._set_filter(character=tri.character_filter(word, characters_of(self.project.config)))
        except LorawbError as exc:
            self.notify(str(exc), severity="error", markup=False)

    def action_cycle_sort(self) -> None:
        sorts = (*tri.SORTS, *SCORE_SORTS)
        self.sort = sorts[(sorts.index(self.sort) + 1) % len(sorts)]
        if self.sort in SCORE_SORTS:
            self.notify(self.generated.sort_note(self.sort), timeout=4, markup=False)
        self.refilter()

    def action_reverse_sort(self) -> None:
        self.reverse = not self.reverse
        self.refilter()

    def action_reset(self) -> None:
        self.flt = tri.Filter(area=self.flt.area)
        self.dupe_view = False
        self.refilter()

    def action_zoom(self) -> None:
        self.toggle_class("zoomed")

    def action_dupes(self) -> None:
        if self.dupe_view:
            self.dupe_view = False
            self.refilter(cursor_key=self._key_before_dupes)
            return
        self._key_before_dupes = self.grid.current.key if self.grid.current else None
        self.dupe_view = True
        self.group_index = 0
        if self.dedupe is None:
            self.notify("finding near-duplicates…", timeout=2)
            self.find_dupes()
        self.refilter(cursor_index=0)

    def action_group(self, step: int) -> None:
        if not self.dupe_view:
            return
        if self.groups:
            self.group_index = (self.group_index + step) % len(self.groups)
        self.refilter(cursor_index=0)

    # --- generate: candidates from the character sheet ---------------------------------------
    def action_generate(self) -> None:
        """Draw the sheet's missing candidates into the inbox in a detached job (or say how far it is)."""
        self._generate_worker()

    @work(thread=True, exclusive=True, group="triage-generate", exit_on_error=False)
    def _generate_worker(self) -> None:
        from lorawb.generate.job import GenerateJob, generate_status, plan_generate, start_generate

        try:
            if GenerateJob.of(self.project).is_alive():
                s = generate_status(self.project)
                text = f"generating: {s.done}/{s.total} candidates; `lorawb generate --stop` stops it"
                self.app.call_from_thread(self.notify, text, timeout=5, markup=False)
                return
            project = Project.load(self.project.root)  # the sheet as it is on disk now
            plan = plan_generate(project)
            missing = len(plan.missing())
            if not missing:
                text = f"all {plural(plan.total, 'candidate')} of the sheet are drawn ([generate] count, or G after changing it)"
                self.app.call_from_thread(self.notify, text, timeout=5, markup=False)
                return
            start_generate(project, plan, detach=True)
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=8, markup=False)
            return
        text = (
            f"drawing {plural(missing, 'candidate')} into the inbox in a separate process "
            "(G shows progress; s sorts them by score when done)"
        )
        self.app.call_from_thread(self._generating, text)

    def _generating(self, text: str) -> None:
        self.notify(text, timeout=6, markup=False)
        if self.flt.area != tri.INBOX:
            self._set_filter(area=tri.INBOX, folder=None)

    # --- near-duplicates --------------------------------------------------
    def _start_dedupe(self) -> None:
        if self.dedupe is None and not any(w.group == "triage-dedupe" for w in self.app.workers):
            self.find_dupes()

    @work(thread=True, exclusive=True, group="triage-dedupe")
    def find_dupes(self) -> None:
        worker = get_current_worker()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if total and (now - last[0] > 0.25 or done == total):
                last[0] = now
                self.app.call_from_thread(self._dedupe_progress, done, total)

        try:
            # One hashing thread: thumbnails and the event loop keep the other cores.
            res = find_duplicates(
                self.project,
                items=list(self.all_items),
                progress=progress,
                should_stop=lambda: worker.is_cancelled,
                workers=1,
            )
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._dedupe_done, res)

    def _dedupe_progress(self, done: int, total: int) -> None:
        self.dedupe_progress = (done, total)
        self.update_status()

    def _dedupe_done(self, res: DedupeResult) -> None:
        self.dedupe = res
        self.dedupe_progress = None
        self.groups = self._live_groups()
        if self.dupe_view or self.flt.duplicates:
            self.refilter()
        else:
            self.update_status()
        if self.current_item is not None:
            self.update_facts(self.current_item)

    # --- auto-tagging -------------------------------------------------------
    def action_autotag(self, scope: int = 0) -> None:
        """The tagger dialog over the list shown, this image, or the inbox (its changes are caption history)."""
        current = self.current_item
        scopes = [
            ("the images shown", [i.rel for i in self.shown]),
            ("this image", [current.rel] if current else []),
            ("the inbox", [i.rel for i in self.all_items if i.area == tri.INBOX]),
        ]
        self.app.push_screen(TagScreen(self.project, scopes, scope=scope), lambda r: report_applied(self, r))

    # --- command palette --------------------------------------------------
    def commands(self) -> Iterable[SystemCommand]:
        c = self
        yield command(
            c, "Triage: auto-tag the images shown", "A local model proposes tags", self.action_autotag, "autotag"
        )
        yield command(c, "Triage: auto-tag the inbox", "Preview, then apply", lambda: self.action_autotag(2), "autotag")
        yield command(
            c, "Triage: keep", "Keep the selected image", lambda: self._run("decide('keep')"), "decide('keep')"
        )
        yield command(
            c,
            "Triage: reject",
            "Move it to rejected/ with its caption",
            lambda: self._run("decide('reject')"),
            "decide('reject')",
        )
        yield command(
            c, "Triage: flag", "Mark for a second look", lambda: self._run("decide('flag')"), "decide('flag')"
        )
        yield command(
            c, "Triage: clear / unreject", "Back to unreviewed", lambda: self._run("decide('clear')"), "decide('clear')"
        )
        yield command(c, "Triage: undo last decision", "Take the last keep/reject/flag back", self.action_undo, "undo")
        for state in STATE_CYCLE:
            word = "all" if state is None else STATE_WORDS[state]
            yield command(
                c,
                f"Triage: show {word}",
                "Filter by decision",
                lambda s=state: self._set_filter(state=s),
                "cycle_state",
            )
        yield command(
            c,
            "Triage: missing caption",
            "Toggle the filter",
            lambda: self.action_toggle("missing_caption"),
            "toggle('missing_caption')",
        )
        yield command(
            c, "Triage: low resolution", "Toggle the filter", lambda: self.action_toggle("low_res"), "toggle('low_res')"
        )
        yield command(
            c,
            "Triage: near-duplicates filter",
            "Toggle the filter",
            lambda: self.action_toggle("duplicates"),
            "toggle('duplicates')",
        )
        yield command(
            c, "Triage: has tag…", "Filter by caption tag", lambda: self.action_ask_tag("has_tag"), "ask_tag('has_tag')"
        )
        yield command(
            c,
            "Triage: lacks tag…",
            "Filter by missing tag",
            lambda: self.action_ask_tag("lacks_tag"),
            "ask_tag('lacks_tag')",
        )
        yield command(c, "Triage: folder…", "Filter by subfolder", self.action_ask_folder, "ask_folder")
        chars = characters_of(self.project.config)
        if len(chars) > 1:
            yield command(
                c,
                "Triage: character…",
                "Filter by character, pair or joint",
                self.action_ask_character,
                "ask_character",
            )
            for word in filter_words(chars):
                yield command(
                    c,
                    f"Triage: {word} images" if word in (JOINT, "none") else f"Triage: character {word}",
                    "Images holding two characters or more" if word == JOINT else "Filter by character",
                    lambda w=word: self._set_filter(character=w),
                    "ask_character",
                )
        yield command(
            c,
            "Triage: inbox / dataset",
            "Switch between dataset, inbox and reg",
            self.action_toggle_inbox,
            "toggle_inbox",
        )
        yield command(c, "Triage: near-duplicate groups", "Walk groups, keep one", self.action_dupes, "dupes")
        for key in tri.SORTS:
            yield command(c, f"Triage: sort by {key}", "S reverses", lambda k=key: self._sort_by(k), "cycle_sort")
        yield command(c, "Triage: reset filters", "Back to every image", self.action_reset, "reset")
        yield command(c, "Triage: zoom", "The image large", lambda: self._run("zoom"), "zoom")
        yield command(
            c,
            "Triage: generate candidates",
            "Draw the character sheet into the inbox",
            self.action_generate,
            "generate",
        )

    def _run(self, action: str) -> None:
        self.app.call_later(self.run_action, action)

    def _sort_by(self, key: str) -> None:
        self.sort = key
        self.refilter()
