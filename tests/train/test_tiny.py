"""The tiny base model: real Stable Diffusion layout, small, deterministic, loadable by diffusers."""

from __future__ import annotations

import json

import pytest

from lorawb.errors import LorawbError
from lorawb.toyworld.tiny import build_tiny_model, ensure_tiny_model


def folder_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_sd1_layout_size_and_loading(tiny_sd1):
    import torch
    from diffusers import StableDiffusionPipeline

    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_sd1 / sub).is_dir()
    assert (tiny_sd1 / "tokenizer" / "vocab.json").is_file() and (tiny_sd1 / "tokenizer" / "merges.txt").is_file()
    assert list((tiny_sd1 / "unet").glob("*.safetensors"))
    assert folder_bytes(tiny_sd1) < 5 * 2**20
    index = json.loads((tiny_sd1 / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)  # the loader a real SD1.5 folder takes
    pipe.set_progress_bar_config(disable=True)
    image = pipe("zkx_mira, forest", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (32, 32)


def test_tokenizer_keeps_caption_words_whole(tiny_sd1):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny_sd1 / "tokenizer")
    ids = tok("zkx_mira, red scarf, Forest, watercolor").input_ids
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens[0] == "<|startoftext|>" and tokens[-1] == "<|endoftext|>"
    for word in ("red</w>", "scarf</w>", "forest</w>", "watercolor</w>"):
        assert word in tokens
    assert "<|endoftext|>" not in tokens[1:-1]  # unknown words fall back to letters, never to unk


def test_sdxl_layout_and_loading(tiny_sdxl):
    from diffusers import DiffusionPipeline

    index = json.loads((tiny_sdxl / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    unet_cfg = json.loads((tiny_sdxl / "unet" / "config.json").read_text())
    assert unet_cfg["addition_embed_type"] == "text_time"
    pipe = DiffusionPipeline.from_pretrained(tiny_sdxl)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"


def test_build_is_deterministic_per_seed(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (a / weights).read_bytes() == (b / weights).read_bytes() != (c / weights).read_bytes()
    assert (a / "tokenizer/vocab.json").read_text() == (c / "tokenizer/vocab.json").read_text()
    with pytest.raises(LorawbError, match="already exists"):
        build_tiny_model(a)
    assert ensure_tiny_model(a) == a  # first use of a clean clone builds it; later uses keep it


def test_make_tiny_model_command(tmp_path, capsys):
    from lorawb.cli import main

    assert main(["make-tiny-model", str(tmp_path / "m"), "--seed", "1"]) == 0
    assert "built a tiny sd1 model" in capsys.readouterr().out
    assert (tmp_path / "m" / "model_index.json").is_file()
