"""Training throughput: lorawb's trainer against the diffusers reference LoRA script, same settings.

The reference is the per-step logic of diffusers' examples/text_to_image/train_text_to_image_lora.py
(and its SDXL sibling for --family sdxl), re-implemented here from reading it: every step decodes
and transforms the images, encodes them with the VAE, runs the text encoder(s), then the UNet with
peft LoRA on its attention (to_q/to_k/to_v/to_out.0), MSE loss, AdamW, constant lr. lorawb runs
its real trainer (a run folder, events and all) twice: without caches (step for step the same work)
and with its latent and text-embedding caches (the default).

    python bench/train_speed.py                           # CPU, tiny model, 32 px
    python bench/train_speed.py --device cuda --family sdxl --resolution 1024 --full-size

--full-size builds a randomly initialised model with the real SD1.5 or SDXL architecture (UNet,
VAE, CLIP text encoders; nothing is downloaded), so GPU figures are those of the real networks.
Prints steps/s, s/step and peak GPU memory of each, and the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

# --- the models -----------------------------------------------------------------------------------

SD15_UNET = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=768,
)
SDXL_UNET = dict(
    sample_size=128,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2,
    attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True,
    cross_attention_dim=2048,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
SD_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768)
CLIP_BIGG = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    projection_dim=1280,
    hidden_act="gelu",
)


def build_full_size(dest: Path, family: str, device: str) -> Path:
    """A random-weight model with the real architecture, saved as a diffusers folder (fp16)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lorawb.toyworld.tiny import build_tiny_model

    build_tiny_model(dest, family=family)  # tokenizer(s), scheduler, model_index.json; networks replaced below
    vocab = len(json.loads((dest / "tokenizer" / "vocab.json").read_text()))
    te_kw = dict(vocab_size=vocab, max_position_embeddings=77, bos_token_id=vocab - 2, eos_token_id=vocab - 1)
    te_kw["pad_token_id"] = vocab - 1
    with torch.device(device):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**(SDXL_UNET if family == "sdxl" else SD15_UNET))
        vae = AutoencoderKL(
            **SD_VAE,
            sample_size=1024 if family == "sdxl" else 512,
            scaling_factor=0.13025 if family == "sdxl" else 0.18215,
        )
        te1 = CLIPTextModel(CLIPTextConfig(**CLIP_L, hidden_act="quick_gelu", **te_kw))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG, **te_kw)) if family == "sdxl" else None
    for name, m in (("unet", unet), ("vae", vae), ("text_encoder", te1), ("text_encoder_2", te2)):
        if m is not None:
            m.to(torch.float16).save_pretrained(dest / name, safe_serialization=True)
    (dest / "lorawb_model.json").unlink()
    del unet, vae, te1, te2
    return dest


