"""Auto-tagging a project end to end: the CLI, dry runs, apply and byte-exact undo, the cache, bad images."""

from __future__ import annotations

import json
import os

from lorawb.cli import main
from lorawb.core import caption_history
from lorawb.core.project import Project
from lorawb.tagger.plan import plan_tags, tagger_settings
from tests.tagger.conftest import IMAGES


def snapshot(project: Project) -> dict[str, bytes]:
    return {
        str(p.relative_to(project.root)): p.read_bytes() for p in sorted(project.dataset_dir.rglob("*")) if p.is_file()
    }


def test_dry_run_shows_the_diff_with_confidences_and_writes_nothing(tag_project, wd_model, capsys):
    before = snapshot(tag_project)
    code = main(["tag", str(tag_project.root), "--model", str(wd_model), "--mode", "append", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert snapshot(tag_project) == before
    assert "--- /dev/null\n+++ b/dataset/10_zkx_mira/blue.txt\n" in out
    # Blue images are not the character (0.02), white ones are (0.98): character tags first.
    assert "+zkx_mira, blue hair, simple background, ^_^, smile\n" in out
    assert "+zkx_mira, zkx mira (original), white background, simple background, ^_^, smile\n" in out
    assert (
        "-forest, zkx_mira, smile\n+zkx_mira, forest, smile, zkx mira (original), red hair, simple background, ^_^\n"
        in out
    )
    assert "#  1.00  + red hair  (added)\n" in out
    assert "#  0.40  = smile  (already there)\n" in out
    assert "#  0.12" not in out  # below the threshold: not a proposal
    assert "# model: WD tagger wd-tiny (CPU, 64 px); confidence: the probability model.onnx gives the tag\n" in out
    assert "# skipped dataset/10_zkx_mira/broken.png: " in out
    assert "3 of 4 captions change" in out and "nothing written" in out


def test_apply_then_undo_restores_every_byte(tag_project, wd_model, capsys):
    before = snapshot(tag_project)
    assert main(["tag", str(tag_project.root), "--model", str(wd_model), "--mode", "replace", "--keep", "forest"]) == 0
    out = capsys.readouterr().out
    d = tag_project.dataset_dir / "10_zkx_mira"
    # The trigger leads, the kept tag follows, the file keeps its CRLF; new files end with a newline.
    assert (d / "red.txt").read_bytes() == (
        b"zkx_mira, forest, zkx mira (original), red hair, simple background, ^_^, smile\r\n"
    )
    assert (d / "white.txt").read_bytes().startswith(b"zkx_mira, zkx mira (original), white background")
    assert "wrote 3 captions" in out and "skipped dataset/10_zkx_mira/broken.png: " in out
    assert "undo with: lorawb captions" in out
    assert main(["captions", str(tag_project.root), "undo"]) == 0
    assert snapshot(tag_project) == before  # red.txt byte for byte, blue.txt and white.txt gone again


def test_a_corrupt_image_is_skipped_and_named(tag_project, wd_model, capsys):
    assert main(["tag", str(tag_project.root), "--model", str(wd_model), "--dry-run", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["skipped"] == [{"image": "dataset/10_zkx_mira/broken.png", "reason": data["skipped"][0]["reason"]}]
    assert data["skipped"][0]["reason"].startswith(("truncated", "corrupt", "not a PNG"))
    assert data["images"] == 4 and data["computed"] == 3
    assert {f["image"] for f in data["files"]} == {"dataset/10_zkx_mira/blue.png", "dataset/10_zkx_mira/white.png"}
    blue = next(f for f in data["files"] if f["image"].endswith("blue.png"))
    assert {
        "tag": "blue hair",
        "confidence": 0.9959,
        "category": "general",
        "model_tag": "blue_hair",
        "what": "added",
    } in (blue["tags"])


def test_a_second_plan_comes_from_the_cache_and_an_edited_image_is_read_again(tag_project, wd_model):
    settings = tagger_settings(tag_project, model=str(wd_model))
    first = plan_tags(tag_project, IMAGES, settings)
    assert (first.run.computed, first.run.cached) == (3, 0)
    other = tagger_settings(tag_project, model=str(wd_model), threshold=0.6, mode="replace")
    second = plan_tags(tag_project, IMAGES, other)
    assert (second.run.computed, second.run.cached) == (0, 3)
    assert "smile" not in second.changeset.changes[0].new  # the new threshold applies to the cached scores
    red = tag_project.root / IMAGES[0]
    st = red.stat()
    os.utime(red, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    third = plan_tags(tag_project, IMAGES, settings)
    assert (third.run.computed, third.run.cached) == (1, 2)


def test_fill_leaves_captioned_images_alone_and_cancel_keeps_what_was_done(tag_project, wd_model):
    settings = tagger_settings(tag_project, model=str(wd_model), batch_size=1)
    plan = plan_tags(tag_project, IMAGES, settings)
    assert [c.image for c in plan.changeset.changes] == IMAGES[1:]
    calls = []
    stopped = plan_tags(
        tag_project,
        IMAGES,
        settings,
        use_cache=False,
        progress=lambda d, t: calls.append(d),
        should_stop=lambda: bool(calls[1:]),
    )
    assert stopped.run.cancelled and stopped.run.computed == 1
    assert "cancelled: 1 of 3 images tagged" in stopped.summary()
    result = caption_history.apply_changeset(tag_project, plan.changeset)
    assert len(result.written) == 2 and not result.conflicts
