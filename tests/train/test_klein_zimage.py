"""Flux.2 Klein and Z-Image on the family modules, with tiny models built from configs: the conditioning
and the denoiser call are the pipelines' own, training changes every LoRA weight and lowers the loss,
samples are drawn, stop/resume is exact, the LoRA files are in the naming each family's tools load
(Klein: musubi/kohya BFL names with q/k/v fused exactly; Z-Image: diffusers names under ComfyUI's
``diffusion_model.``, peft A/B with alpha folded in), diffusers loads them and ComfyUI's key rules
place them, every naming users bring is read back, and the single files users download load as the
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
from lorawb.train.config import ModelSection, NetworkSection, resolve_config
from lorawb.train.events import read_events
from tests.train.conftest import lora_weights, make_project, train_context, write_images
from tests.train.test_flux import deltas, random_lora
from tests.train.test_resume import assert_same_state, resume_payload, straight_and_resumed

pytestmark = pytest.mark.slow

FAMILIES = ["flux2_klein", "zimage"]
FAST = ["flux2_klein.max_sequence_length=16", "zimage.max_sequence_length=16"]  # short Qwen3 sequences
CPU = torch.device("cpu")


@pytest.fixture
def model_of(request):
    return lambda family: request.getfixturevalue(f"tiny_{family}")


def project(tmp_path: Path, model: Path, n: int = 4) -> Path:
    return make_project(tmp_path / "proj", model, n_images=n)


def load(path: Path, **kw) -> families.Model:
    model = families.load_base_model(ModelSection(path=str(path), **kw), CPU)
    model.settings = model.settings.model_copy(update={"max_sequence_length": 16})
    return model


# --- the single files users download (each layout written here from its own definition) --------------------------


def klein_to_bfl(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers Flux.2 transformer in BFL's layout (black-forest-labs/flux2's model, as ComfyUI and
    Comfy-Org ship it): q/k/v fused per stream, BFL's module names, the final modulation's halves swapped."""
    double = {
        "attn.to_out.0": "img_attn.proj",
        "attn.to_add_out": "txt_attn.proj",
        "attn.norm_q": "img_attn.norm.query_norm",
        "attn.norm_k": "img_attn.norm.key_norm",
        "attn.norm_added_q": "txt_attn.norm.query_norm",
        "attn.norm_added_k": "txt_attn.norm.key_norm",
        "ff.linear_in": "img_mlp.0",
        "ff.linear_out": "img_mlp.2",
        "ff_context.linear_in": "txt_mlp.0",
        "ff_context.linear_out": "txt_mlp.2",
    }
    single = {
        "attn.to_qkv_mlp_proj": "linear1",
        "attn.to_out": "linear2",
        "attn.norm_q": "norm.query_norm",
        "attn.norm_k": "norm.key_norm",
    }
    top = {
        "x_embedder": "img_in",
        "context_embedder": "txt_in",
        "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
        "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
        "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
        "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
        "single_stream_modulation.linear": "single_stream_modulation.lin",
        "proj_out": "final_layer.linear",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, leaf = key.rsplit(".", 1)
        parts = module.split(".")
        if parts[0] == "transformer_blocks":
            i, rest = parts[1], ".".join(parts[2:])
            if rest in ("attn.to_q", "attn.add_q_proj"):
                stream = "img" if rest == "attn.to_q" else "txt"
                names = (
                    ["attn.to_q", "attn.to_k", "attn.to_v"]
                    if stream == "img"
                    else [
                        "attn.add_q_proj",
                        "attn.add_k_proj",
                        "attn.add_v_proj",
                    ]
                )
                fused = [state[f"transformer_blocks.{i}.{n}.{leaf}"] for n in names]
                out[f"double_blocks.{i}.{stream}_attn.qkv.{leaf}"] = torch.cat(fused)
            elif rest in double:
                out[f"double_blocks.{i}.{double[rest]}.{'scale' if 'norm' in rest else leaf}"] = value
            continue
        if parts[0] == "single_transformer_blocks":
            i, rest = parts[1], ".".join(parts[2:])
            out[f"single_blocks.{i}.{single[rest]}.{'scale' if 'norm' in rest else leaf}"] = value
            continue
        if module == "norm_out.linear":
            scale, shift = value.chunk(2)
            out[f"final_layer.adaLN_modulation.1.{leaf}"] = torch.cat([shift, scale])
            continue
        out[f"{top[module]}.{leaf}"] = value
    return out


def zimage_to_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers Z-Image transformer in ComfyUI's layout (Comfy-Org's z_image files): q/k/v fused into
    ``attention.qkv``, ``attention.out``, ``q_norm``/``k_norm``, ``final_layer`` and ``x_embedder``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q." in key:
            qkv = [state[key.replace("to_q", n)] for n in ("to_q", "to_k", "to_v")]
            out[key.replace("to_q", "qkv")] = torch.cat(qkv)
            continue
        key = key.replace(".attention.to_out.0.", ".attention.out.")
        key = key.replace(".attention.norm_q.", ".attention.q_norm.").replace(
            ".attention.norm_k.", ".attention.k_norm."
        )
        key = key.replace("all_final_layer.2-1.", "final_layer.").replace("all_x_embedder.2-1.", "x_embedder.")
        out[key] = value
    return out