def make_images(folder: Path, n: int, size: int, trigger: str) -> None:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for i in range(n):
        im = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        d = ImageDraw.Draw(im)
        for _ in range(6):
            x, y = rng.randrange(size), rng.randrange(size)
            r = rng.randrange(size // 8, size // 3)
            d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
        im.save(folder / f"img_{i:03d}.png")
        (folder / f"img_{i:03d}.txt").write_text(f"{trigger}, red scarf, forest, watercolor")


# --- the reference: diffusers' LoRA example, one step at a time -----------------------------------


def reference_run(args: argparse.Namespace, model: Path, images: list[Path], captions: list[str]) -> dict:
    import numpy as np
    import torch.nn.functional as F
    from accelerate import Accelerator
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    sdxl = args.family == "sdxl"
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=args.device == "cpu")
    noise_scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
    tokenizers = [CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")]
    text_encoders = [CLIPTextModel.from_pretrained(model, subfolder="text_encoder")]
    if sdxl:
        tokenizers.append(CLIPTokenizer.from_pretrained(model, subfolder="tokenizer_2"))
        text_encoders.append(CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2"))
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    for m in (unet, vae, *text_encoders):
        m.requires_grad_(False)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    unet.add_adapter(
        LoraConfig(
            r=args.rank,
            lora_alpha=args.rank,
            init_lora_weights="gaussian",
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )
    unet.to(accelerator.device, dtype=weight_dtype)
    vae.to(accelerator.device, dtype=torch.float32 if sdxl else weight_dtype)  # the SDXL script keeps its VAE fp32
    for te in text_encoders:
        te.to(accelerator.device, dtype=weight_dtype)
    if args.mixed_precision != "no":
        cast_training_params(unet, dtype=torch.float32)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    lora_layers = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora_layers, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=args.steps)
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)

    res = args.resolution

    def preprocess(path: Path) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        # transforms.Resize(res) (shorter side, bilinear) + CenterCrop(res) + ToTensor + Normalize([0.5], [0.5])
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = res / min(w, h)
            im = im.resize((max(res, round(w * s)), max(res, round(h * s))), Image.Resampling.BILINEAR)
            left, top = (im.width - res) // 2, (im.height - res) // 2
            im = im.crop((left, top, left + res, top + res))
            x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - 0.5) / 0.5, (h, w), (top, left)

    def tokenize(tok: CLIPTokenizer, caps: list[str]) -> torch.Tensor:
        return tok(
            caps, max_length=tok.model_max_length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids

    order = list(range(len(images)))
    cursor = len(order)
    times: list[float] = []
    unet.train()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        if cursor + args.batch > len(order):  # a new epoch of the (shuffled) dataloader
            random.shuffle(order)
            cursor = 0
        idx = order[cursor : cursor + args.batch]
        cursor += args.batch
        prepared = [preprocess(images[i]) for i in idx]  # the dataset's with_transform runs on access
        caps = [captions[i] for i in idx]
        ids = [tokenize(t, caps) for t in tokenizers]
        pixel_values = torch.stack([p[0] for p in prepared]).to(accelerator.device)
        latents = vae.encode(pixel_values.to(vae.dtype)).latent_dist.sample()
        latents = (latents * vae.config.scaling_factor).to(weight_dtype)
        noise = torch.randn_like(latents)
        bsz = latents.shape[0]
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,), device=latents.device).long()
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        if sdxl:
            hidden, pooled = [], None
            for te, tok_ids in zip(text_encoders, ids, strict=True):
                out = te(tok_ids.to(accelerator.device), output_hidden_states=True, return_dict=False)
                pooled = out[0]
                hidden.append(out[-1][-2])
            encoder_hidden_states = torch.cat(hidden, dim=-1)
            time_ids = torch.tensor(
                [list(p[1] + p[2] + (res, res)) for p in prepared], device=accelerator.device, dtype=weight_dtype
            )
            added = {"text_embeds": pooled, "time_ids": time_ids}
        else:
            encoder_hidden_states = text_encoders[0](ids[0].to(accelerator.device), return_dict=False)[0]
            added = None
        model_pred = unet(noisy, timesteps, encoder_hidden_states, added_cond_kwargs=added, return_dict=False)[0]
        loss = F.mse_loss(model_pred.float(), noise.float(), reduction="mean")
        avg_loss = accelerator.gather(loss.repeat(args.batch)).mean()
        _ = avg_loss.item()
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(lora_layers, 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - t0)
    result = {"name": "diffusers reference (VAE + text encoder every step)", "times": times}
    del unet, vae, text_encoders, optimizer, accelerator
    return result


# --- lorawb ---------------------------------------------------------------------------------------


