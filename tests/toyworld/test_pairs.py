"""Two figures side by side: drawing, captions, and the reader per figure."""

from __future__ import annotations

import random

from PIL import Image

from lorawb.toyworld import reader, world


def test_a_joint_scene_is_two_figures_in_one_context_read_per_figure() -> None:
    rng = random.Random(3)
    for _ in range(40):
        left, right = world.scene_pair(world.random_spec(rng), world.random_spec(rng))
        img = world.render_pair(left, right)
        assert img.size == (64, 32)
        figs = reader.read_figures(img)
        assert figs.two_figures
        for r, s in ((figs.left, left), (figs.right, right)):
            assert (r.hair, r.outfit, r.context) == (s.hair, s.outfit, left.context)


def test_the_right_figure_takes_the_scene_of_the_left_one() -> None:
    a = world.Spec("red", "blue", context="bar", style="flat", seed=1)
    b = world.Spec("white", "green", context="beach", style="dithered", seed=2)
    _, b2 = world.scene_pair(a, b)
    assert (b2.context, b2.style) == ("bar", "flat")
    # 128-px previews read the same
    assert reader.read_figures(world.render_pair(a, b, 128)).right.hair == "white"


def test_one_figure_squeezed_between_two_places_is_not_two_figures() -> None:
    rng = random.Random(5)
    merged = 0
    for _ in range(30):
        s = world.random_spec(rng)
        merged += reader.read_figures(world.render(s).resize((64, 32), Image.BOX)).two_figures
        empty = Image.new("RGB", (64, 32))
        empty.paste(world.render(s, figure=False), (0, 0))
        empty.paste(world.render(s, figure=False), (32, 0))
        assert not reader.read_figures(empty).left_present
    assert merged <= 3


def test_joint_captions_name_both_triggers() -> None:
    a = world.Spec("blue", "orange", "scarf", context="forest", style="flat", pose="waving")
    b = world.Spec("blonde", "green", "hat", context="bar")
    omit = ("hair", "outfit", "accessory", "pose")
    tags = world.pair_caption(a, b, triggers=("zkx_mira", "qvr_tom"), omit=omit, template="{a}, {b}, {context}")
    assert tags == "zkx_mira, qvr_tom, forest, flat"
    text = world.pair_caption(a, b, triggers=("zkx_mira", "qvr_tom"), omit=omit)
    assert text == "zkx_mira on the left and qvr_tom on the right, forest, flat"
    plain = world.pair_caption(a, b, omit=("pose",))
    assert plain.startswith(
        "blue hair, orange outfit, scarf on the left and blonde hair, green outfit, hat on the right"
    )


def test_the_two_character_sample_trains_both_and_the_pair_balanced(tmp_path) -> None:
    from lorawb.core.characters import characters_of
    from lorawb.core.project import Project
    from lorawb.toyworld import sample
    from lorawb.train import data as D
    from lorawb.train.config import resolve_config

    root = sample.make_sample_project(tmp_path / "two", write_toml=True, two_characters=True)
    project = Project.load(root)
    assert [(c.name, c.trigger) for c in characters_of(project.config)] == [("mira", "zkx_mira"), ("tom", "qvr_tom")]
    # tom's images read as tom, the joint scenes as mira on the left and tom on the right
    for p in (root / "dataset" / sample.TOM_FOLDER).glob("*.png"):
        r = reader.read(p)
        assert (r.hair, r.outfit, r.accessory) == ("blonde", "green", "hat")
        assert p.with_suffix(".txt").read_text().startswith("qvr_tom, ")
    for p in (root / "dataset" / sample.JOINT_FOLDER).glob("*.png"):
        f = reader.read_figures(p)
        assert f.two_figures and (f.left.hair, f.right.hair) == ("blue", "blonde")
        assert p.with_suffix(".txt").read_text().startswith("zkx_mira, qvr_tom, ")
    cfg = resolve_config(project)
    info = D.load_dataset(cfg.dataset, seed=0)
    groups = D.group_of(info.items, root / "dataset", cfg.dataset)
    assert D.group_counts(info.items, groups) == {"mira": 320, "tom": 320, "mira+tom": 320}
    assert {it.bucket for it, g in zip(info.items, groups, strict=True) if g == "mira+tom"} == {(64, 32)}
    # the committed sample stays one character
    one = sample.make_sample_project(tmp_path / "one", write_toml=True)
    assert len(characters_of(Project.load(one).config)) == 1 and not (one / "dataset" / sample.TOM_FOLDER).exists()
