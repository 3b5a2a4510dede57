"""LoRA files a matrix tests: a run's checkpoints by step, and any .safetensors LoRA by path.

``read_lora`` looks at a file without loading it into a model: its key naming (kohya's
``lora_unet_…``/``lora_te…`` as lorawb and kohya write them, SDXL's LDM block names
``lora_unet_input_blocks_…`` included, or diffusers/peft's ``unet.….lora_A.weight``), the
family it was made for, whether it adapts the text encoders, and its ``ss_*`` metadata.
Loading itself is diffusers' ``load_lora_weights``, which reads all of these namings (see
lorawb.matrix.generate); this module lets a wrong file fail early with a clear message
instead of half-way through a matrix. No torch here: safetensors' header is JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lorawb import families
from lorawb.core.run_dataset import MANIFEST, RunDataset, from_metadata, with_manifest
from lorawb.errors import ModelError
from lorawb.train.events import read_events
from lorawb.train.modelpath import PICKLE_EXTS, safetensors_header
from lorawb.train.runfolder import RunFolder

STEP_RE = re.compile(r"-(\d{4,})\.safetensors$")


@dataclass(frozen=True)
class LoraInfo:
    path: Path
    naming: str  # "kohya" | "diffusers"
    family: str | None  # the model family it was made for (lorawb.families), None when it cannot tell
    text_encoder: bool
    layers: int
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def step(self) -> int | None:
        raw = self.metadata.get("ss_steps")
        if raw and raw.isdigit():
            return int(raw)
        m = STEP_RE.search(self.path.name)
        return int(m.group(1)) if m else None

    @property
    def trigger(self) -> str:
        return self.metadata.get("lorawb_trigger") or self.metadata.get("modelspec.trigger_phrase", "")


def read_lora(path: Path | str, allow_pickle: bool = False) -> LoraInfo:
    """What a LoRA file holds (naming, family, text-encoder layers, metadata), checked to be a LoRA."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("LoRA file not found", path=path)
    if path.suffix.lower() in PICKLE_EXTS:
        if not allow_pickle:
            raise ModelError(
                f"refusing a pickle LoRA ({path.suffix}): it can run arbitrary code when loaded",
                path=path,
                hint="convert it to .safetensors",
            )
        return LoraInfo(path, "unknown", None, False, 0)
    header = safetensors_header(path)
    meta = header.pop("__metadata__", None) or {}
    keys = list(header)
    kohya = [k for k in keys if k.startswith(("lora_unet_", "lora_te"))]
    peft = [k for k in keys if ".lora_A." in k or ".lora_B." in k or ".lora.down." in k or ".lora_down." in k]
    if not kohya and not peft:
        raise ModelError(
            "this file holds no LoRA weights (no lora_unet_/lora_te keys, no lora_A/lora_B)",
            path=path,
            hint="is it a full model checkpoint? point the matrix at LoRA files",
        )
    naming = "kohya" if kohya else "diffusers"
    layers = {k.rsplit(".", 2)[0] if naming == "diffusers" else k.split(".")[0] for k in (kohya or peft)}
    te = any(k.startswith(("lora_te", "text_encoder", "te_", "te1", "te2")) for k in keys)
    return LoraInfo(path, naming, families.lora_family(keys, meta), te, len(layers), meta)


def check_family(info: LoraInfo, family: str) -> None:
    """Refuse a LoRA made for another family than the base model's (families whose LoRAs share a
    layout, such as SD1 and SD2, accept each other's)."""
    if info.family is None:
        return
    if not families.get(family).accepts_lora_of(families.get(info.family)):
        raise ModelError(
            f"this LoRA was made for {info.family.upper()}, the base model is {family.upper()}",
            path=info.path,
            hint="test it on a base model of its own family (matrix.base_model)",
        )


# --- a run's checkpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCheckpoint:
    step: int
    path: Path


def run_checkpoints(run: RunFolder) -> list[RunCheckpoint]:
    """The run's checkpoints still on disk, by step (from its events, and files its events missed)."""
    found: dict[int, Path] = {}
    for ev in read_events(run.events):
        if ev.get("type") == "checkpoint" and isinstance(ev.get("step"), int) and ev.get("path"):
            p = run.path / str(ev["path"])
            if p.is_file():
                found[int(ev["step"])] = p
    if run.checkpoints.is_dir():
        for p in sorted(run.checkpoints.glob("*.safetensors")):
            m = STEP_RE.search(p.name)
            if m and int(m.group(1)) not in found:
                found[int(m.group(1))] = p
    return [RunCheckpoint(s, found[s]) for s in sorted(found)]


def spread(checkpoints: list[RunCheckpoint], at_most: int) -> list[RunCheckpoint]:
    """At most ``at_most`` checkpoints spread evenly over the run, the last one always included."""
    n = len(checkpoints)
    if n <= at_most:
        return list(checkpoints)
    if at_most <= 1:
        return checkpoints[-1:]
    picks = sorted({round(i * (n - 1) / (at_most - 1)) for i in range(at_most)})
    return [checkpoints[i] for i in picks]


# --- the dataset a run trained on -------------------------------------------------------------------


def run_dataset(run: RunFolder) -> RunDataset | None:
    """What ``run`` trained on: its latest LoRA file's kohya metadata, and its dataset manifest when it
    wrote one (lorawb.core.run_dataset); None when it has neither yet."""
    import json

    ds = None
    files = [c.path for c in run_checkpoints(run)] + sorted(
        run.path.glob("*.safetensors"), key=lambda p: p.stat().st_mtime
    )
    for path in reversed(files):
        try:
            meta = safetensors_header(path).get("__metadata__") or {}
        except ModelError:
            continue
        ds = from_metadata(meta, source=path.name)
        if ds is not None:
            break
    manifest = run.path / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            ds = with_manifest(ds, data, source=MANIFEST)
    return ds
