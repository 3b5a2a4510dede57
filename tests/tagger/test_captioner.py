"""The transformers captioning backend on a tiny BLIP built from a config and saved locally (no download)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lorawb.errors import ModelError
from lorawb.tagger.backends import BackendOptions, open_backend
from lorawb.tagger.plan import plan_tags, tagger_settings

WORDS = [
    "a",
    "girl",
    "with",
    "blue",
    "hair",
    "in",
    "the",
    "forest",
    "picture",
    "of",
    "standing",
    "red",
    "scarf",
    "on",
    "beach",
    "bar",
]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> Path:
    """A BLIP captioning folder as save_pretrained writes it: random weights, a word-piece vocabulary of our own."""
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    dest = tmp_path_factory.mktemp("models") / "blip-tiny"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, bos_token="[DEC]")
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        bos_token_id=vocab.index("[DEC]"),
        eos_token_id=vocab.index("[SEP]"),
        pad_token_id=0,
        sep_token_id=vocab.index("[SEP]"),
    )
    vision = dict(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(
        dest
    )
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    ).save_pretrained(dest)
    return dest


def test_blip_captions_images_as_one_tag_after_the_trigger(tiny_blip, tag_project):
    images = ["dataset/10_zkx_mira/blue.png", "dataset/10_zkx_mira/white.png"]
    settings = tagger_settings(tag_project, model=str(tiny_blip), prompt="a picture of", max_new_tokens=6)
    plan = plan_tags(tag_project, images, settings)
    assert plan.model == "blip captioner blip-tiny (cpu)"
    assert plan.confidence == "the mean probability blip gave the words of its caption"
    assert len(plan.changeset) == 2
    for ch in plan.changeset.changes:
        head, sentence = ch.new.rstrip("\n").split(", ")
        assert head == "zkx_mira" and sentence.startswith("a picture of ")
        assert set(sentence.split()) <= set(WORDS)
        (scored,) = plan.proposals[ch.image].tags
        assert scored.category == "caption" and 0.0 < scored.score < 1.0  # random weights: unsure of every word
    assert "(added)" in plan.preview()
    again = plan_tags(tag_project, images, settings)
    assert again.run.cached == 2 and again.changeset.changes[0].new == plan.changeset.changes[0].new
    # Another prompt is another question: not answered from the cache.
    other = plan_tags(tag_project, images, tagger_settings(tag_project, model=str(tiny_blip), max_new_tokens=6))
    assert other.run.computed == 2


def test_remote_code_and_pickle_weights_are_refused(tiny_blip, tmp_path):
    custom = tmp_path / "custom"
    shutil.copytree(tiny_blip, custom)
    cfg = json.loads((custom / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.Model"}
    (custom / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError) as info:
        open_backend(None, str(custom), BackendOptions())
    assert "runs its own Python code" in info.value.message and "--trust-remote-code" in info.value.hint

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_blip, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"only pickle weights here \(pytorch_model.bin\): refused"):
        open_backend(None, str(pickled), BackendOptions())

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_blip / "config.json", bare / "config.json")
    with pytest.raises(ModelError) as info:
        open_backend(None, str(bare), BackendOptions())
    assert info.value.message == "no model.safetensors" and "preprocessor_config.json" in info.value.hint


def test_other_image_text_to_text_folders_load_through_the_auto_class(tmp_path, tag_project):
    """A tiny GIT (not BLIP): AutoModelForImageTextToText + AutoProcessor, the image alone as input."""
    import torch
    from transformers import BertTokenizerFast, CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    dest = tmp_path / "git-tiny"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    vision = dict(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    config = GitConfig(
        vision_config=vision,
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    GitForCausalLM(config).save_pretrained(dest)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dest)
    settings = tagger_settings(tag_project, model=str(dest), max_new_tokens=6, mode="replace")
    plan = plan_tags(tag_project, ["dataset/10_zkx_mira/red.png"], settings)
    assert plan.model == "git captioner git-tiny (cpu)"
    (ch,) = plan.changeset.changes
    head, sentence = ch.new.rstrip("\r\n").split(", ")
    assert head == "zkx_mira" and sentence and set(sentence.split()) <= set(WORDS)
