"""Pretraining the toy base model: its tokenizer, held-out prompts, a short run, and the committed model."""

from __future__ import annotations

import json

import pytest

from lorawb.toyworld import evaluation, pretrain, sample, toymodel, world
from lorawb.toyworld import tokenizer as toytok

MODEL = sample.committed_model_dir()  # committed weights; the generator does not make them


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    folder = tmp_path_factory.mktemp("tok")
    toytok.write_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder))


def test_every_word_is_one_token(tokenizer):
    for word in toytok.tokenizer_words():
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    toks = tokenizer.convert_ids_to_tokens(tokenizer("zkx_mira, forest, arms up").input_ids)
    assert toks == ["<|startoftext|>", "zkx</w>", "_</w>", "mira</w>", ",</w>", "forest</w>", ",</w>", "arms</w>",
                    "up</w>", "<|endoftext|>"]  # fmt: skip
    # words it does not know still tokenize, letter by letter
    assert len(tokenizer("qqzz", add_special_tokens=False).input_ids) >= 2


def test_caption_ids_equal_the_tokenizer(tokenizer):
    ids = toytok.CaptionIds(tokenizer)
    for tags in (["red hair", "blue outfit", "arms up", "forest"], ["zkx_mira", "bar"], []):
        expected = tokenizer(", ".join(tags), padding="max_length", max_length=77, truncation=True).input_ids
        assert ids.ids(tags) == expected


def test_held_out_prompts_never_reach_training():
    prompts = evaluation.eval_prompts()
    assert len(prompts) == 64 and len({p for p, _ in prompts}) == 64
    held = [w for _, w in prompts]
    specs = pretrain.training_specs(3000, 0, held)
    seen = {(s.hair, s.outfit, s.context) for s in specs}
    assert not seen & {(w["hair"], w["outfit"], w["context"]) for w in held}
    assert not any(s.hair == "blue" and s.outfit == "orange" for s in specs)  # the sample character
    assert len(seen) > 100  # the rest of the world is covered


def test_a_short_run_writes_a_loadable_folder(tmp_path):
    from lorawb.toyworld.recipe import Recipe

    r = Recipe(images=64, vae_steps=2, vae_batch=8, steps=2, batch=4, warmup=1, workers=1)
    meta = pretrain.pretrain(tmp_path / "m", r, device="cpu", log=lambda m: None)
    assert meta["recipe"]["steps"] == 2
    pipe = toymodel.load_pipeline(tmp_path / "m")
    imgs = toymodel.generate(pipe, ["red hair, forest"], [0], cfg=1.5, steps=2)
    assert imgs[0].shape == (32, 32, 3)


def test_committed_model_loads_as_a_stable_diffusion_pipeline():
    import torch
    from diffusers import StableDiffusionPipeline

    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert size < 20 * 2**20
    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL), safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32
    meta = json.loads((MODEL / "lorawb_model.json").read_text())
    assert meta["recommended"]["width"] == world.SIZE
    assert set(meta["eval"]["by_cfg"]) >= {"1.5", "2.0"}


@pytest.mark.slow
def test_committed_model_draws_what_it_is_asked():
    # 16 held-out prompts: the full figures are in the README (64 prompts); here a floor well above chance
    # (chance: hair 1/6, outfit 1/8, context 1/4).
    from lorawb.toyworld import reader

    pipe = toymodel.load_pipeline(MODEL)
    prompts = evaluation.eval_prompts()[::4]
    imgs = toymodel.generate(pipe, [p for p, _ in prompts], list(range(len(prompts))), cfg=3.0)
    reads = [reader.read(a) for a in imgs]
    for attr, floor in (("hair", 0.5), ("outfit", 0.5), ("context", 0.8)):
        share = sum(r.as_dict()[attr] == w[attr] for r, (_, w) in zip(reads, prompts, strict=True)) / len(prompts)
        assert share >= floor, (attr, share)


def test_lr_schedule_warms_up_decays_to_its_floor_and_can_be_rebuilt():
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = pretrain.cosine_schedule(opt, warmup=10, total=110, floor=0.05)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0 and lrs[10] == 1.0 and lrs[-1] == pytest.approx(0.05, abs=1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    # a time budget changes the total at step 50: the schedule goes on from there
    again = pretrain.cosine_schedule(opt, warmup=10, total=60, floor=0.05, start=50)
    assert opt.param_groups[0]["lr"] < lrs[50] and again.last_epoch == 50
