"""Tiny flow-matching transformer models: Flux.1, Chroma, Flux.2 Klein, Z-Image, Qwen-Image, SD3.5.

Each is a few-MB diffusers folder built from configs with seeded random weights, in the layout
the real download has (model_index.json naming the family's pipeline; transformer/, vae/, the
text encoders and tokenizers the pipeline expects, scheduler/ with the real model's
scheduler_config.json values), safetensors only. So it loads through exactly the code a real
download takes: ``<Pipeline>.from_pretrained(folder, local_files_only=True)`` and each
component class's ``from_pretrained(folder, subfolder=...)``. Nothing is downloaded.

What is kept from the real model, and what is shrunk:

- kept: the classes, latent channels (16; 32 for Flux.2's VAE), patch sizes, the VAE's
  shift/scale (Qwen-Image: its per-channel latents_mean/std), guidance embedding (Flux dev
  yes, schnell no), SD3.5 Medium's dual-attention block and RMS q/k norm, the Qwen3 layer
  count Flux.2 Klein reads (its text features are hidden layers 9, 18 and 27), the
  tokenizers' kinds and special tokens, the chat templates, the scheduler settings;
- shrunk: widths (16-96), 1-2 blocks, and the VAE downsamples 2x instead of 8x, so a 32 px
  image is a 16x16 latent and 64 image tokens (8x would leave 4). Code must read the scale
  from the VAE config, as the pipelines do.

Tokenizers are written here from the toy world's words (``lorawb.toyworld.tokenizer``): a
CLIP BPE (``lorawb.toyworld.tiny``), a T5 Unigram whose every word is one piece, and a
Qwen2 byte-level BPE whose every caption word and every word of the pipelines' prompt
templates is one token, with Qwen's special tokens and a Qwen3-style chat template.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorawb.core.fsutil import atomic_write_text
from lorawb.errors import LorawbError
from lorawb.toyworld.tiny import SPECIAL_EOS, WORDS, _text_config, _write_tokenizer, build_vocab

TRANSFORMER_FAMILIES = ("flux", "chroma", "flux2_klein", "zimage", "qwenimage", "sd3")
VARIANTS: dict[str, tuple[str, ...]] = {"flux": ("dev", "schnell")}
# Bumped when a build changes what it writes: ensure_tiny_transformer rebuilds older folders.
BUILDER_VERSION = 1

# --- scheduler configs: the values each real model's scheduler/scheduler_config.json ships ------

# FLUX.1-dev; Flux.2's conversion script (diffusers scripts/convert_flux2_to_diffusers.py) takes
# this same config from FLUX.1-dev, and Chroma's pipeline is FluxPipeline's with it.
_FLUX_DEV_SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}
SCHEDULERS: dict[str, dict[str, Any]] = {
    "flux:dev": _FLUX_DEV_SCHEDULER,
    "flux:schnell": {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False},
    "chroma": _FLUX_DEV_SCHEDULER,
    # The pipeline replaces the resolution shift with its own empirical mu (compute_empirical_mu).
    "flux2_klein": _FLUX_DEV_SCHEDULER,
    # Z-Image-Turbo: a fixed shift; the pipeline passes mu but the scheduler ignores it.
    "zimage": {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False},
    "qwenimage": {
        "base_image_seq_len": 256,
        "base_shift": 0.5,
        "max_image_seq_len": 8192,
        "max_shift": 0.9,
        "num_train_timesteps": 1000,
        "shift": 1.0,
        "shift_terminal": 0.02,
        "time_shift_type": "exponential",
        "use_dynamic_shifting": True,
    },
    # SD3 / SD3.5 Medium and Large: a fixed shift of 3.
    "sd3": {"num_train_timesteps": 1000, "shift": 3.0},
}

# What lorawb_model.json recommends (the real model's usual guidance and steps, except the steps of
# the undistilled ones, cut for a tiny model). ``cfg`` is the pipeline's guidance argument:
# guidance_scale, or true_cfg_scale for Qwen-Image (whose guidance_scale is for distilled models).
RECOMMENDED: dict[str, dict[str, Any]] = {
    "flux:dev": {"cfg": 3.5, "steps": 20},
    "flux:schnell": {"cfg": 0.0, "steps": 4},
    "chroma": {"cfg": 4.0, "steps": 20},
    "flux2_klein": {"cfg": 4.0, "steps": 20},
    "zimage": {"cfg": 0.0, "steps": 8},
    "qwenimage": {"cfg": 4.0, "steps": 20},
    "sd3": {"cfg": 4.5, "steps": 20},
}

# --- widths (each text encoder's width differs, so a wiring mistake shows as a shape error) ------

VAE_CHANNELS = (16, 32)  # two stages: the VAE downsamples 2x
CLIP_L = 32
CLIP_G = 48
T5_WIDTH = 64
T5_WIDTH_SD3 = 96  # SD3 pads CLIP-L + CLIP-G (80) to T5's width, so T5 must be the wider
QWEN3_WIDTH = 32
QWEN3_KLEIN_LAYERS = 28  # Flux2KleinPipeline reads hidden_states[9], [18] and [27]
QWEN25VL_WIDTH = 48
HEADS, HEAD_DIM = 2, 16  # every transformer: 2 heads of 16 (inner width 32)

QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN3_THINK = ("<think>", "</think>")  # plain added tokens in Qwen3 (not special)
# Qwen's chat format, as the Qwen3 template renders a conversation without tools or images; with
# enable_thinking=false the generation prompt closes an empty think block (Flux2KleinPipeline
# asks for that; ZImagePipeline asks for enable_thinking=True, i.e. no think block).
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


def caption_words() -> list[str]:
    """Every word the tiny tokenizers keep whole: the toy world's words and common caption words."""
    from lorawb.toyworld.tokenizer import tokenizer_words  # imports the world (numpy, PIL): not at CLI start

    return list(dict.fromkeys(tokenizer_words() + WORDS))


