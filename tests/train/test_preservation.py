"""Output preservation (train.preservation = "output"): the LoRA-off prediction on the class prompt,
batched with the step; the adapters off and back on, gradients only through the LoRA, the text cache
covering the class prompts, settings it cannot combine with, exact resume."""

from __future__ import annotations

import pytest
import torch

from lorawb.core.project import Project
from lorawb.errors import ConfigError
from lorawb.train import data as D
from lorawb.train.config import resolve_config
from tests.train.conftest import lora_weights, make_project, train_context

PRESERVE = ["train.preservation=output", "train.preservation_class=woman"]


def test_class_caption_replaces_the_trigger_tag():
    assert D.class_caption("zkx_mira, red outfit, forest", "zkx_mira", "woman") == "woman, red outfit, forest"
    assert D.class_caption("red outfit, Zkx Mira", "zkx_mira", "woman") == "red outfit, woman"  # one tag identity
    assert D.class_caption("red outfit, forest", "zkx_mira", "woman") == "red outfit, forest"  # no trigger
    assert D.class_caption("", "zkx_mira", "woman") == ""


@pytest.mark.parametrize(
    "extra, message",
    [
        (["train.preservation=output"], "needs the class word"),
        (PRESERVE + ["network.train_text_encoder=true"], "network.train_text_encoder: cannot be combined"),
        (PRESERVE + ["dataset.trigger=", "project.trigger="], None),
    ],
)
def test_settings_it_cannot_combine_with_are_clear_errors(tmp_path, tiny_sd1, extra, message):
    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    project = Project.load(root)
    if message is None:  # no trigger anywhere
        text = (root / "lorawb.toml").read_text().replace('trigger = "zkx_mira"', 'trigger = ""')
        (root / "lorawb.toml").write_text(text)
        project = Project.load(root)
        with pytest.raises(ConfigError, match="needs a trigger"):
            resolve_config(project, overrides=PRESERVE)
        return
    with pytest.raises(ConfigError, match=message) as exc:
        resolve_config(project, overrides=extra)
    assert exc.value.hint


