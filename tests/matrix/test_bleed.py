"""Scores per character on constructed toy images whose answer is known."""

from __future__ import annotations

import pytest
from PIL import Image

from lorawb.core.characters import Character
from lorawb.matrix import bleed
from lorawb.toyworld import world

MIRA = Character("mira", "zkx_mira", ("blue hair", "orange outfit", "scarf"))
TOM = Character("tom", "qvr_tom", ("blonde hair", "green outfit", "hat"))
A = bleed.look_of(MIRA)
B = bleed.look_of(TOM)
mira = world.Spec("blue", "orange", "scarf", context="forest", seed=4)
tom = world.Spec("blonde", "green", "hat", context="forest", seed=5)


def test_looks_come_from_the_invariant_tags() -> None:
    assert A.attributes == {"hair": "blue", "outfit": "orange", "accessory": "scarf"}


def test_a_drawn_right_has_identity_1_and_no_bleed() -> None:
    row = bleed.toy_alone(world.render(mira), A, [B])
    assert (row["identity"], row["bleed"]) == (1.0, 0.0)


def test_b_hair_on_a_scores_bleed_1() -> None:
    row = bleed.toy_alone(world.render(world.with_(mira, hair="blonde")), A, [B])
    assert row["bleed"] == 1.0
    assert row["identity"] == 2 / 3
    row = bleed.toy_alone(world.render(world.with_(mira, outfit="green")), A, [B])
    assert row["bleed"] == 1.0


def test_a_joint_scene_scores_each_character_where_it_stands() -> None:
    row = bleed.toy_joint(world.render_pair(mira, tom), [A, B])
    assert row["two_figures"] == 1.0
    assert row["characters"]["mira"] == {"identity": 1.0, "bleed": 0.0, "at": "left"}
    assert row["characters"]["tom"]["identity"] == 1.0
    # swapped places: each reads as the other
    row = bleed.toy_joint(world.render_pair(tom, mira), [A, B])
    assert row["characters"]["mira"]["identity"] == 0.0
    assert row["bleed"] == 1.0
    # tom with mira's hair on the right
    row = bleed.toy_joint(world.render_pair(mira, world.with_(tom, hair="blue")), [A, B])
    assert row["characters"]["tom"]["bleed"] == 1.0
    assert row["characters"]["mira"]["bleed"] == 0.0


def test_one_merged_figure_is_not_two_figures() -> None:
    squeezed = world.render(mira).resize((64, 32), Image.BOX)
    assert bleed.toy_joint(squeezed, [A, B])["two_figures"] == 0.0


def test_placement_reads_left_and_right_from_the_prompt() -> None:
    t = ["zkx_mira", "qvr_tom"]
    assert bleed.placement("zkx_mira on the left and qvr_tom on the right, bar", t) == [0, 1]
    assert bleed.placement("qvr_tom on the left, zkx_mira on the right", t) == [1, 0]
    assert bleed.placement("zkx_mira, qvr_tom, bar", t) is None
    assert bleed.toy_placement("qvr_tom, zkx_mira, bar", t) == [1, 0]


def test_embedder_halves_score_each_character_against_its_own_images() -> None:
    import numpy as np

    refs = {"mira": np.array([[1.0, 0.0]]), "tom": np.array([[0.0, 1.0]])}

    def embed(images: list) -> list:
        # left half red-ish -> mira's direction; right half -> tom's
        return [np.array([1.0, 0.0]) if im.getpixel((0, 0))[0] > 128 else np.array([0.0, 1.0]) for im in images]

    img = Image.new("RGB", (64, 32), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 32, 32))
    prompt = "qvr_tom on the left and zkx_mira on the right, bar"
    row = bleed.embedder_joint(img, prompt, ["mira", "tom"], ["zkx_mira", "qvr_tom"], embed, refs, 3)
    assert row["characters"]["tom"] == {"identity": 0.0, "at": "left"}
    assert row["characters"]["mira"] == {"identity": 0.0, "at": "right"}
    row = bleed.embedder_joint(img, "zkx_mira, qvr_tom", ["mira", "tom"], ["zkx_mira", "qvr_tom"], embed, refs, 3)
    assert "characters" not in row and "left and right" in row["unmeasured"]


def test_the_embedder_scores_each_half_against_its_characters_own_images(tmp_path) -> None:
    from lorawb.matrix.bleed import CharacterScores
    from lorawb.matrix.cells import Cell, Params
    from lorawb.matrix.embedder import load_embedder
    from lorawb.matrix.scores import EmbedderScorer
    from lorawb.matrix.settings import MatrixSettings
    from tests.matrix.test_scores import build_dinov2, picture

    red = picture((200, 30, 30)).resize((32, 32))
    blue = picture((30, 30, 200), (0, 0, 0)).resize((32, 32))
    root = tmp_path / "dataset"
    images = []
    for folder, im in (("10_zkx_mira", red), ("10_qvr_tom", blue)):
        p = root / folder / "a.png"
        p.parent.mkdir(parents=True)
        im.save(p)
        images.append(p)
    chars = [MIRA, TOM]
    scorer = EmbedderScorer(
        load_embedder(build_dinov2(tmp_path / "dino")),
        images,
        tmp_path,
        tmp_path / "cache",
        MatrixSettings(top_k=1),
        characters=CharacterScores(chars, root, images),
    )

    def pair(prompt: str) -> Cell:
        params = Params("m", None, 0.0, prompt, "", 0, 1.5, 2, "ddim", 64, 32)
        return Cell(params, characters=("mira", "tom"), triggers=("zkx_mira", "qvr_tom"))

    def joint(left: Image.Image, right: Image.Image) -> Image.Image:
        im = Image.new("RGB", (64, 32))
        im.paste(left, (0, 0))
        im.paste(right, (32, 0))
        return im

    placed = pair("zkx_mira on the left and qvr_tom on the right, bar")
    right, swapped = scorer.score([placed, placed], [joint(red, blue), joint(blue, red)], lambda _id: None)
    assert right["characters"]["mira"]["at"] == "left"
    assert right["characters"]["mira"]["identity"] == pytest.approx(1.0, abs=1e-4)
    assert right["characters"]["tom"]["identity"] == pytest.approx(1.0, abs=1e-4)
    assert swapped["characters"]["mira"]["identity"] < 0.9999
    assert "bleed" in right["unmeasured"] and "bleed" not in right
    unplaced = scorer.score([pair("zkx_mira, qvr_tom, bar")], [joint(red, blue)], lambda _id: None)[0]
    assert "characters" not in unplaced and "left and right" in unplaced["unmeasured"]
