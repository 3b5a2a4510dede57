"""Cell enumeration: product, zip, weight 0 drawn once, stable ids, controls, views; batch planning."""

from __future__ import annotations

from lorawb.matrix.cells import NO_VALUE, LoraRef, Resolved, arrange, default_view, enumerate_cells, move_axis
from lorawb.matrix.requests import ImageRequest, plan_batches
from lorawb.matrix.spec import parse_spec

CKPTS = (
    LoraRef("runs/r/checkpoints/a-000050.safetensors", "step 50", 50),
    LoraRef("runs/r/checkpoints/a-000200.safetensors", "step 200", 200),
)


def resolved(n: int = 2) -> Resolved:
    return Resolved(
        base="models/m", trigger="zkx", width=32, height=32, steps=10, cfg=1.5, sampler="ddim", checkpoints=CKPTS[:n]
    )


def layout(axes: str, extra: str = "", n: int = 2):
    text = f'[matrix]\nrun = "r"\nprompt = "{{trigger}}, {{context}}, {{style}}"\n{extra}\n[axes]\n{axes}\n'
    return enumerate_cells(parse_spec(text), resolved(n))


AXES = 'checkpoint = [50, 200]\nweight = [0, 0.5, 1]\ncontext = ["forest", "bar"]\nstyle = ["flat", "sketch"]\nseed = [0, 1]'


def test_axes_multiply_and_weight_0_is_drawn_once_for_every_checkpoint():
    lay = layout(AXES)
    assert len(lay.positions) == 2 * 3 * 2 * 2 * 2
    base = [c for c in lay.cells.values() if c.params.is_base]
    assert len(base) == 2 * 2 * 2  # one per prompt x seed, shared by both checkpoints
    assert len(lay.cells) == len(base) + 2 * 2 * 8
    shared = [p for p in lay.positions if p.cell == base[0].id]
    assert {lay.axes["checkpoint"].labels[p.index("checkpoint")] for p in shared} == {"step 50", "step 200"}
    cell = next(c for c in lay.cells.values() if not c.params.is_base)
    assert cell.params.prompt == "zkx, forest, flat" and cell.plain_prompt == "forest, flat"
    assert cell.base_id in lay.cells and lay.cells[cell.base_id].params.lora is None


def test_cell_ids_are_a_function_of_the_parameters_only():
    a = layout(AXES)
    b = layout(AXES.replace('context = ["forest", "bar"]', 'context = ["beach", "forest", "bar"]'))
    assert set(a.cells) < set(b.cells)  # adding a value renames no existing cell
    again = layout(AXES)
    assert list(again.cells) == list(a.cells)
    one = next(iter(a.cells.values()))
    assert one.id == one.params.id and len(one.id) == 10


def test_zip_pairs_values_instead_of_multiplying():
    lay = layout(AXES, 'zip = [["context", "style"]]')
    prompts = {c.params.prompt for c in lay.cells.values()}
    assert prompts == {"zkx, forest, flat", "zkx, bar, sketch"}
    assert len(lay.positions) == 2 * 3 * 2 * 2


def test_control_prompts_sit_on_the_prompt_axis_without_slots():
    lay = layout(AXES, 'controls = ["red hair, beach"]')
    controls = [c for c in lay.cells.values() if c.is_control]
    assert {c.params.prompt for c in controls} == {"red hair, beach"}
    assert len(controls) == 2 + 2 * 2 * 2  # base x 2 seeds, and 2 checkpoints x 2 weights x 2 seeds
    pos = next(p for p in lay.positions if p.cell == controls[0].id)
    assert pos.index("context") == NO_VALUE and pos.index("prompt") == 1
    assert lay.axes["prompt"].labels[1] == "control 1: red hair, beach"


def test_views_lay_out_pages_rows_and_columns():
    lay = layout(AXES, 'controls = ["red hair, beach"]')
    view = default_view(lay)
    assert view.cols == ("weight",) and view.pages == ("checkpoint",)
    assert set(view.rows) == {"context", "style", "seed", "prompt"}
    grid = arrange(lay, view)
    assert len(grid.pages) == 2 and len(grid.cols) == 3
    assert len(grid.rows) == 2 * 2 * 2 + 2  # every prompt x seed, then the control at each seed
    assert grid.label("cols", grid.cols[1]) == "weight 0.5"
    assert grid.label("pages", grid.pages[1]) == "step 200"
    assert grid.row_lines(grid.rows[-1], short=False) == ["seed 1", "control 1: red hair, beach"]
    # weight 0 shows the same base cell on every page
    assert grid.cell(0, 0, 0) == grid.cell(1, 0, 0) and grid.cell(0, 0, 2) != grid.cell(1, 0, 2)
    # every position is shown exactly once
    assert len(grid.at) == len(lay.positions)


def test_move_axis_puts_another_axis_across_and_keeps_every_axis_placed():
    lay = layout(AXES)
    view = default_view(lay)
    moved = move_axis(view, lay, "cols")
    assert moved.cols == ("context",) and "weight" in moved.rows
    no_pages = move_axis(view, lay, "pages", -1)
    assert no_pages.pages == () and "checkpoint" in no_pages.rows
    for v in (moved, no_pages, move_axis(moved, lay, "pages")):
        assert sorted(v.placed()) == sorted(lay.varying)
        assert len(arrange(lay, v).at) == len(lay.positions)


def test_axes_with_one_value_are_constants_not_view_axes():
    lay = layout('checkpoint = [200]\nweight = [1]\ncontext = ["forest", "bar"]\nstyle = ["flat"]', n=2)
    assert lay.varying == ["context"]
    assert lay.constants["style"] == "flat" and lay.constants["seed"] == "seed 0"


def test_a_promoted_caption_leads_with_the_trigger_then_the_slots():
    lay = layout(AXES.replace('"flat"', '"flat, dithered"'))
    cell = next(c for c in lay.cells.values() if c.params.prompt.startswith("zkx, forest, flat"))
    assert cell.caption("zkx") == "zkx, forest, flat, dithered"


def req(prompt: str, seed: int, lora: str = "", w: float = 1.0, cfg: float = 1.5) -> ImageRequest:
    return ImageRequest(prompt, seed, cfg=cfg, loras=((lora, w),) if lora else ())


def test_batches_keep_one_setting_and_load_each_lora_once():
    reqs = [req("a", s, "l1.safetensors", w) for w in (0.5, 1.0) for s in range(3)]
    reqs += [req("a", s) for s in range(3)]  # the base model, listed last
    reqs += [req("b", s, "l2.safetensors") for s in range(3)]
    reqs += [req("a", 9, "l1.safetensors", 0.0)]  # weight 0 is the base model
    batches = plan_batches(reqs, size=2)
    assert all(len({r.setting() for r in b}) == 1 and len(b) <= 2 for b in batches)
    files = [b[0].active_loras[0][0] if b[0].active_loras else "" for b in batches]
    assert files == [
        "",
        "",
        "l1.safetensors",
        "l1.safetensors",
        "l1.safetensors",
        "l1.safetensors",
        "l2.safetensors",
        "l2.safetensors",
    ]
    assert sum(len(b) for b in batches) == len(reqs)
