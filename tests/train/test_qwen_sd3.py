"""Qwen-Image and SD3.5 on the family modules, with tiny models built from configs: the conditioning and the
denoiser call are the pipelines' own, training changes every LoRA weight and lowers the loss, samples are
drawn, stop/resume is exact, the LoRA files are in the naming ComfyUI and diffusers both load (Qwen-Image:
diffusers names under ComfyUI's ``diffusion_model.``; SD3.5: diffusers' ``transformer.``; both peft A/B with
alpha folded in), every naming users bring is read back, and the single files users download load as the
folder does, also through ``lorawb init --model``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lorawb import families
from lorawb.core.project import Project
from lorawb.errors import ConfigError, ModelError
from lorawb.train import kohya
from lorawb.train.config import ModelSection, resolve_config
from lorawb.train.events import read_events
from tests.train.conftest import lora_weights, train_context, write_images
from tests.train.test_flux import deltas
from tests.train.test_klein_zimage import diffusers_targets, full_size_targets, load, project, with_lora, write_file
from tests.train.test_resume import assert_same_state, resume_payload, straight_and_resumed

pytestmark = pytest.mark.slow

FAMILIES = ["qwenimage", "sd3"]
FAST = ["qwenimage.max_sequence_length=16", "sd3.max_sequence_length=16"]  # short Qwen2.5-VL / T5 sequences
CPU = torch.device("cpu")


@pytest.fixture
def model_of(request):
    return lambda family: request.getfixturevalue(f"tiny_{family}")


# --- the single files users download (each layout written here from its own definition) --------------------------


def sd3_to_sai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers SD3 transformer in Stability AI's MMDiT layout (the sd3.5_*.safetensors files): q/k/v fused
    per stream, SAI's module names, the final and the pre-only context modulations' halves swapped."""
    x, c = "x_block", "context_block"
    names = {
        "attn.to_out.0": f"{x}.attn.proj",
        "attn.to_add_out": f"{c}.attn.proj",
        "attn2.to_out.0": f"{x}.attn2.proj",
        "attn.norm_q": f"{x}.attn.ln_q",
        "attn.norm_k": f"{x}.attn.ln_k",
        "attn.norm_added_q": f"{c}.attn.ln_q",
        "attn.norm_added_k": f"{c}.attn.ln_k",
        "attn2.norm_q": f"{x}.attn2.ln_q",
        "attn2.norm_k": f"{x}.attn2.ln_k",
        "ff.net.0.proj": f"{x}.mlp.fc1",
        "ff.net.2": f"{x}.mlp.fc2",
        "ff_context.net.0.proj": f"{c}.mlp.fc1",
        "ff_context.net.2": f"{c}.mlp.fc2",
        "norm1.linear": f"{x}.adaLN_modulation.1",
        "norm1_context.linear": f"{c}.adaLN_modulation.1",
    }
    fused = {"attn.to_q": f"{x}.attn.qkv", "attn.add_q_proj": f"{c}.attn.qkv", "attn2.to_q": f"{x}.attn2.qkv"}
    top = {
        "pos_embed.proj": "x_embedder.proj",
        "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
        "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
        "context_embedder": "context_embedder",
        "proj_out": "final_layer.linear",
        "norm_out.linear": "final_layer.adaLN_modulation.1",
    }
    last = max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))

    def swap(t: torch.Tensor) -> torch.Tensor:
        a, b = t.chunk(2)
        return torch.cat([b, a])

    out: dict[str, torch.Tensor] = {"pos_embed": state["pos_embed.pos_embed"]}
    for key, value in state.items():
        if key == "pos_embed.pos_embed":
            continue
        module, leaf = key.rsplit(".", 1)
        if module.startswith("transformer_blocks."):
            _, i, rest = module.split(".", 2)
            if rest in fused:
                parts = [rest, rest.replace("q", "k", 1), rest.replace("q", "v", 1)]
                if rest == "attn.add_q_proj":
                    parts = ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"]
                out[f"joint_blocks.{i}.{fused[rest]}.{leaf}"] = torch.cat(
                    [state[f"transformer_blocks.{i}.{p}.{leaf}"] for p in parts]
                )
            elif rest in names:
                v = swap(value) if rest == "norm1_context.linear" and int(i) == last else value
                out[f"joint_blocks.{i}.{names[rest]}.{leaf}"] = v
            continue
        out[f"{top[module]}.{leaf}"] = swap(value) if module == "norm_out.linear" else value
    return out


