"""Tiny flow-matching transformer models: real diffusers layout, loaded and drawn by the real pipelines."""

from __future__ import annotations

import json

import pytest

from lorawb.errors import LorawbError
from lorawb.toyworld.tiny_transformers import TRANSFORMER_FAMILIES, build_tiny_transformer, ensure_tiny_transformer

# (family, variant) -> the pipeline a real download of that model loads with
PIPELINES = {
    ("flux", "dev"): "FluxPipeline",
    ("flux", "schnell"): "FluxPipeline",
    ("chroma", None): "ChromaPipeline",
    ("flux2_klein", None): "Flux2KleinPipeline",
    ("zimage", None): "ZImagePipeline",
    ("qwenimage", None): "QwenImagePipeline",
    ("sd3", None): "StableDiffusion3Pipeline",
}
CASES = [pytest.param(f, v, id=f"{f}-{v}" if v else f) for f, v in PIPELINES]
# The real models' scheduler settings (their scheduler/scheduler_config.json).
SHIFTS = {
    ("flux", "dev"): {"shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15},
    ("flux", "schnell"): {"shift": 1.0, "use_dynamic_shifting": False},
    ("chroma", None): {"shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15},
    ("flux2_klein", None): {"shift": 3.0, "use_dynamic_shifting": True},
    ("zimage", None): {"shift": 3.0, "use_dynamic_shifting": False},
    ("qwenimage", None): {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 0.9, "shift_terminal": 0.02},
    ("sd3", None): {"shift": 3.0, "use_dynamic_shifting": False},
}
PROMPT = "zkx_mira, red hair, blue outfit, forest, watercolor"


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_family_has_a_case():
    assert sorted({f for f, _ in PIPELINES}) == sorted(TRANSFORMER_FAMILIES)


@pytest.mark.parametrize(("family", "variant"), CASES)
def test_loads_and_draws_like_a_download(tmp_path, family, variant):
    import diffusers
    import torch

    model = build_tiny_transformer(tmp_path / "m", family, variant=variant)
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINES[(family, variant)]
    names = files(model)
    assert all(n.endswith((".json", ".txt", ".jinja", ".safetensors")) for n in names), names  # no pickles
    assert sum(len(b) for b in names.values()) < 4 * 2**20

    # Every component through its own class, as a trainer loads them one by one.
    for name, entry in index.items():
        if isinstance(entry, list):
            library = __import__(entry[0])
            getattr(library, entry[1]).from_pretrained(model, subfolder=name, local_files_only=True)
    sched = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(model, subfolder="scheduler")
    assert {k: sched.config[k] for k in SHIFTS[(family, variant)]} == SHIFTS[(family, variant)]

    pipe = getattr(diffusers, PIPELINES[(family, variant)]).from_pretrained(model, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def draw(prompt):
        # prompt by name: Flux2KleinPipeline's first positional argument is the image
        out = pipe(
            prompt=prompt, num_inference_steps=2, height=32, width=32, generator=torch.Generator().manual_seed(0)
        )
        return out.images[0]

    first, again, other = draw(PROMPT), draw(PROMPT), draw("white hair, beach, flat")
    assert first.size == (32, 32)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()  # the caption reaches the transformer


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_build_is_deterministic_per_seed(tmp_path, family):
    a = files(build_tiny_transformer(tmp_path / "a", family, seed=3))
    b = files(build_tiny_transformer(tmp_path / "b", family, seed=3))
    c = files(build_tiny_transformer(tmp_path / "c", family, seed=4))
    assert a == b
    weights = [n for n in a if n.endswith(".safetensors")]
    assert weights and all(a[n] != c[n] for n in weights)


def test_tokenizers_keep_caption_words_whole(tmp_path):
    from transformers import AutoTokenizer

    flux = build_tiny_transformer(tmp_path / "flux", "flux")
    t5 = AutoTokenizer.from_pretrained(flux / "tokenizer_2")
    tokens = t5.convert_ids_to_tokens(t5(PROMPT).input_ids)
    words = ["▁red", "▁hair", ",", "▁blue", "▁outfit", ",", "▁forest", ",", "▁watercolor"]
    assert tokens == ["▁zkx", "_", "mira", ",", *words, "</s>"]

    klein = build_tiny_transformer(tmp_path / "klein", "flux2_klein")
    qwen = AutoTokenizer.from_pretrained(klein / "tokenizer")
    text = qwen.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    tokens = qwen.convert_ids_to_tokens(qwen(text).input_ids)
    assert tokens[:6] == ["<|im_start|>", "user", "Ċ", "zkx", "_", "mira"]
    assert {"Ġred", "Ġhair", "Ġforest", "Ġwatercolor", "<think>", "</think>"} <= set(tokens)


def test_qwenimage_drops_exactly_its_system_prompt(tmp_path):
    from diffusers import QwenImagePipeline
    from transformers import Qwen2Tokenizer

    model = build_tiny_transformer(tmp_path / "q", "qwenimage")
    tok = Qwen2Tokenizer.from_pretrained(model / "tokenizer")
    pipe = QwenImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=None)
    prefix = pipe.prompt_template_encode.split("{}")[0]
    # The pipeline cuts this many tokens off the text encoder's output: with the real tokenizer, the
    # system prompt and the user turn's opening; the tiny one must cut the same text.
    assert len(tok(prefix).input_ids) == pipe.prompt_template_encode_start_idx


def test_flux_variants_differ_in_the_guidance_embedding(tmp_path):
    dev = build_tiny_transformer(tmp_path / "dev", "flux", variant="dev")
    schnell = build_tiny_transformer(tmp_path / "schnell", "flux", variant="schnell")
    assert json.loads((dev / "transformer" / "config.json").read_text())["guidance_embeds"] is True
    assert json.loads((schnell / "transformer" / "config.json").read_text())["guidance_embeds"] is False
    meta = json.loads((schnell / "lorawb_model.json").read_text())
    assert meta["variant"] == "schnell" and meta["recommended"]["width"] == 32


def test_bad_requests_are_clear_errors(tmp_path):
    with pytest.raises(LorawbError, match="unknown transformer family"):
        build_tiny_transformer(tmp_path / "x", "sd1")
    with pytest.raises(LorawbError, match="no variant 'dev'"):
        build_tiny_transformer(tmp_path / "x", "chroma", variant="dev")
    with pytest.raises(LorawbError, match="multiple of 4"):
        build_tiny_transformer(tmp_path / "x", "sd3", image_size=30)
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(LorawbError, match="not a model folder"):
        build_tiny_transformer(mine, "sd3", overwrite=True)
    assert (mine / "keep.txt").read_text() == "mine"


def test_ensure_reuses_the_same_model_and_refuses_another(tmp_path):
    dest = tmp_path / "m"
    ensure_tiny_transformer(dest, "zimage", seed=1)
    stamp = (dest / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_transformer(dest, "zimage", seed=1) == dest
    assert (dest / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(LorawbError, match="already exists"):
        build_tiny_transformer(dest, "zimage", seed=1)
    with pytest.raises(LorawbError, match="another model is here"):
        ensure_tiny_transformer(dest, "zimage", seed=2)
    # A folder an older builder wrote is rebuilt.
    meta = json.loads((dest / "lorawb_model.json").read_text())
    (dest / "lorawb_model.json").write_text(json.dumps({**meta, "builder_version": 0}))
    assert ensure_tiny_transformer(dest, "zimage", seed=1) == dest
    assert json.loads((dest / "lorawb_model.json").read_text()) == meta


def test_make_tiny_model_command(tmp_path, capsys):
    from lorawb.cli import main

    dest = tmp_path / "schnell"
    assert main(["make-tiny-model", str(dest), "--family", "flux", "--variant", "schnell"]) == 0
    assert "built a tiny flux schnell model" in capsys.readouterr().out
    assert json.loads((dest / "model_index.json").read_text())["_class_name"] == "FluxPipeline"
    assert main(["make-tiny-model", str(tmp_path / "c"), "--family", "chroma", "--variant", "dev"]) == 2
    assert "no variant 'dev'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_zimage_pad_tokens_are_seeded(tmp_path):
    # ZImageTransformer2DModel makes its pad tokens with torch.empty (the checkpoint fills them):
    # unseeded, they hold whatever memory held, NaN included.
    import torch
    from diffusers import ZImageTransformer2DModel

    pads = []
    for seed in (3, 4):
        model = build_tiny_transformer(tmp_path / str(seed), "zimage", seed=seed)
        t = ZImageTransformer2DModel.from_pretrained(model, subfolder="transformer")
        pads.append(torch.cat([t.x_pad_token.flatten(), t.cap_pad_token.flatten()]))
    assert all(torch.isfinite(p).all() and p.abs().max() > 0 for p in pads)
    assert not torch.equal(pads[0], pads[1])
