"""The speed and memory levers (lorawb.train.speed): each does what it says and falls back cleanly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from lorawb.core.project import Project
from lorawb.train import speed as S
from lorawb.train.config import TrainConfig, resolve_config
from lorawb.train.events import read_events
from lorawb.train.process import start_run
from tests.train.conftest import make_project, train_context


@pytest.fixture(scope="module")
def sd1_root(tmp_path_factory, tiny_sd1) -> Path:
    return make_project(tmp_path_factory.mktemp("speed") / "proj", tiny_sd1, n_images=2)


def cfg_with(**train) -> TrainConfig:
    cfg = TrainConfig()
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


# --- the loss is read off the device only when a step is logged ------------------------------------


def test_loss_meter_averages_since_the_last_take():
    m = S.LossMeter()
    for x in (1.0, 2.0, 6.0):
        m.add(torch.tensor(x))
    assert m.take() == pytest.approx(3.0)
    m.add(torch.tensor(5.0))
    assert m.take() == pytest.approx(5.0)
    assert m.take() != m.take()  # nothing added since: NaN, never a stale value


def test_log_interval_is_every_step_on_cpu_and_every_tenth_on_a_gpu():
    assert S.log_interval(cfg_with(), torch.device("cpu")) == 1
    assert S.log_interval(cfg_with(), torch.device("cuda")) == S.GPU_LOG_EVERY == 10
    assert S.log_interval(cfg_with(log_every_n_steps=3), torch.device("cuda")) == 3


def step_losses(root: Path, overrides: list[str]) -> dict[int, float]:
    project = Project.load(root)
    run = start_run(project, resolve_config(project, overrides=["train.max_steps=7", *overrides]), detach=False)
    return {e["step"]: e["loss"] for e in read_events(run.events) if e["type"] == "step"}


@pytest.mark.slow
def test_a_logged_loss_is_the_mean_of_the_steps_since_the_last_event(sd1_root):
    every = step_losses(sd1_root, ["train.log_every_n_steps=1"])
    third = step_losses(sd1_root, ["train.log_every_n_steps=3"])
    assert sorted(every) == list(range(1, 8))
    assert sorted(third) == [3, 6, 7]  # and the last step, whatever the interval
    assert third[3] == pytest.approx(sum(every[s] for s in (1, 2, 3)) / 3, rel=1e-5)
    assert third[6] == pytest.approx(sum(every[s] for s in (4, 5, 6)) / 3, rel=1e-5)
    assert third[7] == pytest.approx(every[7], rel=1e-5)


def test_a_nan_loss_stops_the_run_at_the_next_logged_step():
    from lorawb.train.trainer import Context, TrainingError, record_step

    class Ctx:  # what record_step reads of a Context
        state = type("St", (), {"step": 2})()
        max_steps = 10
        log_every = 2
        meter = S.LossMeter()
        rate = __import__("lorawb.train.trainer", fromlist=["Rate"]).Rate()
        acc = type("Acc", (), {"num_processes": 1})()

    ctx = Ctx()
    ctx.meter.add(torch.tensor(1.0))
    ctx.meter.add(torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="loss is nan at step 2"):
        record_step(ctx, 0.0)  # type: ignore[arg-type]
    assert Context  # the real class the stand-in mirrors


# --- fused AdamW, compile, channels-last -----------------------------------------------------------


def test_adamw_is_fused_on_cuda_only_unless_asked():
    assert S.use_fused_adamw(cfg_with(), torch.device("cuda")) is True
    assert S.use_fused_adamw(cfg_with(), torch.device("cpu")) is None
    assert S.use_fused_adamw(cfg_with(optimizer="adamw_fused"), torch.device("cpu")) is True
    assert S.use_fused_adamw(cfg_with(optimizer="adamw8bit"), torch.device("cuda")) is None


def test_compile_without_a_cpp_compiler_stays_eager(monkeypatch, caplog):
    monkeypatch.setattr(S.shutil, "which", lambda name: None)
    net = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.WARNING):
        assert S.compile_unet(net, torch.device("cpu"), logging.getLogger("t")) is False
    assert "no C++ compiler" in caplog.text
    assert getattr(net, "_compiled_call_impl", None) is None


def test_compile_that_cannot_start_stays_eager(monkeypatch, caplog):
    monkeypatch.setattr(S.shutil, "which", lambda name: "/usr/bin/" + name)
    net = torch.nn.Linear(2, 2)

    def broken(*a, **k):
        raise RuntimeError("backend unavailable")

    monkeypatch.setattr(net, "compile", broken)
    with caplog.at_level(logging.WARNING):
        assert S.compile_unet(net, torch.device("cpu"), logging.getLogger("t")) is False
    assert "backend unavailable; training eagerly" in caplog.text
    assert torch.equal(net(torch.ones(1, 2)), net(torch.ones(1, 2)))  # still runs


@pytest.mark.slow
def test_channels_last_changes_the_layout_not_the_loss(sd1_root):
    from lorawb.train.trainer import train_step

    def two(overrides):
        with train_context(sd1_root, ["train.max_steps=2", *overrides]) as ctx:
            losses = [float(train_step(ctx)) for _ in range(2)]
            conv = next(m for m in ctx.denoiser.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
            return losses, conv.weight.is_contiguous(memory_format=torch.channels_last)

    plain, plain_cl = two([])
    cl, cl_cl = two(["train.channels_last=true"])
    assert (plain_cl, cl_cl) == (False, True)
    assert cl == pytest.approx(plain, rel=1e-4)


# --- parking the frozen networks the caches make idle ----------------------------------------------


class Recorder(torch.nn.Module):
    def __init__(self, log: list, name: str) -> None:
        super().__init__()
        self.log, self.name = log, name

    def to(self, *args, **kwargs):  # type: ignore[override]
        self.log.append((self.name, str(args[0])))
        return self


def test_parking_moves_idle_networks_off_the_gpu_and_back_for_samples():
    log: list = []
    model = type("M", (), {"text_encoders": [Recorder(log, "te1"), Recorder(log, "te2")], "vae": Recorder(log, "vae")})
    p = S.Parking(model, torch.device("cuda"), text_cached=True, latents_cached=False)
    assert p.park() == ["text encoders"]
    assert log == [("te1", "cpu"), ("te2", "cpu")]  # the VAE encodes every step: it stays
    log.clear()
    with p.unparked():
        assert log == [("te1", "cuda"), ("te2", "cuda")]
    assert log[2:] == [("te1", "cpu"), ("te2", "cpu")]


def test_parking_does_nothing_on_a_cpu_run():
    log: list = []
    model = type("M", (), {"text_encoders": [Recorder(log, "te1")], "vae": Recorder(log, "vae")})
    p = S.Parking(model, torch.device("cpu"), text_cached=True, latents_cached=True)
    assert p.park() == []
    with p.unparked():
        pass
    assert log == []


@pytest.mark.slow
def test_a_cached_run_parks_and_still_samples(sd1_root, monkeypatch):
    """On a CPU run parking is a no-op; force it (as on a GPU) and the samples still draw."""
    parked: list = []
    real_park = S.Parking.park

    def park(self):
        parked.append(self.text)
        self.parked = True  # as after a move off the GPU: unparked() moves them back (to the CPU here)
        return real_park(self)

    monkeypatch.setattr(S.Parking, "park", park)
    project = Project.load(sd1_root)
    overrides = ["train.max_steps=2", "sample.prompts=['zkx_mira, forest']", "sample.every_n_steps=2"]
    run = start_run(project, resolve_config(project, overrides=overrides), detach=False)
    events = read_events(run.events)
    assert parked and parked[0] is True
    assert [e["step"] for e in events if e["type"] == "sample"] == [2]