SINGLE_FILE = {"qwenimage": dict, "sd3": sd3_to_sai}  # Comfy-Org's Qwen-Image files keep diffusers' names


def single_file(folder: Path, family: str, dest: Path, prefix: str = "") -> Path:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))
    save_file({prefix + k: v.contiguous() for k, v in SINGLE_FILE[family](state).items()}, str(dest))
    return dest


# --- recognising and loading ------------------------------------------------------------------------------------


def test_families_are_detected_and_recommend_their_size(tiny_qwenimage, tiny_sd3):
    from lorawb.train.modelpath import detect_family, recommend

    assert (detect_family(tiny_qwenimage), detect_family(tiny_sd3)) == ("qwenimage", "sd3")
    for folder in (tiny_qwenimage, tiny_sd3):
        rec = recommend(folder)
        assert (rec.resolution, rec.bucket_step % 4) == (32, 0)  # whole 2x2 patches of the tiny VAE's (2x) latents
    assert families.get("qwenimage").latent_step(tiny_qwenimage) == 4  # 2 ** len(temperal_downsample), x 2


@pytest.mark.parametrize("family", FAMILIES)
def test_a_single_file_in_the_downloaded_layout_loads_as_the_folder(family, model_of, tmp_path):
    folder = model_of(family)
    want = load(folder).denoiser.state_dict()
    for prefix in ("", "model.diffusion_model."):
        path = single_file(folder, family, tmp_path / f"{family}{prefix[:5]}.safetensors", prefix)
        assert families.detect(path).name == family
        loaded = families.load_base_model(ModelSection(path=str(path), config=str(folder)), CPU)
        got = loaded.denoiser.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), prefix
        assert not [n for n, t in vars(loaded.denoiser.pos_embed).items() if torch.is_tensor(t) and t.is_meta]
    with pytest.raises(ModelError) as err:  # the file alone: the error names what to point at
        families.load_base_model(ModelSection(path=str(path)), CPU)
    assert "model.config" in err.value.hint and "text_encoder" in err.value.hint and "vae" in err.value.hint


@pytest.mark.parametrize("family", FAMILIES)
def test_lorawb_init_on_a_single_file_gives_a_project_that_trains(family, model_of, tmp_path, capsys):
    from lorawb.cli import main
    from lorawb.train.process import start_run

    folder = model_of(family)
    path = single_file(folder, family, tmp_path / "model.safetensors", "model.diffusion_model.")
    images = tmp_path / "images"
    write_images(images, 2)
    root = tmp_path / "proj"
    assert main(["init", str(root), "--model", str(path), "--images", str(images)]) != 0
    said = capsys.readouterr().err
    parts = ("vae", "text_encoder", "tokenizer", "scheduler") + (("text_encoder_3",) if family == "sd3" else ())
    assert all(f"{p}/" in said for p in parts)
    assert "--model-config" in said and not root.exists()
    assert main(["init", str(root), "--model", str(path), "--model-config", str(folder), "--images", str(images)]) == 0
    p = Project.load(root)
    assert p.config.project.resolution == 32
    run = start_run(p, resolve_config(p, overrides=[*FAST, "train.max_steps=1"]), detach=False)
    events = read_events(run.events)
    assert [e["state"] for e in events if e["type"] == "status"][-1] == "finished"
    assert not [e for e in events if e["type"] == "warning" and e.get("kind") == "resolution"]


