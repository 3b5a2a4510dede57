"""Pretraining the toy base model: a Stable-Diffusion-layout model that draws the toy world.

    python -m lorawb.toyworld.pretrain --out DEST [--steps N | --seconds S] [--device auto]
    lorawb toyworld pretrain DEST ...            (the same, from the CLI)

The phases, each a function below: write the tokenizer -> draw the training images ->
train the VAE (2x downsampling) until its reconstructions read back right -> cache
latents -> train the UNet and the text encoder together (noise offset, min-SNR
weighting, EMA weights, warmup + cosine learning rate, a lower text-encoder rate, tag
order shuffled and tags dropped, whole captions dropped for guidance) -> save the EMA
weights as a diffusers folder -> evaluate on held-out prompts with the attribute reader.

The folder loads with ``StableDiffusionPipeline.from_pretrained(DEST)`` and no network.
Weights are stored in fp32 (under 10 MB): fp16 files would load as fp16 through
transformers 5's dtype="auto" and slow or break CPU training.

Held out from training: every figure with the sample character's combination
(``sample.NEVER_IN_PRETRAINING``), and the (hair, outfit, context) triples of the 64
evaluation prompts, so the scores measure prompts the model never saw.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lorawb.core.fsutil import atomic_write_text
from lorawb.toyworld import reader, sample, world
from lorawb.toyworld.recipe import Recipe, add_arguments
from lorawb.toyworld.tiny import SPECIAL_BOS, SPECIAL_EOS, bytes_to_unicode

MAX_LENGTH = 77
# Words the tokenizer knows but pretraining never uses: triggers for LoRAs start from them
# ("zkx_mira" is zkx + _ + mira), and a few generic caption words so prompts typed by hand
# tokenize to words rather than letters.
RARE_WORDS = ["zkx", "mira", "qvr", "ohwx", "sks", "xyz", "vlx"]
GENERIC_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "at",
    "with",
    "and",
    "girl",
    "boy",
    "woman",
    "man",
    "person",
    "character",
    "solo",
    "portrait",
    "full",
    "body",
    "standing",
    "sitting",
    "smile",
    "looking",
    "viewer",
    "background",
    "simple",
    "detailed",
    "quality",
    "best",
]
SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
    "prediction_type": "epsilon",
}


# --- tokenizer ----------------------------------------------------------------------------------


def tokenizer_words() -> list[str]:
    words: list[str] = []
    for w in world.vocabulary() + RARE_WORDS + GENERIC_WORDS:
        if w not in words:
            words.append(w)
    return words


def write_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer whose whole words are single tokens: every byte, then a merge chain per word."""
    enc = bytes_to_unicode()
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        vocab.setdefault(tok, len(vocab))

    for c in enc.values():
        add(c)
    for c in enc.values():
        add(c + "</w>")
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in tokenizer_words():
        # Merges apply by rank across all words, so a chain written for one word can be cut by an
        # earlier merge of another ("re" of "red" inside "forest"). Run BPE as the tokenizer will
        # and append a merge of the first two pieces until the word comes out whole.
        symbols = [enc[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        while True:
            symbols = _bpe(symbols, ranks)
            if len(symbols) == 1:
                break
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            add(pair[0] + pair[1])
    add(SPECIAL_BOS)
    add(SPECIAL_EOS)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "bos_token": SPECIAL_BOS,
        "eos_token": SPECIAL_EOS,
        "unk_token": SPECIAL_EOS,
        "pad_token": SPECIAL_EOS,
        "do_lower_case": True,
    }
    atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair merging as CLIP does it: repeatedly merge the adjacent pair of lowest rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(symbols[:-1], symbols[1:], strict=True))]
        ranked = [(r, i) for r, i in pairs if r is not None]
        if not ranked:
            break
        best = min(ranked)[0]
        out: list[str] = []
        i = 0
        while i < len(symbols):
            if i + 1 < len(symbols) and ranks.get((symbols[i], symbols[i + 1])) == best:
                out.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