def lorawb_run(args: argparse.Namespace, project_root: Path, cached: bool) -> dict:
    from lorawb.core.project import Project
    from lorawb.train.config import resolve_config
    from lorawb.train.process import start_run

    project = Project.load(project_root)
    overrides = [
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch}",
        f"train.mixed_precision={args.mixed_precision!r}",
        f"train.gradient_checkpointing={'true' if args.gradient_checkpointing else 'false'}",
        f"train.device={args.device!r}",
        f"network.rank={args.rank}",
        f"network.alpha={args.rank}",
        f"dataset.cache_latents={'true' if cached else 'false'}",
        f"dataset.cache_text={'true' if cached else 'false'}",
        "dataset.buckets=false",
        "sample.prompts=[]",
        "save.every_n_steps=0",
    ]
    stamps: list[float] = []
    t0 = time.perf_counter()
    start_run(
        project,
        resolve_config(project, overrides=overrides),
        detach=False,
        progress=lambda ev: stamps.append(time.perf_counter()),
    )
    total = time.perf_counter() - t0
    times = [b - a for a, b in zip([stamps[0]] + stamps[:-1], stamps, strict=True)]
    times[0] = stamps[0] - t0  # the first step carries loading and caching
    name = "lorawb, cached latents + text embeddings" if cached else "lorawb, no caches (same work per step)"
    return {"name": name, "times": times, "wall": total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--family", default="sd1", choices=["sd1", "sdxl"])
    ap.add_argument("--resolution", type=int, default=0, help="default: 32 (tiny), 512 (sd1), 1024 (sdxl)")
    ap.add_argument("--batch", type=int, default=0, help="default: 4 on CPU, 1 on GPU")
    ap.add_argument("--steps", type=int, default=0, help="timed steps after warm-up (default 30 CPU, 40 GPU)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--mixed-precision", default="", choices=["", "no", "fp16", "bf16"], help="default: bf16 on GPU")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--full-size", action="store_true", help="the real SD1.5/SDXL architecture, random weights")
    ap.add_argument("--model", help="an existing diffusers folder to use instead")
    ap.add_argument("--only", choices=["reference", "nocache", "cached"], action="append")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the best of each is shown")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(int(os.environ.get("LORAWB_THREADS", "0") or 0) or torch.get_num_threads())
    args.mixed_precision = args.mixed_precision or ("bf16" if args.device == "cuda" else "no")
    if not args.resolution:
        args.resolution = {"sd1": 512, "sdxl": 1024}[args.family] if (args.full_size or args.model) else 32
    args.batch = args.batch or (1 if args.device == "cuda" else 4)
    timed = args.steps or (40 if args.device == "cuda" else 30)
    args.steps = timed + args.warmup

    from lorawb.toyworld.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="lorawb-bench-"))
    if args.model:
        model = Path(args.model).resolve()
    elif args.full_size:
        t = time.time()
        model = build_full_size(work / "model", args.family, args.device)
        print(f"built a random full-size {args.family} model in {time.time() - t:.0f} s", flush=True)
    else:
        model = build_tiny_model(work / "model", family=args.family, image_size=args.resolution)
    root = work / "project"
    from lorawb.core.project import init_project

    init_project(root, trigger="zkx_mira")
    make_images(root / "dataset" / "1_zkx_mira", args.images, args.resolution, "zkx_mira")
    text = (root / "lorawb.toml").read_text()
    text = text.replace("resolution = 512", f"resolution = {args.resolution}").replace('path = ""', f'path = "{model}"')
    (root / "lorawb.toml").write_text(text + "\n[dataset]\nbucket_step = 8\n")
    images = sorted((root / "dataset" / "1_zkx_mira").glob("*.png"))
    captions = [p.with_suffix(".txt").read_text() for p in images]

    which = args.only or ["reference", "nocache", "cached"]
    best: dict[str, dict] = {}
    # Interleaved rounds, best of each: a busy machine slows whichever variant it happens to hit.
    for _ in range(args.repeat):
        for kind in which:
            if args.device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            random.seed(0)
            torch.manual_seed(0)
            if kind == "reference":
                r = reference_run(args, model, images, captions)
            else:
                r = lorawb_run(args, root, kind == "cached")
            steady = r.pop("times")[args.warmup :]
            r["steps_s"] = len(steady) / sum(steady)
            r["s_step"] = sum(steady) / len(steady)
            r["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
            gc.collect()
            print(f"  {r['name']}: {r['steps_s']:.3f} steps/s", flush=True)
            if kind not in best or r["steps_s"] > best[kind]["steps_s"]:
                best[kind] = r
    results = [best[k] for k in which]

    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    kind = "full-size random" if args.full_size else ("tiny" if not args.model else str(model))
    print(
        f"\ntrain_speed: {args.family} ({kind}) {args.resolution}px, batch {args.batch}, rank {args.rank}, "
        f"{timed} timed steps after {args.warmup} warm-up, best of {args.repeat}, {args.mixed_precision}, {dev}"
    )
    base = next((r["steps_s"] for r in results if r["name"].startswith("diffusers")), None)
    print(f"{'':48} {'steps/s':>8} {'s/step':>8} {'peak GB':>8} {'vs ref':>7}")
    for r in results:
        peak = f"{r['peak_gb']:.1f}" if r["peak_gb"] is not None else "-"
        ratio = f"{r['steps_s'] / base:.2f}x" if base else "-"
        print(f"{r['name']:48} {r['steps_s']:8.3f} {r['s_step']:8.4f} {peak:>8} {ratio:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "device": dev, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