# --- conditioning and the denoiser call are the pipeline's ------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_the_text_conditioning_is_the_pipelines(family, model_of):
    model = load(model_of(family))
    captions = ["zkx_mira, red outfit, forest", "a cat"]
    pipe = model.pipeline()
    with torch.no_grad():
        ours = model.encode_text(model.tokenize(captions))
        if family == "qwenimage":
            theirs, mask = pipe.encode_prompt(captions, device=CPU, max_sequence_length=16)
            hidden, ours_mask = model.trimmed(ours, CPU, torch.float32)
            torch.testing.assert_close(hidden, theirs, atol=1e-5, rtol=1e-5)
            assert torch.equal(ours_mask, mask.bool()) and not bool(ours_mask[1].all())  # "a cat" is shorter
        else:
            embeds, _, pooled, _ = pipe.encode_prompt(
                captions, captions, captions, device=CPU, do_classifier_free_guidance=False, max_sequence_length=16
            )
            assert torch.equal(ours.hidden, embeds) and torch.equal(ours.pooled, pooled)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_denoiser_call_is_the_pipelines(family, model_of):
    """One Euler step from pure noise (σ 1 → 0) in the pipeline gives noise − velocity; lorawb's
    ``predict`` at σ = 1 on the same noise must give the same latents (layout, timestep, sign)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    model = load(model_of(family))
    pipe = model.pipeline()
    pipe.set_progress_bar_config(disable=True)
    # Qwen-Image's shift_terminal stretches a one-step schedule to nothing: the step is taken without it
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift_terminal=None)
    noise = model.initial_noise(3, 32, 32)
    guidance = {"true_cfg_scale": 1.0} if family == "qwenimage" else {"guidance_scale": 0.0}
    with torch.no_grad():
        out = pipe(
            prompt="zkx_mira, forest",
            num_inference_steps=1,
            width=32,
            height=32,
            latents=noise.clone(),
            output_type="latent",
            max_sequence_length=16,
            **guidance,
        ).images
        text = model.encode_text(model.tokenize(["zkx_mira, forest"]))
        if family == "qwenimage":
            from diffusers import QwenImagePipeline as P

            x = P._unpack_latents(noise, 32, 32, model.vae_scale)[:, :, 0]  # the loop's (VAE) layout
            ours = model.pack(x - model.predict(x, torch.ones(1), text, torch.zeros(1, 6)))
        else:
            ours = noise - model.predict(noise, torch.ones(1), text, torch.zeros(1, 6))
    torch.testing.assert_close(ours, out.float(), atol=1e-5, rtol=1e-4)


def test_qwenimage_latents_are_normalised_as_diffusers_script_does(tiny_qwenimage):
    model = load(tiny_qwenimage)
    sample = torch.randn(1, 16, 4, 4)
    c = model.vae.config
    want = (sample - torch.tensor(c.latents_mean).view(1, -1, 1, 1)) * (
        1.0 / torch.tensor(c.latents_std).view(1, -1, 1, 1)
    )
    torch.testing.assert_close(model.scale_latents(sample), want)
    mean, std = model.encode_posterior(torch.zeros(2, 3, 32, 32))
    assert mean.shape == std.shape == (2, 16, 16, 16)  # one frame of the video VAE, the frame axis dropped


# --- training ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_every_lora_weight_changes_after_one_step(family, model_of, tmp_path):
    from lorawb.train.trainer import train_step

    root = project(tmp_path, model_of(family))
    with train_context(root, [*FAST, "train.learning_rate=1e-2"]) as ctx:
        before = lora_weights(ctx)
        assert before and not any(n.startswith("te") for n in before)  # the text encoders never get a LoRA
        train_step(ctx)
        after = lora_weights(ctx)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, unchanged[:5]


def fixed_batch_losses(root: Path, overrides: list[str], steps: int = 40) -> list[float]:
    from lorawb.train.trainer import diffusion_loss

    with train_context(root, [*FAST, "train.batch_size=1", *overrides]) as ctx:
        batch = ctx.batches.next()
        losses = []
        for _ in range(steps):
            batch.generator.manual_seed(0)  # the same noise and timesteps every time
            loss = diffusion_loss(ctx, batch)
            ctx.acc.backward(loss)
            ctx.optimizer.step()
            ctx.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    assert all(math.isfinite(x) for x in losses)
    return losses


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_is_finite_and_falls_on_a_fixed_batch(family, model_of, tmp_path):
    root = project(tmp_path, model_of(family), n=2)
    if family == "qwenimage":
        losses = fixed_batch_losses(root, ["train.learning_rate=2e-2"])
        assert losses[-1] < 0.7 * losses[0], [round(x, 3) for x in losses[::4]]
        return
    # The tiny SD3's 32-wide blocks feed an output layer of 64 values per patch: LoRAs on the blocks alone
    # reach part of the target (the loss falls, then levels), with the output layers adapted too it fits.
    losses = fixed_batch_losses(root, ["train.learning_rate=2e-2"])
    assert losses[-1] < 0.9 * losses[0], [round(x, 3) for x in losses[::4]]
    targets = "network.target_modules=['attn.to_q', 'ff.net.2', 'proj_out', 'norm_out.linear']"
    losses = fixed_batch_losses(root, ["train.learning_rate=5e-2", targets])
    assert losses[-1] < 0.7 * losses[0], [round(x, 3) for x in losses[::4]]


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
            "sample.negative='blurry'",
            "train.noise_offset=0.05",
            "dataset.caption_dropout=0.3",
            "network.dropout=0.1",
        ],
    )
    straight, resumed = straight_and_resumed(p, cfg, stop_at=2)
    assert_same_state(resume_payload(straight), resume_payload(resumed))
    samples = [e for e in read_events(straight.events) if e["type"] == "sample"]
    assert len(samples) == 4 and all((straight.path / e["path"]).is_file() for e in samples)
    assert Image.open(straight.path / samples[0]["path"]).size == (32, 32)
    log = (straight.path / "train.log").read_text()
    assert "text cache: 4 distinct captions" in log  # 3 captions and "" (dropout): the encoders run once per caption
    meta = kohya.read_metadata(straight.checkpoints / "zkx_mira-000004.safetensors")
    assert families.lora_family([], meta) == family
    assert meta["ss_base_model_version"] == {"qwenimage": "qwen_image", "sd3": "sd3"}[family]


def test_settings_are_checked_with_the_key_named(tiny_qwenimage, tiny_sd3, tmp_path):
    for model, section in ((tiny_qwenimage, "qwenimage"), (tiny_sd3, "sd3")):
        p = Project.load(project(tmp_path / section, model, n=1))
        for bad, key in (
            (f"{section}.weighting_scheme='sideways'", f"{section}.weighting_scheme"),
            (f"{section}.shift=-1", f"{section}.shift"),
            (f"{section}.max_sequence_length=2", f"{section}.max_sequence_length"),
            ("network.train_text_encoder=true", "network.train_text_encoder"),
            ("network.dora=true", "network.dora"),
            ("network.conv=true", "network.conv"),
            ("dataset.bucket_step=6", "dataset.bucket_step"),
            ("train.min_snr_gamma=5", "train.min_snr_gamma"),
        ):
            with pytest.raises(ConfigError) as err:
                resolve_config(p, overrides=[bad])
            assert key in err.value.message, (bad, err.value.message)
        cfg = resolve_config(p, overrides=[f"{section}.shift=3"])
        assert f"[{section}]" in cfg.to_toml() and "[flux]" not in cfg.to_toml()


def test_the_default_targets_are_the_blocks_attention_and_feed_forward(tiny_qwenimage, tiny_sd3):
    from lorawb.train.config import NetworkSection

    net = NetworkSection(rank=2, alpha=2)
    qwen, _ = load(tiny_qwenimage).lora_targets(net)
    # musubi-tuner's (no modulations), less the last block's text-only layers, which never reach the output
    assert len(qwen) == 12 + 8 and not any("_mod" in n for n in qwen)
    assert "transformer_blocks.1.attn.add_k_proj" in qwen and "transformer_blocks.1.txt_mlp.net.2" not in qwen
    sd3, _ = load(tiny_sd3).lora_targets(net)
    # block 0: both attentions (8), MMDiT-X's second (4), both feed-forwards (4); block 1 is pre-only for the
    # text: no to_add_out, no ff_context, and its text queries never reach the output
    assert len(sd3) == 16 + 8 and "transformer_blocks.0.attn2.to_q" in sd3
    assert "transformer_blocks.1.attn.add_k_proj" in sd3 and "transformer_blocks.1.attn.add_q_proj" not in sd3
    assert not any("norm" in n for n in sd3)


# --- the LoRA files -----------------------------------------------------------------------------------------------


def test_the_qwenimage_file_is_diffusers_names_under_diffusion_model_with_alpha_folded_in(tiny_qwenimage, tmp_path):
    from safetensors.torch import load_file

    model = with_lora(tiny_qwenimage)
    sd = load_file(str(write_file(model, tmp_path / "lora.safetensors")))
    assert not any(k.endswith(".alpha") for k in sd)
    assert all(k.startswith("diffusion_model.transformer_blocks.") for k in sd)
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in sd)
    w = kohya.extract_lora(model.denoiser)["transformer_blocks.1.img_mlp.net.0.proj"]
    prefix = "diffusion_model.transformer_blocks.1.img_mlp.net.0.proj"
    assert torch.equal(sd[f"{prefix}.lora_A.weight"], w.down)
    torch.testing.assert_close(sd[f"{prefix}.lora_B.weight"], w.up * (w.alpha / 4))


def test_the_sd3_file_is_diffusers_own_format_with_alpha_folded_in(tiny_sd3, tmp_path):
    from safetensors.torch import load_file

    model = with_lora(tiny_sd3)
    sd = load_file(str(write_file(model, tmp_path / "lora.safetensors")))
    assert not any(k.endswith(".alpha") for k in sd)
    assert all(k.startswith("transformer.transformer_blocks.") for k in sd)
    w = kohya.extract_lora(model.denoiser)["transformer_blocks.0.attn2.to_k"]
    torch.testing.assert_close(sd["transformer.transformer_blocks.0.attn2.to_k.lora_B.weight"], w.up * (w.alpha / 4))


@pytest.mark.parametrize("family", FAMILIES)
def test_reading_the_file_back_gives_every_layer_exactly(family, model_of, tmp_path):
    model = with_lora(model_of(family))
    back = model.read_lora(write_file(model, tmp_path / "lora.safetensors"))
    assert not back.unmatched
    want, got = deltas(kohya.extract_lora(model.denoiser)), deltas(back.denoiser)
    assert set(want) == set(got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-5)


def kohya_parts(out: dict[str, torch.Tensor], name: str, down, up, alpha: float) -> None:
    out.update({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(alpha)})


def sai_lora(layers: dict, model) -> dict[str, torch.Tensor]:
    """kohya sd-scripts' SD3 LoRA (networks/lora_sd3.py, read, not copied): ``lora_unet_`` + SAI's module path,
    q/k/v one LoRA over the fused ``qkv`` (trained fused: one dense LoRA), the pre-only block's context
    modulation in SAI's half order."""
    from lorawb.families.flux import swap_halves
    from lorawb.families.sd3 import sai_module
    from tests.train.test_klein_zimage import fused_dense

    groups: dict[str, list] = {}
    for name, w in layers.items():
        sai, index, _ = sai_module(name)
        groups.setdefault(sai, []).append((index, name, w))
    out: dict[str, torch.Tensor] = {}
    last = len(model.bare_denoiser.transformer_blocks) - 1
    for sai, parts in groups.items():
        parts = sorted(parts, key=lambda t: t[0])
        key = "lora_unet_" + sai.replace(".", "_")
        if len(parts) == 1:
            _, name, w = parts[0]
            up = swap_halves(w.up) if name == f"transformer_blocks.{last}.norm1_context.linear" else w.up
            kohya_parts(out, key, w.down, up, w.alpha)
        else:  # the whole fused layer: a part lorawb does not train is a zero block
            have = {index: w for index, _, w in parts}
            first = parts[0][2]
            rows = first.up.shape[0]
            zero = kohya.LoraWeights(torch.zeros_like(first.down), torch.zeros(rows, first.down.shape[0]), first.alpha)
            down, up = fused_dense([have.get(i, zero) for i in range(3)])
            kohya_parts(out, key, down, up, float(down.shape[0]))  # alpha = rank: scale 1, as folded
    return out