class CaptionIds:
    """Token ids of captions assembled from per-tag ids (fast, and equal to the tokenizer's output)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.comma = tokenizer(",", add_special_tokens=False).input_ids
        self.cache: dict[str, list[int]] = {}

    def tag(self, tag: str) -> list[int]:
        ids = self.cache.get(tag)
        if ids is None:
            ids = self.cache[tag] = list(self.tok(tag, add_special_tokens=False).input_ids)
        return ids

    def ids(self, tags: Sequence[str]) -> list[int]:
        out = [self.bos]
        for i, t in enumerate(tags):
            if i:
                out += self.comma
            out += self.tag(t)
        out = out[: MAX_LENGTH - 1] + [self.eos]
        return out + [self.eos] * (MAX_LENGTH - len(out))


# --- models ---------------------------------------------------------------------------------------


def build_models(vocab_size: int, bos: int, eos: int) -> tuple[Any, Any, Any]:
    """(vae, unet, text_encoder) with fresh weights: the architecture of the toy base model."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=world.SIZE,
    )
    unet = UNet2DConditionModel(
        sample_size=world.SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=64,
        norm_num_groups=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            hidden_act="quick_gelu",
            projection_dim=64,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
        )
    )
    return vae, unet, text


# --- data -----------------------------------------------------------------------------------------


def eval_prompts(n: int = 64, seed: int = 4242) -> list[tuple[str, dict[str, str]]]:
    """``n`` held-out prompts (distinct hair/outfit/context triples) and what each asks for."""
    rng = random.Random(seed)
    triples = [
        (h, o, c)
        for h in world.HAIR
        for o in world.OUTFIT
        for c in world.CONTEXTS
        if not any(rule == {"hair": h, "outfit": o} for rule in sample.NEVER_IN_PRETRAINING)
    ]
    rng.shuffle(triples)
    out = []
    for h, o, c in sorted(triples[:n], key=lambda t: (t[2], t[0], t[1])):
        want = {"hair": h, "outfit": o, "context": c}
        out.append((f"{h} hair, {o} outfit, {c}", want))
    return out


def training_specs(n: int, seed: int, held_out: Sequence[dict[str, str]]) -> list[world.Spec]:
    exclude = list(sample.NEVER_IN_PRETRAINING) + list(held_out)
    return world.random_specs(n, seed, exclude=exclude)


def _render_chunk(specs: list[world.Spec]) -> np.ndarray:
    return np.stack([world.render_array(s) for s in specs])


def render_all(specs: list[world.Spec], workers: int) -> np.ndarray:
    """(N, 32, 32, 3) uint8 images, drawn in ``workers`` processes."""
    if workers <= 1 or len(specs) < 2000:
        return _render_chunk(specs)
    from concurrent.futures import ProcessPoolExecutor

    chunks = [specs[i : i + 1000] for i in range(0, len(specs), 1000)]
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_render_chunk, chunks)))


def caption_tags(spec: world.Spec, rng: random.Random, tag_drop: float) -> list[str]:
    """The tags of one training caption: shuffled, each dropped with ``tag_drop``."""
    tags = [t for t in spec.tags() if rng.random() >= tag_drop]
    rng.shuffle(tags)
    return tags


# --- training -------------------------------------------------------------------------------------