def perturb(ctx, seed=3):
    """Give the LoRA non-zero up weights, so the LoRA-on and LoRA-off predictions differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ctx.denoiser.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_adapters_off_is_the_base_model_and_leaves_the_weights(tmp_path, tiny_sd1):
    from lorawb.train.lora import adapters_off

    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    with train_context(root, PRESERVE) as ctx:

        def unet_pred(ctx, noisy, ts, text, time_ids):
            return ctx.model.predict(noisy, ts, text, time_ids)

        batch = ctx.batches.next()
        noised = ctx.model.noised(batch.latents, batch.generator, ctx.cfg.train)
        noisy, ts = noised.noisy, noised.timesteps
        with torch.no_grad():
            base = unet_pred(ctx, noisy, ts, batch.text, batch.time_ids)  # B = 0: the LoRA adds nothing yet
            perturb(ctx)
            before = lora_weights(ctx)
            with_lora = unet_pred(ctx, noisy, ts, batch.text, batch.time_ids)
            with adapters_off(ctx.lora_layers):
                off = unet_pred(ctx, noisy, ts, batch.text, batch.time_ids)
            again = unet_pred(ctx, noisy, ts, batch.text, batch.time_ids)
        assert not torch.allclose(with_lora, base)
        assert torch.allclose(off, base, atol=1e-6)  # off: exactly the base model
        assert torch.equal(again, with_lora)  # and back on
        after = lora_weights(ctx)
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert all(p.requires_grad for p in ctx.lora.unet_params)  # switched back on, still trainable


def test_one_extra_forward_gradients_only_through_the_lora(tmp_path, tiny_sd1):
    from lorawb.train.trainer import diffusion_loss

    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    with train_context(root, PRESERVE) as ctx:
        perturb(ctx)
        calls: list[tuple[int, bool]] = []
        hook = ctx.denoiser.register_forward_hook(
            lambda m, a, o: calls.append((a[0].shape[0], torch.is_grad_enabled()))
        )
        batch = ctx.batches.next()
        assert batch.preserve is not None and batch.preserve_mask.tolist() == [1.0, 1.0]
        frozen = {n: p.detach().clone() for n, p in ctx.denoiser.named_parameters() if "lora_" not in n}
        loss = diffusion_loss(ctx, batch)
        loss.backward()
        hook.remove()
        assert calls == [(2, False), (4, True)]  # the LoRA-off pass without grad, then one batched pass
        ups = [p for n, p in ctx.denoiser.named_parameters() if "lora_B" in n]
        assert ups and all(p.grad is not None and p.grad.abs().sum() > 0 for p in ups)
        grads = {n: p.grad for n, p in ctx.denoiser.named_parameters() if p.grad is not None}
        assert grads and all("lora_" in n for n in grads)  # the base weights get no gradient
        assert all(torch.equal(p, frozen[n]) for n, p in ctx.denoiser.named_parameters() if "lora_" not in n)

        # The preservation term is really in the gradient: without it (weight ~0) the gradient differs.
        ctx.optimizer.zero_grad(set_to_none=True)
        batch.generator.manual_seed(11)
        with_pres = diffusion_loss(ctx, batch)
        batch.generator.manual_seed(11)
        plain_batch = type(batch)(batch.latents, batch.text, batch.time_ids, batch.generator)
        without = diffusion_loss(ctx, plain_batch)
        assert with_pres.item() > without.item()  # the LoRA moved the class prompt: a preservation loss


def test_preservation_is_zero_at_the_start(tmp_path, tiny_sd1):
    """A fresh LoRA (B = 0) draws the class prompt exactly as the base model: no preservation loss."""
    from lorawb.train.trainer import diffusion_loss

    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    with train_context(root, PRESERVE) as ctx:
        batch = ctx.batches.next()
        batch.generator.manual_seed(5)
        with torch.no_grad():
            pres = diffusion_loss(ctx, batch).item()
        batch.generator.manual_seed(5)
        plain_batch = type(batch)(batch.latents, batch.text, batch.time_ids, batch.generator)
        with torch.no_grad():
            plain = diffusion_loss(ctx, plain_batch).item()
        assert pres == pytest.approx(plain, rel=1e-5)


def test_text_cache_covers_the_class_prompts_and_latent_cache_stays(tmp_path, tiny_sd1):
    root = make_project(tmp_path / "p", tiny_sd1, n_images=3)
    with train_context(root, PRESERVE) as ctx:
        assert ctx.batches.latents is not None  # latent caching works with preservation
        cached = set(ctx.batches.text._mem)
        for it in ctx.batches.items:
            cap = ctx.batches.caption_for(it.caption)
            assert cap in cached and ctx.batches.class_caption(cap) in cached
            assert ctx.batches.class_caption(cap).startswith("woman, ")
        n = len(ctx.batches.text)
        ctx.batches.next()
        assert len(ctx.batches.text) == n  # nothing encoded during the step
    # Without a text cache (shuffled tags) the class prompts are encoded with each step.
    with train_context(root, PRESERVE + ["dataset.shuffle_tags=true"]) as ctx:
        assert ctx.batches.text is None
        batch = ctx.batches.next()
        assert batch.preserve is not None and batch.preserve.hidden.shape == batch.text.hidden.shape


def test_reg_rows_are_not_preserved(tmp_path, tiny_sd1):
    from tests.train.test_reg import reg_folder

    root = make_project(tmp_path / "p", tiny_sd1, n_images=2)
    reg_folder(root / "reg", "1_woman", 2)
    with train_context(root, PRESERVE + ["train.batch_size=1"]) as ctx:
        stream = ctx.batches.stream
        for _ in range(stream.batches_per_epoch):
            epoch, index, idxs = stream.next()
            part = ctx.batches.prepare(epoch, index, idxs)
            assert part["preserve_mask"] == [0.0 if ctx.batches.items[idxs[0]].is_reg else 1.0]


@pytest.mark.slow
def test_resume_with_preservation_is_exact(tmp_path, tiny_sd1):
    from tests.train.test_resume import assert_same_state, resume_payload, straight_and_resumed

    root = make_project(tmp_path / "proj", tiny_sd1, n_images=3)
    project = Project.load(root)
    over = PRESERVE + ["train.max_steps=4", "train.grad_accum=2", "network.dropout=0.1", "dataset.flip=true"]
    cfg = resolve_config(project, overrides=over)
    straight, run = straight_and_resumed(project, cfg, stop_at=2)
    assert_same_state(resume_payload(straight), resume_payload(run))
    from safetensors import safe_open

    with safe_open(str(next(run.checkpoints.glob("*-000004.safetensors"))), "pt") as f:
        meta = f.metadata()
    assert meta["lorawb_preservation"] == "output" and meta["lorawb_preservation_class"] == "woman"
