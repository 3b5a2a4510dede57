"""The tiny base model: a deterministic, few-MB Stable Diffusion folder built from configs.

It has the real diffusers layout (model_index.json, unet/, vae/, text_encoder/,
tokenizer/, scheduler/; plus text_encoder_2/ and tokenizer_2/ for SDXL), so it
loads through exactly the code path a downloaded SD1.5 or SDXL folder takes
(``StableDiffusionPipeline.from_pretrained(folder)`` and lorawb's own loader).
Weights are random (seeded); the toy world replaces them with pretrained ones.

The tokenizer is a CLIP BPE tokenizer whose vocabulary we write ourselves: every
byte (so any text tokenizes, letter by letter at worst) plus whole-word tokens
for the caption words in ``WORDS`` (and any the caller adds), each reachable by
a chain of merges. Nothing is downloaded.

``write_single_file`` writes the same model as one original-layout
(``model.diffusion_model.*``) .safetensors checkpoint, to test single-file loading.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lorawb.core.fsutil import atomic_write_text
from lorawb.errors import LorawbError
from lorawb.families.ldm import UnetLayout

FAMILIES = ("sd1", "sdxl")

# Caption words a character dataset uses; the toy world extends this list.
_WORDS_TEXT = """
a an the of in on at with and by to from for as is
1girl 1boy solo girl boy woman man person character portrait full body upper close up looking viewer
smile smiling standing sitting walking running holding
hair eyes skin face dress shirt jacket coat scarf hat cape boots shoes skirt pants outfit uniform armor glasses
red orange yellow green blue purple pink white black brown gray grey silver gold teal cyan magenta
short long blonde fringe ponytail braid curly
forest spaceship bar beach city street room desert mountain snow night day sky sea river castle space
tree trees stars moon sun window neon counter sand water cloud clouds grass
watercolor pixel art photo sketch painting drawing anime flat outlined dithered cartoon realistic oil ink
style background simple detailed high quality best low worst blurry
mira toy figure scene
"""
WORDS: list[str] = _WORDS_TEXT.split()  # noqa: SIM905 - a word list reads best as text

SPECIAL_BOS = "<|startoftext|>"
SPECIAL_EOS = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table (so BPE works on bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def build_vocab(words: Iterable[str] = ()) -> tuple[dict[str, int], list[str]]:
    """(vocab, merges) of a word-level CLIP BPE tokenizer: bytes + whole words via merge chains."""
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        if tok not in vocab:
            vocab[tok] = len(vocab)

    byte_chars = list(bytes_to_unicode().values())
    for c in byte_chars:
        add(c)
    for c in byte_chars:
        add(c + "</w>")
    enc = bytes_to_unicode()
    all_words: list[str] = []
    for w in list(WORDS) + list(words):
        for part in _pretokenize(w):
            if part not in all_words:
                all_words.append(part)
    merges = _learn_merges([[enc[b] for b in w.encode("utf-8")] for w in all_words])
    for m in merges:
        add(m.replace(" ", ""))
    add(SPECIAL_BOS)
    add(SPECIAL_EOS)
    return vocab, merges


def _learn_merges(words: list[list[str]]) -> list[str]:
    """Byte-pair merges learned from ``words`` until each is one token.

    A real BPE training run (most frequent pair first, ties broken by the pair
    itself, so it is deterministic): replaying the merges by rank, as the
    tokenizer does, rebuilds every listed word whole.
    """
    from collections import Counter

    segs = [w[:-1] + [w[-1] + "</w>"] for w in words if w]
    merges: list[str] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for seg in segs:
            for a, b in zip(seg, seg[1:], strict=False):
                pairs[(a, b)] += 1
        if not pairs:
            return merges
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append(f"{a} {b}")
        for i, seg in enumerate(segs):
            j, out = 0, []
            while j < len(seg):
                if j + 1 < len(seg) and seg[j] == a and seg[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(seg[j])
                    j += 1
            segs[i] = out


def _pretokenize(text: str) -> list[str]:
    """The pieces CLIP's pre-tokenizer makes of a word: letter runs, single digits, other runs."""
    import re

    out: list[str] = []
    for m in re.finditer(r"[^\W\d_]+|\d|[^\s\w]+|_", text.lower()):
        out.append(m.group(0))
    return out


