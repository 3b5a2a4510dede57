"""Training throughput: lorawb's trainer against diffusers' own LoRA example script, same settings.

Four contenders, each in a fresh process, interleaved round by round (A B C D A B C D):

- ``diffusers``: the UNMODIFIED ``examples/text_to_image/train_text_to_image_lora.py`` (or
  ``train_text_to_image_lora_sdxl.py`` for ``--family sdxl``) from the public diffusers repository,
  read at benchmark time (never part of lorawb): ``--diffusers-script PATH`` (the file, or a diffusers
  checkout), else ``$LORAWB_DIFFUSERS_EXAMPLES``, ``~/.cache/lorawb/diffusers/``, or the examples of
  an installed diffusers source tree. It needs ``datasets`` and ``torchvision``
  (``pip install datasets torchvision``). Absent, its row says "skipped: no script". It is timed
  from outside: its training progress bar's ``update`` (desc "Steps", one per optimizer step) is wrapped.
- ``reference``: the same per-step logic re-implemented here (image transforms, VAE encode and text
  encoder every step, peft LoRA on to_q/to_k/to_v/to_out.0, MSE, AdamW, constant lr).
- ``nocache`` / ``cached``: lorawb's real trainer (a run folder, events and all) without caches
  (step for step the same work) and with its latent and text-embedding caches (the default).

    python bench/train_speed.py --diffusers-script ~/src/diffusers       # CPU, tiny model, 128 px, batch 4
    python bench/train_speed.py --device cuda --family sdxl --full-size --diffusers-script ~/src/diffusers
    python bench/train_speed.py --family flux --diffusers-script ~/src/diffusers   # the flow transformers

The flow-matching transformer families (``--family flux``, ``chroma``, ``flux2_klein``, ``zimage``,
``qwenimage``, ``sd3``) race
other contenders:

- ``diffusers`` / ``diffusers-cached``: the UNMODIFIED DreamBooth LoRA script of the family
  (``examples/dreambooth/train_dreambooth_lora_flux.py``), with per-image captions from an
  imagefolder (so, like lorawb without its text cache, it runs T5 every step), without and with its
  ``--cache_latents``; lorawb trains the same LoRA targets (the script's list) with the same uniform
  timesteps and no shift, so both do the same work.
- ``bare``: the transformer alone, LoRA injected with peft on the same layers, on one fixed batch of
  latents and text embeddings: forward, MSE, backward, AdamW step. Nothing a trainer does can be
  faster; lorawb with its caches is compared with it ("vs bare").
Chroma has no diffusers example script: its rows compare lorawb with the bare step only. Klein's and
Z-Image's and Qwen-Image's scripts (``train_dreambooth_lora_flux2_klein.py``, ``…_z_image.py``,
``…_qwen_image.py``) always precompute every caption's embedding: their lorawb "no caches" run keeps the
text cache on. SD3's (``train_dreambooth_lora_sd3.py``) runs CLIP-L/G and T5 every step, as lorawb uncached.

--full-size builds a randomly initialised model with the real SD1.5 or SDXL architecture (UNet,
VAE, CLIP text encoders; nothing is downloaded), so GPU figures are those of the real networks.
Prints steps/s (after the warm-up steps), peak memory (GPU: torch.cuda.max_memory_allocated; CPU:
the process's peak RSS), the process's wall time and the ratios, all measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

_TV_STUBS: list = []


def import_torchvision() -> None:
    """Import torchvision, also where its compiled ops cannot load (a CUDA torchvision wheel beside a
    CPU torch: the only torchvision on PyPI). The script uses only its PIL transforms; torchvision's
    import registers fake kernels for two ops it then needs declared, so declare them (never called)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return  # not installed: the diffusers script is skipped
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _TV_STUBS.append(lib)
        import torchvision  # noqa: F401


import_torchvision()  # before transformers, which imports torchvision whenever it is installed

