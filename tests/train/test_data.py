"""Data: caption transforms, buckets, kohya repeats, batch order and its resumable position."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lorawb.errors import ConfigError
from lorawb.train import data as D
from lorawb.train.config import DatasetSection
from tests.train.conftest import write_images

CAP = "zkx_mira, red outfit, forest, watercolor, smiling"


def t(caption=CAP, seed=0, **kw):
    return D.transform_caption(caption, "zkx_mira", random.Random(seed), **kw)


def test_plain_caption_is_unchanged():
    assert t() == CAP


def test_trigger_moves_first_and_can_be_added():
    assert t("red outfit, zkx_mira, forest", keep_tokens=0) == "zkx_mira, red outfit, forest"
    assert t("red outfit, forest", add_trigger=True) == "zkx_mira, red outfit, forest"
    assert t("red outfit, forest") == "red outfit, forest"


def test_shuffle_keeps_trigger_and_keep_tokens_first():
    outs = {t(seed=s, shuffle=True, keep_tokens=2) for s in range(30)}
    assert len(outs) > 3  # it does shuffle
    for out in outs:
        tags = out.split(", ")
        assert tags[:2] == ["zkx_mira", "red outfit"]
        assert sorted(tags) == sorted(CAP.split(", "))
    # keep_tokens=0 still keeps the trigger first
    assert all(t(seed=s, shuffle=True, keep_tokens=0).startswith("zkx_mira, ") for s in range(30))


def test_shuffle_is_deterministic_per_seed():
    assert t(seed=5, shuffle=True) == t(seed=5, shuffle=True)


def test_tag_dropout_never_drops_kept_tags():
    outs = [t(seed=s, tag_dropout=0.5) for s in range(50)]
    assert all(o.startswith("zkx_mira") for o in outs)
    lengths = Counter(len(o.split(", ")) for o in outs)
    assert len(lengths) > 1 and max(lengths) <= 5
    assert all(len(o.split(", ")) == 1 for o in (t(seed=s, tag_dropout=1.0) for s in range(5)))


def test_caption_dropout_empties_whole_captions():
    outs = [t(seed=s, caption_dropout=0.5) for s in range(200)]
    empties = outs.count("")
    assert 60 < empties < 140 and all(o in ("", CAP) for o in outs)


def test_buckets_allow_small_steps_for_tiny_models():
    b = D.bucket_table(32, 8)
    assert (32, 32) in b and all(w % 8 == 0 and h % 8 == 0 and w * h <= 32 * 32 for w, h in b)
    w, h = D.assign_bucket(40, 80, 32, 8)
    assert h > w and w * h <= 32 * 32
    assert D.assign_bucket(40, 80, 32, 8, buckets=False) == (32, 32)
    with pytest.raises(ConfigError):
        D.assign_bucket(32, 32, 4, 8)


def test_buckets_at_512_are_multiples_of_64():
    for w, h in D.bucket_table(512, 64):
        assert w % 64 == 0 and h % 64 == 0


def _items(n_per_bucket=(5, 3), repeats=(1, 2)):
    items = []
    for b, (n, r) in enumerate(zip(n_per_bucket, repeats, strict=True)):
        bucket = [(32, 32), (24, 40)][b]
        items += [
            D.Item(path=f"{b}_{i}.png", folder="x", caption="", repeats=r, width=1, height=1, bucket=bucket)
            for i in range(n)
        ]
    return items


def test_epoch_has_every_image_repeats_times_and_pure_buckets():
    items = _items()
    batches = D.epoch_batches(items, 2, seed=1, epoch=0)
    seen = Counter(i for b in batches for i in b)
    assert all(seen[i] == it.repeats for i, it in enumerate(items))
    for b in batches:
        assert len({items[i].bucket for i in b}) == 1 and 1 <= len(b) <= 2


def test_order_depends_on_seed_and_epoch_only():
    items = _items()
    assert D.epoch_batches(items, 2, 1, 0) == D.epoch_batches(items, 2, 1, 0)
    assert D.epoch_batches(items, 2, 1, 0) != D.epoch_batches(items, 2, 1, 1)
    assert D.epoch_batches(items, 2, 1, 0) != D.epoch_batches(items, 2, 2, 0)


def test_stream_resumes_from_its_position():
    items = _items()
    a = D.BatchStream(items, 2, seed=3)
    first = [a.next() for _ in range(5)]
    b = D.BatchStream(items, 2, seed=3, pos=a.pos)
    rest = [a.next() for _ in range(12)]
    assert rest == [b.next() for _ in range(12)]
    assert first[0][:2] == (0, 0)
    assert a.batches_per_epoch == 6 and {e for e, _, _ in rest} == {0, 1, 2}  # crosses epochs


def test_total_steps_from_epochs():
    assert D.total_steps(100, 3, 10, 1) == 100
    assert D.total_steps(0, 3, 10, 1) == 30
    assert D.total_steps(0, 3, 10, 4) == 8  # grad accumulation: 4 micro-batches a step


def test_load_dataset_repeats_captions_split_and_skips_bad_images(tmp_path):
    root = tmp_path / "dataset"
    write_images(root / "3_zkx_mira", 4)
    write_images(root / "misc", 2, start=10)
    (root / "3_zkx_mira" / "broken.png").write_bytes(b"not a png")
    write_images(root / "rejected", 2, start=20)  # triage rejects are never trained on
    cfg = DatasetSection(path=str(root), resolution=32, bucket_step=8, trigger="zkx_mira")
    info = D.load_dataset(cfg, seed=0)
    assert len(info.items) == 6 and info.num_images == 4 * 3 + 2
    assert [p.name for p, _ in info.skipped] == ["broken.png"]
    assert info.tag_frequency["3_zkx_mira"]["zkx_mira"] == 4
    assert info.dataset_dirs["3_zkx_mira"] == {"n_repeats": 3, "img_count": 4}
    assert all(it.caption.startswith("zkx_mira, ") for it in info.items)
    split = D.load_dataset(cfg.model_copy(update={"validation_split": 0.34}), seed=0)
    assert len(split.val_items) == 2 and len(split.items) == 4
    assert {it.path for it in split.val_items}.isdisjoint(it.path for it in split.items)


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "dataset").mkdir()
    with pytest.raises(ConfigError, match="no training images"):
        D.load_dataset(DatasetSection(path=str(tmp_path / "dataset"), resolution=32, bucket_step=8), seed=0)


def test_load_image_covers_bucket_without_stretching(tmp_path):
    from PIL import Image

    p = tmp_path / "wide.png"
    im = Image.new("RGB", (64, 32), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 32, 32))  # left half white
    im.save(p)
    prep = D.load_image(p, (16, 16), "center", flip=False)
    assert tuple(prep.pixels.shape) == (3, 16, 16)
    assert prep.original_size == (32, 64) and prep.crop_top_left == (0, 8) and prep.target_size == (16, 16)
    flipped = D.load_image(p, (16, 16), "center", flip=True)
    assert float(prep.pixels[0, 8, 0]) > 0.9 and float(flipped.pixels[0, 8, -1]) > 0.9
