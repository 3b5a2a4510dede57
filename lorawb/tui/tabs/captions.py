"""Captions tab: edit one caption beside its image, see the tag table and the composition, run bulk edits.

The file list follows the Triage tab's list (``app.image_list``) and selection
(``app.current_image``), narrowed by this tab's own filter (a tag, a composition
cell, or a query such as ``has:forest -has:watercolor``). Every write goes through
the caption engine (lorawb.core.caption_ops / caption_history), so a hand edit,
a bulk operation and an undo are steps of one history, the CLI's too. A caption
changed on disk while it is open is never overwritten: saving it asks keep mine /
take theirs / compare.

The captions come from the app's image index (the file watcher keeps it in step with
other programs). When another program changes the open caption, it is reloaded at once
if there is no unsaved edit (with a notice); with an unsaved edit the same keep mine /
take theirs / compare dialog asks, and neither text is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import ContentSwitcher, DataTable, Static

from lorawb.core import caption_history, caption_ops
from lorawb.core.caption_edit import Conflict, OpenCaption
from lorawb.core.caption_ops import CaptionFile, Selection
from lorawb.core.caption_stats import TagStats, leads_with_triggers, tag_stats
from lorawb.core.caption_writes import CaptionWrites, keep_trigger_in_step
from lorawb.core.captions import leads_with_trigger
from lorawb.core.characters import Character, characters_of
from lorawb.core.composition import Composition, PairTable, composition
from lorawb.core.index import DATASET, IndexSnapshot
from lorawb.core.project import Project
from lorawb.errors import LorawbError
from lorawb.tui.messages import ConfigReloaded, DatasetChanged
from lorawb.tui.palette import command
from lorawb.tui.widgets.caption_editor import CaptionEditor
from lorawb.tui.widgets.caption_list import CaptionList
from lorawb.tui.widgets.caption_modals import OP_SPECS, BulkEdit, BulkScreen, ConflictScreen, PromptScreen
from lorawb.tui.widgets.history_modal import HistoryScreen
from lorawb.tui.widgets.image_view import ImageView
from lorawb.tui.widgets.tag_modal import TagScreen, report_applied
from lorawb.tui.workbench import Workbench, workbench
from lorawb.words import fit_name, plural

VIEWS = {"edit": "captions-edit", "tags": "captions-tags", "comp": "captions-comp"}
FILTER_HELP = "filter: has:TAG  -has:TAG  text:WORDS  in:FOLDER  (empty: no filter)"
FILTER_HELP_CHARACTERS = "filter: has:TAG  -has:TAG  text:WORDS  in:FOLDER  char:NAME  joint  (empty: no filter)"


@dataclass
class Filter:
    """The tab's own narrowing of the list: a query, or the images of a composition cell."""

    label: str
    selection: Selection | None = None
    members: frozenset[str] | None = None


@dataclass
class Tables:
    """What a worker computed over the list: the rows shown and the tables over them."""

    shown: list[str]
    marks: list[str]  # per shown row: "∅" no caption, "!" does not lead with the trigger, " " fine
    stats: TagStats
    vocabulary: list[str]
    comp: Composition | None
    problem: str | None = None
    unreadable: list[tuple[str, str]] | None = None  # (image, reason) among the listed images
    list_is_dataset: bool = True  # the list shows dataset images (the composition is always the dataset's)


class TagAction(Message):
    """Rename or delete a tag across the list (from the tag table)."""

    def __init__(self, action: str, tag: str | None) -> None:
        super().__init__()
        self.action = action
        self.tag = tag


class TagTable(DataTable):
    BINDINGS = [
        Binding("r", "tag('rename')", "Rename tag"),
        Binding("d", "tag('delete')", "Delete tag"),
    ]

    def action_tag(self, action: str) -> None:
        tag = None
        if self.row_count:
            tag = str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        self.post_message(TagAction(action, tag))


class CompTable(DataTable):
    BINDINGS = [Binding("p", "next_pair", "Next pair")]

    class NextPair(Message):
        pass

    def action_next_pair(self) -> None:
        self.post_message(self.NextPair())