def other_namings(family: str, model, tmp_path: Path) -> dict[str, Path]:
    """The same LoRA as other tools write it (their saving code, named in docs/training.md): diffusers/peft
    (``transformer.<module>``, no alpha), OneTrainer's ``lora_transformer_<module>``, SimpleTuner's ``lycoris_``;
    Qwen-Image: musubi-tuner's ``lora_unet_<module>``; SD3.5: kohya sd-scripts' SAI names with q/k/v fused, and
    ``base_model.model.<module>``."""
    from safetensors.torch import save_file

    layers = kohya.extract_lora(model.denoiser)
    files: dict[str, dict[str, torch.Tensor]] = {"diffusers": {}, "onetrainer": {}, "lycoris": {}}
    for name, w in layers.items():
        files["diffusers"][f"transformer.{name}.lora_A.weight"] = w.down
        files["diffusers"][f"transformer.{name}.lora_B.weight"] = w.up * (w.alpha / w.down.shape[0])
        flat = name.replace(".", "_")
        kohya_parts(files["onetrainer"], "lora_transformer_" + flat, w.down, w.up, w.alpha)
        kohya_parts(files["lycoris"], "lycoris_" + flat, w.down, w.up, w.alpha)
    if family == "qwenimage":
        files["musubi"] = {}
        for name, w in layers.items():
            kohya_parts(files["musubi"], "lora_unet_" + name.replace(".", "_"), w.down, w.up, w.alpha)
    else:
        files["sd-scripts"] = sai_lora(layers, model)
        files["peft-base"] = {
            k.replace("transformer.", "base_model.model.", 1): v for k, v in files["diffusers"].items()
        }
    out = {}
    for what, tensors in files.items():
        out[what] = tmp_path / f"{what}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out[what]))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_every_naming_users_bring_is_read_exactly(family, model_of, tmp_path):
    if family == "sd3":  # the modulations too (sd-scripts trains them; the pre-only block's has its halves swapped)
        targets = [*families.get("sd3").default_targets, "attn.add_q_proj", "norm1.linear", "norm1_context.linear"]
        model = with_lora_on(model_of(family), targets)
    else:
        model = with_lora(model_of(family), seed=1)
    want = deltas(kohya.extract_lora(model.denoiser))
    namings = other_namings(family, model, tmp_path)
    assert len(namings) == (4 if family == "qwenimage" else 5)
    for what, path in namings.items():
        back = model.read_lora(path)
        assert not back.unmatched, (what, back.unmatched[:3])
        got = deltas(back.denoiser)
        assert set(got) == set(want), what
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4, msg=f"{what} {name}")


