"""The attribute reader: it must read the generator's own images (near) perfectly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lorawb.errors import ImageError
from lorawb.toyworld import reader, world


@pytest.fixture(scope="module")
def readings():
    specs = world.random_specs(400, seed=777)
    return specs, [reader.read(world.render(s)) for s in specs]


def _accuracy(specs, reads, attr):
    return sum(getattr(r, attr) == getattr(s, attr) for s, r in zip(specs, reads, strict=True)) / len(specs)


@pytest.mark.parametrize(
    ("attr", "floor"),
    [("hair", 1.0), ("outfit", 1.0), ("context", 1.0), ("accessory", 0.99), ("style", 0.95), ("pose", 0.95)],
)
def test_reads_the_generators_images(readings, attr, floor):
    specs, reads = readings
    assert _accuracy(specs, reads, attr) >= floor


def test_reads_previews_and_files(tmp_path):
    spec = world.Spec(hair="blue", outfit="orange", accessory="scarf", context="bar", style="outlined", seed=4)
    path = tmp_path / "x.png"
    world.render(spec, 128).save(path)
    got = reader.read(path)
    assert got.as_dict() == {k: getattr(spec, k) for k in reader.READ}
    # a float array in 0..1 works too
    assert reader.read(np.asarray(world.render(spec), dtype=np.float32) / 255) == reader.read(world.render(spec))


def test_repainting_the_hair_changes_the_reading():
    # The reader looks at the pixels: paint the hair regions another colour and it says so.
    spec = world.Spec(hair="black", outfit="green", context="forest", style="flat", seed=1)
    a = world.render_array(spec).copy()
    for r0, r1, c0, c1 in reader.REGIONS["hair"]:
        a[r0:r1, c0:c1] = world.HAIR["red"]
    assert reader.read(world.render(spec)).hair == "black"
    assert reader.read(a).hair == "red"


def test_score_against_a_prompt():
    specs = [world.Spec(hair="blue", outfit="orange", context=c, seed=i) for i, c in enumerate(world.CONTEXTS)]
    specs.append(world.Spec(hair="red", outfit="orange", context="forest"))
    s = reader.score_prompt([world.render(x) for x in specs], "blue hair, orange outfit, forest")
    assert s.n == 5
    assert s.per_attribute == {"hair": 0.8, "outfit": 1.0, "context": 0.4}
    assert s.all_match == pytest.approx(0.2)


def test_unreadable_image_is_an_image_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageError) as err:
        reader.read(bad)
    assert err.value.path == bad


def test_odd_sizes_and_modes_are_read():
    spec = world.Spec(hair="white", outfit="black", context="beach", seed=2)
    img = world.render(spec, 128).resize((100, 100)).convert("RGBA")
    got = reader.read(img)
    assert (got.hair, got.outfit, got.context) == ("white", "black", "beach")
    assert reader.read(Image.new("RGB", (32, 32))).context in world.CONTEXTS  # black image: some answer, no crash