KINDS = ("diffusers", "diffusers-cached", "reference", "bare", "nocache", "cached")
NAMES = {
    "diffusers": "diffusers script (unmodified)",
    "diffusers-cached": "diffusers script, --cache_latents",
    "reference": "re-implemented diffusers loop",
    "bare": "bare transformer step (the limit)",
    "nocache": "lorawb, no caches (same work)",
    "cached": "lorawb, cached latents + text",
}
SCRIPT_FOR = {
    "sd1": "train_text_to_image_lora.py",
    "sdxl": "train_text_to_image_lora_sdxl.py",
    "flux": "train_dreambooth_lora_flux.py",
    "flux2_klein": "train_dreambooth_lora_flux2_klein.py",
    "zimage": "train_dreambooth_lora_z_image.py",
    "qwenimage": "train_dreambooth_lora_qwen_image.py",
    "sd3": "train_dreambooth_lora_sd3.py",
}
FLOW = (
    "flux",
    "chroma",
    "flux2_klein",
    "zimage",
    "qwenimage",
    "sd3",
)  # the flow-matching transformer families this bench races
SCRIPT_DIRS = ("text_to_image", "dreambooth")
# The layers diffusers' Flux DreamBooth script puts a LoRA on (its default --lora_layers).
FLUX_SCRIPT_TARGETS = [
    "attn.to_k",
    "attn.to_q",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_k_proj",
    "attn.add_q_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
]
# The layers the Klein and Z-Image DreamBooth scripts put a LoRA on (their default --lora_layers, in the
# module names lorawb's target_modules match: the same layers): Klein's image-stream attention and its
# single blocks' fused projection and output; Z-Image's attention in every block, refiners included.
SCRIPT_TARGETS = {
    "flux": FLUX_SCRIPT_TARGETS,
    "flux2_klein": ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.to_qkv_mlp_proj", "attn.to_out"],
    "zimage": ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0"],
    "qwenimage": ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0"],  # the script's to_q, to_k, to_v, to_out.0
    "sd3": FLUX_SCRIPT_TARGETS[:8],  # both streams' attention (the script's list; peft's match leaves attn2 out)
}
# Families whose script always precomputes each caption's embedding (DreamBooth scripts with per-image
# captions): their uncached run is lorawb's with the text cache on and the latent cache off.
SCRIPT_CACHES_TEXT = ("flux2_klein", "zimage", "qwenimage")
# The static shift each script's timesteps carry (its scheduler's, applied when use_dynamic_shifting is
# off): none for Flux and Klein (dynamic), Z-Image's 3, SD3's 3, and the 3 Qwen-Image's script loads its
# scheduler with (shift=3.0, its dynamic shifting then unused by the training timesteps).
SCRIPT_SHIFT = {"zimage": 3.0, "qwenimage": 3.0, "sd3": 3.0}
# Families whose own section names the text length max_sequence_length (Flux.1's says t5_max_length).
MAX_SEQUENCE_LENGTH = ("flux2_klein", "zimage", "qwenimage", "sd3")
# The timestep density both sides draw from: uniform, but SD3's script has no uniform choice (its
# --weighting_scheme is sigma_sqrt, logit_normal, mode or cosmap): logit-normal (0, 1), its default.
SCHEME = {"sd3": "logit_normal"}
T5_TOKENS = 128  # the T5 sequence length every flow contender uses (the script's --max_sequence_length)

# --- the models -----------------------------------------------------------------------------------

from lorawb.toyworld.fullsize import CLIP_BIGG, CLIP_L, SD15_UNET, SD_VAE, SDXL_UNET  # noqa: E402


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


def build_tiny(dest: Path, family: str, size: int) -> Path:
    if family in FLOW:
        from lorawb.toyworld.tiny_transformers import build_tiny_transformer

        return build_tiny_transformer(dest, family, image_size=size)
    from lorawb.toyworld.tiny import build_tiny_model

    return build_tiny_model(dest, family=family, image_size=size)


# Qwen-Image's script (diffusers 58eb52c) cannot train on a batch whose captions are all the same length: its
# encode_prompt then returns no mask, which its embedding cache indexes. Its captions each have their own length.
VARIED_CAPTIONS = ("qwenimage",)


def make_images(folder: Path, n: int, size: int, trigger: str, varied: bool = False) -> None:
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
        extra = ", smiling" * i if varied else ""  # every caption its own length
        (folder / f"img_{i:03d}.txt").write_text(f"{trigger}, red scarf, forest, watercolor{extra}")


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
    stamps: list[tuple[int, float, float]] = []
    unet.train()
    for _ in range(args.steps):
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
        stamps.append((len(stamps) + 1, time.perf_counter(), time.process_time()))
    result = {"stamps": stamps}
    del unet, vae, text_encoders, optimizer, accelerator
    return result


