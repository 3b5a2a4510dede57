"""Flux.1 and Chroma on the family modules, with tiny models built from configs: training changes every
LoRA weight and lowers the loss, samples are drawn, stop/resume is exact, the LoRA file is in kohya's
BFL naming with fused q/k/v (exactly equal to the split LoRAs), every naming users bring is read back,
and single-file checkpoints in the BFL layout load as the folder does."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lorawb import families
from lorawb.core.project import Project
from lorawb.errors import ConfigError, ModelError
from lorawb.train import kohya
from lorawb.train.config import ModelSection, TrainConfig, resolve_config
from lorawb.train.events import read_events
from lorawb.train.process import start_run
from tests.train.conftest import lora_weights, make_project, train_context
from tests.train.test_resume import assert_same_state, resume_payload, straight_and_resumed

pytestmark = pytest.mark.slow

FAMILIES = ["flux", "chroma"]
FAST = ["flux.t5_max_length=16", "chroma.t5_max_length=16"]  # short T5 sequences: the tiny tests stay quick


@pytest.fixture
def model_of(request):
    return lambda family: request.getfixturevalue(f"tiny_{family}")


def project(tmp_path: Path, model: Path, n: int = 4) -> Path:
    return make_project(tmp_path / "proj", model, n_images=n)


# --- recognising and loading ------------------------------------------------------------------------------------


def test_families_are_detected_and_recommend_their_size(tiny_flux, tiny_chroma, tiny_sd1):
    from lorawb.train.modelpath import detect_family, recommend

    assert (detect_family(tiny_flux), detect_family(tiny_chroma), detect_family(tiny_sd1)) == ("flux", "chroma", "sd1")
    rec = recommend(tiny_flux)
    assert (rec.resolution, rec.bucket_step % 4) == (32, 0)  # whole 2x2 patches of the tiny VAE's (2x) latents


def test_flux_single_file_in_bfl_layout_loads_as_the_folder(tiny_flux, tmp_path):
    from safetensors.torch import load_file, save_file

    from lorawb.families.flux import to_bfl

    state = load_file(str(tiny_flux / "transformer" / "diffusion_pytorch_model.safetensors"))
    bfl = to_bfl(state)
    assert "double_blocks.0.img_attn.qkv.weight" in bfl and "single_blocks.0.linear1.weight" in bfl
    assert "final_layer.adaLN_modulation.1.weight" in bfl and "guidance_in.in_layer.weight" in bfl
    for layout, prefix in (("bfl", ""), ("comfyui", "model.diffusion_model.")):
        path = tmp_path / f"{layout}.safetensors"
        save_file({prefix + k: v for k, v in bfl.items()}, str(path))
        assert families.detect(path).name == "flux"
        cpu = torch.device("cpu")
        a = families.load_base_model(ModelSection(path=str(path), config=str(tiny_flux)), cpu)
        b = families.load_base_model(ModelSection(path=str(tiny_flux)), cpu)
        sa, sb = a.denoiser.state_dict(), b.denoiser.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sb), layout
        assert a.denoiser.config.guidance_embeds and a.denoiser.config.num_layers == b.denoiser.config.num_layers
    with pytest.raises(ModelError) as err:  # the file alone: the error names what to point at
        families.load_base_model(ModelSection(path=str(tmp_path / "bfl.safetensors")), torch.device("cpu"))
    assert "model.config" in err.value.hint and "text_encoder_2" in err.value.hint


def test_a_folder_missing_parts_names_them(tiny_flux, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_flux, broken)
    shutil.rmtree(broken / "text_encoder_2")
    shutil.rmtree(broken / "tokenizer_2")
    with pytest.raises(ModelError, match="lacks text_encoder_2/, tokenizer_2/"):
        families.load_base_model(ModelSection(path=str(broken)), torch.device("cpu"))


# --- training ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_every_lora_weight_changes_after_one_step(family, model_of, tmp_path):
    from lorawb.train.trainer import train_step

    te = ["network.train_text_encoder=true"] if family == "flux" else []  # Chroma has no CLIP to train
    root = project(tmp_path, model_of(family))
    with train_context(root, [*FAST, *te, "train.learning_rate=1e-2"]) as ctx:
        before = lora_weights(ctx)
        assert any(n.startswith("te0.") for n in before) == bool(te)
        assert not any(n.startswith("te1.") for n in before)  # T5 never gets a LoRA
        train_step(ctx)
        after = lora_weights(ctx)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, unchanged[:5]


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_is_finite_and_falls_on_a_fixed_batch(family, model_of, tmp_path):
    from lorawb.train.trainer import diffusion_loss

    root = project(tmp_path, model_of(family), n=2)
    with train_context(root, [*FAST, "train.learning_rate=5e-3", "train.batch_size=1"]) as ctx:
        batch = ctx.batches.next()
        losses = []
        for _ in range(40):
            batch.generator.manual_seed(0)  # the same noise and timesteps every time
            loss = diffusion_loss(ctx, batch)
            ctx.acc.backward(loss)
            ctx.optimizer.step()
            ctx.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.7 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_a_run_draws_samples_saves_and_resumes_exactly(family, model_of, tmp_path):
    from PIL import Image

    root = project(tmp_path, model_of(family), n=3)
    p = Project.load(root)
    cfg = resolve_config(
        p,
        overrides=[
            *FAST,
            "train.max_steps=4",
            "save.every_n_steps=2",
            "sample.every_n_steps=2",
            "sample.prompts=['{trigger}, forest', 'a cat']",
            "train.noise_offset=0.05",
            "dataset.shuffle_tags=true",
            "network.dropout=0.1",
        ],
    )
    straight, resumed = straight_and_resumed(p, cfg, stop_at=2)
    assert_same_state(resume_payload(straight), resume_payload(resumed))
    samples = [e for e in read_events(straight.events) if e["type"] == "sample"]
    assert len(samples) == 4 and all((straight.path / e["path"]).is_file() for e in samples)
    assert Image.open(straight.path / samples[0]["path"]).size == (32, 32)
    meta = kohya.read_metadata(straight.checkpoints / "zkx_mira-000004.safetensors")
    version = {"flux": "flux1", "chroma": "chroma"}[family]
    assert meta["ss_base_model_version"] == version and meta["ss_network_module"] == "networks.lora_flux"
    assert meta["modelspec.architecture"].endswith("/lora") and families.lora_family([], meta) == family


def test_two_processes_train_flux_with_identical_weights(tmp_path, tiny_flux):
    import time

    from lorawb.train.process import stop_run
    from lorawb.train.runfolder import summarize
    from tests.train.test_multiprocess import fingerprints

    root = project(tmp_path, tiny_flux)
    p = Project.load(root)
    over = [*FAST, "train.num_processes=2", "train.device='cpu'", "train.threads=1", "train.max_steps=400"]
    over += ["network.train_text_encoder=true", "network.rank=2", "save.every_n_steps=2"]
    run = start_run(p, resolve_config(p, overrides=over), detach=True)
    deadline = time.time() + 150
    while time.time() < deadline:
        steps = [e["step"] for e in read_events(run.events) if e["type"] == "step"]
        if steps and steps[-1] >= 3:
            break
        assert run.is_alive(), (run.path / "worker.out").read_text()[-3000:]
        time.sleep(0.05)
    stop_run(run)
    deadline = time.time() + 120
    while run.is_alive() and time.time() < deadline:
        time.sleep(0.1)
    s = summarize(run)
    assert s.state == "stopped", (run.path / "worker.out").read_text()[-3000:]
    fp0, fp1 = fingerprints(run.log.read_text()), fingerprints((run.path / "train.rank1.log").read_text())
    assert fp0 == fp1 and len(fp0) >= 2 and len(set(fp0.values())) == len(fp0)


def test_killed_flux_run_resumes_from_its_last_checkpoint(tmp_path, tiny_flux):
    import os
    import signal

    from lorawb.train.process import resume_run
    from lorawb.train.runfolder import summarize
    from tests.train.test_resume import wait_for

    root = project(tmp_path, tiny_flux, n=3)
    p = Project.load(root)
    run = start_run(p, resolve_config(p, overrides=[*FAST, "train.max_steps=40", "save.every_n_steps=3"]), detach=True)

    def past_a_checkpoint():
        evs = read_events(run.events)
        saved = [e["step"] for e in evs if e["type"] == "checkpoint" and e.get("resumable")]
        steps = [e["step"] for e in evs if e["type"] == "step"]
        return bool(saved) and steps and steps[-1] > saved[-1] and steps[-1] < 40

    wait_for(past_a_checkpoint, every=0.005)
    os.kill(run.pid(), signal.SIGKILL)
    wait_for(lambda: not run.is_alive())
    killed = summarize(run)
    assert killed.display_state == "dead" and killed.resumable_step is not None
    resume_run(run, detach=False)
    assert (summarize(run).state, summarize(run).step) == ("finished", 40)


# --- settings ---------------------------------------------------------------------------------------------------


def test_flow_settings_are_checked_with_the_key_named(tiny_flux, tiny_chroma, tmp_path):
    root = project(tmp_path, tiny_flux, n=1)
    p = Project.load(root)
    for bad, key in (
        ("flux.weighting_scheme='sideways'", "flux.weighting_scheme"),
        ("flux.shift=-1", "flux.shift"),
        ("flux.train_blocks='middle'", "flux.train_blocks"),
        ("sample.scheduler='dpm'", "sample.scheduler"),
        ("train.min_snr_gamma=5", "train.min_snr_gamma"),
        ("network.conv=true", "network.conv"),
        ("network.dora=true", "network.dora"),
        ("dataset.bucket_step=6", "dataset.bucket_step"),
    ):
        with pytest.raises(ConfigError) as err:
            resolve_config(p, overrides=[bad])
        assert key in err.value.message, (bad, err.value.message)
    chroma = project(tmp_path / "c", tiny_chroma, n=1)
    with pytest.raises(ConfigError, match="network.train_text_encoder"):
        resolve_config(Project.load(chroma), overrides=["network.train_text_encoder=true"])
    # an SD run's frozen config has no [flux] table; a Flux run's has its own
    cfg = resolve_config(p, overrides=["flux.guidance=3.5"])
    assert "[flux]" in cfg.to_toml() and "[chroma]" not in cfg.to_toml()
    assert TrainConfig().to_toml().count("[flux]") == 0


@pytest.mark.parametrize("blocks,prefixes", [("double", {"double_blocks"}), ("single", {"single_blocks"})])
def test_train_blocks_picks_the_blocks(blocks, prefixes, tiny_flux, tmp_path):
    root = project(tmp_path, tiny_flux, n=2)
    p = Project.load(root)
    cfg = resolve_config(p, overrides=[*FAST, "train.max_steps=1", f"flux.train_blocks='{blocks}'"])
    run = start_run(p, cfg, detach=False)
    from lorawb.families import safetensors_keys

    names = {k.split(".")[0] for k in safetensors_keys(run.checkpoints / "zkx_mira-000001.safetensors")}
    assert {"_".join(n.split("_")[2:4]) for n in names} == prefixes


# --- the LoRA file ------------------------------------------------------------------------------------------------


def random_lora(model, seed: int = 0, rank: int = 4) -> None:
    """Non-zero LoRA weights on every adapted layer (a default LoRA's up is zero and changes nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for root in (model.denoiser, *model.text_encoders):
            for name, p in root.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.fixture
def flux_with_lora(tiny_flux):
    from lorawb.train.config import NetworkSection
    from lorawb.train.lora import add_lora

    model = families.load_base_model(ModelSection(path=str(tiny_flux)), torch.device("cpu"))
    net = NetworkSection(rank=4, alpha=2, train_text_encoder=True, target_modules=list(model.spec.default_targets))
    add_lora(
        model.denoiser,
        model.text_encoders,
        net,
        family=model.spec,
        trainable=model.spec.trainable_text_encoders,
        targets=model.lora_targets(net),
    )
    random_lora(model)
    return model


def write_file(model, path: Path) -> Path:
    te = [kohya.extract_lora(te) for te in model.text_encoders]
    kohya.save_lora(path, model.lora_tensors(kohya.extract_lora(model.denoiser), te, torch.float32), {})
    return path


def deltas(layers) -> dict[str, torch.Tensor]:
    return {n: (w.up @ w.down) * (w.alpha / w.down.shape[0]) for n, w in layers.items()}


def test_the_file_fuses_qkv_exactly_in_kohyas_bfl_names(flux_with_lora, tmp_path):
    from safetensors.torch import load_file

    model = flux_with_lora
    path = write_file(model, tmp_path / "lora.safetensors")
    sd = load_file(str(path))
    layers = {k.split(".")[0] for k in sd}
    assert "lora_unet_double_blocks_0_img_attn_qkv" in layers and "lora_unet_single_blocks_0_linear1" in layers
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj" in layers
    assert not any("to_q" in n or n.startswith("lora_te2_") for n in layers)  # fused; no T5
    qkv = "lora_unet_double_blocks_0_img_attn_qkv"
    down, up, alpha = sd[f"{qkv}.lora_down.weight"], sd[f"{qkv}.lora_up.weight"], sd[f"{qkv}.alpha"]
    assert down.shape[0] == 12 and up.shape[1] == 12 and float(alpha) == 6.0  # rank 3r, alpha 3α: α/r kept
    assert alpha.dtype == torch.float32 and alpha.dim() == 0
    assert sd["lora_unet_single_blocks_0_linear1.lora_down.weight"].shape[0] == 16  # q, k, v and the MLP
    # the fused layer's output equals the separate q/k/v layers' outputs, stacked
    x = torch.randn(5, down.shape[1])
    attn = model.denoiser.transformer_blocks[0].attn
    separate = torch.cat(
        [m.lora_B["default"](m.lora_A["default"](x)) * m.scaling["default"] for m in (attn.to_q, attn.to_k, attn.to_v)],
        dim=1,
    )
    fused = x @ down.T @ up.T * (float(alpha) / down.shape[0])
    torch.testing.assert_close(fused, separate, atol=1e-5, rtol=1e-5)


def test_reading_the_file_back_gives_every_layer_exactly(flux_with_lora, tmp_path):
    model = flux_with_lora
    path = write_file(model, tmp_path / "lora.safetensors")
    back = model.read_lora(path, model.text_encoders)
    assert back.naming == "bfl" and not back.unmatched
    want, got = deltas(kohya.extract_lora(model.denoiser)), deltas(back.denoiser)
    assert set(want) == set(got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-5)
    assert set(back.text_encoders[0]) == set(kohya.extract_lora(model.text_encoders[0]))


def other_namings(model, tmp_path: Path) -> dict[str, Path]:
    """The same LoRA as the other tools write it (rules from their saving code, docs/training.md):
    diffusers/peft and ai-toolkit (``transformer.<module>.lora_A``, no alpha: scale folded into B),
    OneTrainer's legacy (``lora_transformer_<module>``, split q/k/v, alpha), kohya's own fused
    network (one dense LoRA over q|k|v), ComfyUI's (``diffusion_model.<BFL>.lora_A``)."""
    from safetensors.torch import save_file

    from lorawb.families.flux import bfl_module

    layers = kohya.extract_lora(model.denoiser)
    out: dict[str, Path] = {}
    peft, onetrainer = {}, {}
    for name, w in layers.items():
        scale = w.alpha / w.down.shape[0]
        peft[f"transformer.{name}.lora_A.weight"] = w.down
        peft[f"transformer.{name}.lora_B.weight"] = w.up * scale
        flat = "lora_transformer_" + name.replace(".", "_")
        onetrainer.update({f"{flat}.lora_down.weight": w.down, f"{flat}.lora_up.weight": w.up})
        onetrainer[f"{flat}.alpha"] = torch.tensor(w.alpha)
    for what, tensors in (("diffusers", peft), ("onetrainer", onetrainer)):
        out[what] = tmp_path / f"{what}.safetensors"
        save_file(tensors, str(out[what]))
    # kohya's fused network: a dense rank-R LoRA over the fused module (one down for q, k and v)
    dense = {}
    groups: dict[str, list] = {}
    for name, w in layers.items():
        bfl, index, n = bfl_module(name)
        groups.setdefault(bfl, []).append((index, w))
    for bfl, parts in groups.items():
        parts.sort(key=lambda t: t[0])
        flat = "lora_unet_" + bfl.replace(".", "_")
        if len(parts) == 1:
            w = parts[0][1]
            dense.update(
                {
                    f"{flat}.lora_down.weight": w.down,
                    f"{flat}.lora_up.weight": w.up,
                    f"{flat}.alpha": torch.tensor(w.alpha),
                }
            )
            continue
        # the fused delta as one rank-(n·r) LoRA, written densely (not block-diagonal): mix the ranks
        down = torch.cat([w.down for _, w in parts])
        up = torch.block_diag(*[w.up * (w.alpha / w.down.shape[0]) for _, w in parts])
        mix = torch.linalg.qr(torch.randn(down.shape[0], down.shape[0], generator=torch.Generator().manual_seed(1)))[0]
        dense.update({f"{flat}.lora_down.weight": mix.T @ down, f"{flat}.lora_up.weight": up @ mix})
        dense[f"{flat}.alpha"] = torch.tensor(float(down.shape[0]))
    out["kohya-dense"] = tmp_path / "kohya-dense.safetensors"
    save_file(dense, str(out["kohya-dense"]))
    return out


def test_every_naming_users_bring_is_read_exactly(flux_with_lora, tmp_path):
    model = flux_with_lora
    want = deltas(kohya.extract_lora(model.denoiser))
    for what, path in other_namings(model, tmp_path).items():
        back = model.read_lora(path)
        assert not back.unmatched, (what, back.unmatched[:3])
        got = deltas(back.denoiser)
        assert set(got) == set(want), what
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4, msg=f"{what} {name}")


