"""The tagger backends behind one small interface, and how a model named by the user is found.

A backend prepares one decoded image (CPU work, run in the decode threads) and predicts
labels for a batch of prepared images. Its ``key`` names the model and every setting
that changes its output: the cache is keyed by it.

``open_backend`` takes what the user named (``--model``, ``[tagger] model``): ``toyworld``,
a short name from ``[tagger.models]``, or a folder (relative to the project, else to the
current folder). The folder's files say which backend it is:

- ``model.onnx`` + ``selected_tags.csv``: a WD-style tagger (``lorawb.tagger.wd``);
- ``config.json`` (+ weights and processor files): a transformers captioning model
  (``lorawb.tagger.captioner``).

Opened backends are kept for the process (the app's second preview does not reload a model).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from lorawb.core.project import Project
from lorawb.errors import ModelError
from lorawb.tagger.labels import Prediction

TOYWORLD = "toyworld"
LAYOUTS = (
    "a WD tagger folder (model.onnx + selected_tags.csv), a transformers captioning folder "
    "(config.json, model.safetensors, preprocessor_config.json and the tokenizer files), or `toyworld`"
)


class Backend(Protocol):
    key: str  # the model and its output-changing settings: the cache key
    name: str  # shown to the user: "WD tagger wd-v3 (CPUExecutionProvider)"
    confidence: str  # what its scores are: "sigmoid probability of model.onnx", or that there are none
    batch_size: int
    min_side: int | None  # decode JPEGs at a reduced scale down to this (None: full size)

    def prepare(self, image: Image.Image) -> Any:
        """One decoded image -> the model's input for it (runs in a decode thread)."""
        ...

    def predict(self, batch: list[Any]) -> list[Prediction]:
        """Labels for each prepared image of the batch, in order."""
        ...


@dataclass(frozen=True)
class BackendOptions:
    """How to open a model: what the user allowed and asked for (not the tag rules)."""

    batch_size: int = 8
    prompt: str = ""
    max_new_tokens: int = 40
    trust_remote_code: bool = False
    device: str = "auto"  # auto | cpu | cuda


_open: dict[tuple[str, BackendOptions, tuple[int, ...]], Backend] = {}
_lock = threading.Lock()


def resolve_model(project: Project | None, spec: str) -> str | Path:
    """``toyworld`` or the model folder that ``spec`` names; ModelError says what was looked for."""
    spec = spec.strip()
    if not spec:
        raise ModelError(
            "no tagger model named",
            hint="pass --model PATH (a model folder) or --model toyworld, or set [tagger] model in lorawb.toml",
        )
    if spec == TOYWORLD:
        return TOYWORLD
    if project is not None and spec in project.config.tagger.models:
        target = project.config.tagger.models[spec].strip()
        if target == TOYWORLD:
            return TOYWORLD
        path = project.resolve(target)
        if not path.exists():
            raise ModelError(
                f"[tagger.models] {spec} = {target!r}: no such file or folder",
                path=project.config_path,
                hint=f"expected {LAYOUTS}",
            )
        return path
    candidates = [project.resolve(spec)] if project is not None else []
    candidates.append(Path(spec).expanduser().resolve())
    for c in candidates:
        if c.exists():
            return c
    known = ", ".join(sorted(project.config.tagger.models)) if project and project.config.tagger.models else ""
    raise ModelError(
        f"no such model: {spec}",
        path=candidates[0],
        hint=f"give a folder holding {LAYOUTS}" + (f"; names in [tagger.models]: {known}" if known else ""),
    )


def open_backend(project: Project | None, spec: str, options: BackendOptions) -> Backend:
    """The backend for the model ``spec`` names, opened once per process for the same files and options."""
    where = resolve_model(project, spec)
    stamp = _stamp(where)
    cache_key = (str(where), options, stamp)
    with _lock:
        backend = _open.get(cache_key)
        if backend is None:
            backend = _load(where, options)
            if len(_open) >= 4:  # models are big: keep the few most recent
                _open.pop(next(iter(_open)))
            _open[cache_key] = backend
    return backend


def _load(where: str | Path, options: BackendOptions) -> Backend:
    if where == TOYWORLD:
        from lorawb.tagger.toy import ToyworldBackend

        return ToyworldBackend(options)
    path = Path(where)
    folder = path.parent if path.is_file() else path
    if (path.is_file() and path.suffix.lower() == ".onnx") or (folder / "model.onnx").is_file():
        from lorawb.tagger.wd import WDBackend

        onnx = path if path.is_file() else folder / "model.onnx"
        return WDBackend(onnx, folder / "selected_tags.csv", options)
    if (folder / "config.json").is_file():
        from lorawb.tagger.captioner import CaptionerBackend

        return CaptionerBackend(folder, options)
    present = sorted(p.name for p in folder.iterdir())[:8] if folder.is_dir() else []
    raise ModelError(
        "not a tagger or captioning model folder" + (f" (it holds {', '.join(present)})" if present else ""),
        path=folder,
        hint=f"expected {LAYOUTS}",
    )


def _stamp(where: str | Path) -> tuple[int, ...]:
    """The model files' sizes and times: a model replaced on disk is opened afresh."""
    if where == TOYWORLD:
        return ()
    path = Path(where)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    out: list[int] = []
    for f in files[:64]:
        try:
            st = f.stat()
        except OSError:
            continue
        out += [st.st_size, st.st_mtime_ns]
    return tuple(out)


def file_identity(*paths: Path) -> str:
    """A short identity of model files (path, size, mtime) for cache keys."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
        except OSError:
            h.update(f"{p}|missing;".encode())
    return h.hexdigest()


def missing_package(package: str, purpose: str, hint: str) -> ModelError:
    """The error for an optional dependency that is not installed: what to install."""
    return ModelError(f"{purpose} needs the Python package {package!r}, which is not installed", hint=hint)