SINGLE_FILE = {"flux2_klein": klein_to_bfl, "zimage": zimage_to_comfy}


def single_file(folder: Path, family: str, dest: Path, prefix: str = "") -> Path:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "transformer" / "diffusion_pytorch_model.safetensors"))
    save_file({prefix + k: v.contiguous() for k, v in SINGLE_FILE[family](state).items()}, str(dest))
    return dest


# --- recognising and loading ------------------------------------------------------------------------------------


def test_families_are_detected_and_recommend_their_size(tiny_flux2_klein, tiny_zimage):
    from lorawb.train.modelpath import detect_family, recommend

    assert (detect_family(tiny_flux2_klein), detect_family(tiny_zimage)) == ("flux2_klein", "zimage")
    for folder in (tiny_flux2_klein, tiny_zimage):
        rec = recommend(folder)
        assert (rec.resolution, rec.bucket_step % 4) == (32, 0)  # whole 2x2 patches of the tiny VAE's (2x) latents


@pytest.mark.parametrize("family", FAMILIES)
def test_a_single_file_in_the_downloaded_layout_loads_as_the_folder(family, model_of, tmp_path):
    folder = model_of(family)
    want = load(folder).denoiser.state_dict()
    for prefix in ("", "model.diffusion_model."):
        path = single_file(folder, family, tmp_path / f"{family}{prefix[:5]}.safetensors", prefix)
        assert families.detect(path).name == family
        got = families.load_base_model(ModelSection(path=str(path), config=str(folder)), CPU).denoiser.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), prefix
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
    # without the folder for the rest: every missing part is named, nothing is created
    assert main(["init", str(root), "--model", str(path), "--images", str(images)]) != 0
    said = capsys.readouterr().err
    assert all(f"{p}/" in said for p in ("vae", "text_encoder", "tokenizer", "scheduler"))
    assert "--model-config" in said and not root.exists()
    assert main(["init", str(root), "--model", str(path), "--model-config", str(folder), "--images", str(images)]) == 0
    p = Project.load(root)
    assert p.config.project.resolution == 32
    run = start_run(p, resolve_config(p, overrides=[*FAST, "train.max_steps=1"]), detach=False)
    events = read_events(run.events)
    assert [e["state"] for e in events if e["type"] == "status"][-1] == "finished"
    # the size is the model's (model.config's folder says 32 px), not the family's usual 1024
    assert not [e for e in events if e["type"] == "warning" and e.get("kind") == "resolution"]


# --- conditioning and the denoiser call are the pipeline's ------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_the_text_conditioning_is_the_pipelines(family, model_of):
    model = load(model_of(family))
    captions = ["zkx_mira, red outfit, forest", "a cat"]
    pipe = model.pipeline()
    with torch.no_grad():
        ours = model.encode_text(model.tokenize(captions))
        if family == "flux2_klein":
            theirs, _ = pipe.encode_prompt(captions, device=CPU, max_sequence_length=16)
            assert torch.equal(ours.hidden, theirs)
        else:
            theirs = pipe._encode_prompt(list(captions), device=CPU, max_sequence_length=16)
            mine = model.caption_features(ours, CPU, torch.float32)
            assert len(mine) == 2 and all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))
            assert mine[0].shape[0] != mine[1].shape[0]  # each caption keeps its own length