@pytest.mark.parametrize("naming", ["lorawb", "diffusers", "onetrainer"])
def test_init_from_any_naming_starts_where_the_file_ended(naming, flux_with_lora, tiny_flux, tmp_path):
    model = flux_with_lora
    files = other_namings(model, tmp_path) | {"lorawb": write_file(model, tmp_path / "lorawb.safetensors")}
    root = project(tmp_path, tiny_flux, n=1)
    net = [*FAST, "network.rank=4", "network.alpha=2", "train.max_steps=1", f"network.init_from='{files[naming]}'"]
    with train_context(root, net) as ctx:
        got = deltas(kohya.extract_lora(ctx.denoiser))
    want = deltas(kohya.extract_lora(model.denoiser))
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4)


# --- what other tools load --------------------------------------------------------------------------------------


def kohya_flux_names() -> set[str]:
    """kohya sd-scripts' Flux LoRA layer names (networks/lora_flux.py, read, not copied): every Linear of
    each DoubleStreamBlock and SingleStreamBlock of its BFL model, ``lora_unet_`` + the module path
    with dots as underscores. The BFL module paths of FLUX.1 (black-forest-labs/flux's model.py)."""
    double = ["img_mod.lin", "img_attn.qkv", "img_attn.proj", "img_mlp.0", "img_mlp.2"]
    double += [d.replace("img", "txt") for d in double]
    single = ["linear1", "linear2", "modulation.lin"]
    names = {f"double_blocks.{i}.{m}" for i in range(19) for m in double}
    names |= {f"single_blocks.{i}.{m}" for i in range(38) for m in single}
    return {"lora_unet_" + n.replace(".", "_") for n in names}