# --- the diffusers example script, read at benchmark time ----------------------------------------


def find_diffusers_script(given: str | None, family: str) -> Path | None:
    """The example script for ``family``: a given file or checkout, the env/cache folders, the installed tree."""
    name = SCRIPT_FOR[family]
    places: list[Path] = []
    if given:
        p = Path(given).expanduser()
        places += [p] if p.is_file() else [p / name] + [p / "examples" / d / name for d in SCRIPT_DIRS]
    if os.environ.get("LORAWB_DIFFUSERS_EXAMPLES"):
        places.append(Path(os.environ["LORAWB_DIFFUSERS_EXAMPLES"]).expanduser() / name)
    places.append(Path.home() / ".cache" / "lorawb" / "diffusers" / name)
    try:
        import diffusers

        places += [Path(diffusers.__file__).resolve().parents[2] / "examples" / d / name for d in SCRIPT_DIRS]
    except ImportError:
        pass
    for p in places:
        if p.is_file() and (not given or p.name == name or p == Path(given).expanduser()):
            return p.resolve()
    return None


def script_provenance(script: Path, commit: str | None) -> dict[str, str]:
    """Which diffusers the script came from: its commit (given, a COMMIT file beside it, or git), blob id."""
    import diffusers

    data = script.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # what `git hash-object` prints
    if not commit and (script.parent / "COMMIT").is_file():
        commit = (script.parent / "COMMIT").read_text().strip()
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "-C", str(script.parent), "log", "-1", "--format=%H", "--", script.name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = ""
    return {
        "path": str(script),
        "commit": commit or "unknown",
        "blob": blob,
        "installed_diffusers": diffusers.__version__,
    }


def missing_script_packages() -> list[str]:
    from importlib.util import find_spec

    return [m for m in ("datasets", "torchvision") if find_spec(m) is None]


def diffusers_args(args: argparse.Namespace, model: Path, data: Path, out: Path) -> list[str]:
    """The script's flags for the same settings the other contenders use."""
    if args.family in FLOW:
        return flow_script_args(args, model, data, out)
    a = [
        f"--pretrained_model_name_or_path={model}",
        f"--train_data_dir={data}",
        f"--resolution={args.resolution}",
        "--center_crop",
        f"--train_batch_size={args.batch}",
        f"--max_train_steps={args.steps}",
        "--learning_rate=1e-4",
        "--lr_scheduler=constant",
        "--lr_warmup_steps=0",
        f"--rank={args.rank}",
        "--seed=0",
        f"--output_dir={out}",
        f"--checkpointing_steps={args.steps + 1000}",
        f"--mixed_precision={args.mixed_precision}",
        "--dataloader_num_workers=0",
        "--report_to=tensorboard",  # its default; accelerate skips it when TensorBoard is not installed
    ]
    if args.gradient_checkpointing:
        a.append("--gradient_checkpointing")
    if args.device == "cuda":
        a.append("--allow_tf32")  # lorawb turns TF32 on for CUDA too
    return a


def flow_script_args(args: argparse.Namespace, model: Path, data: Path, out: Path) -> list[str]:
    """The DreamBooth script's flags: per-image captions from the imagefolder, uniform timesteps."""
    a = [
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_name={data}",
        "--image_column=image",
        "--caption_column=text",
        "--instance_prompt=zkx_mira",
        f"--resolution={args.resolution}",
        "--center_crop",
        f"--train_batch_size={args.batch}",
        f"--max_train_steps={args.steps}",
        "--learning_rate=1e-4",
        "--lr_scheduler=constant",
        "--lr_warmup_steps=0",
        f"--rank={args.rank}",
        *([] if args.family == "sd3" else [f"--lora_alpha={args.rank}"]),  # SD3's script has alpha = rank
        "--seed=0",
        f"--output_dir={out}",
        f"--checkpointing_steps={args.steps + 1000}",
        f"--mixed_precision={args.mixed_precision}",
        "--dataloader_num_workers=0",
        "--report_to=tensorboard",
        f"--max_sequence_length={T5_TOKENS}",
        f"--weighting_scheme={SCHEME.get(args.family, 'none')}",
    ]
    if args.family == "flux":
        a.append("--guidance_scale=1.0")
    if args.family == "flux2_klein":
        # The pipeline's Qwen3 layers; the script's default [10, 20, 30] is Flux.2 dev's (diffusers #13445)
        a += ["--text_encoder_out_layers", "9", "18", "27"]
    if args.gradient_checkpointing:
        a.append("--gradient_checkpointing")
    return a