def _lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def train_vae(vae: Any, images: np.ndarray, r: Recipe, device: str, log: Callable[[str], None]) -> None:
    import torch

    data = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    opt = torch.optim.AdamW(vae.parameters(), lr=r.vae_lr, weight_decay=0.0)
    gen = torch.Generator(device=device).manual_seed(r.seed + 11)
    vae.train()
    t0 = time.time()
    total = r.vae_steps
    step = 0
    while step < total:
        if r.vae_seconds and step == 20:
            total = min(total, max(100, int(r.vae_seconds / ((time.time() - t0) / 20))))
            log(f"vae: {total} steps fit {r.vae_seconds:.0f}s")
        for g in opt.param_groups:
            g["lr"] = r.vae_lr * _lr_factor(step, total, 50, 0.05)
        idx = torch.randint(0, len(data), (r.vae_batch,), device=device, generator=gen)
        x = data[idx]
        post = vae.encode(x).latent_dist
        z = post.sample(generator=gen)
        rec = vae.decode(z).sample
        loss = (rec - x).abs().mean() + 0.5 * ((rec - x) ** 2).mean() + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == total - 1:
            log(f"vae step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
        step += 1
    r.vae_steps = total
    vae.eval()


def encode_latents(vae: Any, images: np.ndarray, device: str, batch: int = 1024) -> Any:
    """Posterior means of every image, unscaled."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append(vae.encode(x).latent_dist.mean)
    return torch.cat(out)


def vae_readback(vae: Any, specs: list[world.Spec], device: str) -> dict[str, float]:
    """Share of attributes the reader still finds after a trip through the VAE."""
    import torch

    imgs = render_all(specs, 1)
    with torch.no_grad():
        x = torch.from_numpy(imgs).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
    arr = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    reads = [reader.read(a) for a in arr]
    return {
        k: sum(getattr(rd, k) == getattr(s, k) for rd, s in zip(reads, specs, strict=True)) / len(specs)
        for k in reader.READ
    }


class EMA:
    def __init__(self, params: list[Any], decay: float) -> None:
        self.params = params
        self.shadow = [p.detach().clone() for p in params]
        self.decay = decay

    def update(self, step: int) -> None:
        import torch

        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(self.shadow, d)
            torch._foreach_add_(self.shadow, [p.detach() for p in self.params], alpha=1 - d)

    def copy_to(self, params: list[Any]) -> None:
        import torch

        with torch.no_grad():
            for s, p in zip(self.shadow, params, strict=True):
                p.copy_(s)


def train_diffusion(
    unet: Any,
    text: Any,
    ids: CaptionIds,
    latents: Any,
    specs: list[world.Spec],
    r: Recipe,
    device: str,
    log: Callable[[str], None],
) -> int:
    """Train UNet + text encoder on cached latents; leaves the EMA weights in the models. Returns the steps run."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(
        beta_start=SCHEDULER["beta_start"],
        beta_end=SCHEDULER["beta_end"],
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
    )
    alphas = sched.alphas_cumprod.to(device)
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=r.min_snr_gamma) / snr if r.min_snr_gamma > 0 else torch.ones_like(snr)
    unet.train()
    text.train()
    u_params = [p for p in unet.parameters() if p.requires_grad]
    t_params = [p for p in text.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": u_params, "lr": r.lr, "base": r.lr}, {"params": t_params, "lr": r.text_lr, "base": r.text_lr}],
        weight_decay=r.weight_decay,
        fused=device == "cuda",
    )
    ema = EMA(u_params + t_params, r.ema_decay)
    gen = torch.Generator(device=device).manual_seed(r.seed + 23)
    rng = random.Random(r.seed + 29)
    n = len(specs)
    total = r.steps
    t0 = time.time()
    step = 0
    while step < total:
        for g in opt.param_groups:
            g["lr"] = g["base"] * _lr_factor(step, total, r.warmup, r.min_lr_ratio)
        idx = [rng.randrange(n) for _ in range(r.batch)]
        tags = [[] if rng.random() < r.caption_dropout else caption_tags(specs[i], rng, r.tag_drop) for i in idx]
        input_ids = torch.tensor([ids.ids(t) for t in tags], device=device)
        x0 = latents[torch.tensor(idx, device=device)]
        noise = torch.randn(x0.shape, device=device, generator=gen)
        if r.noise_offset:
            noise = noise + r.noise_offset * torch.randn((x0.shape[0], x0.shape[1], 1, 1), device=device, generator=gen)
        t = torch.randint(0, 1000, (x0.shape[0],), device=device, generator=gen)
        noisy = sched.add_noise(x0, noise, t)
        cond = text(input_ids)[0]
        pred = unet(noisy, t, cond).sample
        loss = (F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3)) * weights[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(u_params + t_params, 1.0)
        opt.step()
        ema.update(step)
        step += 1
        if r.seconds and step == 50:
            # Pick the step count that fills the time budget, from the measured speed.
            per = (time.time() - t0) / 50
            total = max(100, int(r.seconds / per))
            log(f"{per * 1000:.1f} ms/step -> {total} steps in {r.seconds:.0f}s")
        if r.seconds and time.time() - t0 > r.seconds * 1.25:
            log(f"stopping at step {step}: over the time budget")
            total = step
        if step % 500 == 0 or step == total:
            log(
                f"step {step}/{total} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} ({time.time() - t0:.0f}s)"
            )
    ema.copy_to(u_params + t_params)
    unet.eval()
    text.eval()
    return total


# --- saving and sampling ----------------------------------------------------------------------------


def save_model(dest: Path, vae: Any, unet: Any, text: Any, meta: dict[str, Any]) -> None:
    import diffusers

    dest.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(dest / "unet", safe_serialization=True)
    vae.save_pretrained(dest / "vae", safe_serialization=True)
    text.save_pretrained(dest / "text_encoder", safe_serialization=True)
    sched = dict(SCHEDULER, _diffusers_version=diffusers.__version__)
    atomic_write_text(dest / "scheduler" / "scheduler_config.json", json.dumps(sched, indent=2) + "\n")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    atomic_write_text(dest / "model_index.json", json.dumps(index, indent=2) + "\n")
    atomic_write_text(dest / "lorawb_model.json", json.dumps(meta, indent=2) + "\n")


def load_pipeline(folder: str | Path, device: str = "cpu", scheduler: str = "ddim") -> Any:
    """The toy model as a StableDiffusionPipeline (fp32, no safety checker), with a DDIM scheduler."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(folder), dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate(
    pipe: Any, prompts: Sequence[str], seeds: Sequence[int], cfg: float, steps: int = 20, batch: int = 64
) -> list[np.ndarray]:
    """One 32x32 image per (prompt, seed) pair, as uint8 arrays; seeded per image."""
    import torch

    out: list[np.ndarray] = []
    for i in range(0, len(prompts), batch):
        ps, ss = list(prompts[i : i + batch]), list(seeds[i : i + batch])
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in ss]
        lat = torch.stack([torch.randn((4, world.SIZE // 2, world.SIZE // 2), generator=g) for g in gens])
        res = pipe(
            ps,
            height=world.SIZE,
            width=world.SIZE,
            num_inference_steps=steps,
            guidance_scale=cfg,
            latents=lat.to(pipe.device),
            output_type="np",
        ).images
        out += [(np.clip(a, 0, 1) * 255).round().astype(np.uint8) for a in res]
    return out


def evaluate(pipe: Any, prompts: list[tuple[str, dict[str, str]]], cfgs: Sequence[float]) -> dict[str, Any]:
    """Per guidance scale: the share of images whose hair / outfit / context the reader finds as prompted."""
    results: dict[str, Any] = {}
    for cfg in cfgs:
        imgs = generate(pipe, [p for p, _ in prompts], list(range(len(prompts))), cfg)
        reads = [reader.read(a) for a in imgs]
        per = {
            k: sum(rd.as_dict()[k] == w[k] for rd, (_, w) in zip(reads, prompts, strict=True)) / len(prompts)
            for k in ("hair", "outfit", "context")
        }
        per["all"] = sum(rd.matches(w) for rd, (_, w) in zip(reads, prompts, strict=True)) / len(prompts)
        results[str(cfg)] = {"scores": per, "images": imgs}
    return results


def contact_sheet(images: Sequence[np.ndarray], cols: int = 16, scale: int = 2) -> Any:
    from PIL import Image

    rows = math.ceil(len(images) / cols)
    s = world.SIZE * scale
    sheet = Image.new("RGB", (cols * s, rows * s), "white")
    for i, a in enumerate(images):
        sheet.paste(Image.fromarray(a).resize((s, s), Image.NEAREST), ((i % cols) * s, (i // cols) * s))
    return sheet


# --- the whole job ------------------------------------------------------------------------------


def pick_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def pretrain(out: str | Path, r: Recipe, device: str = "auto", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every phase and write the model folder at ``out``; returns the metadata written."""
    import torch
    from transformers import CLIPTokenizer

    out = Path(out)
    device = pick_device(device)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    random.seed(r.seed)
    np.random.seed(r.seed)
    torch.manual_seed(r.seed)
    started = time.time()
    write_tokenizer(out / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(out / "tokenizer"))
    vocab = tokenizer.get_vocab()
    vae, unet, text = build_models(len(vocab), vocab[SPECIAL_BOS], vocab[SPECIAL_EOS])
    earlier: dict[str, Any] = {}
    if r.init:
        # A second stage: keep the VAE (and its latent scale), go on training UNet + text encoder.
        init = Path(r.init)
        vae.load_state_dict(_weights(init / "vae"))
        vae.register_to_config(scaling_factor=json.loads((init / "vae" / "config.json").read_text())["scaling_factor"])
        unet.load_state_dict(_weights(init / "unet"))
        text.load_state_dict(_weights(init / "text_encoder"))
        earlier = json.loads((init / "lorawb_model.json").read_text())
        log(f"continuing from {init}")
    vae, unet, text = vae.to(device), unet.to(device), text.to(device)
    log(f"device {device}; params vae {_count(vae)}, unet {_count(unet)}, text {_count(text)}; vocab {len(vocab)}")

    held_out = eval_prompts()
    specs = training_specs(r.images, r.seed, [w for _, w in held_out])
    workers = r.workers or max(1, (os.cpu_count() or 2) - 1)
    t = time.time()
    images = render_all(specs, workers)
    log(f"drew {len(images)} images in {time.time() - t:.0f}s")

    if not r.init:
        train_vae(vae, images, r, device, log)
    check = world.random_specs(256, r.seed + 99)
    readback = vae_readback(vae, check, device)
    log(f"vae read-back {readback}")
    raw = encode_latents(vae, images, device)
    if not r.init:
        vae.register_to_config(scaling_factor=float(1.0 / raw.std()))
    scale = float(vae.config.scaling_factor)
    latents = raw * scale
    log(f"latents {tuple(latents.shape)}, scaling factor {scale:.4f}")
    del images

    ids = CaptionIds(tokenizer)
    steps = train_diffusion(unet, text, ids, latents, specs, r, device, log)
    minutes = (time.time() - started) / 60
    meta: dict[str, Any] = {
        "family": "sd1",
        "toyworld": True,
        "image_size": world.SIZE,
        "recommended": {"width": world.SIZE, "height": world.SIZE, "cfg": 1.5, "steps": 20, "scheduler": "ddim"},
        "recipe": {
            **{k: v for k, v in vars(r).items() if k != "extra"},
            "steps": steps,
            "seconds": 0.0,
            "vae_seconds": 0.0,
        },
        "device": device if device == "cpu" else torch.cuda.get_device_name(),
        "train_minutes": round(minutes, 2),
        "vae_readback": readback,
        "torch": torch.__version__,
    }
    if earlier:
        # Record every stage, so the README can give the whole recipe.
        stages = earlier.get("stages") or [
            {k: earlier[k] for k in ("recipe", "device", "train_minutes") if k in earlier}
        ]
        meta["stages"] = stages + [{k: meta[k] for k in ("recipe", "device", "train_minutes")}]
        meta["train_minutes"] = round(sum(st["train_minutes"] for st in meta["stages"]), 2)
    save_model(out, vae.cpu(), unet.cpu(), text.cpu(), meta)
    log(f"saved {out} after {minutes:.1f} min")
    return meta


def evaluate_folder(folder: Path, cfgs: Sequence[float], device: str, sheet_dir: Path | None = None) -> dict[str, Any]:
    """Evaluate a saved model folder on the held-out prompts; records the scores in lorawb_model.json."""
    pipe = load_pipeline(folder, pick_device(device))
    res = evaluate(pipe, eval_prompts(), cfgs)
    scores = {cfg: v["scores"] for cfg, v in res.items()}
    best = max(scores, key=lambda c: min(scores[c]["hair"], scores[c]["outfit"], scores[c]["context"]))
    meta_path = folder / "lorawb_model.json"
    meta = json.loads(meta_path.read_text())
    meta["eval"] = {
        "prompts": len(eval_prompts()),
        "scheduler": "ddim",
        "steps": 20,
        "by_cfg": scores,
        "best_cfg": float(best),
    }
    # The recommendation stays low (1.5): prompts alone score a little better higher up, but a LoRA's
    # effect fades as the guidance scale rises (see sample_project/models/toyworld-sd/README.md).
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    if sheet_dir is not None:
        sheet_dir.mkdir(parents=True, exist_ok=True)
        for cfg, v in res.items():
            contact_sheet(v["images"]).save(sheet_dir / f"eval_cfg{cfg}.png")
    return meta["eval"]


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(next(folder.glob("*.safetensors"))))


