"""Pretraining the toy base model: a Stable-Diffusion-layout model that draws the toy world.

    python -m lorawb.toyworld.pretrain --out DEST [--steps N | --seconds S] [--device auto]
    lorawb toyworld pretrain DEST ...            (the same, from the CLI)

The phases, each a function below: write the tokenizer -> draw the training images ->
train the VAE (2x downsampling) until its reconstructions read back right -> cache
latents -> train the UNet and the text encoder together (noise offset, min-SNR
weighting, EMA weights, warmup + cosine learning rate, a lower text-encoder rate, tag
order shuffled and tags dropped, whole captions dropped for guidance) -> save the EMA
weights as a diffusers folder -> evaluate on held-out prompts with the attribute reader.

The pieces live beside it: the tokenizer (``tokenizer``), the architecture, folder and drawing
(``toymodel``), the held-out prompts and scores (``evaluation``). The EMA weights and the
learning-rate schedule are diffusers' ``EMAModel`` and transformers' cosine-with-floor schedule.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lorawb.toyworld import reader, sample, world
from lorawb.toyworld.evaluation import eval_prompts, evaluate_folder
from lorawb.toyworld.recipe import Recipe, add_arguments
from lorawb.toyworld.tiny import SPECIAL_BOS, SPECIAL_EOS
from lorawb.toyworld.tokenizer import CaptionIds, write_tokenizer
from lorawb.toyworld.toymodel import SCHEDULER, build_models, pick_device, save_model

# --- data -----------------------------------------------------------------------------------------


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


def cosine_schedule(opt: Any, warmup: int, total: int, floor: float, start: int = 0) -> Any:
    """Linear warm-up, then a cosine decay to ``floor`` x each group's lr; ``start``: go on from that step
    (the schedule is rebuilt when a time budget changes the total)."""
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        opt, warmup, max(total, warmup + 1), min_lr_rate=floor, last_epoch=start - 1
    )


def train_vae(vae: Any, images: np.ndarray, r: Recipe, device: str, log: Callable[[str], None]) -> None:
    import torch

    data = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    opt = torch.optim.AdamW(vae.parameters(), lr=r.vae_lr, weight_decay=0.0)
    gen = torch.Generator(device=device).manual_seed(r.seed + 11)
    vae.train()
    t0 = time.time()
    total = r.vae_steps
    lr_sched = cosine_schedule(opt, 50, total, 0.05)
    step = 0
    while step < total:
        if r.vae_seconds and step == 20:
            total = min(total, max(100, int(r.vae_seconds / ((time.time() - t0) / 20))))
            lr_sched = cosine_schedule(opt, 50, total, 0.05, start=step)
            log(f"vae: {total} steps fit {r.vae_seconds:.0f}s")
        idx = torch.randint(0, len(data), (r.vae_batch,), device=device, generator=gen)
        x = data[idx]
        post = vae.encode(x).latent_dist
        z = post.sample(generator=gen)
        rec = vae.decode(z).sample
        loss = (rec - x).abs().mean() + 0.5 * ((rec - x) ** 2).mean() + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_sched.step()
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
    from diffusers.training_utils import EMAModel

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
        [{"params": u_params, "lr": r.lr}, {"params": t_params, "lr": r.text_lr}],
        weight_decay=r.weight_decay,
        fused=device == "cuda",
    )
    ema = EMAModel(u_params + t_params, decay=r.ema_decay, foreach=True)
    gen = torch.Generator(device=device).manual_seed(r.seed + 23)
    rng = random.Random(r.seed + 29)
    n = len(specs)
    total = r.steps
    lr_sched = cosine_schedule(opt, r.warmup, total, r.min_lr_ratio)
    t0 = time.time()
    step = 0
    while step < total:
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
        lr_sched.step()
        ema.step(u_params + t_params)
        step += 1
        if r.seconds and step == 50:
            # Pick the step count that fills the time budget, from the measured speed.
            per = (time.time() - t0) / 50
            total = max(100, int(r.seconds / per))
            lr_sched = cosine_schedule(opt, r.warmup, total, r.min_lr_ratio, start=step)
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


# --- the whole job ------------------------------------------------------------------------------


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