@pytest.mark.parametrize("family", FAMILIES)
def test_the_denoiser_call_is_the_pipelines(family, model_of):
    """One Euler step from pure noise (σ 1 → 0) in the pipeline gives noise − velocity; lorawb's
    ``predict`` at σ = 1 on the same noise must give the same latents (layout, timestep, sign)."""
    model = load(model_of(family))
    pipe = model.pipeline()
    pipe.set_progress_bar_config(disable=True)
    noise = model.initial_noise(3, 32, 32)
    with torch.no_grad():
        out = pipe(
            prompt_embeds=model.encode_text(model.tokenize(["zkx_mira, forest"])).hidden
            if family == "flux2_klein"
            else None,
            prompt=None if family == "flux2_klein" else "zkx_mira, forest",
            num_inference_steps=1,
            guidance_scale=0.0,
            width=32,
            height=32,
            latents=noise.clone(),
            output_type="latent",
            max_sequence_length=16,
        ).images
        text = model.encode_text(model.tokenize(["zkx_mira, forest"]))
        if family == "flux2_klein":
            from diffusers import Flux2KleinPipeline as P

            x = P._unpatchify_latents(noise)  # the loop's (VAE) layout
            x0 = x - model.predict(x, torch.ones(1), text, torch.zeros(1, 6))
            mean, std = model.bn_stats(noise)
            ours = P._unpatchify_latents(P._patchify_latents(x0) * std + mean)  # the pipeline's de-normalising
        else:
            ours = noise - model.predict(noise, torch.ones(1), text, torch.zeros(1, 6))
    torch.testing.assert_close(ours, out.float(), atol=1e-5, rtol=1e-4)


# --- training ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_every_lora_weight_changes_after_one_step(family, model_of, tmp_path):
    from lorawb.train.trainer import train_step

    root = project(tmp_path, model_of(family))
    with train_context(root, [*FAST, "train.learning_rate=1e-2"]) as ctx:
        before = lora_weights(ctx)
        assert before and not any(n.startswith("te") for n in before)  # Qwen3 never gets a LoRA
        train_step(ctx)
        after = lora_weights(ctx)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, unchanged[:5]


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_is_finite_and_falls_on_a_fixed_batch(family, model_of, tmp_path):
    from lorawb.train.trainer import diffusion_loss

    root = project(tmp_path, model_of(family), n=2)
    with train_context(root, [*FAST, "train.learning_rate=2e-2", "train.batch_size=1"]) as ctx:
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
    assert "text cache: 4 distinct captions" in log  # 3 captions and "" (dropout): Qwen3 runs once per caption
    meta = kohya.read_metadata(straight.checkpoints / "zkx_mira-000004.safetensors")
    assert families.lora_family([], meta) == family
    assert meta["ss_base_model_version"] == {"flux2_klein": "flux_2_klein", "zimage": "z_image"}[family]


def test_settings_are_checked_with_the_key_named(tiny_flux2_klein, tiny_zimage, tmp_path):
    for model, section in ((tiny_flux2_klein, "flux2_klein"), (tiny_zimage, "zimage")):
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


def test_klein_train_blocks_and_zimage_refiners_pick_the_layers(tiny_flux2_klein, tiny_zimage):
    net = NetworkSection(rank=2, alpha=2)
    klein = load(tiny_flux2_klein)
    every, _ = klein.lora_targets(net)
    assert len(every) == 12 + 2  # a double block's 12 linears, a single block's 2
    klein.settings = klein.settings.model_copy(update={"train_blocks": "single"})
    assert klein.lora_targets(net)[0] == [
        "single_transformer_blocks.0.attn.to_qkv_mlp_proj",
        "single_transformer_blocks.0.attn.to_out",
    ]
    zimage = load(tiny_zimage)
    main, _ = zimage.lora_targets(net)
    assert len(main) == 2 * 7 and all(n.startswith("layers.") for n in main)
    zimage.settings = zimage.settings.model_copy(update={"train_refiners": True})
    refiners = {n.split(".")[0] for n in zimage.lora_targets(net)[0]}
    assert refiners == {"layers", "noise_refiner", "context_refiner"}


# --- the LoRA files -----------------------------------------------------------------------------------------------


