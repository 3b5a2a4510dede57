"""Scores with a tiny CLIP and a tiny DINOv2 built from configs and saved locally (loaded like a real folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lorawb.errors import ModelError
from lorawb.matrix.cells import Cell, LoraRef, Params
from lorawb.matrix.embedder import dataset_embeddings, load_embedder
from lorawb.matrix.scores import EmbedderScorer
from lorawb.matrix.settings import MatrixSettings


def build_clip(dest: Path, vision_only: bool = False) -> Path:
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer, CLIPVisionModelWithProjection

    from lorawb.toyworld.tiny import SPECIAL_BOS, SPECIAL_EOS, _write_tokenizer, build_vocab

    transformers.utils.logging.disable_progress_bar()
    vocab, merges = build_vocab(["forest", "beach", "red", "outfit"])
    ids = {"bos_token_id": vocab[SPECIAL_BOS], "eos_token_id": vocab[SPECIAL_EOS], "pad_token_id": vocab[SPECIAL_EOS]}
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        **ids,
    )
    vision = dict(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2
    )
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    if vision_only:
        vcfg = cfg.vision_config
        vcfg.projection_dim = 16
        CLIPVisionModelWithProjection(vcfg).save_pretrained(dest)
    else:
        CLIPModel(cfg).save_pretrained(dest)
        _write_tokenizer(dest, vocab, merges)
        CLIPTokenizer.from_pretrained(dest).save_pretrained(dest)
    transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(dest)
    return dest


def build_dinov2(dest: Path) -> Path:
    import transformers
    from transformers import Dinov2Config, Dinov2Model

    transformers.utils.logging.disable_progress_bar()
    cfg = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=32, patch_size=8
    )
    Dinov2Model(cfg).save_pretrained(dest)
    transformers.BitImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def embedders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("embedders")
    return {
        "clip": build_clip(root / "clip"),
        "clip_vision": build_clip(root / "clip-vision", vision_only=True),
        "dinov2": build_dinov2(root / "dinov2"),
    }


def picture(colour: tuple[int, int, int], spot: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    im = Image.new("RGB", (48, 48), colour)
    im.paste(Image.new("RGB", (16, 24), spot), (16, 12))
    return im


@pytest.fixture
def dataset(tmp_path) -> list[Path]:
    out = []
    for i, c in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]):
        p = tmp_path / "dataset" / f"img_{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        picture(c).save(p)
        out.append(p)
    return out


def cell(prompt: str, lora: bool = True, control: int | None = None) -> Cell:
    params = Params(
        "m",
        LoraRef("l.safetensors", "step 1") if lora else None,
        1.0 if lora else 0.0,
        prompt,
        "",
        0,
        1.5,
        2,
        "ddim",
        32,
        32,
    )
    return Cell(params, control=control, plain_prompt=prompt.removeprefix("zkx, "))


@pytest.mark.parametrize("kind", ["clip", "clip_vision", "dinov2"])
def test_embedders_load_from_a_folder_and_score(embedders, dataset, tmp_path, kind):
    emb = load_embedder(embedders[kind])
    assert emb.kind == kind and emb.has_text == (kind == "clip")
    scorer = EmbedderScorer(
        emb, dataset, tmp_path, tmp_path / "cache", MatrixSettings(top_k=2, memorisation_threshold=0.99)
    )
    assert ("prompt_following" in scorer.measures) == (kind == "clip")
    copy = Image.open(dataset[1]).convert("RGB")
    other = picture((120, 60, 160), (0, 0, 0))
    trig, ctl_base, ctl = (
        cell("zkx, forest"),
        cell("red outfit, beach", lora=False, control=0),
        cell("red outfit, beach", control=0),
    )
    bases = {ctl_base.id: picture((90, 90, 90))}
    rows = scorer.score([trig, ctl_base], [copy, bases[ctl_base.id]], bases.get)
    assert rows[0]["memorisation"] == pytest.approx(1.0, abs=1e-4) and rows[0]["flagged"]
    assert rows[0]["nearest"] == "dataset/img_1.png"
    assert rows[0]["identity"] <= rows[0]["memorisation"] + 1e-6  # mean of the top 2
    assert "identity" not in rows[1] and "leak" not in rows[1]  # a control is not the character; base has no leak
    same = scorer.score([ctl], [bases[ctl_base.id]], bases.get)[0]
    moved = scorer.score([ctl], [other], bases.get)[0]
    assert same["leak"] == pytest.approx(0.0, abs=1e-4) and moved["leak"] > 1e-3
    if kind == "clip":
        assert -1.0 <= rows[0]["prompt_following"] <= 1.0
    else:
        assert "prompt_following" not in rows[0]


def test_dataset_embeddings_are_cached_until_an_image_changes(embedders, dataset, tmp_path, monkeypatch):
    emb = load_embedder(embedders["dinov2"])
    first = dataset_embeddings(emb, tmp_path / "cache", tmp_path, dataset)
    calls = []
    real = emb.images
    monkeypatch.setattr(emb, "images", lambda ims, **kw: calls.append(len(ims)) or real(ims))
    again = dataset_embeddings(emb, tmp_path / "cache", tmp_path, dataset)
    assert calls == [] and np.allclose(first, again)
    picture((0, 0, 0)).save(dataset[2])
    changed = dataset_embeddings(emb, tmp_path / "cache", tmp_path, dataset)
    assert calls == [1] and not np.allclose(changed[2], first[2]) and np.allclose(changed[0], first[0])


def test_folders_that_are_not_embedders_are_refused(embedders, tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_embedder(tmp_path)
    import shutil

    pickled = tmp_path / "bin"
    shutil.copytree(embedders["dinov2"], pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelError, match="no .safetensors"):
        load_embedder(pickled)
    bare = tmp_path / "bare"
    shutil.copytree(embedders["dinov2"], bare)
    (bare / "preprocessor_config.json").unlink()
    with pytest.raises(ModelError, match="preprocessor_config.json"):
        load_embedder(bare)


def test_a_matrix_is_scored_by_the_embedder_named_in_lorawb_toml(embedders, lora_project):
    from lorawb.core.project import Project
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.report import load_report
    from lorawb.matrix.runner import score_missing

    folder = MatrixFolder(lora_project / "matrices" / "small")
    before = load_report(folder)
    assert before.scorer is None and before.reason.startswith("no embedder configured: identity, leak, memorisation")
    assert before.summary().recommendation() == before.reason  # never a made-up number
    cfg = lora_project / "lorawb.toml"
    cfg.write_text(cfg.read_text() + f'\n[matrix]\nembedder = "{embedders["clip"]}"\n')
    plan = plan_matrix(folder, Project.load(lora_project))
    assert score_missing(plan) == 18
    report = load_report(folder)
    assert report.scorer == "CLIP (clip)" and set(report.measures) == {
        "identity",
        "memorisation",
        "leak",
        "prompt_following",
        "prior",
    }
    rows = {(r.checkpoint, r.weight): r for r in report.summary().rows}
    assert rows[("base", 0.0)].identity is not None and rows[("base", 0.0)].leak is None
    assert rows[("step 2", 1.0)].leak is not None  # the control prompt against its weight-0 twin
    assert "(measured by the CLIP (clip))" in report.summary().recommendation()
    assert (lora_project / ".lorawb" / "matrix" / "embeddings").is_dir()
