"""Big models on one GPU (issue 25): a quantised frozen base, offloaded blocks and the memory plan.

The plan's exact parts are checked against counted tensors: of tiny models quantised for real on
the CPU (bitsandbytes' int8/nf4 CPU backend, lorawb's fp8), and of full-size models built on the
meta device from their configs. Training on an int8 base changes every LoRA weight and gives the
full-precision base's loss within a stated tolerance; an injected out-of-memory error ends the run
with the step, the memory and the next lever, and the run resumes with that lever set.
"""

from __future__ import annotations

import pytest
import torch

from lorawb import families
from lorawb.errors import ConfigError
from lorawb.train import memplan as M
from lorawb.train import quantize as Q
from lorawb.train.config import TrainConfig
from tests.train.conftest import lora_weights, make_project, train_context

FAST = ["flux.t5_max_length=16"]
INT8_LOSS_TOLERANCE = 0.02  # relative: LLM.int8's row-wise rounding of a tiny random model's weights


def first_loss(ctx) -> float:
    from lorawb.train.trainer import diffusion_loss

    batch = ctx.batches.next()
    batch.generator.manual_seed(0)
    with torch.no_grad():
        return float(diffusion_loss(ctx, batch))


@pytest.mark.slow
def test_int8_base_trains_every_lora_weight_and_matches_the_full_precision_loss(tiny_flux, tmp_path):
    from lorawb.train.trainer import train_step

    root = make_project(tmp_path / "proj", tiny_flux, n_images=2)
    losses = {}
    for quant in ("none", "int8"):
        with train_context(root, [*FAST, f"model.quantize={quant}", "train.learning_rate=1e-2"]) as ctx:
            losses[quant] = first_loss(ctx)
            if quant == "int8":
                layers = [m for m in ctx.denoiser.modules() if type(m).__name__ == "Linear8bitLt"]
                assert (
                    len(layers)
                    == len(
                        [
                            n
                            for n in ctx.model.blocks()
                            for m in n.modules()
                            if isinstance(m, torch.nn.Linear) and type(m).__name__ == "Linear8bitLt"
                        ]
                    )
                    > 0
                )
                before = lora_weights(ctx)
                train_step(ctx)
                after = lora_weights(ctx)
    print(losses)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, unchanged[:5]
    assert abs(losses["int8"] - losses["none"]) <= INT8_LOSS_TOLERANCE * losses["none"], losses


@pytest.mark.slow
def test_out_of_memory_ends_the_run_resumably_and_resume_sets_the_lever(tiny_flux, tmp_path, monkeypatch):
    from lorawb.core.project import Project
    from lorawb.train import trainer
    from lorawb.train.config import load_run_config, resolve_config
    from lorawb.train.events import read_events
    from lorawb.train.process import create_run, launch, resume_run
    from lorawb.train.runfolder import summarize

    root = make_project(tmp_path / "proj", tiny_flux, n_images=2)
    project = Project.load(root)
    run = create_run(project, resolve_config(project, overrides=[*FAST, "train.max_steps=4", "train.batch_size=1"]))
    real_step, calls = trainer.train_step, []

    def step_or_oom(ctx):
        calls.append(ctx.state.step)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(ctx)

    monkeypatch.setattr(trainer, "train_step", step_or_oom)
    with pytest.raises(trainer.TrainingError) as err:
        launch(run, detach=False)
    assert err.value.message.startswith("out of GPU memory at step 3")
    lever, _ = M.next_lever(load_run_config(run.config))  # the plan's cheapest lever that lowers the peak
    assert f"lorawb resume {run.id} --set {lever.spec}" in err.value.hint
    status = [e for e in read_events(run.events) if e["type"] == "status"][-1]
    assert status["state"] == "failed" and status["error"] == err.value.message and "next lever" in status["hint"]
    s = summarize(run)
    assert s.resumable and s.resumable_step == 2  # the last completed step was saved after the error

    monkeypatch.setattr(trainer, "train_step", real_step)
    with pytest.raises(ConfigError, match="one change per resume"):
        resume_run(run, detach=False, overrides=["model.quantize=int8", "train.offload_frozen=false"])
    with pytest.raises(ConfigError, match="train.batch_size"):
        resume_run(run, detach=False, overrides=["train.batch_size=2"])
    resume_run(run, detach=False, overrides=["model.quantize=int8"])
    assert summarize(run).state == "finished" and summarize(run).step == 4
    assert load_run_config(run.config).model.quantize == "int8"
    (change,) = [e for e in read_events(run.events) if e["type"] == "config_change"]
    assert change["step"] == 2 and change["changes"] == [{"key": "model.quantize", "from": "none", "to": "int8"}]
    from lorawb.train.compare import resume_changes

    assert resume_changes(run) == ("model.quantize none → int8 from step 2",)