# --- public API ----------------------------------------------------------------------------------


def build_tiny_transformer(
    dest: str | Path,
    family: str,
    *,
    seed: int = 0,
    image_size: int = 32,
    overwrite: bool = False,
    variant: str | None = None,
) -> Path:
    """Write a tiny random ``family`` model folder at ``dest`` and return its path.

    Deterministic: the same (family, variant, seed, image_size) writes the same bytes. The folder
    appears whole (it is built beside ``dest`` and renamed into place).
    """
    import torch

    spec = _spec(family, variant, image_size)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        if not overwrite:
            raise LorawbError("a model already exists here", path=dest, hint="pick another folder or delete this one")
        if not (dest / "model_index.json").is_file():
            raise LorawbError(
                "this folder is not a model folder: nothing was replaced", path=dest, hint="pick another folder"
            )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars are noise for a 1 MB model
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.parent / f".{dest.name}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        with torch.random.fork_rng(devices=[]):
            components = _BUILDERS[family](_Build(work, spec, seed))
        _write_scheduler(work, spec)
        index = {
            "_class_name": _PIPELINES[family],
            "_diffusers_version": _diffusers_version(),
            **components,
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        }
        if family == "flux2_klein":
            index["is_distilled"] = False  # the Klein base model, the one LoRAs are trained on
        atomic_write_text(work / "model_index.json", json.dumps(dict(sorted(index.items())), indent=2) + "\n")
        atomic_write_text(work / "lorawb_model.json", json.dumps(_meta(spec, seed), indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def ensure_tiny_transformer(dest: str | Path, family: str, **kw: Any) -> Path:
    """Build the tiny model at ``dest`` unless the same one is already there.

    A folder built by an older version of this module is rebuilt; any other model there is an
    error (nothing a person made is deleted).
    """
    dest = Path(dest)
    seed = kw.get("seed", 0)
    spec = _spec(family, kw.get("variant"), kw.get("image_size", 32))
    meta_path = dest / "lorawb_model.json"
    if not dest.exists() or not any(dest.iterdir()):
        return build_tiny_transformer(dest, family, **kw)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    want = _meta(spec, seed)
    if meta == want and (dest / "model_index.json").is_file():
        return dest
    if meta.get("builder") == "tiny_transformers" and meta.get("builder_version") != BUILDER_VERSION:
        return build_tiny_transformer(dest, family, **{**kw, "overwrite": True})
    raise LorawbError(
        f"another model is here, not the tiny {spec.key} model (seed {seed}, {spec.image_size} px)",
        path=dest,
        hint="pick another folder, or build over it with overwrite=True (--force)",
    )


# --- the build -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    family: str
    variant: str | None
    image_size: int

    @property
    def key(self) -> str:
        return f"{self.family}:{self.variant}" if self.variant else self.family

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(VAE_CHANNELS) - 1)


def _spec(family: str, variant: str | None, image_size: int) -> _Spec:
    if family not in TRANSFORMER_FAMILIES:
        raise LorawbError(
            f"unknown transformer family {family!r}", hint="use one of " + ", ".join(TRANSFORMER_FAMILIES)
        )
    variants = VARIANTS.get(family, ())
    if variants and variant is None:
        variant = variants[0]
    if variant is not None and variant not in variants:
        allowed = ", ".join(variants) if variants else "none (leave the variant out)"
        raise LorawbError(f"{family} has no variant {variant!r}", hint=f"variants of {family}: {allowed}")
    # Every family packs or patchifies the latent 2x2, and the VAE downsamples 2x.
    if image_size < 8 or image_size % 4:
        raise LorawbError(f"image size {image_size} px does not fit", hint="use a multiple of 4 px, at least 8")
    return _Spec(family, variant, image_size)


def _meta(spec: _Spec, seed: int) -> dict[str, Any]:
    return {
        "family": spec.family,
        "variant": spec.variant,
        "seed": seed,
        "image_size": spec.image_size,
        "builder": "tiny_transformers",
        "builder_version": BUILDER_VERSION,
        "recommended": {"width": spec.image_size, "height": spec.image_size, **RECOMMENDED[spec.key]},
    }


class _Build:
    """One build: the folder, the spec, and a seed per component (adding one never moves another)."""

    def __init__(self, root: Path, spec: _Spec, seed: int) -> None:
        self.root, self.spec, self.seed = root, spec, seed

    def seeded(self, component: str) -> None:
        import torch

        torch.manual_seed(zlib.crc32(f"{self.seed}:{component}".encode()))

    def save(self, name: str, model: Any) -> list[str]:
        """Save a diffusers or transformers model (safetensors); its model_index.json entry."""
        model.save_pretrained(self.root / name, safe_serialization=True)
        library = "diffusers" if type(model).__module__.startswith("diffusers") else "transformers"
        return [library, type(model).__name__]


def _write_scheduler(root: Path, spec: _Spec) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    # Through the class, so the file has every key the installed diffusers writes.
    sched = FlowMatchEulerDiscreteScheduler.from_config(SCHEDULERS[spec.key])
    sched.save_pretrained(root / "scheduler")


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


# --- tokenizers ----------------------------------------------------------------------------------


def _clip_tokenizer(b: _Build, name: str) -> tuple[list[str], Any]:
    from transformers import CLIPTokenizer

    vocab, merges = build_vocab(caption_words())
    _write_tokenizer(b.root / name, vocab, merges)
    return ["transformers", "CLIPTokenizer"], CLIPTokenizer.from_pretrained(b.root / name)


def _t5_tokenizer(b: _Build, name: str) -> tuple[list[str], Any]:
    """A T5 Unigram tokenizer: every caption word one piece ("▁red"), letters for anything else.

    The scores are what a unigram model trained on the word list with every word seen equally
    often gives (whole words likelier than any split). ``tokenizers``' UnigramTrainer is not
    used: it splits rare words and its output changes from run to run.
    """
    import string

    from transformers import T5TokenizerFast

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    seen = {p for p, _ in pieces}

    def add(piece: str, score: float) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, score))

    words = caption_words()
    for w in words:
        add("▁" + w, -4.0)
    for w in words:
        add(w, -6.0)  # inside a word: "zkx_mira" is "▁zkx" "_" "mira"
    for c in string.ascii_letters + string.digits + string.punctuation:
        add(c, -8.0)
    tok = T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)
    tok.save_pretrained(b.root / name)
    return ["transformers", "T5TokenizerFast"], T5TokenizerFast.from_pretrained(b.root / name)


