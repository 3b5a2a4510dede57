"""Every training setting lorawb offers does what it says, on the tiny models: each check asserts the
setting's effect (a loss or weight that differs, or does not, in the expected way; a key that appears)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from lorawb.core.project import Project
from lorawb.train.config import resolve_config
from lorawb.train.events import read_events
from lorawb.train.process import start_run
from tests.train.conftest import lora_weights, make_project, train_context

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sd1_root(tmp_path_factory, tiny_sd1) -> Path:
    return make_project(tmp_path_factory.mktemp("settings") / "proj", tiny_sd1, n_images=2)


@pytest.fixture(scope="module")
def sdxl_root(tmp_path_factory, tiny_sdxl) -> Path:
    return make_project(tmp_path_factory.mktemp("settings-xl") / "proj", tiny_sdxl, n_images=2)


def run(root: Path, overrides: list[str]):
    project = Project.load(root)
    return start_run(project, resolve_config(project, overrides=overrides), detach=False)


def last_checkpoint(r) -> Path:
    return r.path / [e for e in read_events(r.events) if e["type"] == "checkpoint"][-1]["path"]


def losses(r) -> list[float]:
    return [e["loss"] for e in read_events(r.events) if e["type"] == "step"]


def fixed(batch, seed: int = 0):
    """The same micro-batch with a fresh generator: the same noise every time."""
    from lorawb.train.batches import Batch

    return Batch(batch.latents, batch.text, batch.time_ids, torch.Generator().manual_seed(seed))


# --- gradients reach every trained weight --------------------------------------------------------

NO_DECAY = ["train.weight_decay=0", "train.learning_rate=1e-2", "network.rank=2"]


def steps_changing_every_weight(root: Path, overrides: list[str]) -> list[float]:
    """Two steps (lora_up starts at zero, so lora_down first moves in the second); every weight must move."""
    from lorawb.train.trainer import train_step

    with train_context(root, NO_DECAY + overrides) as ctx:
        before = lora_weights(ctx)
        got = [float(train_step(ctx)) for _ in range(2)]
        after = lora_weights(ctx)
        assert set(before) == set(after) and len(before) == len(ctx.params)
        frozen = [name for name in before if torch.equal(before[name], after[name])]
        assert frozen == []
        if "network.train_text_encoder=true" in overrides:
            assert any(n.startswith("te0.") for n in before)
        return got


def test_every_lora_weight_trains_with_text_encoder_and_gradient_checkpointing(sd1_root):
    plain = steps_changing_every_weight(sd1_root, ["network.train_text_encoder=true"])
    checkpointed = steps_changing_every_weight(
        sd1_root, ["network.train_text_encoder=true", "train.gradient_checkpointing=true"]
    )
    assert checkpointed == pytest.approx(plain, rel=1e-5)  # recomputing activations changes no number


def test_every_lora_weight_of_both_sdxl_encoders_trains(sdxl_root):
    steps_changing_every_weight(sdxl_root, ["network.train_text_encoder=true", "train.gradient_checkpointing=true"])


def test_sdxl_first_encoder_last_layer_gets_no_lora(sdxl_root):
    # SDXL conditions on the first encoder's penultimate layer: a LoRA on its last layer would never train.
    with train_context(sdxl_root, ["network.train_text_encoder=true", "train.max_steps=1"]) as ctx:
        last = ctx.text_encoders[0].config.num_hidden_layers - 1
        assert ctx.lora.te_modules[0] and not any(f".layers.{last}." in n for n in ctx.lora.te_modules[0])
        assert any(f".layers.{last}." in n for n in ctx.lora.te_modules[1])


# --- the loss: noise offset, min-SNR, v-prediction, dropout ---------------------------------------


def test_loss_settings_change_the_loss_as_defined(sd1_root):
    from diffusers.training_utils import compute_snr

    from lorawb.train.trainer import diffusion_loss

    with train_context(sd1_root, ["train.max_steps=1"]) as ctx:
        batch = ctx.batches.next()
        t = torch.tensor([100] * batch.latents.shape[0])  # early: SNR above gamma
        at = torch.full(t.shape, 0.1, dtype=torch.float64)  # the same timestep, as the fraction the loss takes
        sched = ctx.model.noise_scheduler
        snr = compute_snr(sched, t)

        def loss(**train) -> float:
            for key, value in train.items():
                setattr(ctx.cfg.train, key, value)
            try:
                with torch.no_grad():
                    return float(diffusion_loss(ctx, fixed(batch), fractions=at))
            finally:
                ctx.cfg.train.noise_offset, ctx.cfg.train.min_snr_gamma = 0.0, 0.0

        base = loss()
        assert loss() == base  # fixed noise: the same loss
        assert loss(noise_offset=0.1) != pytest.approx(base, rel=1e-3)
        # min-SNR weights each sample's loss by min(snr, gamma) / snr (epsilon target)
        weight = float((torch.clamp(snr, max=2.0) / snr)[0])
        assert weight < 1 and loss(min_snr_gamma=2.0) == pytest.approx(base * weight, rel=1e-5)

        sched.register_to_config(prediction_type="v_prediction")
        assert ctx.model.prediction_type == "v_prediction"
        v = loss()
        assert v != pytest.approx(base, rel=1e-3)  # the target is the velocity now
        weight_v = float((torch.clamp(snr, max=2.0) / (snr + 1))[0])
        assert loss(min_snr_gamma=2.0) == pytest.approx(v * weight_v, rel=1e-5)


def test_network_dropout_is_random_in_training_only(sd1_root):
    from lorawb.train.trainer import diffusion_loss, train_mode

    with train_context(sd1_root, ["network.dropout=0.5", "train.max_steps=1"]) as ctx:
        with torch.no_grad():
            for p in ctx.lora.unet_params:
                p.normal_(0, 0.5)  # lora_up is zero at the start: make the LoRA path matter
            batch = ctx.batches.next()
            t = torch.full((batch.latents.shape[0],), 0.5, dtype=torch.float64)  # timestep 500
            train_mode(ctx, True)
            a, b = (float(diffusion_loss(ctx, fixed(batch), fractions=t)) for _ in range(2))
            train_mode(ctx, False)
            c, d = (float(diffusion_loss(ctx, fixed(batch), fractions=t)) for _ in range(2))
        assert a != b and c == d


# --- captions: shuffle with keep_tokens, tag dropout, caption dropout ----------------------------


def test_caption_transforms_reach_the_batches(sd1_root):
    (sd1_root / "dataset" / "2_zkx_mira" / "img_000.txt").write_text(
        "zkx_mira, red outfit, forest, watercolor, smile, standing", encoding="utf-8"
    )
    overrides = [
        "dataset.shuffle_tags=true",
        "dataset.keep_tokens=2",
        "dataset.tag_dropout=0.3",
        "dataset.caption_dropout=0.25",
        "train.max_steps=1",
    ]
    with train_context(sd1_root, overrides) as ctx:
        assert ctx.batches.text is None  # captions change every time: nothing to cache
        item = next(i for i, it in enumerate(ctx.batches.items) if it.path.name == "img_000.png")
        captions = [ctx.batches.prepare(epoch, 0, [item])["captions"][0] for epoch in range(60)]
    empty = [c for c in captions if not c]
    kept = [c for c in captions if c]
    assert 5 <= len(empty) <= 25  # caption dropout: about a quarter trained unconditioned
    assert all(c.startswith("zkx_mira, red outfit") for c in kept)  # keep_tokens=2 stay first
    rest = [tuple(c.split(", ")[2:]) for c in kept]
    assert any(len(r) < 4 for r in rest)  # tag dropout
    full = {r for r in rest if len(r) == 4}
    assert len(full) > 1  # the same four tags in different orders: shuffled


# --- precision and optimizers ---------------------------------------------------------------------


def test_bf16_autocast_on_cpu_and_fp16_falls_back_as_recorded(sd1_root):
    from lorawb.train.kohya import read_metadata

    base = ["train.max_steps=3"]
    fp32 = run(sd1_root, base)
    bf16 = run(sd1_root, base + ["train.mixed_precision='bf16'"])
    fp16 = run(sd1_root, base + ["train.mixed_precision='fp16'"])
    assert losses(bf16) != losses(fp32) and losses(bf16) == pytest.approx(losses(fp32), rel=0.05)
    assert losses(fp16) == losses(fp32)  # no GPU: fp32, as the metadata and the log say
    meta = {name: read_metadata(last_checkpoint(r)) for name, r in (("fp32", fp32), ("bf16", bf16), ("fp16", fp16))}
    assert [meta[k]["ss_mixed_precision"] for k in ("fp32", "bf16", "fp16")] == ["no", "bf16", "no"]
    assert "'fp16' needs a GPU" in fp16.log.read_text()
    # 2 images x 2 repeats in batches of 2: 2 steps an epoch, so 3 steps cover 2 epochs (kohya's ss_num_epochs)
    assert meta["fp32"]["ss_num_epochs"] == "2" and meta["fp32"]["ss_steps"] == "3"


def two_steps(root: Path, overrides: list[str]) -> tuple[dict, object]:
    from lorawb.train.trainer import train_step

    with train_context(root, ["train.max_steps=2"] + overrides) as ctx:
        for _ in range(2):
            train_step(ctx)
        return lora_weights(ctx), getattr(ctx.optimizer, "optimizer", ctx.optimizer)


def test_fused_adamw_matches_adamw(sd1_root):
    plain, _ = two_steps(sd1_root, [])
    fused, opt = two_steps(sd1_root, ["train.optimizer='adamw_fused'"])
    assert opt.defaults["fused"] is True
    for name, w in plain.items():
        torch.testing.assert_close(fused[name], w, rtol=1e-4, atol=1e-6)


def test_adamw8bit_keeps_8bit_state(sd1_root):
    bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (pip install bitsandbytes)")
    plain, _ = two_steps(sd1_root, ["network.rank=64"])
    try:
        eight, opt = two_steps(sd1_root, ["train.optimizer='adamw8bit'", "network.rank=64"])
    except (RuntimeError, NotImplementedError) as exc:  # a bitsandbytes build without a CPU backend
        pytest.skip(f"bitsandbytes cannot run its 8-bit optimizer on this CPU: {exc}")
    assert isinstance(opt, bnb.optim.AdamW8bit)
    states = [s for s in opt.state.values() if "state1" in s]
    assert any(s["state1"].dtype == torch.uint8 for s in states)  # layers of >= 4096 weights keep 8-bit moments
    changed = [n for n in plain if not torch.equal(eight[n], plain[n])]
    assert changed and all(torch.isfinite(w).all() for w in eight.values())


# --- network kinds: DoRA, LoCon -------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())


def test_dora_and_locon_files(sd1_root, tiny_sd1):
    import diffusers
    from diffusers import StableDiffusionPipeline
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_lora_to_diffusers
    from safetensors.torch import load_file

    from lorawb.train.config import NetworkSection
    from lorawb.train.kohya import read_lora, read_metadata
    from lorawb.train.trainer import network_module

    r = run(sd1_root, ["train.max_steps=2", "network.rank=2", "network.dora=true", "network.conv=true"])
    path = last_checkpoint(r)
    sd = load_file(str(path))
    layers = {k.split(".")[0] for k in sd}
    assert "lora_unet_down_blocks_0_resnets_0_conv1" in layers  # LoCon: the ResNet convolutions
    assert sd["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape[2:] == (3, 3)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1)
    for layer in layers:
        # LyCORIS's weight-decomposition-on-output layout, which ComfyUI picks by dora_scale.shape[0] == out
        scale, up = sd[f"{layer}.dora_scale"], sd[f"{layer}.lora_up.weight"]
        assert scale.shape == (up.shape[0],) + (1,) * (up.dim() - 1)
    meta = read_metadata(path)
    assert meta["ss_network_module"] == "lycoris.kohya"  # DoRA is LyCORIS's, not networks.lora
    assert json.loads(meta["ss_network_args"]) == {
        "algo": "lora",
        "dora_wd": "True",
        "conv_dim": "8",
        "conv_alpha": "8.0",
    }
    assert network_module(NetworkSection(conv=True)) == ("networks.lora", {"conv_dim": "8", "conv_alpha": "8.0"})

    # diffusers: its kohya converter maps every dora_scale onto the magnitude of the layer it belongs to ...
    converted, _ = _convert_non_diffusers_lora_to_diffusers(dict(sd))
    magnitudes = [k for k in converted if "lora_magnitude_vector" in k]
    assert len(magnitudes) == len(layers)
    # ... and load_lora_weights loads every LoRA weight (it drops dora_scale, saying so: diffusers' limit)
    diffusers.utils.logging.set_verbosity_warning()
    records = _Records()
    logging.getLogger("diffusers").addHandler(records)
    try:
        pipe.load_lora_weights(str(path))
    finally:
        logging.getLogger("diffusers").removeHandler(records)
    assert any("DoRA" in r for r in records.records)
    assert [r for r in records.records if "DoRA" not in r and "No LoRA keys associated to CLIPTextModel" not in r] == []
    # lorawb reads the magnitudes back exactly
    again = read_lora(path, pipe.unet)
    name = "down_blocks.0.resnets.0.conv1"
    assert torch.equal(again.unet[name].dora_scale, sd[f"lora_unet_{name.replace('.', '_')}.dora_scale"].float())


# --- TensorBoard ----------------------------------------------------------------------------------


def read_tensorboard(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[int]]]:
    """Scalars and images of every event file under ``folder`` (TFRecord: length, crc, data, crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    images: dict[str, list[int]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                if v.HasField("image"):
                    images.setdefault(v.tag, []).append(event.step)
                elif v.HasField("simple_value"):
                    scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    return scalars, images


def test_tensorboard_gets_scalars_and_samples_under_the_run(sd1_root):
    pytest.importorskip("tensorboardX", reason="the test extra installs tensorboardX")
    r = run(
        sd1_root,
        [
            "train.max_steps=2",
            "train.log_with=['tensorboard']",
            "sample.every_n_steps=2",
            "sample.prompts=['{trigger}, forest']",
            "dataset.validation_path='" + str(sd1_root / "dataset") + "'",
            "train.val_every_n_steps=2",
        ],
    )
    scalars, images = read_tensorboard(r.path / "tensorboard")
    assert [s for s, _ in scalars["loss/current"]] == [1, 2]
    assert [v for _, v in scalars["loss/current"]] == pytest.approx(losses(r), rel=1e-6)
    assert {"loss/average", "lr/unet", "speed/it_s", "loss/validation"} <= set(scalars)
    assert images == {"samples/0": [2]}