# --- the plan's exact parts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_flux(tmp_path_factory):
    """A full-size FLUX.1-dev as configs only (19 double, 38 single blocks, 3072 wide, T5-XXL, CLIP-L)."""
    from lorawb.toyworld.fullsize import write_config_folder

    return write_config_folder(tmp_path_factory.mktemp("full") / "flux", "flux")


def config_for(path, *sets: str) -> TrainConfig:
    cfg = TrainConfig().with_overrides([f"model.path={path!s}", "dataset.bucket_step=16", *sets])
    return cfg


def lora_count(denoiser: torch.nn.Module, targets: list[str], rank: int) -> int:
    """A LoRA's parameters counted by hand: rank x (in + out) for each target Linear."""
    mods = dict(denoiser.named_modules())
    return sum(rank * (mods[t].in_features + mods[t].out_features) for t in targets)


@pytest.mark.parametrize("quant", ["none", "int8", "nf4", "fp8"])
def test_plan_counts_a_tiny_models_real_quantised_tensors(tiny_flux, quant):
    """The base weights the plan predicts are the bytes of the tensors the loader really makes (on the CPU)."""
    cfg = config_for(tiny_flux, f"model.quantize={quant}", "flux.t5_max_length=16")
    loaded = families.load_base_model(cfg.model, torch.device("cpu"), torch.float32, cfg)
    counted = sum(t.numel() * t.element_size() for t in Q.tensors_of(loaded.denoiser))
    assert counted == M.plan(cfg).part("base weights").bytes
    if quant != "none":
        assert (
            loaded.big.quantized_layers == sum(1 for b in loaded.blocks() for m in b.modules() if Q.is_quantized(m)) > 0
        )


@pytest.mark.parametrize("quant", ["none", "fp8", "int8", "nf4"])
def test_plan_of_a_full_size_flux_matches_its_counted_meta_tensors(full_flux, quant):
    from diffusers import FluxTransformer2DModel

    from lorawb.toyworld.fullsize import FLUX_TRANSFORMER

    cfg = config_for(full_flux, f"model.quantize={quant}", "train.mixed_precision=bf16", "network.rank=16")
    p = M.plan(cfg)
    with torch.device("meta"):
        ref = FluxTransformer2DModel(**FLUX_TRANSFORMER)
    assert (ref.config.num_layers, ref.config.num_single_layers, ref.config.guidance_embeds) == (19, 38, True)
    blocks = [*ref.transformer_blocks, *ref.single_transformer_blocks]
    linears = [m for b in blocks for m in b.modules() if type(m) is torch.nn.Linear]
    in_linears = {id(p) for m in linears for p in m.parameters()}
    bias = sum(m.bias.numel() for m in linears if m.bias is not None)
    rest = sum(p.numel() for p in ref.parameters() if id(p) not in in_linears) + bias
    quantised = sum(Q.weight_bytes(m.in_features, m.out_features, quant, 2) for m in linears)
    assert p.part("base weights").bytes == quantised + 2 * rest
    assert p.part("base weights").bytes == (
        2 * sum(x.numel() for x in ref.parameters()) if quant == "none" else p.part("base weights").bytes
    )
    if quant == "none":
        assert 11.8e9 < sum(x.numel() for x in ref.parameters()) < 12.0e9  # FLUX.1's 11.9B parameters
    # The LoRA, its gradients and AdamW's two moments: rank x (in + out) per target, fp32.
    model = M.meta_model(cfg)
    n = lora_count(ref, model.lora_targets(cfg.network)[0], 16)
    assert p.part("LoRA").bytes == 4 * n and p.part("gradients").bytes == 4 * n
    assert p.part("optimizer state").bytes == 8 * n
    assert not p.part("activations").exact and "estimate" in p.part("activations").detail


@pytest.mark.parametrize("optimizer", ["adamw", "adamw8bit"])
def test_plan_counts_the_optimizer_state_a_real_step_makes(tiny_flux, tmp_path, optimizer):
    from lorawb.train.trainer import train_step

    root = make_project(tmp_path / "proj", tiny_flux, n_images=2)
    with train_context(root, [*FAST, f"train.optimizer={optimizer}", "network.rank=4"]) as ctx:
        train_step(ctx)
        seen, counted = set(), 0
        for state in ctx.optimizer.state.values():
            for t in state.values():
                if isinstance(t, torch.Tensor) and t.dim() > 0 and t.untyped_storage().data_ptr() not in seen:
                    seen.add(t.untyped_storage().data_ptr())
                    counted += t.numel() * t.element_size()
        sizes = [p.numel() for p in ctx.params]
    assert counted == M.optimizer_bytes(optimizer, sizes)