def comfyui_flux_names(bfl_keys: list[str]) -> set[str]:
    """ComfyUI's rule for Flux (comfy/lora.py ``model_lora_keys_unet``): every weight ``X.weight`` of the
    BFL diffusion model can be adapted by a LoRA named ``lora_unet_`` + X with dots as underscores."""
    return {"lora_unet_" + k[: -len(".weight")].replace(".", "_") for k in bfl_keys if k.endswith(".weight")}


def test_full_size_flux_names_are_kohyas_comfyuis_and_diffusers_loads_every_key(tmp_path):
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from safetensors.torch import save_file

    from lorawb.families.flux import FluxFamily, FluxModel, to_bfl
    from lorawb.toyworld.fullsize import FLUX_TRANSFORMER
    from lorawb.train.config import NetworkSection
    from lorawb.train.lora import add_lora

    with torch.device("meta"):
        transformer = FluxTransformer2DModel(**FLUX_TRANSFORMER)
    bfl_keys = list(to_bfl(transformer.state_dict()))
    model = FluxModel(FluxFamily(), tmp_path, transformer, None, [], [], {}, settings=FluxFamily.settings())
    net = NetworkSection(rank=1, alpha=1, target_modules=list(FluxFamily.default_targets))
    linear, _ = model.lora_targets(net)
    assert len(linear) == 19 * 14 + 38 * 6  # every linear of the blocks, as diffusers names them
    # Our names for these layers, fused exactly as lora_tensors writes them (weights on the CPU, rank 1).
    with torch.device("meta"):
        add_lora(transformer, [], net, family=model.spec, targets=(linear, []))
    layers = {
        n: kohya.LoraWeights(torch.ones(1, m.in_features), torch.ones(m.out_features, 1), 1.0)
        for n, m in ((n, transformer.get_submodule(n).base_layer) for n in linear)
    }
    from lorawb.families.flux import fuse_layers

    fused = fuse_layers(layers, transformer)
    ours = {"lora_unet_" + b.replace(".", "_") for b in fused}
    assert ours == kohya_flux_names()  # 19 x 10 + 38 x 3 = 304, kohya's exactly
    assert ours <= comfyui_flux_names(bfl_keys)
    path = tmp_path / "full.safetensors"
    save_file(
        kohya.flat_tensors({"lora_unet_" + b.replace(".", "_"): w for b, w in fused.items()}, torch.float16), str(path)
    )
    state = FluxPipeline.lora_state_dict(str(path))
    state = state[0] if isinstance(state, tuple) else state
    modules = {n for n, _ in transformer.named_modules()}
    targets = {k.removeprefix("transformer.").rsplit(".lora_", 1)[0] for k in state}
    assert targets == set(linear)  # every key converted, onto exactly the layers lorawb trains
    assert targets <= modules


