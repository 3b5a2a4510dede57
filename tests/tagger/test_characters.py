"""Auto-tagging a several-character project: each image leaves out the invariant tags of the characters it holds,
and leads with their triggers in the project's order."""

from __future__ import annotations

from PIL import Image

from lorawb.core.caption_writes import CaptionWrites
from lorawb.tagger.labels import Label
from lorawb.tagger.plan import plan_tags
from tests.core.two_characters import build

SEEN = ("short blue hair", "red cap", "green coat", "smile", "qvr_tom")


class Fake:
    """A tagger that sees the same tags in every image (both characters' invariant features among them)."""

    key = "fake-characters"
    name = "fake"
    confidence = "fixed"
    batch_size = 8
    min_side = None

    def prepare(self, image: Image.Image) -> object:
        return image.size

    def predict(self, batch: list[object]) -> list[tuple[Label, ...]]:
        return [tuple(Label(t, 0.9) for t in SEEN) for _ in batch]


def test_auto_tag_acts_per_character(tmp_path):
    p = build(tmp_path / "p")
    for rel in ("10_zkx_mira/m00.txt", "5_zkx_mira+qvr_tom/j02.txt"):
        (p.dataset_dir / rel).unlink()  # uncaptioned: fill mode captions them
    images = ["dataset/10_zkx_mira/m00.png", "dataset/5_zkx_mira+qvr_tom/j02.png", "dataset/10_qvr_tom/t00.png"]
    settings = p.config.tagger.model_copy(update={"mode": "fill"})
    plan = plan_tags(p, images, settings, backend=Fake(), use_cache=False)
    CaptionWrites(p).apply(plan.changeset)
    # mira alone: her hair left out, tom's cap and coat kept (the image shows them: the doctor will say so);
    # the model's 'qvr_tom' is never written (triggers come from the folders)
    assert (p.dataset_dir / "10_zkx_mira/m00.txt").read_text(
        encoding="utf-8"
    ) == "zkx_mira, red cap, green coat, smile\n"
    # the pair: both triggers lead, in the project's order; both characters' invariant tags left out
    assert (p.dataset_dir / "5_zkx_mira+qvr_tom/j02.txt").read_text(encoding="utf-8") == "zkx_mira, qvr_tom, smile\n"
    # fill mode: a caption that exists is not touched
    assert (p.dataset_dir / "10_qvr_tom/t00.txt").read_text(encoding="utf-8") == "qvr_tom, forest, watercolor"


def test_auto_tag_replace_keeps_every_trigger_an_image_holds(tmp_path):
    p = build(tmp_path / "p")
    settings = p.config.tagger.model_copy(update={"mode": "replace"})
    plan = plan_tags(p, ["dataset/misc/x00.png"], settings, backend=Fake(), use_cache=False)
    CaptionWrites(p).apply(plan.changeset)
    assert (p.dataset_dir / "misc/x00.txt").read_text(encoding="utf-8") == "zkx_mira, qvr_tom, smile"