class CaptionsTab(Vertical):
    BINDINGS = [
        Binding("e", "view('edit')", "Edit"),
        Binding("t", "view('tags')", "Tags"),
        Binding("c", "view('comp')", "Composition"),
        Binding("slash", "filter", "Filter"),
        Binding("b", "bulk", "Bulk edit"),
        Binding("a", "autotag", "Tag"),
        Binding("u", "undo", "Undo"),
        Binding("U", "redo", "Redo"),
        Binding("H", "history", "History"),
        Binding("r,ctrl+r", "revert", "Revert"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+down", "step(1)", "Next image", show=False),
        Binding("ctrl+up", "step(-1)", "Previous image", show=False),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, project: Project, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.project = project
        self.files: dict[str, CaptionFile] = {}
        self.order: list[str] = []
        self.shown: list[str] = []
        self.marks: list[str] = []
        self.row_of: dict[str, int] = {}
        self.filter: Filter | None = None
        self.dataset: list[CaptionFile] = []  # the dataset's captions: the composition's scope
        self.vocabulary: list[str] = []  # every tag of the project's captions (dataset, inbox, reg)
        self.list_is_dataset = True
        self.stats: TagStats | None = None
        self.comp: Composition | None = None
        self.pair_index = 0
        self.opened: OpenCaption | None = None  # the caption in the editor, as read: its rules are the core's
        self.conflicted = False
        self.unreadable: list[tuple[str, str]] = []
        self._conflict_open: str | None = None  # the caption whose conflict dialog is on screen
        self._own_version = -1  # dataset_version after our own write: no need to re-read for it
        self._stale = True

    # --- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="captions-status")
        with Horizontal(id="captions-body"):
            yield CaptionList(id="captions-list")
            with ContentSwitcher(initial="captions-edit", id="captions-views"):
                with Horizontal(id="captions-edit"):
                    yield ImageView(id="captions-preview")
                    with Vertical(id="captions-editor-pane"):
                        yield Static("", id="captions-file")
                        yield CaptionEditor(id="captions-editor")
                        yield Static("", id="captions-candidates")
                with Vertical(id="captions-tags"):
                    yield Static("", id="captions-tags-head")
                    yield TagTable(id="captions-tag-table", cursor_type="row", zebra_stripes=True)
                with Vertical(id="captions-comp"):
                    yield Static("", id="captions-comp-head")
                    yield CompTable(id="captions-comp-table", cursor_type="cell")

    def on_mount(self) -> None:
        self.query_one("#captions-tag-table", DataTable).add_columns("count", "w/trig", "tag")
        self.watch(self.app, "image_list", lambda _v: self._changed(), init=False)
        self.watch(self.app, "dataset_version", self._version_changed, init=False)
        self.watch(self.app, "theme", lambda _v: self._fill_comp(), init=False)
        self._status()
        self._show_candidates([])

    def on_show(self) -> None:
        if self._stale:
            self.reload()
        else:
            self._follow(self.wb.current_image)

    @property
    def wb(self) -> Workbench:
        return workbench(self)

    @property
    def chars(self) -> list[Character]:
        """The project's characters (several: the tables and the filter count per character and pair)."""
        return characters_of(self.project.config)

    def _trigger_changed(self) -> None:
        """lorawb.toml's trigger was renamed here (the app's project holds it): every tab re-reads."""
        self.wb.dataset_changed()
        self._changed()

    def focus_target(self) -> CaptionList:
        return self.query_one(CaptionList)

    def commands(self) -> Iterable[SystemCommand]:
        """Command palette entries: every bulk operation (always through the preview), undo, the tables."""
        c = self
        for key, spec in OP_SPECS.items():
            yield command(
                c,
                f"Captions: {spec.title}",
                "preview, then apply to the captions listed",
                lambda k=key: self._palette(k),
                "bulk",
            )
        yield command(
            c,
            "Captions: auto-tag",
            "a local model proposes tags for the list; preview, then apply",
            self._palette_autotag,
            "autotag",
        )
        yield command(c, "Captions: undo", "undo this window's last caption change", self._palette_undo, "undo")
        yield command(c, "Captions: redo", "redo this window's last undone change", self._palette_redo, "redo")
        yield command(
            c,
            "Captions: history",
            "every caption change, by whom; undo one made elsewhere",
            self._palette_history,
            "history",
        )
        yield command(
            c,
            "Captions: tag frequency",
            "the tags of the list, most frequent first",
            self._palette_tags,
            "view('tags')",
        )
        yield command(
            c,
            "Captions: composition",
            "the dataset's tag groups x groups, gaps highlighted",
            self._palette_comp,
            "view('comp')",
        )
        yield command(
            c, "Captions: edit", "the caption of the selected image", lambda: self._palette_view("edit"), "view('edit')"
        )
        yield command(c, "Captions: filter", "has:TAG -has:TAG text:WORDS in:FOLDER", self._palette_filter, "filter")
        yield command(c, "Captions: revert", "drop the unsaved edit", self.action_revert, "revert")

    def _show_me(self) -> None:
        if self.wb.active_tab != "captions":
            self.wb.show_tab("captions")

    def _palette(self, key: str) -> None:
        self._show_me()
        self.action_bulk(key)

    def _palette_autotag(self) -> None:
        self._show_me()
        self.action_autotag()

    def _palette_undo(self) -> None:
        self._show_me()
        self.action_undo()

    def _palette_redo(self) -> None:
        self._show_me()
        self.action_redo()

    def _palette_history(self) -> None:
        self._show_me()
        self.action_history()

    def _palette_tags(self) -> None:
        self._show_me()
        self.action_view("tags")

    def _palette_comp(self) -> None:
        self._palette_view("comp")

    def _palette_view(self, name: str) -> None:
        self._show_me()
        self.action_view(name)

    def _palette_filter(self) -> None:
        self._show_me()
        self.action_filter()

    # --- loading --------------------------------------------------------------------------
    def _visible(self) -> bool:
        return self.wb.active_tab == "captions"

    def _changed(self) -> None:
        self._stale = True
        if self._visible():
            self.reload()

    def _version_changed(self, version: int) -> None:
        if version == self._own_version:
            return
        self._changed()

    def _snapshot(self) -> IndexSnapshot | None:
        """The app's index as it is now; None before its first scan (then the disk is read)."""
        snap = self.wb.index.snapshot()
        return snap if snap.facts else None

    @work(thread=True, exclusive=True, group="captions-load")
    def reload(self) -> None:
        """The captions of the list (the Triage tab's, else the whole dataset), from the index; then the tables."""
        root = self.project.root
        wanted = list(self.wb.image_list)
        try:
            snap = self._snapshot()
            if snap is not None:
                loaded = caption_ops.captions_of(root, snap, wanted or None)
                dataset = caption_ops.captions_of(root, snap, None)
                others = [caption_ops.caption_file_of(root, f) for f in snap.images(None) if f.area != DATASET]
            else:
                dataset = caption_ops.load_captions(self.project)
                loaded = caption_ops.read_captions(root, wanted) if wanted else dataset
                others = [cf for cf in loaded if not cf.image.startswith(DATASET + "/")] if wanted else []
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        files = {cf.image: cf for cf in loaded}
        order = [rel for rel in wanted if rel in files] if wanted else [cf.image for cf in loaded]
        in_dataset = {cf.image for cf in dataset}
        list_is_dataset = all(rel in in_dataset for rel in order)
        vocabulary = tag_stats(dataset + others, self.project.trigger, self.chars).vocabulary()
        tables = self._compute(files, order, self.filter, dataset, vocabulary, list_is_dataset)
        self.app.call_from_thread(self._loaded, files, order, tables, dataset)

    def on_dataset_changed(self, msg: DatasetChanged) -> None:
        """Files changed on disk (the index already has it): follow a move of the open image, settle
        an outside change of the open caption, and re-read the list."""
        batch = msg.batch
        moved = batch.delta.moved
        if self.current is not None and self.current in moved:
            self._follow_move(moved[self.current])
        elif self.current is not None and (
            self.current in batch.outside_captions or self.current in batch.delta.removed
        ):
            self._changed_outside(self.current)
        self._changed()

    def on_config_reloaded(self, msg: ConfigReloaded) -> None:
        self._changed()  # the trigger or the tag groups may have changed

    def _filtered(self, cfs: list[CaptionFile], flt: Filter | None) -> list[CaptionFile]:
        """``cfs`` narrowed by the tab's filter (LorawbError for a filter that cannot be applied)."""
        if flt is None:
            return cfs
        if flt.selection is not None:
            cfs = flt.selection.select(self.project, cfs)
        if flt.members is not None:
            cfs = [cf for cf in cfs if cf.image in flt.members]
        return cfs

    def _compute(
        self,
        files: dict[str, CaptionFile],
        order: list[str],
        flt: Filter | None,
        dataset: list[CaptionFile],
        vocabulary: list[str],
        list_is_dataset: bool,
    ) -> Tables:
        """The list as filtered and its tag table; the composition of the dataset (filtered alike),
        whatever the list shows; completion from every caption of the project."""
        shown = [files[rel] for rel in order]
        problem = None
        comp_files = dataset
        try:
            shown = self._filtered(shown, flt)
            comp_files = self._filtered(dataset, flt)
        except LorawbError as exc:
            problem = str(exc)
        stats = tag_stats(shown, self.project.trigger, self.chars)
        comp = None
        if self.project.config.tags.groups:
            try:
                comp = composition(comp_files, self.project.config.tags.groups, chars=self.chars)
            except LorawbError:
                comp = None
        marks = [self._mark(cf) for cf in shown]
        unreadable = [(cf.image, cf.image_error) for cf in shown if cf.image_error is not None]
        return Tables([cf.image for cf in shown], marks, stats, vocabulary, comp, problem, unreadable, list_is_dataset)

    def _loaded(
        self, files: dict[str, CaptionFile], order: list[str], tables: Tables, dataset: list[CaptionFile]
    ) -> None:
        self._stale = False
        self.files, self.order, self.dataset = files, order, dataset
        self._apply_tables(tables)

    @work(thread=True, exclusive=True, group="captions-load")
    def refilter(self) -> None:
        """The filter changed: recompute from the captions already read (no disk)."""
        tables = self._compute(self.files, self.order, self.filter, self.dataset, self.vocabulary, self.list_is_dataset)
        self.app.call_from_thread(self._apply_tables, tables)

    def _apply_tables(self, tables: Tables) -> None:
        if tables.problem:
            self.notify(tables.problem, severity="error")
        before = self.row_of.get(self.current, 0) if self.current else 0
        self.shown = tables.shown
        self.marks = tables.marks
        self.stats = tables.stats
        self.comp = tables.comp
        self.unreadable = tables.unreadable or []
        self.vocabulary, self.list_is_dataset = tables.vocabulary, tables.list_is_dataset
        self.query_one(CaptionEditor).set_vocabulary(tables.vocabulary)
        # Keep the open caption when it is still listed; else the app's selection; else its neighbour.
        wanted = self.current if self.current in tables.shown else None
        if wanted is None:
            app_sel = self.wb.current_image
            if app_sel in tables.shown and app_sel != self.current:
                wanted = app_sel
            elif self.shown:
                wanted = self.shown[min(before, len(self.shown) - 1)]
        self._fill_list(wanted)
        self._fill_tags()
        self._fill_comp()
        self._status()
        if wanted == self.current and not self._dirty():
            self._open(wanted, force=True)  # re-read: the file may have changed (undo, bulk edit, rescan)
        elif wanted != self.current:
            self._open(wanted)

    # --- tables ---------------------------------------------------------------------------------
    def _mark(self, cf: CaptionFile | None) -> str:
        if cf is None or not (cf.text or "").strip():
            return "∅"
        if len(self.chars) > 1:
            return " " if leads_with_triggers(cf, self.chars) else "!"
        if self.project.trigger and not leads_with_trigger(cf.caption, self.project.trigger):
            return "!"
        return " "

    def _fill_list(self, cursor_on: str | None) -> None:
        self.row_of = {rel: i for i, rel in enumerate(self.shown)}
        self.query_one(CaptionList).set_rows(self.shown, self.marks, self.row_of.get(cursor_on, 0))

    def _fill_tags(self) -> None:
        table = self.query_one("#captions-tag-table", DataTable)
        table.clear()
        st = self.stats
        head = self.query_one("#captions-tags-head", Static)
        if st is None:
            head.update("")
            return
        columns = ("count", "w/trig", *st.groups, "tag")  # several characters: a column each, and each pair
        if tuple(str(c.label) for c in table.columns.values()) != columns:
            table.clear(columns=True)
            table.add_columns(*columns)
        for t in st.tags:
            per = [str(n) for n in t.by_group]
            table.add_row(str(t.count), str(t.with_trigger) if st.trigger else "-", *per, Text(t.name), key=t.key)
        n_missing = len(st.missing_trigger)
        missing = (
            f" · {n_missing} {'lacks' if n_missing == 1 else 'lack'} the trigger" if st.trigger else " · no trigger set"
        )
        if st.groups:
            missing = f" · {n_missing} not led by {'its' if n_missing == 1 else 'their'} triggers"
        head.update(
            Content(
                f"{plural(len(st.tags), 'tag')} in {plural(st.captioned, 'caption')} of {plural(st.total, 'image')}{missing}"
            ).append(Content.styled("   enter: filter · r: rename · d: delete", "$text-muted"))
        )

    def _pair(self) -> PairTable | None:
        if self.comp is None or not self.comp.pairs:
            return None
        return self.comp.pairs[self.pair_index % len(self.comp.pairs)]

    def _fill_comp(self) -> None:
        table = self.query_one("#captions-comp-table", DataTable)
        table.clear(columns=True)
        head = self.query_one("#captions-comp-head", Static)
        comp, pair = self.comp, self._pair()
        if comp is None:
            head.update(Text('No tag groups: add [tags.groups] to lorawb.toml, e.g. context = ["forest", "bar"].'))
            return
        scope = f"the dataset's {plural(comp.total, 'caption')}" + (
            f" (filter: {self.filter.label})" if self.filter else ""
        )
        if not self.list_is_dataset:
            scope += ", not the list's"
        lacking = [f"{plural(len(v), 'caption')} name no {g}" for g, v in comp.missing.items() if v]
        missing = " · ".join(lacking) or "all name a " + ", a ".join(comp.missing)
        if pair is None:
            head.update(Content(f"{scope} · {missing} (one group only: no pairs)"))
            return
        variables = self.app.get_css_variables()
        empty_style = f"bold {variables.get('conflict', 'red')}"
        thin_style = variables.get("flagged", "yellow")
        more = f" · p: pair {self.pair_index % len(comp.pairs) + 1}/{len(comp.pairs)}" if len(comp.pairs) > 1 else ""
        head.update(
            Content(
                f"{pair.rows} × {pair.cols} · {scope} · {missing} · ? thin (under {pair.threshold}), ! none"
            ).append(Content.styled(f"{more} · enter: filter", "$text-muted"))
        )
        table.add_column(Text(f"{pair.rows}\\{pair.cols}"), key="__row__")
        for c in pair.col_values:
            table.add_column(Text(c), key=c)
        table.add_column("all", key="__all__")
        # Several characters: which context x style cells each character (alone) and pair (together) has.
        cells = comp.cells if pair.rows == next(iter(comp.groups), None) and comp.cells else {}
        if cells:
            table.add_column(f"cells/{comp.cells_total()}", key="__cells__")
        for r in pair.row_values:
            row: list[Text] = [Text(r, style="bold")]
            for c in pair.col_values:
                n = pair.counts[(r, c)]
                if n == 0:
                    row.append(Text("0 !", style=empty_style))
                elif n < pair.threshold:
                    row.append(Text(f"{n} ?", style=thin_style))
                else:
                    row.append(Text(str(n)))
            row.append(Text(str(comp.value_counts[pair.rows][r])))
            if cells:
                row.append(Text(str(len(cells.get(r, [])))))
            table.add_row(*row, key=r)
        totals = [Text("all", style="bold")] + [Text(str(comp.value_counts[pair.cols][c])) for c in pair.col_values]
        table.add_row(*totals, Text(str(comp.total)), *([Text("")] if cells else []), key="__all__")

    @on(CompTable.NextPair)
    def _next_pair(self) -> None:
        self.pair_index += 1
        self._fill_comp()

    @on(DataTable.CellSelected, "#captions-comp-table")
    def _comp_selected(self, event: DataTable.CellSelected) -> None:
        pair, comp = self._pair(), self.comp
        if pair is None or comp is None:
            return
        row = str(event.cell_key.row_key.value)
        col = str(event.cell_key.column_key.value)
        row_all, col_all = row == "__all__", col in ("__row__", "__all__", "__cells__")
        if row_all and col_all:
            self._set_filter(None)
            return
        if row_all:
            members, label = comp.value_members[pair.cols][col], f"{pair.cols}: {col}"
        elif col_all:
            members, label = comp.value_members[pair.rows][row], f"{pair.rows}: {row}"
        else:
            members, label = pair.members[(row, col)], f"{row} × {col}"
        self._set_filter(Filter(label, members=frozenset(members)))

    @on(DataTable.RowSelected, "#captions-tag-table")
    def _tag_selected(self, event: DataTable.RowSelected) -> None:
        st = self.stats
        key = str(event.row_key.value)
        name = next((t.name for t in st.tags if t.key == key), key) if st else key
        quoted = '"' + name.replace('"', "") + '"'
        self._set_filter(Filter(f"has:{name}", selection=caption_ops.parse_where(f"has:{quoted}", self.chars)))

    @on(TagAction)
    def _tag_action(self, event: TagAction) -> None:
        if event.tag is None:
            return
        name = next((t.name for t in self.stats.tags if t.key == event.tag), event.tag) if self.stats else event.tag
        if event.action == "rename":
            self.action_bulk("replace", a=name)
        else:
            self.action_bulk("remove", a=name, run_preview=True)

    # --- the filter ---------------------------------------------------------------------------
    def _set_filter(self, flt: Filter | None) -> None:
        self.filter = flt
        self.refilter()

    def action_filter(self) -> None:
        current = self.filter.label if self.filter and self.filter.selection is not None else ""
        self.app.push_screen(
            PromptScreen(
                FILTER_HELP_CHARACTERS if len(self.chars) > 1 else FILTER_HELP, current, "has:forest -has:watercolor"
            ),
            self._filter_entered,
        )

    def _filter_entered(self, query: str | None) -> None:
        if query is None:
            return
        if not query.strip():
            self._set_filter(None)
            return
        try:
            selection = caption_ops.parse_where(query, self.chars)
        except LorawbError as exc:
            self.notify(str(exc), severity="error")
            return
        self._set_filter(Filter(query.strip(), selection=selection))

    # --- the open caption ------------------------------------------------------------------------
    @on(CaptionList.Highlighted)
    def _row_highlighted(self, event: CaptionList.Highlighted) -> None:
        if isinstance(event, CaptionList.Selected):
            return
        # Moves queued behind a refill of the list arrive late: only the cursor's current row counts.
        if event.index != event.caption_list.cursor or event.rel == self.current:
            return
        rel = event.rel
        if not self._open(rel):
            self._move_cursor(self.current)  # the edit could not be saved: stay on it
            return
        if self.wb.current_image != rel:
            self.wb.select_image(rel)

    @on(CaptionList.Selected)
    def _row_selected(self) -> None:
        self.action_view("edit")

    def _follow(self, rel: str | None) -> None:
        """Show the app's selection (the Triage tab's) when this tab is shown, if it is in the list.

        Only then: while the tab is on screen the user moves through its own list, and while it
        is hidden following every move through the Triage grid would read each caption and draw
        each preview for nothing.
        """
        if rel is not None and rel != self.current and rel in self.row_of:
            self._move_cursor(rel)

    def _move_cursor(self, rel: str | None) -> None:
        if rel is not None and rel in self.row_of:
            self.query_one(CaptionList).move_to(self.row_of[rel])

    @property
    def current(self) -> str | None:
        """The image whose caption is open (relative to the project)."""
        return self.opened.image if self.opened else None

    @property
    def base(self) -> CaptionFile | None:
        """The open caption as read from disk: the conflict reference."""
        return self.opened.base if self.opened else None

    def _dirty(self) -> bool:
        return self.opened is not None and self.opened.dirty(self.query_one(CaptionEditor).text)

    def _show_text(self, keep_cursor: bool = False) -> None:
        """The open caption into the editor (the cursor at its end, or where it was)."""
        editor = self.query_one(CaptionEditor)
        row, col = editor.cursor_location
        editor.load_text(self.opened.body if self.opened else "")
        if keep_cursor:
            row = min(row, editor.document.line_count - 1)
            editor.move_cursor((row, min(col, len(editor.document.get_line(row)))))
        else:
            editor.move_cursor(editor.document.end)

    def _open(self, rel: str | None, *, force: bool = False) -> bool:
        """Show ``rel`` in the editor (saving the open caption first). False when that save hit a conflict."""
        if rel == self.current and not force:
            return True
        if rel != self.current and self._dirty() and not self._save():
            return False
        self.conflicted = False
        if rel is None:
            self.opened = None
            self._show_text()
            self.query_one(ImageView).show(None)
        else:
            try:
                self.opened = OpenCaption.open(self.project, rel)
            except LorawbError as exc:
                self.notify(str(exc), severity="error")
                self.opened = OpenCaption(self.project, rel, None)
            self._show_text()
            self.query_one(ImageView).show(self.project.root / rel)
        self._file_label()
        return True

    @on(CaptionEditor.Changed)
    def _editor_changed(self) -> None:
        self._file_label()

    @on(CaptionEditor.Submitted)
    def _editor_submitted(self) -> None:
        if self.current is not None and self.row_of.get(self.current, -1) >= len(self.shown) - 1:
            self.action_save()  # the last image: nowhere to move, just save
        else:
            self.action_step(1)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, CaptionEditor):
            self._show_candidates(event.widget.candidates, event.widget.candidate_index)

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        if isinstance(event.widget, CaptionEditor):
            self._show_candidates([])

    @on(CaptionEditor.Candidates)
    def _candidates(self, event: CaptionEditor.Candidates) -> None:
        self._show_candidates(event.candidates, event.index)

    def _show_candidates(self, candidates: list[str], index: int = 0) -> None:
        out = self.query_one("#captions-candidates", Static)
        if not candidates:
            editing = self.query_one(CaptionEditor).has_focus
            hint = (
                "editing: keys type here · tab: complete · enter: save, next · esc: done"
                if editing
                else "e or enter: edit (then keys type into the caption until esc)"
            )
            out.update(Content.styled(hint, "$text-muted"))
            return
        parts = [Content.styled("tab→ ", "$text-muted")]
        for i, c in enumerate(candidates):
            if i:
                parts.append(Content(" · "))
            parts.append(Content.styled(c, "bold reverse") if i == index else Content(c))
        parts.append(Content.styled("  (ctrl+n: next)", "$text-muted"))
        out.update(Content.assemble(*parts))

    def _file_label(self) -> None:
        label = self.query_one("#captions-file", Static)
        if self.current is None:
            label.update("no image in the list")
            return
        name = self.current.rsplit("/", 1)[-1]
        if self.conflicted:
            state = Content.styled("changed on disk: ctrl+s to resolve", "bold $conflict")
        elif self._dirty():
            state = Content.styled("modified", "bold $flagged")
        elif self.base is None or self.base.text is None:
            state = Content.styled("no caption file yet", "$text-muted")
        else:
            state = Content.styled("saved", "$text-muted")
        # The state first, then the name fitted to what is left (its start and end kept): neither is ever lost.
        room = label.size.width - len(state.plain) - 3 if label.size.width else len(name)
        label.update(Content.assemble(state, Content(" · " + fit_name(name, max(8, room)))))

    def on_resize(self) -> None:
        self._file_label()

    def _status(self) -> None:
        """The one count: images listed (readable or not), captioned ones, the unreadable ones named."""
        status = self.query_one("#captions-status", Static)
        total, shown = len(self.order), len(self.shown)
        parts = [f"{shown}/{plural(total, 'image')}" if self.filter else plural(total, "image")]
        if self.stats:
            parts.append(f"{self.stats.captioned} captioned")
        if self.filter:
            parts.append(f"filter: {self.filter.label} (esc clears)")
        if self.stats and self.stats.groups:  # several characters: each caption leads with its own triggers
            n_missing = len(self.stats.missing_trigger)
            parts.append(f"{n_missing} not led by {'its' if n_missing == 1 else 'their'} triggers")
        elif self.stats and self.stats.trigger:
            n_missing = len(self.stats.missing_trigger)
            parts.append(f"{n_missing} {'lacks' if n_missing == 1 else 'lack'} {self.stats.trigger}")
        if self.unreadable:
            first = self.unreadable[0][0].rsplit("/", 1)[-1]
            more = f" +{len(self.unreadable) - 1}" if len(self.unreadable) > 1 else ""
            parts.append(f"{len(self.unreadable)} unreadable: {first}{more}")
        status.update(Content(" · ".join(parts)))

    def _save(self) -> bool:
        """Write the open caption if it changed (the core's rules). False, and the conflict dialog, when it
        changed on disk since it was read."""
        opened = self.opened
        if opened is None:
            return True
        try:
            # One small file, written here and now: the next read (moving back to it) must see it.
            outcome = opened.save(self.query_one(CaptionEditor).text, self._writes(), self.wb.author)
        except LorawbError as exc:
            self.notify(str(exc), severity="error")
            return False
        if isinstance(outcome, Conflict):
            self.conflicted = True
            self._file_label()
            if self._conflict_open != opened.image:  # else the watcher's dialog for this very change is up
                self._ask(opened.image, outcome)
            return False
        if outcome.result is not None:
            self._saved()
        return True

    def _ask(self, rel: str, conflict: Conflict) -> None:
        """The keep mine / take theirs / compare dialog for the open caption."""
        self._conflict_open = rel
        screen = ConflictScreen(conflict.caption, conflict.mine, conflict.theirs, conflict.reason)
        self.app.push_screen(screen, lambda choice: self._resolve(rel, conflict.mine, choice))

    def _saved(self) -> None:
        """The open caption was written: its row, the other tabs."""
        if self.opened is not None and self.opened.base is not None:
            rel, fresh = self.opened.image, self.opened.base
            self.files[rel] = fresh
            if rel in self.row_of:
                self.query_one(CaptionList).set_mark(self.row_of[rel], self._mark(fresh))
        self.conflicted = False
        self._file_label()
        self._announce_write()

    def _writes(self) -> CaptionWrites:
        """Every caption write of this tab: through the core's one writer, which tells the app's index
        (the watcher then finds nothing new to report); a failed index update is said, never silent."""
        writes = self.wb.caption_writes()
        writes.on_problem = self._index_problem
        return writes

    def _index_problem(self, message: str) -> None:
        try:  # from a worker thread...
            self.app.call_from_thread(self.notify, message, severity="warning", markup=False)
        except RuntimeError:  # ...or from the app's own
            self.notify(message, severity="warning", markup=False)

    def _follow_move(self, new_rel: str) -> None:
        """The open image was moved (into rejected/, another folder) by another program: follow it, edit kept."""
        if self.opened is not None and not self.opened.moved_to(new_rel):
            self._changed_outside(new_rel)
        self.query_one(ImageView).show(self.project.root / new_rel)
        self._file_label()

    def _changed_outside(self, rel: str) -> None:
        """Another program changed (or deleted) the open caption: reload it, or ask when there is an unsaved edit."""
        if self.opened is None or self.opened.image != rel:
            return
        outside = self.opened.changed_outside(self.query_one(CaptionEditor).text)
        if outside.kind == "reloaded":
            self._show_text()
            self._file_label()
            self.notify(f"{rel.rsplit('/', 1)[-1]}: caption changed on disk, reloaded", timeout=4, markup=False)
        elif outside.conflict is not None and self._conflict_open != rel:  # else the dialog on screen shows it
            self.conflicted = True
            self._file_label()
            self._ask(rel, outside.conflict)

    def _announce_write(self) -> None:
        """Tell the other tabs (dataset_version) without re-reading everything here for our own edit."""
        self._own_version = self.wb.dataset_version + 1
        self.wb.dataset_changed()

    def _resolve(self, rel: str, mine: str, choice: str | None) -> None:
        self._conflict_open = None
        if rel != self.current:
            return
        editor = self.query_one(CaptionEditor)
        opened = self.opened
        assert opened is not None
        try:
            if choice == "theirs":
                opened.take_theirs()
                self.conflicted = False
                self._show_text()
                self.notify(f"{rel}: took the version on disk")
            elif choice == "mine":
                outcome = opened.keep_mine(mine, self._writes(), self.wb.author)  # over what is on disk now
                if isinstance(outcome, Conflict):  # changed yet again in between: ask again
                    self._ask(rel, outcome)
                    return
                self._saved()
                self.notify(f"{rel}: kept yours (u undoes it)")
        except LorawbError as exc:
            self.notify(str(exc), severity="error")
            return
        self._file_label()
        editor.focus()

    # --- actions -------------------------------------------------------------------------------------
    def action_view(self, name: str) -> None:
        self.query_one(ContentSwitcher).current = VIEWS[name]
        target = {
            "edit": "#captions-editor",
            "tags": "#captions-tag-table",
            "comp": "#captions-comp-table",
        }[name]
        self.query_one(target).focus()

    def action_save(self) -> None:
        if self._save():
            self._file_label()

    def action_revert(self) -> None:
        """Drop the unsaved edit: back to the caption as it is on disk now."""
        if self.current is None:
            return
        self.conflicted = False
        if self._dirty():
            self._revert_now()
        else:
            self._open(self.current, force=True)

    def _revert_now(self) -> None:
        if self.opened is not None:
            try:
                self.opened.take_theirs()  # the caption as it is on disk now
            except LorawbError as exc:
                self.notify(str(exc), severity="error")
                return
        self._show_text(keep_cursor=True)
        self._file_label()
        self.notify("reverted to the caption on disk", timeout=2)

    def action_step(self, delta: int) -> None:
        """Next / previous image, saving the open caption first (focus stays where it is)."""
        if not self.shown:
            return
        i = self.row_of.get(self.current, -1) if self.current else -1
        j = max(0, min(len(self.shown) - 1, i + delta))
        if j != i:
            self._move_cursor(self.shown[j])

    def action_back(self) -> None:
        editor = self.query_one(CaptionEditor)
        table = self.query_one(CaptionList)
        if editor.has_focus:
            if self._save():
                table.focus()
            return
        if self.query_one(ContentSwitcher).current != VIEWS["edit"]:
            self.query_one(ContentSwitcher).current = VIEWS["edit"]
            table.focus()
            return
        if self.filter is not None:
            self._set_filter(None)

    def action_bulk(self, op: str = "add", a: str = "", b: str = "", run_preview: bool = False) -> None:
        if not self._save():
            return
        label = f"filter: {self.filter.label}" if self.filter else "the list"
        screen = BulkScreen(self.project, list(self.shown), label, op=op, a=a, b=b, run_preview=run_preview)
        self.app.push_screen(screen, self._bulk_chosen)

    def action_autotag(self) -> None:
        """The tagger dialog over the list (or the open image); applied, it is one step of this tab's undo."""
        if not self._save():
            return
        label = f"filter: {self.filter.label}" if self.filter else "the list"
        scopes = [(label, list(self.shown)), ("this image", [self.current] if self.current else [])]
        self.app.push_screen(TagScreen(self.project, scopes), lambda r: report_applied(self, r))

    def _bulk_chosen(self, chosen: BulkEdit | None) -> None:
        if chosen is not None:
            self._apply(chosen.changeset, chosen.operation)

    @work(thread=True, exclusive=True, group="captions-write")
    def _apply(self, cs: caption_ops.ChangeSet, op: caption_ops.Operation | None = None) -> None:
        try:
            result = self._writes().apply(cs, self.wb.author)
            note = keep_trigger_in_step(self.project, op, result.written)  # as `lorawb captions rename-trigger`
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        if note:
            self.app.call_from_thread(self.notify, f"lorawb.toml: {note}", timeout=6, markup=False)
            self.app.call_from_thread(self._trigger_changed)
        self.app.call_from_thread(self._after_write, [result], "changed", cs)

    def action_undo(self) -> None:
        if self._dirty():
            self._revert_now()  # an unsaved edit is the first thing undone
            return
        self._history(undo=True)

    def action_redo(self) -> None:
        self._history(undo=False)

    @work(thread=True, exclusive=True, group="captions-write")
    def _history(self, undo: bool) -> None:
        try:
            me = self.wb.author
            writes = self._writes()
            results = writes.undo(author=me) if undo else writes.redo(author=me)
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        if not results:
            self.app.call_from_thread(self.notify, self._nothing_to(undo, me), timeout=4, markup=False)
            return
        self.app.call_from_thread(self._after_write, results, "restored" if undo else "rewrote")

    def _nothing_to(self, undo: bool, me: str) -> str:
        """``nothing of this window's to undo`` and, when others made changes, where to find them."""
        verb = "undo" if undo else "redo"
        try:
            others = [e for e in caption_history.history(self.project, limit=200) if e.author != me]
        except LorawbError:
            others = []
        text = f"nothing of this window's to {verb}"
        applied = [e for e in others if e.state == "applied"]
        if undo and applied:
            text += f"; {plural(len(applied), 'change')} made elsewhere: H shows the history"
        return text

    # --- the history view -----------------------------------------------------------------------------
    def action_history(self) -> None:
        """Every change set (by whom, when); one made elsewhere is undone from here, its diff shown first."""
        if not self._save():
            return
        self.app.push_screen(HistoryScreen(self.project, self.wb.author), self._history_chosen)

    def _history_chosen(self, op_id: int | None) -> None:
        if op_id is not None:
            self._undo_op(op_id)

    @work(thread=True, exclusive=True, group="captions-write")
    def _undo_op(self, op_id: int) -> None:
        try:
            result = self._writes().undo_op(op_id, author=self.wb.author)
        except LorawbError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False)
            return
        self.app.call_from_thread(self._after_write, [result], "restored")

    # --- leaving with an unsaved edit (the app asks: save / discard / cancel) ---------------------------
    def unsaved(self) -> str | None:
        """The caption file name of the open caption when it has an unsaved edit; None when there is none."""
        if self.current is None or not self._dirty():
            return None
        return self.opened.caption_rel.rsplit("/", 1)[-1] if self.opened else None

    def save_before_leaving(self) -> bool:
        """Save the open caption now. False when it changed on disk (the conflict dialog then asks)."""
        return self._save()

    def _after_write(
        self, results: list[caption_history.ApplyResult], verb: str, cs: caption_ops.ChangeSet | None = None
    ) -> None:
        for r in results:
            if cs is not None:
                text = f"{r.label}: {cs.counts(len(r.written), verb=verb)}"
            else:
                text = f"{r.label}: {verb} {plural(len(r.written), 'caption')}"
            self.notify(text, timeout=6 if cs is not None and cs.unreadable else 4, markup=False)
            if r.conflicts:
                first = r.conflicts[0]
                more = f" (and {len(r.conflicts) - 1} more)" if len(r.conflicts) > 1 else ""
                self.notify(
                    f"{len(r.conflicts)} left as they are on disk: {first.rel}: {first.reason}{more}",
                    title="conflict",
                    severity="warning",
                    timeout=10,
                )
        self.wb.dataset_changed()  # our own reload comes with it: the files changed under the list