def with_lora(folder: Path, seed: int = 0, **settings) -> families.Model:
    from lorawb.train.lora import add_lora

    model = load(folder)
    model.settings = model.settings.model_copy(update=settings)
    net = NetworkSection(rank=4, alpha=2, target_modules=list(model.spec.default_targets))
    add_lora(
        model.denoiser, model.text_encoders, net, family=model.spec, trainable=(False,), targets=model.lora_targets(net)
    )
    random_lora(model, seed)
    return model


def write_file(model, path: Path) -> Path:
    kohya.save_lora(path, model.lora_tensors(kohya.extract_lora(model.denoiser), None, torch.float32), {})
    return path


def test_the_klein_file_fuses_qkv_exactly_in_musubis_bfl_names(tiny_flux2_klein, tmp_path):
    from safetensors.torch import load_file

    model = with_lora(tiny_flux2_klein)
    sd = load_file(str(write_file(model, tmp_path / "lora.safetensors")))
    layers = {k.split(".")[0] for k in sd}
    assert layers == {
        "lora_unet_double_blocks_0_img_attn_qkv",
        "lora_unet_double_blocks_0_img_attn_proj",
        "lora_unet_double_blocks_0_img_mlp_0",
        "lora_unet_double_blocks_0_img_mlp_2",
        "lora_unet_double_blocks_0_txt_attn_qkv",
        "lora_unet_double_blocks_0_txt_attn_proj",
        "lora_unet_double_blocks_0_txt_mlp_0",
        "lora_unet_double_blocks_0_txt_mlp_2",
        "lora_unet_single_blocks_0_linear1",
        "lora_unet_single_blocks_0_linear2",
    }
    qkv = "lora_unet_double_blocks_0_txt_attn_qkv"
    down, up, alpha = sd[f"{qkv}.lora_down.weight"], sd[f"{qkv}.lora_up.weight"], sd[f"{qkv}.alpha"]
    assert down.shape[0] == 12 and float(alpha) == 6.0 and alpha.dim() == 0  # rank 3r, alpha 3α: α/r kept
    x = torch.randn(5, down.shape[1])
    attn = model.denoiser.transformer_blocks[0].attn
    parts = (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)
    separate = torch.cat([m.lora_B["default"](m.lora_A["default"](x)) * m.scaling["default"] for m in parts], dim=1)
    torch.testing.assert_close(x @ down.T @ up.T * (float(alpha) / 12), separate, atol=1e-5, rtol=1e-5)