@pytest.fixture(scope="module")
def full_models(full_flux, tmp_path_factory):
    from lorawb.toyworld.fullsize import write_config_folder

    root = tmp_path_factory.mktemp("full")
    return {
        "flux": full_flux,
        "chroma": write_config_folder(root / "chroma", "chroma"),
        "sdxl": write_config_folder(root / "sdxl", "sdxl"),
        "qwenimage": write_config_folder(root / "qwenimage", "qwenimage"),
        "sd3": write_config_folder(root / "sd3", "sd3"),  # SD3.5 Large
    }


def test_every_preset_is_valid_and_its_full_size_plan_fits_its_card(full_models, tmp_path):
    from lorawb.core.project import Project, init_project
    from lorawb.train import form as F

    init_project(tmp_path / "proj", trigger="zkx_mira")
    project = Project.load(tmp_path / "proj")
    for family in families.REGISTRY.values():
        for preset in family.presets:
            base = F.set_in_toml(
                F.project_source(project).config.to_toml(), "model.path", str(full_models[family.name])
            )
            cfg = F.validate(F.apply_preset(base, preset), project)
            family.check_config(cfg)
            advice = M.advise(cfg, preset.gpu_gb)
            assert advice.fits, (preset.name, M.render(advice))
            assert M.plan(cfg).peak_gb > 0.5 * preset.gpu_gb or preset.gpu_gb >= 24, preset.name  # not vacuous
    assert {p.name for f in families.REGISTRY.values() for p in f.presets} >= {"Flux 24 GB", "Flux 16 GB", "Flux 12 GB"}


def test_plan_cli_and_json(tiny_flux, tmp_path, capsys):
    import json

    from lorawb.cli import main

    root = make_project(tmp_path / "proj", tiny_flux, n_images=2)
    assert main(["plan", str(root), "--gpu", "16GB", "--set", "model.quantize=nf4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fits 16 GB: ") and "base weights" in out and "nf4" in out and "estimate" in out
    assert main(["plan", str(root), "--json", "--gpu", "1e-5"]) == 0  # a card too small for anything
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] is False and data["levers"] and data["headline"].startswith("needs ")
    assert data["peak_bytes"] == max(ph["bytes"] for ph in data["phases"].values())


def test_offloaded_blocks_train_as_resident_ones(tiny_flux, tmp_path):
    """train.offload_blocks: the same loss and the same LoRA weights after a step (on the CPU the copies are no-ops
    in memory but the hooks, the checkpointed recompute and the placement all run)."""
    from lorawb.train.trainer import train_step

    root = make_project(tmp_path / "proj", tiny_flux, n_images=2)
    got = {}
    for n in (0, 2):
        sets = [*FAST, "train.gradient_checkpointing=true", f"train.offload_blocks={n}", "train.learning_rate=1e-2"]
        with train_context(root, sets) as ctx:
            assert (ctx.model.big is not None) == (n > 0)
            if n:
                assert len(ctx.model.big.offload.blocks) == 2
            got[n] = (first_loss(ctx), train_step(ctx).item(), lora_weights(ctx))
    assert got[0][:2] == got[2][:2]
    assert all(torch.equal(got[0][2][k], got[2][2][k]) for k in got[0][2])


def test_offloading_needs_checkpointing_and_a_movable_base(tiny_flux):
    fam = families.get("flux")
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        fam.check_config(config_for(tiny_flux, "train.offload_blocks=1"))
    with pytest.raises(ConfigError, match="nf4"):
        fam.check_config(
            config_for(tiny_flux, "train.offload_blocks=1", "train.gradient_checkpointing=true", "model.quantize=nf4")
        )


def test_a_device_that_cannot_quantise_says_which_setting(monkeypatch):
    from lorawb.errors import ModelError

    def broken(*a, **k):
        raise RuntimeError("no kernel for this device")

    monkeypatch.setattr(Q, "quantized_linear", broken)
    with pytest.raises(ModelError, match="model.quantize = 'nf4' cannot run on cpu") as err:
        Q.check_device("nf4", torch.device("cpu"))
    assert "fp8" in err.value.hint