def test_diffusers_loads_a_double_block_file_of_the_tiny_model_and_the_output_changes(tiny_flux, tmp_path):
    """diffusers' own kohya converter has FLUX.1's widths written in only for single blocks' linear1:
    a double-blocks file of the tiny model goes through it as it is, and draws what lorawb's loader draws."""
    from diffusers import FluxPipeline

    from lorawb.train.config import NetworkSection
    from lorawb.train.lora import add_lora

    model = families.load_base_model(ModelSection(path=str(tiny_flux)), torch.device("cpu"))
    model.settings = model.settings.model_copy(update={"train_blocks": "double"})
    net = NetworkSection(rank=2, alpha=2, target_modules=list(model.spec.default_targets))
    add_lora(model.denoiser, model.text_encoders, net, family=model.spec, targets=model.lora_targets(net))
    random_lora(model, seed=3)
    path = write_file(model, tmp_path / "double.safetensors")

    def draw(pipe):
        g = torch.Generator().manual_seed(0)
        return pipe(
            "zkx_mira, forest",
            num_inference_steps=2,
            height=32,
            width=32,
            generator=g,
            output_type="np",
            max_sequence_length=16,
        ).images

    plain = FluxPipeline.from_pretrained(tiny_flux, local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    before = draw(plain)
    plain.load_lora_weights(str(path))
    theirs = draw(plain)
    ours_pipe = FluxPipeline.from_pretrained(tiny_flux, local_files_only=True)
    ours_pipe.set_progress_bar_config(disable=True)
    families.load_base_model(ModelSection(path=str(tiny_flux)), torch.device("cpu")).load_lora(ours_pipe, path, "a")
    ours = draw(ours_pipe)
    assert float(abs(theirs - before).max()) > 1e-3
    assert float(abs(theirs - ours).max()) < 1e-4


def test_lora_family_and_naming_of_a_file(flux_with_lora, tmp_path):
    from safetensors.torch import load_file

    from lorawb.matrix.lorafile import read_lora as info

    path = write_file(flux_with_lora, tmp_path / "x.safetensors")
    assert info(path).family is None  # no metadata: the names alone do not tell Flux from Chroma
    kohya.save_lora(path, load_file(str(path)), families.get("flux").lora_metadata())
    got = info(path)
    assert (got.family, got.naming) == ("flux", "kohya")


# --- the app's form, init and the doctor ------------------------------------------------------------------------


def test_the_form_checks_flux_settings_with_their_line(tiny_flux, tmp_path):
    from lorawb.train import form as F

    p = Project.load(project(tmp_path, tiny_flux, n=1))
    text = F.project_source(p).config.to_toml()
    assert "[flux]" in text and F.validate(text, p).flux.guidance == 1.0
    bad = F.set_in_toml(text, "sample.scheduler", "dpm")
    with pytest.raises(ConfigError) as exc:
        F.validate(bad, p)
    assert F.error_key(exc.value) == "sample.scheduler"
    assert bad.splitlines()[exc.value.line - 1].startswith("scheduler = ")
    changed = F.set_in_toml(text, "flux.guidance", 3.5)
    rows = F.differences(changed, F.project_source(p), p)
    assert [r.key for r in rows] == ["flux.guidance"]  # the one-change guard sees family settings


def test_init_on_a_flux_folder_recommends_1024_px(tiny_flux, tmp_path, capsys):
    import shutil

    from lorawb.cli import main

    real = tmp_path / "flux-like"
    shutil.copytree(tiny_flux, real)
    (real / "lorawb_model.json").unlink()  # as downloaded: no lorawb file, the family's usual size
    assert main(["init", str(tmp_path / "mira"), "--trigger", "zkx_mira", "--model", str(real)]) == 0
    config = Project.load(tmp_path / "mira").config
    assert config.project.resolution == 1024
    assert resolve_config(Project.load(tmp_path / "mira")).dataset.bucket_step == 64


def test_the_doctor_reads_a_flux_project(tiny_flux, tmp_path):
    from lorawb.train.doctor import doctor as diagnose  # the whole report, with the trainer's checks

    root = project(tmp_path, tiny_flux, n=2)
    report = diagnose(Project.load(root))
    assert report.config_errors == [] and not [w for w in report.training_warnings if "the model's" in w]
    text = (root / "lorawb.toml").read_text()
    (root / "lorawb.toml").write_text(text.replace("steps = 2\n", "steps = 2\nscheduler = 'dpm'\n", 1))
    report = diagnose(Project.load(root))
    assert len(report.config_errors) == 1 and "sample.scheduler" in report.config_errors[0]
    assert "lorawb.toml:" in report.config_errors[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_preservation_reg_images_and_validation_work_for_flow_models(family, model_of, tmp_path):
    from tests.train.conftest import write_images

    root = project(tmp_path, model_of(family), n=4)
    write_images(root / "reg" / "1_woman", 2, trigger="woman")
    p = Project.load(root)
    over = [*FAST, "train.max_steps=2", "train.val_every_n_steps=2", "dataset.validation_split=0.25"]
    over += ["train.preservation='output'", "train.preservation_class='woman'", "dataset.prior_loss_weight=0.5"]
    run = start_run(p, resolve_config(p, overrides=over), detach=False)
    events = read_events(run.events)
    (val,) = [e for e in events if e["type"] == "val"]
    assert math.isfinite(val["val_loss"]) and val["val_loss"] > 0
    assert events[-1]["type"] == "status" and events[-1]["state"] == "finished"
    assert "2 reg images" in run.log.read_text() and "output preservation: class 'woman'" in run.log.read_text()