def _count(m: Any) -> int:
    return sum(p.numel() for p in m.parameters())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lorawb toyworld pretrain", description=__doc__.split("\n")[0])
    add_arguments(ap)
    ap.add_argument("--out", required=True, help="model folder to write")
    args = ap.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    r = Recipe(
        seed=args.seed,
        images=args.images,
        vae_steps=args.vae_steps,
        vae_seconds=args.vae_seconds,
        vae_batch=args.vae_batch,
        steps=args.steps,
        seconds=args.seconds,
        batch=args.batch,
        lr=args.lr,
        text_lr=args.text_lr,
        workers=args.workers,
        warmup=args.warmup,
        init=args.init,
    )

    def log(msg: str) -> None:
        print(msg, flush=True)

    out = Path(args.out)
    pretrain(out, r, args.device, log)
    cfgs = [float(c) for c in re.split(r"[,\s]+", args.eval_cfg.strip()) if c]
    if cfgs:
        ev = evaluate_folder(out, cfgs, args.device, Path(args.sheets) if args.sheets else None)
        for cfg, s in ev["by_cfg"].items():
            log(f"eval cfg {cfg}: " + ", ".join(f"{k} {v:.0%}" for k, v in s.items()))
        log(f"recommended cfg {ev['best_cfg']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