def test_the_zimage_file_is_diffusers_names_under_diffusion_model_with_alpha_folded_in(tiny_zimage, tmp_path):
    from safetensors.torch import load_file

    model = with_lora(tiny_zimage)
    sd = load_file(str(write_file(model, tmp_path / "lora.safetensors")))
    assert not any(k.endswith(".alpha") for k in sd)  # diffusers and ai-toolkit mis-read .alpha in this form
    assert all(k.startswith("diffusion_model.layers.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in sd)
    layers = kohya.extract_lora(model.denoiser)
    w = layers["layers.1.attention.to_q"]
    prefix = "diffusion_model.layers.1.attention.to_q"
    assert torch.equal(sd[f"{prefix}.lora_A.weight"], w.down)
    torch.testing.assert_close(sd[f"{prefix}.lora_B.weight"], w.up * (w.alpha / 4))


@pytest.mark.parametrize("family", FAMILIES)
def test_reading_the_file_back_gives_every_layer_exactly(family, model_of, tmp_path):
    model = with_lora(model_of(family))
    back = model.read_lora(write_file(model, tmp_path / "lora.safetensors"))
    assert not back.unmatched
    want, got = deltas(kohya.extract_lora(model.denoiser)), deltas(back.denoiser)
    assert set(want) == set(got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-5)


def fused_dense(parts: list, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split q/k/v LoRAs as one dense LoRA over the fused module (a trainer that trains q|k|v as one
    layer): downs stacked, ups block-diagonal with the scales folded in, the rank mixed by a rotation."""
    down = torch.cat([w.down for w in parts])
    up = torch.block_diag(*[w.up * (w.alpha / w.down.shape[0]) for w in parts])
    mix = torch.linalg.qr(torch.randn(down.shape[0], down.shape[0], generator=torch.Generator().manual_seed(seed)))[0]
    return mix.T @ down, up @ mix


def other_namings(family: str, model, tmp_path: Path) -> dict[str, Path]:
    """The same LoRA as other tools write it (their saving code, named in docs/training.md):
    diffusers/peft (``transformer.<module>``, no alpha), OneTrainer's legacy ``lora_transformer_<module>``;
    Klein: ai-toolkit's and InvokeAI's ``diffusion_model.<BFL>`` A/B (one dense LoRA over q|k|v, no alpha);
    Z-Image: musubi-tuner's ``lora_unet_<module>``, SimpleTuner's ``lycoris_``, ComfyUI's fused
    ``lora_unet_layers_N_attention_qkv`` (musubi's convert_z_image_lora_to_comfy: block-diagonal, alpha·3)."""
    from safetensors.torch import save_file

    layers = kohya.extract_lora(model.denoiser)
    files: dict[str, dict[str, torch.Tensor]] = {"diffusers": {}, "onetrainer": {}}
    for name, w in layers.items():
        files["diffusers"][f"transformer.{name}.lora_A.weight"] = w.down
        files["diffusers"][f"transformer.{name}.lora_B.weight"] = w.up * (w.alpha / w.down.shape[0])
        flat = "lora_transformer_" + name.replace(".", "_")
        files["onetrainer"].update({f"{flat}.lora_down.weight": w.down, f"{flat}.lora_up.weight": w.up})
        files["onetrainer"][f"{flat}.alpha"] = torch.tensor(w.alpha)
    if family == "flux2_klein":
        from lorawb.families.flux2_klein import klein_module

        ai: dict[str, torch.Tensor] = {}
        groups: dict[str, list] = {}
        for name, w in layers.items():
            bfl, index, _ = klein_module(name)
            groups.setdefault(bfl, []).append((index, w))
        for bfl, parts in groups.items():
            parts = [w for _, w in sorted(parts, key=lambda t: t[0])]
            if len(parts) == 1:
                down, up = parts[0].down, parts[0].up * (parts[0].alpha / parts[0].down.shape[0])
            else:
                down, up = fused_dense(parts)
            ai[f"diffusion_model.{bfl}.lora_A.weight"], ai[f"diffusion_model.{bfl}.lora_B.weight"] = down, up
        files["ai-toolkit"] = ai
    else:
        musubi, lycoris, comfy = {}, {}, {}
        for name, w in layers.items():
            flat = name.replace(".", "_")
            for prefix, out in (("lora_unet_", musubi), ("lycoris_", lycoris)):
                out.update({f"{prefix}{flat}.lora_down.weight": w.down, f"{prefix}{flat}.lora_up.weight": w.up})
                out[f"{prefix}{flat}.alpha"] = torch.tensor(w.alpha)
            if ".attention.to_q" in name or ".attention.to_k" in name or ".attention.to_v" in name:
                continue
            key = "lora_unet_" + flat.replace("attention_to_out_0", "attention_out")
            comfy.update(
                {
                    f"{key}.lora_down.weight": w.down,
                    f"{key}.lora_up.weight": w.up,
                    f"{key}.alpha": torch.tensor(w.alpha),
                }
            )
        for i in range(2):
            parts = [layers[f"layers.{i}.attention.to_{x}"] for x in "qkv"]
            key = f"lora_unet_layers_{i}_attention_qkv"
            comfy[f"{key}.lora_down.weight"] = torch.cat([w.down for w in parts])
            comfy[f"{key}.lora_up.weight"] = torch.block_diag(*[w.up for w in parts])
            comfy[f"{key}.alpha"] = torch.tensor(3 * parts[0].alpha)
        files.update({"musubi": musubi, "lycoris": lycoris, "comfyui": comfy})
    out = {}
    for what, tensors in files.items():
        out[what] = tmp_path / f"{what}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out[what]))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_every_naming_users_bring_is_read_exactly(family, model_of, tmp_path):
    model = with_lora(model_of(family))
    want = deltas(kohya.extract_lora(model.denoiser))
    namings = other_namings(family, model, tmp_path)
    assert len(namings) == (3 if family == "flux2_klein" else 5)
    for what, path in namings.items():
        back = model.read_lora(path)
        assert not back.unmatched, (what, back.unmatched[:3])
        got = deltas(back.denoiser)
        assert set(got) == set(want), what
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4, msg=f"{what} {name}")


@pytest.mark.parametrize("family,naming", [("flux2_klein", "onetrainer"), ("zimage", "comfyui"), ("zimage", "lorawb")])
def test_init_from_another_naming_starts_where_the_file_ended(family, naming, model_of, tmp_path):
    model = with_lora(model_of(family))
    files = other_namings(family, model, tmp_path) | {"lorawb": write_file(model, tmp_path / "lorawb.safetensors")}
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
        return pipe(
            prompt="zkx_mira, forest", generator=torch.Generator().manual_seed(0), guidance_scale=2.0, **kw
        ).images

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


def musubi_klein_names(double: int, single: int) -> set[str]:
    """musubi-tuner's Flux.2 LoRA layer names (networks/lora_flux_2.py, read, not copied): every Linear of
    each DoubleStreamBlock and SingleStreamBlock of its BFL model (not the norms), ``lora_unet_`` + the
    module path with dots as underscores."""
    per_double = ["img_attn.qkv", "img_attn.proj", "img_mlp.0", "img_mlp.2"]
    per_double += [m.replace("img", "txt") for m in per_double]
    names = {f"double_blocks.{i}.{m}" for i in range(double) for m in per_double}
    names |= {f"single_blocks.{i}.{m}" for i in range(single) for m in ("linear1", "linear2")}
    return {"lora_unet_" + n.replace(".", "_") for n in names}


def comfyui_generic_names(model_keys: list[str]) -> set[str]:
    """ComfyUI's generic rule (comfy/lora.py ``model_lora_keys_unet``): each weight ``X.weight`` of its own
    diffusion model takes a LoRA named ``lora_unet_`` + X with dots as underscores, or ``diffusion_model.X``."""
    keys = [k[: -len(".weight")] for k in model_keys if k.endswith(".weight")]
    return {"lora_unet_" + k.replace(".", "_") for k in keys} | {"diffusion_model." + k for k in keys}


def full_size_targets(transformer, family: str) -> tuple[families.Model, list[str], dict]:
    from lorawb.train.lora import add_lora

    spec = families.get(family)
    model = spec.model_class(spec, Path("."), transformer, None, [], [], {}, settings=spec.settings())
    net = NetworkSection(rank=1, alpha=1, target_modules=list(spec.default_targets))
    linear, _ = model.lora_targets(net)
    with torch.device("meta"):
        add_lora(transformer, [], net, family=spec, targets=(linear, []))
    layers = {
        n: kohya.LoraWeights(torch.ones(1, m.in_features), torch.ones(m.out_features, 1), 1.0)
        for n, m in ((n, transformer.get_submodule(n).base_layer) for n in linear)
    }
    return model, linear, layers


def diffusers_targets(pipeline_class: str, path: Path) -> set[str]:
    import diffusers

    state = getattr(diffusers, pipeline_class).lora_state_dict(str(path))
    state = state[0] if isinstance(state, tuple) else state
    return {k.removeprefix("transformer.").rsplit(".lora_", 1)[0] for k in state}


def test_full_size_klein_names_are_musubis_comfyuis_and_diffusers_loads_every_key(tmp_path):
    from diffusers import Flux2Transformer2DModel
    from safetensors.torch import save_file

    from lorawb.toyworld.fullsize import KLEIN_4B_TRANSFORMER

    with torch.device("meta"):
        transformer = Flux2Transformer2DModel(**KLEIN_4B_TRANSFORMER)
    bfl_keys = list(klein_to_bfl(transformer.state_dict()))
    model, linear, layers = full_size_targets(transformer, "flux2_klein")
    assert len(linear) == 5 * 12 + 20 * 2  # every linear of the blocks, as diffusers names them
    tensors = model.lora_tensors(layers, None, torch.float16)
    ours = {k.split(".")[0] for k in tensors}
    assert ours == musubi_klein_names(5, 20)  # 5 x 8 + 20 x 2 = 80, musubi's exactly
    assert ours <= comfyui_generic_names(bfl_keys)
    save_file(tensors, str(tmp_path / "full.safetensors"))
    assert diffusers_targets("Flux2KleinPipeline", tmp_path / "full.safetensors") == set(linear)


def comfyui_zimage_names(config: dict) -> dict[str, str]:
    """ComfyUI's Z-Image LoRA names (comfy/lora.py's Lumina2 branch over comfy/utils.py ``z_image_to_diffusers``,
    read, not copied): each diffusers weight name D of its map takes a LoRA named ``diffusion_model.`` + D
    (also ``transformer.`` + D, ``lycoris_`` ..., and D bare), placed on the ComfyUI weight it maps to;
    q, k and v are row slices of ``attention.qkv``. Returns LoRA name -> ComfyUI weight."""
    out: dict[str, str] = {}
    blocks = [("layers", config["n_layers"], True)]
    blocks += [
        ("context_refiner", config["n_refiner_layers"], False),
        ("noise_refiner", config["n_refiner_layers"], True),
    ]
    for kind, count, modulated in blocks:
        for i in range(count):
            b = f"{kind}.{i}"
            for x in "qkv":
                out[f"{b}.attention.to_{x}"] = f"{b}.attention.qkv.weight"
            out[f"{b}.attention.to_out.0"] = f"{b}.attention.out.weight"
            for w in ("w1", "w2", "w3"):
                out[f"{b}.feed_forward.{w}"] = f"{b}.feed_forward.{w}.weight"
            if modulated:
                out[f"{b}.adaLN_modulation.0"] = f"{b}.adaLN_modulation.0.weight"
    out["all_final_layer.2-1.linear"] = "final_layer.linear.weight"
    out["all_x_embedder.2-1"] = "x_embedder.weight"
    return {"diffusion_model." + k: "diffusion_model." + v for k, v in out.items()}


def test_full_size_zimage_names_are_comfyuis_and_diffusers_loads_every_key(tmp_path):
    from diffusers import ZImageTransformer2DModel
    from safetensors.torch import save_file

    with torch.device("meta"):
        transformer = ZImageTransformer2DModel()  # diffusers' defaults are Z-Image's: dim 3840, 30 layers
    comfy_keys = {"diffusion_model." + k for k in zimage_to_comfy(transformer.state_dict())}
    model, linear, layers = full_size_targets(transformer, "zimage")
    assert len(linear) == 30 * 7  # the main layers' attention and feed-forward
    tensors = model.lora_tensors(layers, None, torch.float16)
    names = {k.rsplit(".lora_", 1)[0] for k in tensors}
    comfy = comfyui_zimage_names(dict(transformer.config))
    assert names <= set(comfy) and {comfy[n] for n in names} <= comfy_keys
    assert {k.rsplit(".", 2)[1] for k in tensors} == {"lora_A", "lora_B"}  # the parts ComfyUI's load_lora reads
    save_file(tensors, str(tmp_path / "full.safetensors"))
    assert diffusers_targets("ZImagePipeline", tmp_path / "full.safetensors") == set(linear)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_lora_family_of_a_file(family, model_of, tmp_path):
    from safetensors.torch import load_file

    from lorawb.matrix.lorafile import read_lora as info

    path = write_file(with_lora(model_of(family)), tmp_path / "x.safetensors")
    # No metadata: Z-Image's names are its own; Klein's BFL names are Flux.1's too
    assert info(path).family == (None if family == "flux2_klein" else "zimage")
    kohya.save_lora(path, load_file(str(path)), families.get(family).lora_metadata())
    assert info(path).family == family
    for version, arch in (("flux_2_klein_4b", "Flux.2-klein-4b/lora"), ("z_image", "Z-Image/lora")):
        meta = {"ss_base_model_version": version, "modelspec.architecture": arch}  # musubi-tuner's
        assert families.lora_family([], meta) == ("flux2_klein" if "klein" in version else "zimage")


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


def test_a_distilled_klein_is_drawn_without_guidance(tiny_flux2_klein, tmp_path):
    import json
    import shutil

    folder = tmp_path / "klein-distilled"
    shutil.copytree(tiny_flux2_klein, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "is_distilled": True}))
    (folder / "lorawb_model.json").unlink()  # no recommendation: the family decides
    assert (load(tiny_flux2_klein).default_cfg, load(folder).default_cfg) == (4.0, 1.0)
    assert load(folder).pipeline().config.is_distilled