def with_lora_on(folder: Path, targets: list[str]) -> families.Model:
    from lorawb.train.config import NetworkSection
    from lorawb.train.lora import add_lora
    from tests.train.test_flux import random_lora

    model = load(folder)
    net = NetworkSection(rank=4, alpha=2, target_modules=targets)
    add_lora(
        model.denoiser,
        model.text_encoders,
        net,
        family=model.spec,
        trainable=(False,) * 3,
        targets=model.lora_targets(net),
    )
    random_lora(model, 2)
    return model


@pytest.mark.parametrize("family,naming", [("qwenimage", "musubi"), ("sd3", "onetrainer")])
def test_init_from_another_naming_starts_where_the_file_ended(family, naming, model_of, tmp_path):
    model = with_lora(model_of(family))
    files = other_namings(family, model, tmp_path)
    root = project(tmp_path, model_of(family), n=1)
    net = [*FAST, "network.rank=4", "network.alpha=2", "train.max_steps=1", f"network.init_from='{files[naming]}'"]
    with train_context(root, net) as ctx:
        got = deltas(kohya.extract_lora(ctx.denoiser))
    want = deltas(kohya.extract_lora(model.denoiser))
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4)


# --- what other tools load --------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_diffusers_loads_the_file_as_it_is_and_the_output_changes(family, model_of, tmp_path):
    """The family's own pipeline, ``load_lora_weights(file)`` with no help, draws what lorawb's loader draws."""
    import diffusers

    folder = model_of(family)
    path = write_file(with_lora(folder, seed=3), tmp_path / "lora.safetensors")
    cls = getattr(diffusers, families.get(family).pipeline_class)

    def draw(pipe):
        kw = {"max_sequence_length": 16, "output_type": "latent", "num_inference_steps": 2, "height": 32, "width": 32}
        guidance = {"true_cfg_scale": 2.0, "negative_prompt": " "} if family == "qwenimage" else {"guidance_scale": 2.0}
        return pipe(prompt="zkx_mira, forest", generator=torch.Generator().manual_seed(0), **guidance, **kw).images

    plain = cls.from_pretrained(folder, local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    before = draw(plain)
    plain.load_lora_weights(str(path))
    theirs = draw(plain)
    ours_pipe = cls.from_pretrained(folder, local_files_only=True)
    ours_pipe.set_progress_bar_config(disable=True)
    load(folder).load_lora(ours_pipe, path, "a")
    ours = draw(ours_pipe)
    assert float(abs(theirs - before).max()) > 1e-3
    assert float(abs(theirs - ours).max()) < 1e-5


def test_full_size_qwenimage_names_are_comfyuis_and_diffusers_loads_every_key(tmp_path):
    """ComfyUI's Qwen-Image model has diffusers' names; its QwenImage key map (comfy/lora.py
    ``model_lora_keys_unet``, read, not copied) places ``diffusion_model.`` + X on its weight ``X.weight``."""
    from diffusers import QwenImageTransformer2DModel
    from safetensors.torch import save_file

    with torch.device("meta"):
        transformer = QwenImageTransformer2DModel()  # diffusers' defaults are Qwen-Image's: 60 blocks, 3072 wide
    comfy = {"diffusion_model." + k[: -len(".weight")] for k in transformer.state_dict() if k.endswith(".weight")}
    model, linear, layers = full_size_targets(transformer, "qwenimage")
    assert len(linear) == 59 * 12 + 8  # the last block's text-only layers never reach the output
    tensors = model.lora_tensors(layers, None, torch.float16)
    names = {k.rsplit(".lora_", 1)[0] for k in tensors}
    assert names <= comfy and len(names) == len(linear)
    save_file(tensors, str(tmp_path / "full.safetensors"))
    assert diffusers_targets("QwenImagePipeline", tmp_path / "full.safetensors") == set(linear)


def test_full_size_sd3_names_are_comfyuis_and_diffusers_loads_every_key(tmp_path):
    """ComfyUI's SD3 branch (comfy/lora.py over comfy/utils.py ``mmdit_to_diffusers``) maps ``transformer.`` + D
    for each diffusers weight D that SAI's MMDiT has: D must be a weight diffusers' SAI converter writes."""
    from diffusers import SD3Transformer2DModel
    from safetensors.torch import save_file

    from lorawb.families.sd3 import sai_module
    from lorawb.toyworld.fullsize import SD35_MEDIUM_TRANSFORMER

    with torch.device("meta"):
        transformer = SD3Transformer2DModel(**SD35_MEDIUM_TRANSFORMER)
    sai = {k.rsplit(".", 1)[0] for k in sd3_to_sai(transformer.state_dict())}  # SAI's modules, as ComfyUI has them
    model, linear, layers = full_size_targets(transformer, "sd3")
    # 23 full blocks, MMDiT-X's second attention in 13; the last is pre-only for the text (no to_add_out, ff_context;
    # its text queries are left out)
    assert len(linear) == 23 * 12 + 13 * 4 + 8
    tensors = model.lora_tensors(layers, None, torch.float16)
    names = {k.rsplit(".lora_", 1)[0].removeprefix("transformer.") for k in tensors}
    assert names == set(linear) and {sai_module(n)[0] for n in names} <= sai
    save_file(tensors, str(tmp_path / "full.safetensors"))
    assert diffusers_targets("StableDiffusion3Pipeline", tmp_path / "full.safetensors") == set(linear)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_lora_family_of_a_file(family, model_of, tmp_path):
    from safetensors.torch import load_file

    from lorawb.matrix.lorafile import read_lora as info

    path = write_file(with_lora(model_of(family)), tmp_path / "x.safetensors")
    kohya.save_lora(path, load_file(str(path)), families.get(family).lora_metadata())
    assert info(path).family == family
    theirs = {  # musubi-tuner's and ai-toolkit's; sd-scripts' (library/sd3_utils.py, sai_model_spec.py)
        "qwenimage": [{"ss_base_model_version": "qwen_image"}],
        "sd3": [
            {"ss_base_model_version": "5-large", "modelspec.architecture": "stable-diffusion-3-5-large/lora"},
            {"ss_base_model_version": "medium", "modelspec.architecture": "stable-diffusion-3-medium/lora"},
        ],
    }[family]
    assert all(families.lora_family([], meta) == family for meta in theirs)


# --- big models (issue 25's levers on these families) --------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_a_quantised_offloaded_base_trains_and_the_plan_counts_its_weights(family, model_of, tmp_path):
    from lorawb.train import memplan as M
    from lorawb.train import quantize as Q
    from lorawb.train.trainer import train_step
    from tests.train.test_bigmodels import config_for

    folder = model_of(family)
    cfg = config_for(folder, "model.quantize=fp8", f"{family}.max_sequence_length=16")
    loaded = families.load_base_model(cfg.model, CPU, torch.float32, cfg)
    counted = sum(t.numel() * t.element_size() for t in Q.tensors_of(loaded.denoiser))
    assert counted == M.plan(cfg).part("base weights").bytes
    assert loaded.big.quantized_layers == sum(1 for b in loaded.blocks() for m in b.modules() if Q.is_quantized(m)) > 0
    sets = [*FAST, "model.quantize='fp8'", "train.gradient_checkpointing=true", "train.offload_blocks=1"]
    with train_context(project(tmp_path, folder, n=2), [*sets, "train.learning_rate=1e-2"]) as ctx:
        assert len(ctx.model.big.offload.blocks) == 1
        before = lora_weights(ctx)
        train_step(ctx)
        after = lora_weights(ctx)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, unchanged[:5]


# --- reg images and output preservation -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_reg_images_and_output_preservation_train(family, model_of, tmp_path):
    """A step with reg images in the batch and the output-preservation loss: zero at the start (a fresh LoRA draws
    the class prompt as the base does), every LoRA weight trained after it."""
    from lorawb.train.trainer import diffusion_loss, train_step
    from tests.train.test_preservation import PRESERVE
    from tests.train.test_reg import reg_folder

    root = project(tmp_path, model_of(family), n=2)
    reg_folder(root / "reg", "1_woman", 2)
    with train_context(root, [*FAST, *PRESERVE, "train.learning_rate=1e-2"]) as ctx:
        assert any(it.is_reg for it in ctx.batches.items)
        batch = ctx.batches.next()
        batch.generator.manual_seed(5)
        with torch.no_grad():
            pres = diffusion_loss(ctx, batch).item()
        batch.generator.manual_seed(5)
        plain = type(batch)(batch.latents, batch.text, batch.time_ids, batch.generator)
        with torch.no_grad():
            assert pres == pytest.approx(diffusion_loss(ctx, plain).item(), rel=1e-5)
        before = lora_weights(ctx)
        train_step(ctx)
        after = lora_weights(ctx)
    assert not [n for n in before if torch.equal(before[n], after[n])]
