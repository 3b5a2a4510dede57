"""The toy-world generator: deterministic drawings, captions, prompts, kohya folders."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from lorawb.core.layout import caption_path_for, folder_repeats
from lorawb.toyworld import world


def test_same_spec_draws_the_same_pixels_and_seed_changes_only_the_scene():
    spec = world.Spec(hair="red", outfit="blue", accessory="scarf", context="forest", style="flat", seed=5)
    a, b = world.render_array(spec), world.render_array(spec)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    other = world.render_array(world.with_(spec, seed=6))
    assert not np.array_equal(a, other)  # trees moved
    # the figure (head to feet, centre columns) is where it always is
    assert np.array_equal(a[4:22, 12:20], other[4:22, 12:20])


@pytest.mark.parametrize("style", world.STYLES)
def test_every_style_renders_at_32_and_128(style):
    spec = world.Spec(hair="blonde", outfit="green", context="beach", style=style, pose="waving", seed=1)
    small, big = world.render(spec), world.render(spec, 128)
    assert small.size == (32, 32) and big.size == (128, 128)
    # the 128 preview shrinks back to (nearly) the 32 px image
    back = np.asarray(big.resize((32, 32), Image.BOX), dtype=np.int16)
    assert np.abs(back - np.asarray(small, dtype=np.int16)).mean() < 12


def test_styles_look_different():
    base = world.Spec(hair="black", outfit="white", context="bar", seed=3)
    arrays = [world.render_array(world.with_(base, style=s)).astype(np.int16) for s in world.STYLES]
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert np.abs(arrays[i] - arrays[j]).mean() > 2


def test_unknown_attribute_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown hair 'pink'; known: black"):
        world.Spec(hair="pink", outfit="red")


def test_caption_trigger_first_omit_and_shuffle():
    spec = world.Spec(hair="red", outfit="blue", accessory="hat", context="bar", style="dithered", pose="arms up")
    assert world.caption(spec) == "red hair, blue outfit, hat, bar, dithered, arms up"
    assert world.caption(spec, trigger="zkx_mira", omit=("hair", "outfit", "accessory")) == (
        "zkx_mira, bar, dithered, arms up"
    )
    assert world.caption(world.with_(spec, accessory="none")) == "red hair, blue outfit, bar, dithered, arms up"
    orders = {world.caption(spec, trigger="t", shuffle=random.Random(i)) for i in range(20)}
    assert len(orders) > 5
    assert all(o.startswith("t, ") and sorted(o.split(", ")[1:]) == sorted(spec.tags()) for o in orders)


def test_parse_prompt_reads_back_a_caption():
    spec = world.Spec(hair="white", outfit="purple", accessory="glasses", context="spaceship", style="outlined")
    want = world.parse_prompt("zkx_mira, " + world.caption(spec, shuffle=random.Random(1)))
    assert want == {k: getattr(spec, k) for k in ("hair", "outfit", "accessory", "context", "style", "pose")}
    assert world.parse_prompt("zkx_mira, forest,  Blue  Hair") == {"context": "forest", "hair": "blue"}
    assert world.parse_prompt("a cat") == {}


def test_random_specs_are_seeded_and_honour_exclusions():
    a = world.random_specs(200, seed=3, exclude=[{"hair": "blue", "outfit": "orange"}, {"context": "bar"}])
    assert a == world.random_specs(200, seed=3, exclude=[{"hair": "blue", "outfit": "orange"}, {"context": "bar"}])
    assert not any(s.hair == "blue" and s.outfit == "orange" for s in a)
    assert not any(s.context == "bar" for s in a)
    assert {s.context for s in a} == {"forest", "spaceship", "beach"}
    fixed = world.random_specs(10, seed=1, hair="red")
    assert {s.hair for s in fixed} == {"red"}


def test_write_kohya_folder(tmp_path):
    folder = world.write_kohya_folder(tmp_path / "dataset", 5, seed=2, trigger="qvr", repeats=3, size=64, hair="red")
    assert folder_repeats(folder.name) == (3, "qvr")
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 5
    for p in pngs:
        assert Image.open(p).size == (64, 64)
        text = caption_path_for(p).read_text(encoding="utf-8")
        assert text.startswith("qvr, red hair, ") and text.endswith("\n")


def test_vocabulary_covers_every_caption_word():
    words = set(world.vocabulary())
    for spec in world.random_specs(100, seed=0):
        assert set(world.caption(spec).replace(",", " ").split()) <= words
