"""Regularisation images, kohya's way: ``N_class`` folders, class tokens for missing captions,
balancing against the training images, prior_loss_weight, the ss_* metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lorawb.core.project import Project
from lorawb.errors import ConfigError
from lorawb.train import data as D
from lorawb.train.config import DatasetSection, resolve_config
from tests.train.conftest import make_project, train_context, write_images


def reg_folder(root: Path, name: str, n: int, captions: bool = False) -> list[Path]:
    paths = write_images(root / name, n, trigger="woman", start=10)
    if not captions:
        for p in paths:
            p.with_suffix(".txt").unlink()
    return paths


def cfg_for(tmp_path: Path, reg: Path | str, **kw) -> DatasetSection:
    return DatasetSection(path=str(tmp_path / "dataset"), reg_path=str(reg), resolution=32, bucket_step=8, **kw)


def test_kohya_layout_class_tokens_from_folder_and_captions_kept(tmp_path):
    write_images(tmp_path / "dataset" / "2_zkx_mira", 3)
    reg_folder(tmp_path / "reg", "1_woman", 2)
    reg_folder(tmp_path / "reg", "1_a photo of a man", 1, captions=True)
    info = D.load_dataset(cfg_for(tmp_path, tmp_path / "reg"), seed=0)
    by_folder = {it.folder: it.caption for it in info.reg_items}
    assert by_folder["1_woman"] == "woman"  # no caption: the class tokens of the folder name
    assert by_folder["1_a photo of a man"].startswith("woman, red outfit")  # its own caption wins
    assert all(it.is_reg for it in info.reg_items) and not any(it.is_reg for it in info.items)
    assert info.num_reg_images == 3
    assert info.reg_dataset_dirs == {
        "1_woman": {"n_repeats": 1, "img_count": 2},
        "1_a photo of a man": {"n_repeats": 1, "img_count": 1},
    }
    assert info.tag_frequency.keys() == {"2_zkx_mira"}  # the training images' tags only


def test_reg_image_without_caption_or_class_is_skipped_and_named(tmp_path):
    write_images(tmp_path / "dataset" / "1_zkx_mira", 2)
    reg_folder(tmp_path / "reg", "woman", 1)  # no N_ prefix, no caption: nothing to train it with
    reg_folder(tmp_path / "reg", "1_woman", 1)
    info = D.load_dataset(cfg_for(tmp_path, tmp_path / "reg"), seed=0)
    assert [it.folder for it in info.reg_items] == ["1_woman"]
    assert any("reg image without a caption" in why and "woman" in str(p) for p, why in info.skipped)


def test_balancing_matches_the_training_count_as_kohya_does(tmp_path):
    def item(n: int, repeats: int = 1) -> D.Item:
        return D.Item(Path(f"r{n}.png"), "1_woman", "woman", repeats, 32, 32, is_reg=True)

    few = [item(i) for i in range(3)]
    out = D.balance_reg(few, 8)  # 3 images, 8 training images with repeats: 3 + 3 + 2
    assert [it.repeats for it in out] == [3, 3, 2] and sum(it.repeats for it in out) == 8
    assert [it.repeats for it in few] == [1, 1, 1]  # copies: the scanned items keep their repeats
    many = [item(i) for i in range(10)]
    assert [it.path.name for it in D.balance_reg(many, 4)] == ["r0.png", "r1.png", "r2.png", "r3.png"]
    # a folder's own repeats count on the first pass (kohya's n += num_repeats)
    assert [it.repeats for it in D.balance_reg([item(0, 5), item(1, 5)], 7)] == [5, 5]
    assert D.balance_reg([], 5) == []


def test_reg_folder_missing_is_a_clear_error(tmp_path):
    write_images(tmp_path / "dataset" / "1_zkx_mira", 2)
    with pytest.raises(ConfigError, match="regularisation folder not found") as exc:
        D.load_dataset(cfg_for(tmp_path, tmp_path / "nope"), seed=0)
    assert "reg_path" in (exc.value.hint or "")


def test_project_reg_folder_is_the_default_and_none_turns_it_off(tmp_path, tiny_sd1):
    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    project = Project.load(root)
    assert resolve_config(project).dataset.reg_path == "none"
    reg_folder(root / "reg", "1_woman", 1)
    assert resolve_config(project).dataset.reg_path == str((root / "reg").resolve())
    assert resolve_config(project, overrides=["dataset.reg_path=none"]).dataset.reg_path == "none"
    info = D.load_dataset(resolve_config(project, overrides=["dataset.reg_path=none"]).dataset, 0)
    assert info.reg_items == []


def test_reg_rows_get_prior_loss_weight_and_never_the_trigger(tmp_path, tiny_sd1):
    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)  # 2 images x 2 repeats = 4
    reg_folder(root / "reg", "1_woman", 1)
    over = ["dataset.prior_loss_weight=0.25", "dataset.add_trigger=true", "train.batch_size=1"]
    with train_context(root, over) as ctx:
        assert sum(it.repeats for it in ctx.dataset.reg_items) == 4  # balanced to the training count
        stream = ctx.batches.stream
        seen = {"reg": 0, "train": 0}
        for _ in range(stream.batches_per_epoch):
            epoch, index, idxs = stream.next()
            part = ctx.batches.prepare(epoch, index, idxs)
            item = ctx.batches.items[idxs[0]]
            if item.is_reg:
                seen["reg"] += 1
                assert part["weights"] == [0.25] and part["captions"] == ["woman"]  # no trigger added
            else:
                seen["train"] += 1
                assert part["weights"] == [1.0] and part["captions"][0].startswith("zkx_mira")
        assert seen == {"reg": 4, "train": 4}  # an epoch is twice as long, as in kohya


def test_loss_weighting_scales_each_image(tmp_path, tiny_sd1):
    from lorawb.train.trainer import diffusion_loss

    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    with train_context(root, []) as ctx:
        batch = ctx.batches.next()

        def loss_with(weights):
            batch.generator.manual_seed(7)
            batch.weights = weights
            with torch.no_grad():
                return diffusion_loss(ctx, batch).item()

        plain = loss_with(None)
        assert loss_with(torch.tensor([1.0, 1.0])) == pytest.approx(plain)
        half_each = loss_with(torch.tensor([0.5, 0.5]))
        assert half_each == pytest.approx(plain / 2, rel=1e-5)
        first_only, second_only = loss_with(torch.tensor([1.0, 0.0])), loss_with(torch.tensor([0.0, 1.0]))
        assert first_only + second_only == pytest.approx(plain, rel=1e-5) and first_only != second_only


def test_checkpoint_metadata_records_reg_sets_as_kohya(tmp_path, tiny_sd1):
    from safetensors import safe_open

    from lorawb.train.process import start_run

    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    reg_folder(root / "reg", "3_woman", 2)
    project = Project.load(root)
    run = start_run(project, resolve_config(project, overrides=["train.max_steps=1"]), detach=False)
    ckpt = next(run.checkpoints.glob("*.safetensors"))
    with safe_open(str(ckpt), "pt") as f:
        meta = f.metadata()
    assert meta["ss_num_reg_images"] == "6"
    assert json.loads(meta["ss_reg_dataset_dirs"]) == {"3_woman": {"n_repeats": 3, "img_count": 2}}
    assert meta["ss_prior_loss_weight"] == "1.0"
    assert "reg images" in (run.path / "train.log").read_text()
    shutil.rmtree(root / "reg")