def flow_lorawb_settings(args: argparse.Namespace) -> list[str]:
    """lorawb's settings for the same work as the script: its LoRA layers, uniform timesteps, no shift."""
    section = args.family
    length = "max_sequence_length" if args.family in MAX_SEQUENCE_LENGTH else "t5_max_length"
    shift = SCRIPT_SHIFT.get(args.family, 1.0)
    scheme = SCHEME.get(args.family, "none")
    out = [f"{section}.weighting_scheme='{scheme}'", f"{section}.shift={shift}", f"{section}.{length}={T5_TOKENS}"]
    if args.family in SCRIPT_TARGETS:
        out.append(f"network.target_modules={json.dumps(SCRIPT_TARGETS[args.family])}")
    if args.family == "flux":
        out.append("flux.guidance=1.0")
    if args.family == "zimage":
        out.append("zimage.train_refiners=true")
    if args.family == "sd3":
        out.append("sd3.train_attn2=false")  # the script's peft match leaves MMDiT-X's attn2 out
    return out


def bare_run(args: argparse.Namespace, model_dir: Path) -> dict:
    """The transformer alone on one fixed batch: forward, MSE, backward, AdamW (the limit of a step)."""
    import torch.nn.functional as F
    from peft import LoraConfig, inject_adapter_in_model

    from lorawb import families
    from lorawb.train.config import ModelSection, TrainConfig

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.mixed_precision == "bf16" and args.device == "cuda" else torch.float32
    cfg = TrainConfig(model=ModelSection(path=str(model_dir))).with_overrides(flow_lorawb_settings(args))
    model = families.load_base_model(cfg.model, device, dtype, cfg)
    net = cfg.network.model_copy(update={"rank": args.rank, "alpha": float(args.rank)})
    linear, _ = model.lora_targets(net)
    inject_adapter_in_model(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=linear), model.denoiser)
    params = [p for n, p in model.denoiser.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
        p.data = p.data.float()
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(params, lr=1e-4)
    side = args.resolution // model.vae_scale
    g = torch.Generator(device=device).manual_seed(0)
    latents = torch.randn(args.batch, model.latent_channels, side, side, device=device, generator=g)
    with torch.no_grad():
        text = model.encode_text([t.to(device) for t in model.tokenize(["zkx_mira, red scarf, forest"] * args.batch)])
    geometry = torch.zeros(args.batch, 6)
    stamps: list[tuple[int, float, float]] = []
    for step in range(1, args.steps + 1):
        noised = model.noised(latents, g, cfg.train)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            pred = model.predict(noised.noisy, noised.timesteps, text, geometry)
        loss = F.mse_loss(pred.float(), noised.target.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss)  # wait for the device, as a trainer logging its loss does
        stamps.append((step, time.perf_counter(), time.process_time()))
    return {"stamps": stamps}


def diffusers_worker(spec: dict) -> dict:
    """Run the unmodified script in this process, stamping each optimizer step (its tqdm bar's update)."""
    import runpy

    import tqdm.auto

    stamps: list[tuple[int, float, float]] = []
    original = tqdm.auto.tqdm.update

    def update(self, n: int = 1) -> bool | None:  # type: ignore[no-untyped-def]
        if str(getattr(self, "desc", "")).startswith("Steps"):  # the training bar, not a loading bar
            stamps.append((len(stamps) + 1, time.perf_counter(), time.process_time()))
        return original(self, n)

    tqdm.auto.tqdm.update = update  # type: ignore[method-assign]
    sys.argv = [spec["script"], *spec["script_args"]]
    runpy.run_path(spec["script"], run_name="__main__")
    return {"stamps": stamps}


def write_imagefolder(images: list[Path], captions: list[str], dest: Path) -> Path:
    """The same images and captions as a `datasets` imagefolder (metadata.jsonl: file_name, text)."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "metadata.jsonl", "w", encoding="utf-8") as fh:
        for img, cap in zip(images, captions, strict=True):
            shutil.copy2(img, dest / img.name)
            fh.write(json.dumps({"file_name": img.name, "text": cap}) + "\n")
    return dest


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
        f"dataset.cache_text={'true' if cached or args.family in SCRIPT_CACHES_TEXT else 'false'}",
        "dataset.buckets=false",
        "sample.prompts=[]",
        "save.every_n_steps=0",
        *(flow_lorawb_settings(args) if args.family in FLOW else []),
        *args.lorawb_set,
    ]
    stamps: list[tuple[int, float, float]] = []
    start_run(
        project,
        resolve_config(project, overrides=overrides),
        detach=False,
        progress=lambda ev: stamps.append((int(ev["step"]), time.perf_counter(), time.process_time())),
    )
    return {"stamps": stamps}


# --- one contender in its own process -------------------------------------------------------------


def worker(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    args = argparse.Namespace(**spec["args"])
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    random.seed(0)
    torch.manual_seed(0)
    kind = spec["kind"]
    t0 = time.perf_counter()
    if kind in ("diffusers", "diffusers-cached"):
        if kind == "diffusers-cached":
            spec = {**spec, "script_args": [*spec["script_args"], "--cache_latents"]}
        r = diffusers_worker(spec)
    elif kind == "bare":
        r = bare_run(args, Path(spec["model"]))
    elif kind == "reference":
        images = [Path(p) for p in spec["images"]]
        r = {"stamps": reference_run(args, Path(spec["model"]), images, spec["captions"])["stamps"]}
    else:
        r = lorawb_run(args, Path(spec["project"]), kind == "cached")
    r["t0"] = t0
    r["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    Path(spec["out"]).write_text(json.dumps(r))
    return 0


def steady_rate(stamps: list[tuple[int, float, float]], warmup: int) -> tuple[float, float, int]:
    """From the first stamp at or after ``warmup`` steps to the last: steps per wall second, CPU seconds
    per step (the process's, all threads: what a busy machine does not inflate), and the steps timed."""
    first = next((s for s in stamps if s[0] >= warmup), None)
    last = stamps[-1] if stamps else None
    if first is None or last is None or last[0] <= first[0]:
        return float("nan"), float("nan"), 0
    n = last[0] - first[0]
    return n / (last[1] - first[1]), (last[2] - first[2]) / n, n


def versus(kind: str, have: dict) -> str:
    """Which script run a contender is compared with: lorawb's cached run with the script's cached one
    when it ran (same levers on both sides), everything else with the plain script."""
    return "diffusers-cached" if kind == "cached" and "diffusers-cached" in have else "diffusers"


def run_contender(kind: str, spec: dict, work: Path, env: dict[str, str], round_: int) -> dict:
    spec = {**spec, "kind": kind, "out": str(work / f"{kind}-{round_}.json")}
    spec_path = work / f"{kind}-{round_}.spec.json"
    spec_path.write_text(json.dumps(spec))
    log = work / f"{kind}-{round_}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not Path(spec["out"]).is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        return {"kind": kind, "error": f"exit {proc.returncode}; log {log}:\n    " + "\n    ".join(tail)}
    r = json.loads(Path(spec["out"]).read_text())
    rate, cpu, timed = steady_rate([tuple(s) for s in r["stamps"]], spec["args"]["warmup"])
    peak = r["peak_gpu_gb"] if r["peak_gpu_gb"] is not None else usage.ru_maxrss / 2**20  # ru_maxrss is KiB
    return {"kind": kind, "steps_s": rate, "cpu_s": cpu, "timed": timed, "peak_gb": peak, "wall": wall}


# --- the bench ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--family", default="sd1", choices=["sd1", "sdxl", *FLOW])
    ap.add_argument("--resolution", type=int, default=0, help="default: 128 (tiny), 512 (sd1), 1024 (sdxl)")
    ap.add_argument("--batch", type=int, default=0, help="default: 4 on CPU, 1 on GPU")
    ap.add_argument("--steps", type=int, default=0, help="timed steps after warm-up (default 8 CPU, 40 GPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of each contender (default 1)")
    ap.add_argument("--mixed-precision", default="", choices=["", "no", "fp16", "bf16"], help="default: bf16 on GPU")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--full-size", action="store_true", help="the real SD1.5/SDXL architecture, random weights")
    ap.add_argument("--model", help="an existing diffusers folder to use instead")
    ap.add_argument("--model-dir", help="with --full-size: build the model here, or reuse the one built here")
    ap.add_argument("--diffusers-script", help="diffusers' example script, or a diffusers checkout holding it")
    ap.add_argument("--diffusers-commit", help="the diffusers commit the script is from (else read from git)")
    ap.add_argument("--only", choices=KINDS, action="append", help="run only these contenders (repeatable)")
    ap.add_argument("--lorawb-set", action="append", default=[], help="extra KEY=VALUE for lorawb's two runs")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved rounds; the best of each is shown")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.worker:
        return worker(Path(args.worker))
    args.mixed_precision = args.mixed_precision or ("bf16" if args.device == "cuda" else "no")
    if not args.resolution:
        args.resolution = 512 if args.family == "sd1" else 1024 if (args.full_size or args.model) else 128
    args.batch = args.batch or (1 if args.device == "cuda" else 4)
    timed = args.steps or (40 if args.device == "cuda" else 8)
    args.steps = timed + args.warmup

    work = Path(tempfile.mkdtemp(prefix="lorawb-bench-"))
    if args.model:
        model = Path(args.model).resolve()
    elif args.full_size and args.model_dir and (Path(args.model_dir) / "model_index.json").is_file():
        model = Path(args.model_dir).resolve()
        print(f"reusing the random full-size {args.family} model in {model}", flush=True)
    elif args.full_size:
        t = time.time()
        dest = Path(args.model_dir) if args.model_dir else work / "model"
        if args.family in FLOW:  # random weights, the real architecture, bf16 (lorawb.toyworld.fullsize)
            from lorawb.toyworld.fullsize import build_random

            model = build_random(dest, args.family, device=args.device)
        else:
            model = build_full_size(dest, args.family, args.device)
        print(f"built a random full-size {args.family} model in {time.time() - t:.0f} s", flush=True)
    else:
        model = build_tiny(work / "model", args.family, args.resolution)
    root = work / "project"
    from lorawb.core.project import init_project

    init_project(root, trigger="zkx_mira")
    make_images(
        root / "dataset" / "1_zkx_mira", args.images, args.resolution, "zkx_mira", args.family in VARIED_CAPTIONS
    )
    text = (root / "lorawb.toml").read_text()
    text = text.replace("resolution = 512", f"resolution = {args.resolution}").replace('path = ""', f'path = "{model}"')
    (root / "lorawb.toml").write_text(text + "\n[dataset]\nbucket_step = 8\n")
    images = sorted((root / "dataset" / "1_zkx_mira").glob("*.png"))
    captions = [p.with_suffix(".txt").read_text() for p in images]

    flow = args.family in FLOW
    default = (
        ("diffusers", "diffusers-cached", "bare", "nocache", "cached")
        if flow
        else ("diffusers", "reference", "nocache", "cached")
    )
    which = list(args.only or default)
    skipped: dict[str, str] = {}
    provenance: dict[str, str] = {}
    spec: dict = {
        "args": {k: v for k, v in vars(args).items() if k != "worker"},
        "model": str(model),
        "project": str(root),
        "images": [str(p) for p in images],
        "captions": captions,
    }
    scripts = [k for k in which if k.startswith("diffusers")]
    if scripts:
        script = find_diffusers_script(args.diffusers_script, args.family) if args.family in SCRIPT_FOR else None
        missing = missing_script_packages()
        if args.family not in SCRIPT_FOR:
            skipped.update({k: f"skipped: diffusers has no example script for {args.family}" for k in scripts})
        elif script is None:
            skipped.update(
                {k: f"skipped: no script ({SCRIPT_FOR[args.family]}; see --diffusers-script)" for k in scripts}
            )
        elif missing:
            why = f"skipped: the script needs {' and '.join(missing)} (pip install {' '.join(missing)})"
            skipped.update({k: why for k in scripts})
        else:
            provenance = script_provenance(script, args.diffusers_commit)
            data = write_imagefolder(images, captions, work / "imagefolder")
            spec["script"] = str(script)
            spec["script_args"] = diffusers_args(args, model, data, work / "diffusers-out")
            print(
                f"diffusers script {script} (commit {provenance['commit']}, blob {provenance['blob'][:12]}, "
                f"installed diffusers {provenance['installed_diffusers']})",
                flush=True,
            )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "LORAWB_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(work / "hf-home"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }

    # On CPU the ratios compare CPU seconds per step (one thread each: what other processes on a busy
    # machine do not inflate); on a GPU, steps per wall second.
    def score(r: dict) -> float:
        return r["steps_s"] if args.device == "cuda" else 1 / r["cpu_s"]

    best: dict[str, dict] = {}
    rounds: list[dict[str, float]] = []
    # Interleaved rounds, best of each: a busy machine slows whichever contender it happens to hit.
    for n in range(args.repeat):
        this: dict[str, float] = {}
        for kind in which:
            if kind in skipped:  # no script, or its packages are missing
                continue
            r = run_contender(kind, spec, work, env, n)
            if "error" in r:
                print(f"  round {n + 1} {NAMES[kind]}: failed, {r['error']}", flush=True)
                continue
            this[kind] = score(r)
            print(
                f"  round {n + 1} {NAMES[kind]}: {r['steps_s']:.3f} steps/s, {r['cpu_s']:.2f} CPU s/step, "
                f"wall {r['wall']:.0f} s",
                flush=True,
            )
            if kind not in best or score(r) > score(best[kind]):
                best[kind] = r
        rounds.append(this)
        if "diffusers" in this:
            ratios = ", ".join(
                f"{k} {v / this[versus(k, this)]:.2f}x" for k, v in this.items() if not k.startswith("diffusers")
            )
            print(f"  round {n + 1} vs the diffusers script: {ratios}", flush=True)

    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} thread(s) each"
    kind_s = "full-size random" if args.full_size else ("tiny" if not args.model else str(model))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(
        f"\ntrain_speed {time.strftime('%Y-%m-%d')} lorawb {commit.stdout.strip() or '?'}: {args.family} ({kind_s}) "
        f"{args.resolution}px, batch {args.batch}, rank {args.rank}, {timed} timed steps after {args.warmup} "
        f"warm-up, best of {args.repeat}, {args.mixed_precision}, {dev}"
    )
    if provenance:
        print(
            f"diffusers script: commit {provenance['commit']}, installed diffusers {provenance['installed_diffusers']}"
        )
    measure = "steps per wall second" if args.device == "cuda" else "CPU seconds per step"
    print(f"ratios compare {measure} (higher is faster)")
    mem = "peak GB" if args.device == "cuda" else "RSS GB"
    third = "bare" if flow else "reference"
    ref = score(best[third]) if third in best else None
    label = "vs bare" if flow else "vs re-impl"
    if flow:
        print("lorawb uncached is compared with the script uncached; lorawb cached with the script's --cache_latents")
        if args.family in SCRIPT_CACHES_TEXT:
            print("the script precomputes every caption's embedding: lorawb's uncached run keeps its text cache too")
    print(f"{'':34} {'steps/s':>8} {'CPU s/st':>8} {mem:>8} {'wall s':>7} {'vs script':>9} {label:>10}")
    for kind in which:
        if kind not in best:
            print(f"{NAMES[kind]:34} {skipped.get(kind, 'failed (see above)')}")
            continue
        r = best[kind]
        against = versus(kind, best)
        vs = f"{score(r) / score(best[against]):.2f}x" if against in best and not kind.startswith("diffusers") else "-"
        vr = f"{score(r) / ref:.2f}x" if ref and kind != third else "-"
        print(
            f"{NAMES[kind]:34} {r['steps_s']:8.3f} {r['cpu_s']:8.3f} {r['peak_gb']:8.2f} {r['wall']:7.0f} "
            f"{vs:>9} {vr:>10}"
        )
    if args.json:
        out = {"args": spec["args"], "device": dev, "diffusers": provenance, "best": best, "rounds": rounds}
        Path(args.json).write_text(json.dumps({**out, "skipped": skipped}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