# --- configs -----------------------------------------------------------------------------------

SCHEDULER_SD1 = {
    # SD1.5 ships a PNDM scheduler with these betas; trainers load it as DDPM.
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
    "prediction_type": "epsilon",
}

SCHEDULER_SDXL = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


def _text_config(vocab_size: int, bos: int, eos: int, hidden: int, projection: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=projection,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )


def _vae(sample_size: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=sample_size,
        scaling_factor=0.18215,
    )


def _unet_sd1(sample_size: int, cross_dim: int) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=cross_dim,
        norm_num_groups=32,
    )


def _unet_sdxl(sample_size: int, cross_dim: int, pooled_dim: int) -> Any:
    from diffusers import UNet2DConditionModel

    time_dim = 8
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=(4, 8),
        transformer_layers_per_block=(1, 1),
        use_linear_projection=True,
        cross_attention_dim=cross_dim,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # pooled text embedding + 6 size/crop numbers, each embedded to time_dim
        projection_class_embeddings_input_dim=pooled_dim + 6 * time_dim,
        norm_num_groups=32,
    )


def build_tiny_model(
    dest: str | Path,
    family: str = "sd1",
    seed: int = 0,
    words: Iterable[str] = (),
    image_size: int = 32,
    overwrite: bool = False,
) -> Path:
    """Write a tiny random model folder at ``dest`` and return its path (deterministic per seed).

    ``image_size`` is the native pixel size (the VAE downsamples 2x, so latents are image_size/2).
    """
    import torch
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if family not in FAMILIES:
        raise LorawbError(f"unknown model family {family!r}", hint="use sd1 or sdxl")
    dest = Path(dest)
    if (dest / "model_index.json").exists() and not overwrite:
        raise LorawbError("a model already exists here", path=dest, hint="pick another folder or delete this one")
    dest.mkdir(parents=True, exist_ok=True)

    vocab, merges = build_vocab(words)
    tok_dir = dest / "tokenizer"
    _write_tokenizer(tok_dir, vocab, merges)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    bos, eos = vocab[SPECIAL_BOS], vocab[SPECIAL_EOS]
    latent = image_size // 2

    # Each component gets its own seed so adding one never changes the others.
    torch.manual_seed(seed)
    te_hidden = 32
    te1 = CLIPTextModel(_text_config(len(vocab), bos, eos, te_hidden, te_hidden))
    torch.manual_seed(seed + 1)
    vae = _vae(image_size)
    torch.manual_seed(seed + 2)
    if family == "sd1":
        unet = _unet_sd1(latent, te_hidden)
    else:
        torch.manual_seed(seed + 3)
        te2 = CLIPTextModelWithProjection(_text_config(len(vocab), bos, eos, te_hidden, te_hidden))
        torch.manual_seed(seed + 2)
        unet = _unet_sdxl(latent, te_hidden * 2, te_hidden)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars are noise for a 5 MB model
    unet.save_pretrained(dest / "unet", safe_serialization=True)
    vae.save_pretrained(dest / "vae", safe_serialization=True)
    te1.save_pretrained(dest / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(tok_dir)
    # save_pretrained may add a tokenizer.json; keep only the files we wrote plus its configs.
    if family == "sdxl":
        te2.save_pretrained(dest / "text_encoder_2", safe_serialization=True)
        _write_tokenizer(dest / "tokenizer_2", vocab, merges)
        tokenizer.save_pretrained(dest / "tokenizer_2")
    sched = dict(SCHEDULER_SD1 if family == "sd1" else SCHEDULER_SDXL)
    sched["_diffusers_version"] = _diffusers_version()
    atomic_write_text(dest / "scheduler" / "scheduler_config.json", json.dumps(sched, indent=2) + "\n")
    atomic_write_text(dest / "model_index.json", json.dumps(_model_index(family), indent=2) + "\n")
    atomic_write_text(
        dest / "lorawb_model.json",
        json.dumps(
            {
                "family": family,
                "seed": seed,
                "image_size": image_size,
                # A tiny model samples best at a low guidance scale (see the toy-world notes).
                "recommended": {"width": image_size, "height": image_size, "cfg": 1.5, "steps": 20},
            },
            indent=2,
        )
        + "\n",
    )
    return dest


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


def _model_index(family: str) -> dict[str, Any]:
    idx: dict[str, Any] = {
        "_class_name": "StableDiffusionPipeline" if family == "sd1" else "StableDiffusionXLPipeline",
        "_diffusers_version": _diffusers_version(),
        "scheduler": ["diffusers", SCHEDULER_SD1["_class_name"] if family == "sd1" else "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if family == "sd1":
        idx.update(
            {"safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}
        )
    else:
        idx.update(
            {
                "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                "tokenizer_2": ["transformers", "CLIPTokenizer"],
                "force_zeros_for_empty_prompt": True,
            }
        )
    return idx


def _write_tokenizer(folder: Path, vocab: dict[str, int], merges: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": SPECIAL_BOS,
        "eos_token": SPECIAL_EOS,
        "unk_token": SPECIAL_EOS,
        "pad_token": SPECIAL_EOS,
        "do_lower_case": True,
    }
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")


def ensure_tiny_model(dest: str | Path, family: str = "sd1", seed: int = 0, **kw: Any) -> Path:
    """Build the tiny model at ``dest`` unless a model is already there (first use of a clean clone)."""
    dest = Path(dest)
    if (dest / "model_index.json").exists():
        return dest
    return build_tiny_model(dest, family=family, seed=seed, **kw)


# --- single-file checkpoints ------------------------------------------------------------------------


def _vae_to_ldm(config: dict[str, Any]) -> list[tuple[str, str]]:
    n = len(config["block_out_channels"])
    per = config["layers_per_block"]
    pairs = [("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for part in ("encoder", "decoder"):
        pairs.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."))
        for j in range(2):
            pairs.append((f"{part}.mid_block.resnets.{j}.", f"{part}.mid.block_{j + 1}."))
    for i in range(n):
        for j in range(per):
            pairs.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}."))
        if i < n - 1:
            pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        for j in range(per + 1):
            pairs.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{n - 1 - i}.block.{j}."))
        if i < n - 1:
            pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample."))
    return pairs


def _rename(key: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in sorted(pairs, key=lambda p: -len(p[0])):
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def write_single_file(model_dir: str | Path, out: str | Path) -> Path:
    """Write an SD1-family diffusers folder as one original-layout .safetensors checkpoint.

    The layout (model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.*) is
    the one A1111/ComfyUI checkpoints use; diffusers' ``from_single_file`` reads it back given
    the folder's configs. Used to test single-file loading without downloading anything.
    """
    from safetensors.torch import load_file, save_file

    model_dir, out = Path(model_dir), Path(out)
    index = json.loads((model_dir / "model_index.json").read_text())
    if index.get("_class_name") != "StableDiffusionPipeline":
        raise LorawbError("only SD1-family folders can be written as a single file", path=model_dir)
    unet_cfg = json.loads((model_dir / "unet" / "config.json").read_text())
    vae_cfg = json.loads((model_dir / "vae" / "config.json").read_text())
    tensors = {}
    layout = UnetLayout(unet_cfg)
    for k, v in load_file(str(model_dir / "unet" / "diffusion_pytorch_model.safetensors")).items():
        tensors["model.diffusion_model." + layout.to_ldm(k)] = v
    vae_pairs = _vae_to_ldm(vae_cfg)
    for k, v in load_file(str(model_dir / "vae" / "diffusion_pytorch_model.safetensors")).items():
        k = _rename(k, vae_pairs).replace("conv_shortcut.", "nin_shortcut.")
        if ".attn_1." in k:
            k = (
                k.replace("group_norm.", "norm.")
                .replace("to_q.", "q.")
                .replace("to_k.", "k.")
                .replace("to_v.", "v.")
                .replace("to_out.0.", "proj_out.")
            )
            if k.endswith("weight") and v.dim() == 2:
                v = v[:, :, None, None]  # the original VAE attention uses 1x1 convolutions
        tensors["first_stage_model." + k] = v
    for k, v in load_file(str(model_dir / "text_encoder" / "model.safetensors")).items():
        k = k if k.startswith("text_model.") else "text_model." + k
        tensors["cond_stage_model.transformer." + k] = v
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out))
    return out
