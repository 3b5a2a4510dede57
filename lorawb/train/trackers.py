"""Logging a run to TensorBoard and Weights & Biases, as kohya, OneTrainer and diffusers runs do.

Off unless ``[train] log_with`` names them; the app's own monitor never needs them (it reads
events.jsonl). Accelerate's tracker classes do the writing:

    tensorboard   runs/<id>/tensorboard/events.out.tfevents.*  (so `tensorboard --logdir runs/` works)
    wandb         a Weights & Biases run named after the run id, files under runs/<id>/wandb/

Scalars: ``loss/current``, ``loss/average`` (EMA), ``loss/validation``, ``lr/unet``,
``lr/textencoder``, ``speed/it_s``; sample images as ``samples/<n>``. Only the main process logs.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from lorawb.errors import ConfigError
from lorawb.train.runfolder import RunFolder

EXTRAS = {"tensorboard": "lorawb[tensorboard]", "wandb": "lorawb[wandb]"}


def check_available(names: list[str]) -> None:
    """Raise ConfigError, before any training, for a tracker whose package is not installed."""
    for name in names:
        needs = ("tensorboard", "tensorboardX") if name == "tensorboard" else ("wandb",)
        if not any(importlib.util.find_spec(mod) for mod in needs):
            raise ConfigError(
                f"train.log_with {name!r} needs the {needs[0]} package",
                hint=f"pip install '{EXTRAS[name]}', or remove {name!r} from train.log_with",
            )


def start_trackers(names: list[str], run: RunFolder, config: dict[str, Any]) -> list[Any]:
    """The trackers named in ``train.log_with``, started (call on the main process only)."""
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    trackers: list[Any] = []
    for name in names:
        if name == "tensorboard":
            tracker = TensorBoardTracker("tensorboard", run.path, flush_secs=10)
        else:
            # A resumed run goes on in the same wandb run (its id is the run id).
            tracker = WandBTracker("lorawb", name=run.id, id=_wandb_id(run.id), resume="allow", dir=str(run.path))
        tracker.start()
        tracker.store_init_configuration(flat_config(config))
        trackers.append(tracker)
    return trackers


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """``{"train": {"seed": 1}}`` -> ``{"train.seed": 1}``; lists become strings (hparams take scalars only)."""
    out: dict[str, Any] = {}
    for section, values in config.items():
        for key, value in values.items():
            out[f"{section}.{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def log_scalars(trackers: list[Any], values: dict[str, float], step: int) -> None:
    for tracker in trackers:
        tracker.log(values, step=step)


def log_images(trackers: list[Any], images: dict[str, Any], step: int) -> None:
    """``images``: name -> one HWC uint8 array."""
    import numpy as np

    for tracker in trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({k: np.asarray(v)[None] for k, v in images.items()}, step=step, dataformats="NHWC")
        else:
            tracker.log_images({k: [np.asarray(v)] for k, v in images.items()}, step=step)


def finish_trackers(trackers: list[Any]) -> None:
    for tracker in trackers:
        tracker.finish()


def _wandb_id(run_id: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]", "-", run_id)[:64]