def _qwen_tokenizer(b: _Build, name: str, *, qwen3: bool) -> tuple[list[str], Any]:
    """A Qwen2 byte-level BPE: bytes, a merge chain per word, then Qwen's special tokens.

    Whole tokens are made for every caption word (alone and after a space) and every piece of
    the prompt templates the pipelines wrap a caption in, so the template prefix Qwen-Image
    drops (``prompt_template_encode_start_idx``) is as many tokens as with the real tokenizer.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    from lorawb.toyworld.tokenizer import merge_chains

    bytes_only = Qwen2Tokenizer(vocab=_byte_vocab(), merges=[])
    split = bytes_only.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    texts = [w for word in caption_words() for w in (word, " " + word)]
    texts += [_qwenimage_template(), "<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n", "\n\n"]
    pretokens: list[str] = []
    for text in texts:
        for chunk in _split_specials(text):
            pretokens += [p for p, _ in split(chunk)]
    merges = merge_chains(list(p) for p in dict.fromkeys(pretokens))
    vocab = _byte_vocab()
    for a, c in merges:
        vocab.setdefault(a + c, len(vocab))
    specials = list(QWEN_SPECIALS)
    for t in specials + list(QWEN3_THINK if qwen3 else ()):
        vocab[t] = len(vocab)
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
        model_max_length=131072,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    if qwen3:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN3_THINK])
    tok.save_pretrained(b.root / name)
    entry = ["transformers", "Qwen2TokenizerFast" if b.spec.family == "flux2_klein" else "Qwen2Tokenizer"]
    return entry, Qwen2Tokenizer.from_pretrained(b.root / name)


def _byte_vocab() -> dict[str, int]:
    from lorawb.toyworld.tiny import bytes_to_unicode

    return {c: i for i, c in enumerate(bytes_to_unicode().values())}


def _split_specials(text: str) -> list[str]:
    import re

    pattern = "|".join(re.escape(t) for t in QWEN_SPECIALS + QWEN3_THINK)
    return [part for part in re.split(pattern, text) if part]


def _qwenimage_template() -> str:
    """The prompt template QwenImagePipeline wraps a caption in, read from the pipeline itself."""
    from diffusers import QwenImagePipeline

    pipe = QwenImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=None)
    return pipe.prompt_template_encode.format("")


# --- components ----------------------------------------------------------------------------------


def _vae_kl(b: _Build, *, scaling: float, shift: float) -> Any:
    """The 16-channel AutoencoderKL of Flux, Chroma, Z-Image and SD3 (no quant convs, like theirs)."""
    from diffusers import AutoencoderKL

    b.seeded("vae")
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        block_out_channels=VAE_CHANNELS,
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=16,
        sample_size=b.spec.image_size,
        scaling_factor=scaling,
        shift_factor=shift,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def _clip(b: _Build, name: str, tokenizer: Any, width: int, *, projection: bool) -> list[str]:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    bos, eos = tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(SPECIAL_EOS)
    b.seeded(name)
    config = _text_config(len(tokenizer), bos, eos, width, width)
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)
    return b.save(name, model)


def _t5(b: _Build, name: str, tokenizer: Any, width: int) -> list[str]:
    from transformers import T5Config, T5EncoderModel

    b.seeded(name)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=width,
        d_kv=16,
        d_ff=width,
        num_layers=2,
        num_heads=2,
        feed_forward_proj="gated-gelu",  # T5 v1.1 (T5-XXL), as Flux, Chroma and SD3 use
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return b.save(name, T5EncoderModel(config))


def _qwen3_config(tokenizer: Any, layers: int) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=QWEN3_WIDTH,
        intermediate_size=QWEN3_WIDTH * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,  # grouped-query attention, as Qwen3-4B (32 heads, 8 kv)
        head_dim=16,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


# --- families ------------------------------------------------------------------------------------


def _build_flux(b: _Build) -> dict[str, list[str]]:
    from diffusers import FluxTransformer2DModel

    out: dict[str, list[str]] = {}
    out["tokenizer"], clip_tok = _clip_tokenizer(b, "tokenizer")
    out["tokenizer_2"], t5_tok = _t5_tokenizer(b, "tokenizer_2")
    out["text_encoder"] = _clip(b, "text_encoder", clip_tok, CLIP_L, projection=False)
    out["text_encoder_2"] = _t5(b, "text_encoder_2", t5_tok, T5_WIDTH)
    out["vae"] = b.save("vae", _vae_kl(b, scaling=0.3611, shift=0.1159))
    b.seeded("transformer")
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16 * 4,  # 2x2-packed latents
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=CLIP_L,
        guidance_embeds=b.spec.variant == "dev",
        axes_dims_rope=(4, 6, 6),  # sums to the head width, as (16, 56, 56) does to 128
    )
    out["transformer"] = b.save("transformer", transformer)
    return out


def _build_chroma(b: _Build) -> dict[str, list[str]]:
    from diffusers import ChromaTransformer2DModel

    out: dict[str, list[str]] = {}
    out["tokenizer"], t5_tok = _t5_tokenizer(b, "tokenizer")
    out["text_encoder"] = _t5(b, "text_encoder", t5_tok, T5_WIDTH)
    out["vae"] = b.save("vae", _vae_kl(b, scaling=0.3611, shift=0.1159))
    b.seeded("transformer")
    transformer = ChromaTransformer2DModel(
        patch_size=1,
        in_channels=16 * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=T5_WIDTH,
        axes_dims_rope=(4, 6, 6),
        approximator_num_channels=64,  # the real value: 16 (time) + 16 (guidance) + 32 (index)
        approximator_hidden_dim=32,
        approximator_layers=1,
    )
    out["transformer"] = b.save("transformer", transformer)
    return out


def _build_flux2_klein(b: _Build) -> dict[str, list[str]]:
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import Qwen3ForCausalLM

    out: dict[str, list[str]] = {}
    out["tokenizer"], tok = _qwen_tokenizer(b, "tokenizer", qwen3=True)
    b.seeded("text_encoder")
    out["text_encoder"] = b.save("text_encoder", Qwen3ForCausalLM(_qwen3_config(tok, QWEN3_KLEIN_LAYERS)))
    b.seeded("vae")
    vae = AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        block_out_channels=VAE_CHANNELS,
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=16,
        sample_size=b.spec.image_size,
    )
    out["vae"] = b.save("vae", vae)
    b.seeded("transformer")
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=32 * 4,  # the VAE's 2x2 patchified latents
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=3 * QWEN3_WIDTH,  # three Qwen3 layers side by side
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,  # Klein has no guidance embedding (it uses true CFG)
    )
    out["transformer"] = b.save("transformer", transformer)
    return out


def _build_zimage(b: _Build) -> dict[str, list[str]]:
    import torch
    from diffusers import ZImageTransformer2DModel
    from transformers import Qwen3Model

    out: dict[str, list[str]] = {}
    out["tokenizer"], tok = _qwen_tokenizer(b, "tokenizer", qwen3=True)
    b.seeded("text_encoder")
    out["text_encoder"] = b.save("text_encoder", Qwen3Model(_qwen3_config(tok, 2)))  # it reads hidden_states[-2]
    out["vae"] = b.save("vae", _vae_kl(b, scaling=0.3611, shift=0.1159))
    b.seeded("transformer")
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=HEADS * HEAD_DIM,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=HEADS,
        n_kv_heads=HEADS,
        cap_feat_dim=QWEN3_WIDTH,
        axes_dims=[8, 4, 4],  # sums to the head width, as [32, 48, 48] does to 128
    )
    # The pad tokens are created with torch.empty (left for the checkpoint to fill): seed them.
    with torch.no_grad():
        for pad in (transformer.x_pad_token, transformer.cap_pad_token):
            pad.copy_(torch.randn_like(pad) * 0.02)
    out["transformer"] = b.save("transformer", transformer)
    return out


def _build_qwenimage(b: _Build) -> dict[str, list[str]]:
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out: dict[str, list[str]] = {}
    out["tokenizer"], tok = _qwen_tokenizer(b, "tokenizer", qwen3=False)
    ids = tok.convert_tokens_to_ids
    b.seeded("text_encoder")
    # The whole vision-language model, as Qwen-Image ships it (the edit pipelines use the vision
    # tower); a tiny vision tower costs a few KB.
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": QWEN25VL_WIDTH,
            "intermediate_size": QWEN25VL_WIDTH * 2,
            "num_hidden_layers": 2,
            "num_attention_heads": 3,
            "num_key_value_heads": 1,
            "max_position_embeddings": 2048,
            "rope_theta": 1000000.0,
            # 3-D rotary sections (time, height, width) summing to half the head width (16 / 2).
            "rope_scaling": {"type": "mrope", "rope_type": "default", "mrope_section": [2, 3, 3]},
            "tie_word_embeddings": False,
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": QWEN25VL_WIDTH,
            "fullatt_block_indexes": [0],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    out["text_encoder"] = b.save("text_encoder", Qwen2_5_VLForConditionalGeneration(config))
    b.seeded("vae")
    # One downsampling stage (2x); the pipeline's scale factor is 2 ** len(temperal_downsample).
    # latents_mean/std keep the real model's 16 per-channel values (the class defaults).
    vae = AutoencoderKLQwenImage(
        base_dim=16, z_dim=16, dim_mult=[1, 2], num_res_blocks=1, attn_scales=[], temperal_downsample=[False]
    )
    out["vae"] = b.save("vae", vae)
    b.seeded("transformer")
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16 * 4,
        out_channels=16,
        num_layers=2,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=QWEN25VL_WIDTH,
        axes_dims_rope=(8, 4, 4),
    )
    out["transformer"] = b.save("transformer", transformer)
    return out


def _build_sd3(b: _Build) -> dict[str, list[str]]:
    from diffusers import SD3Transformer2DModel

    out: dict[str, list[str]] = {}
    out["tokenizer"], tok_l = _clip_tokenizer(b, "tokenizer")
    out["tokenizer_2"], tok_g = _clip_tokenizer(b, "tokenizer_2")
    out["tokenizer_3"], t5_tok = _t5_tokenizer(b, "tokenizer_3")
    out["text_encoder"] = _clip(b, "text_encoder", tok_l, CLIP_L, projection=True)
    out["text_encoder_2"] = _clip(b, "text_encoder_2", tok_g, CLIP_G, projection=True)
    out["text_encoder_3"] = _t5(b, "text_encoder_3", t5_tok, T5_WIDTH_SD3)
    out["vae"] = b.save("vae", _vae_kl(b, scaling=1.5305, shift=0.0609))
    b.seeded("transformer")
    patches = b.spec.latent_size // 2
    transformer = SD3Transformer2DModel(
        sample_size=b.spec.latent_size,
        patch_size=2,
        in_channels=16,
        num_layers=2,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=T5_WIDTH_SD3,
        caption_projection_dim=HEADS * HEAD_DIM,
        pooled_projection_dim=CLIP_L + CLIP_G,
        out_channels=16,
        pos_embed_max_size=4 * patches,  # images up to 4x the native side
        # SD3.5 Medium (MMDiT-X): a second self-attention in the first block, RMS-normed q/k.
        dual_attention_layers=(0,),
        qk_norm="rms_norm",
    )
    out["transformer"] = b.save("transformer", transformer)
    return out


_BUILDERS: dict[str, Callable[[_Build], dict[str, list[str]]]] = {
    "flux": _build_flux,
    "chroma": _build_chroma,
    "flux2_klein": _build_flux2_klein,
    "zimage": _build_zimage,
    "qwenimage": _build_qwenimage,
    "sd3": _build_sd3,
}
_PIPELINES = {
    "flux": "FluxPipeline",
    "chroma": "ChromaPipeline",
    "flux2_klein": "Flux2KleinPipeline",
    "zimage": "ZImagePipeline",
    "qwenimage": "QwenImagePipeline",
    "sd3": "StableDiffusion3Pipeline",
}
