"""Running a backend over many images: the cache first, decode threads, batches, progress and cancel.

Images are decoded (by ``lorawb.core.dataset.load_image``, the project's one safe reader)
and prepared for the model in worker threads while the model runs on the previous batch,
so the model is never waiting on Pillow. An image that cannot be read is skipped and
named with the reason; the others go on. ``should_stop`` is asked between batches:
what was predicted before a cancel is kept (and cached).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lorawb.core.dataset import default_workers, load_image
from lorawb.errors import ImageError, LorawbError, ModelError
from lorawb.tagger.backends import Backend
from lorawb.tagger.cache import ImageKey, PredictionCache, image_key
from lorawb.tagger.labels import Prediction

Progress = Callable[[int, int], None]  # (images done, images in all)


@dataclass
class RunResult:
    """What the model said about each image it read, and the images it could not read."""

    predictions: dict[str, Prediction] = field(default_factory=dict)  # image (relative) -> labels
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, why)
    cached: int = 0  # answered from the cache
    computed: int = 0  # run through the model now
    cancelled: bool = False
    elapsed_s: float = 0.0


def predict_images(
    root: str | os.PathLike[str],
    images: list[str],
    backend: Backend,
    *,
    cache: PredictionCache | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
) -> RunResult:
    """Labels for each of ``images`` (paths relative to ``root``), from the cache or the model."""
    started = time.perf_counter()
    result = RunResult()
    total = len(images)
    keys: dict[str, ImageKey] = {}
    for rel in images:
        try:
            keys[rel] = image_key(os.path.join(root, rel))
        except OSError as exc:
            result.skipped.append((rel, f"cannot read file: {exc.strerror or exc}"))
    if cache is not None and keys:
        hits = cache.get_many(backend.key, list(set(keys.values())))
        for rel, key in keys.items():
            if key in hits:
                result.predictions[rel] = hits[key]
        result.cached = len(result.predictions)
    todo = [rel for rel in images if rel in keys and rel not in result.predictions]
    done = result.cached + len(result.skipped)
    if progress:
        progress(done, total)

    def prepare(rel: str) -> Any:
        return backend.prepare(load_image(os.path.join(root, rel), min_side=backend.min_side))

    batch: list[tuple[str, Any]] = []

    def flush() -> None:
        nonlocal done
        if not batch:
            return
        try:
            preds = backend.predict([x for _, x in batch])
        except LorawbError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend library's own error: name the images and the model
            first = batch[0][0]
            raise ModelError(f"{backend.name} failed on {first} and {len(batch) - 1} more: {exc}") from exc
        for (rel, _), pred in zip(batch, preds, strict=True):
            result.predictions[rel] = pred
        if cache is not None:
            cache.put_many(backend.key, [(keys[rel], pred) for (rel, _), pred in zip(batch, preds, strict=True)])
        result.computed += len(batch)
        done += len(batch)
        batch.clear()
        if progress:
            progress(done, total)

    n_workers = max(1, workers if workers is not None else default_workers())
    ahead = backend.batch_size * 2 + n_workers  # decoded images waiting: bounded, a batch and a half ahead
    pending: deque[tuple[str, Future[Any]]] = deque()
    stop = should_stop or (lambda: False)
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="lorawb-tag") as pool:
        queue = iter(todo)
        try:
            while True:
                while len(pending) < ahead:
                    rel = next(queue, None)
                    if rel is None:
                        break
                    pending.append((rel, pool.submit(prepare, rel)))
                if not pending:
                    break
                if stop():
                    result.cancelled = True
                    break
                rel, fut = pending.popleft()
                try:
                    batch.append((rel, fut.result()))
                except ImageError as exc:
                    result.skipped.append((rel, exc.message))
                    done += 1
                    continue
                except Exception as exc:  # noqa: BLE001 - one odd image must not stop the run: name it
                    result.skipped.append((rel, f"cannot prepare it for the model: {exc}"))
                    done += 1
                    continue
                if len(batch) >= backend.batch_size:
                    flush()
            if not result.cancelled:
                flush()
        finally:
            for _, fut in pending:
                fut.cancel()
    result.elapsed_s = time.perf_counter() - started
    return result
