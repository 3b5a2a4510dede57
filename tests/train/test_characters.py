"""A joint LoRA of several characters: balanced sampling, leading triggers, samples per character and
pair, and ss_* metadata listing every trigger."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from lorawb.train import data as D

from .conftest import write_images

CHARS_TOML = """
[characters]
balance = "{balance}"
pair_template = "{{a}} on the left and {{b}} on the right, {{context}}"

[characters.mira]
trigger = "zkx_mira"
invariant = ["red outfit"]

[characters.tom]
trigger = "qvr_tom"
invariant = ["blue outfit"]
"""


def two_character_project(root: Path, model: Path | str, balance: str = "equal") -> Path:
    from .conftest import make_project

    make_project(root, model, n_images=3)  # 2_zkx_mira: 3 images -> 6 per epoch
    ds = root / "dataset"
    (ds / "2_zkx_mira").rename(ds / "10_zkx_mira")  # 30 per epoch
    write_images(ds / "2_qvr_tom", 4, trigger="qvr_tom", start=10)  # 8
    write_images(ds / "1_qvr_tom_extra", 1, trigger="qvr_tom", start=20)  # its caption names tom: +1
    write_images(ds / "3_zkx_mira+qvr_tom", 2, trigger="zkx_mira, qvr_tom", start=30)  # 6
    write_images(ds / "1_style", 2, trigger="watercolor", start=40)  # no character: 2, unbalanced
    with open(root / "lorawb.toml", "a", encoding="utf-8") as fh:
        fh.write(CHARS_TOML.format(balance=balance))
    return root


def config(root: Path, overrides: tuple[str, ...] = ()):
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config

    return resolve_config(Project.load(root), overrides=list(overrides))


def test_characters_and_balance_come_from_lorawb_toml(tmp_path) -> None:
    cfg = config(two_character_project(tmp_path / "p", "unused"))
    assert [(c.name, c.trigger) for c in cfg.dataset.characters] == [("mira", "zkx_mira"), ("tom", "qvr_tom")]
    assert cfg.dataset.balance == "equal"
    assert cfg.dataset.pair_template.startswith("{a} on the left")
    # one character: nothing new in the run's config
    from .conftest import make_project

    one = config(make_project(tmp_path / "one", "unused"))
    assert one.dataset.characters == [] and one.dataset.pair_template == ""


@pytest.mark.parametrize("balance", ["equal", "by_images"])
def test_each_character_and_pair_gets_the_share_set_per_epoch(tmp_path, balance) -> None:
    root = two_character_project(tmp_path / "p", "unused", balance)
    cfg = config(root)
    info = D.load_dataset(cfg.dataset, seed=0)
    groups = D.group_of(info.items, Path(cfg.dataset.path), cfg.dataset)
    by_item = dict(zip((id(it) for it in info.items), groups, strict=True))
    for epoch in range(3):
        seen: Counter[str] = Counter()
        for batch in D.epoch_batches(info.items, 2, seed=0, epoch=epoch):
            for i in batch:
                seen[by_item[id(info.items[i])]] += 1
        if balance == "equal":
            for g in ("mira", "tom", "mira+tom"):
                assert abs(seen[g] - 30) <= 1, (g, seen)
        else:  # the folders' repeats as kohya reads them
            assert (seen["mira"], seen["tom"], seen["mira+tom"]) == (30, 9, 6)
        assert seen["none"] == 2  # images of no character keep their repeats


def test_repeats_set_by_hand_still_weigh_images_within_a_character() -> None:
    items = [D.Item(Path(f"{i}.png"), "f", "", r, 32, 32) for i, r in enumerate([4, 1, 1, 2, 2])]
    groups = ["tom", "tom", "tom", "mira", "mira"]
    assert D.balance_characters(items, groups) == {"tom": 6, "mira": 6}
    assert [it.repeats for it in items] == [4, 1, 1, 3, 3]
    items = [D.Item(Path(f"{i}.png"), "f", "", 1, 32, 32) for i in range(4)]
    D.balance_characters(items, ["a", "a", "a", "b"])
    assert [it.repeats for it in items] == [1, 1, 1, 3]


def test_an_image_of_three_characters_keeps_its_repeats() -> None:
    """Balancing is per character and per pair: a lone image of three is not raised to the largest group."""
    items = [D.Item(Path(f"{i}.png"), "f", "", 1, 32, 32) for i in range(6)]
    groups = ["mira", "mira", "mira", "tom", "ann", "ann+mira+tom"]
    assert D.balance_characters(items, groups) == {"mira": 3, "tom": 3, "ann": 3}
    assert [it.repeats for it in items] == [1, 1, 1, 3, 3, 1]


def test_every_trigger_a_caption_holds_leads_it_in_the_characters_order() -> None:
    rng = random.Random(0)
    t = ["zkx_mira", "qvr_tom"]
    out = D.transform_caption("forest, qvr tom, flat, zkx_mira", "", rng, triggers=t, shuffle=True)
    assert out.split(", ")[:2] == ["zkx_mira", "qvr tom"]
    assert D.transform_caption("qvr_tom, bar", "", rng, triggers=t) == "qvr_tom, bar"
    assert D.transform_caption("bar, watercolor", "", rng, triggers=t) == "bar, watercolor"


def test_samples_per_character_and_per_pair(tmp_path) -> None:
    from lorawb.train.trainer import sample_prompts

    root = two_character_project(tmp_path / "p", "unused")
    cfg = config(root, ("sample.prompts=['{trigger}, forest', 'red hair, beach']",))
    assert sample_prompts(cfg) == [
        "zkx_mira, forest",
        "qvr_tom, forest",
        "zkx_mira on the left and qvr_tom on the right, forest",
        "red hair, beach",
    ]


def test_a_joint_lora_lists_every_trigger_in_its_metadata(tmp_path, tiny_sd1) -> None:
    from lorawb.core.project import Project
    from lorawb.train.kohya import read_metadata
    from lorawb.train.process import start_run

    root = two_character_project(tmp_path / "p", tiny_sd1)
    project = Project.load(root)
    run = start_run(project, config(root, ("train.max_steps=2",)), detach=False)
    lora = sorted(run.path.glob("**/*.safetensors"))[-1]
    meta = read_metadata(lora)
    assert meta["ss_trigger"] == "zkx_mira, qvr_tom"
    assert meta["modelspec.trigger_phrase"] == "zkx_mira, qvr_tom"
    assert "zkx_mira" in meta["ss_training_comment"] and "qvr_tom" in meta["ss_training_comment"]
    import json

    assert json.loads(meta["lorawb_triggers"]) == ["zkx_mira", "qvr_tom"]
    assert json.loads(meta["lorawb_characters"]) == {"mira": "zkx_mira", "tom": "qvr_tom"}
    assert int(meta["ss_num_train_images"]) == 3 * 30 + 2  # balanced counts, plus the unbalanced style images


def test_joint_images_can_keep_each_figure_at_its_size(tmp_path) -> None:
    from PIL import Image

    root = two_character_project(tmp_path / "p", "unused")
    for p in (root / "dataset" / "3_zkx_mira+qvr_tom").glob("*.png"):
        Image.new("RGB", (128, 64)).save(p)
    cfg = config(root, ("dataset.joint_resolution=46",))
    info = D.load_dataset(cfg.dataset, seed=0)
    joint = [it for it in info.items if "+" in it.folder]
    assert {it.bucket for it in joint} == {(64, 32)}
    assert {it.bucket for it in info.items if it.folder == "10_zkx_mira"} <= {(32, 32), (40, 24), (24, 40), (32, 40)}
    assert {it.bucket for it in D.load_dataset(config(root).dataset, seed=0).items if "+" in it.folder} == {(40, 24)}
