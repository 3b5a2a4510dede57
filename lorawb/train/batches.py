"""Model inputs for each step: the batch stream turned into latents and text conditioning.

``Batches.next()`` gives the next micro-batch: latents sampled from the cached VAE posterior (or
freshly encoded images, decoded in a helper thread while the previous step computes) and the
captions' conditioning (cached, or encoded now). Per-batch noise comes from a generator seeded by
(seed, epoch, index), so a resumed run draws exactly the same numbers.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lorawb.families import Model, TextCond
from lorawb.train import data as D
from lorawb.train.caches import LatentCache, TextCache
from lorawb.train.config import TrainConfig
from lorawb.train.runfolder import RunFolder


@dataclass
class Batch:
    latents: torch.Tensor  # scaled latents (B, C, h, w)
    text: TextCond
    time_ids: torch.Tensor  # (B, 6): original h, w, crop top, left, target h, w
    generator: torch.Generator  # noise and timesteps for this micro-batch
    weights: torch.Tensor | None = None  # (B,) loss weight per image (reg images: prior_loss_weight)
    preserve: TextCond | None = None  # output preservation: the class prompts' conditioning, row for row
    preserve_mask: torch.Tensor | None = None  # (B,) 1 where a row has a class prompt to preserve


class Batches:
    """Turns the batch stream into model inputs: cached or fresh latents, cached or fresh text."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: Model,
        dataset: D.DatasetInfo,
        run: RunFolder,
        log: logging.Logger,
        num_processes: int = 1,
        rank: int = 0,
    ) -> None:
        self.cfg, self.model, self.items = cfg, model, dataset.train_items
        self.preserving = cfg.train.preservation == "output"
        self.num_processes, self.rank = num_processes, rank
        self.device = model.vae.device
        self.stream = D.BatchStream(self.items, cfg.train.batch_size, cfg.train.seed)
        ds = cfg.dataset
        self.latents: LatentCache | None = None
        if ds.cache_latents and ds.crop == "random":
            log.info("latent cache off: random crops differ every time (use dataset.crop = 'center' to cache)")
        elif ds.cache_latents:
            t0 = time.time()
            self.latents = LatentCache(cache_root(run) / "latents", model, ds.crop)
            self.latents.fill(self.items, (False, True) if ds.flip else (False,))
            self.latents.move_to(self.device)
            log.info(
                "latent cache: %d reused, %d encoded in %.1f s",
                self.latents.hits,
                self.latents.misses,
                time.time() - t0,
            )
        self.text: TextCache | None = None
        if D.text_is_cached(cfg):
            self.text = TextCache(model)
            captions = {self.caption_for(it.caption, is_reg=it.is_reg) for it in self.items}
            if ds.caption_dropout > 0:
                captions.add("")
            if self.preserving:  # the class prompts are fixed too: encoded once with the rest
                captions |= {self.class_caption(c) for c in captions}
            self.text.fill(captions)
            log.info("text cache: %d distinct captions encoded once", len(self.text))
        self.pos = D.Position()
        self._pending: collections.deque[tuple[D.Position, Any]] = collections.deque()
        # Decoding images overlaps the step only when there is decoding to do (no latent cache).
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lorawb-data") if self.latents is None else None

    def caption_for(self, caption: str, rng: Any = None, is_reg: bool = False) -> str:
        import random

        ds = self.cfg.dataset
        return D.transform_caption(
            caption,
            ds.trigger,
            rng or random.Random(0),
            keep_tokens=ds.keep_tokens,
            shuffle=ds.shuffle_tags if rng else False,
            tag_dropout=ds.tag_dropout if rng else 0.0,
            caption_dropout=ds.caption_dropout if rng else 0.0,
            add_trigger=ds.add_trigger and not is_reg,  # a reg image shows the class, not the character
            triggers=[c.trigger for c in ds.characters],
        )

    def class_caption(self, caption: str) -> str:
        """The preservation prompt of a trained caption: the trigger replaced by the class word."""
        return D.class_caption(caption, self.cfg.dataset.trigger, self.cfg.train.preservation_class)

    def seek(self, pos: D.Position) -> None:
        """Continue the data order from ``pos`` (resume)."""
        self._pending.clear()
        self.stream.pos = D.Position(**vars(pos))
        self.pos = D.Position(**vars(pos))

    def next(self) -> Batch:
        """This process's next micro-batch (under N processes, every N-th of the shared stream).

        Without a latent cache, image decoding for the next batches runs in a helper thread while
        the current step computes. ``self.pos`` is the position after the batch returned (what
        resume records), however far the prefetch has read ahead.
        """
        while len(self._pending) < (2 if self._pool else 1):
            mine = None
            for r in range(self.num_processes):
                got = self.stream.next()
                if r == self.rank:
                    mine = got
            assert mine is not None
            after = D.Position(**vars(self.stream.pos))
            work = self._pool.submit(self.prepare, *mine) if self._pool else _Done(self.prepare(*mine))
            self._pending.append((after, work))
        after, work = self._pending.popleft()
        self.pos = after
        return self.finish(work.result())

    def prepare(self, epoch: int, index: int, idxs: list[int]) -> dict[str, Any]:
        """The CPU half of a batch: captions, size/crop ids, and pixels or cached posteriors."""
        ds, seed = self.cfg.dataset, self.cfg.train.seed
        out: dict[str, Any] = {"seed": seed_for("noise", seed, epoch, index), "captions": [], "time_ids": []}
        out["weights"] = [self.cfg.dataset.prior_loss_weight if self.items[i].is_reg else 1.0 for i in idxs]
        means, stds, pixels = [], [], []
        for slot, i in enumerate(idxs):
            item = self.items[i]
            rng = D.item_rng(seed, epoch, index, slot)
            flip = ds.flip and rng.random() < 0.5
            out["captions"].append(self.caption_for(item.caption, rng, item.is_reg))
            if self.latents is not None:
                mean, std = self.latents.get(i, flip)
                means.append(mean)
                stds.append(std)
                top, left = center_crop(item)
                out["time_ids"].append((item.height, item.width, top, left, item.bucket[1], item.bucket[0]))
            else:
                prep = D.load_image(item.path, item.bucket, ds.crop, flip, rng)
                pixels.append(prep.pixels)
                out["time_ids"].append((*prep.original_size, *prep.crop_top_left, *prep.target_size))
        if self.latents is not None:
            out["mean"], out["std"] = torch.stack(means), torch.stack(stds)
        else:
            out["pixels"] = torch.stack(pixels)
        if self.preserving:
            # Rows whose caption names the trigger get a class prompt; reg rows and the rest none.
            out["preserve"] = [self.class_caption(c) for c in out["captions"]]
            out["preserve_mask"] = [
                0.0 if self.items[i].is_reg or p == c else 1.0
                for i, c, p in zip(idxs, out["captions"], out["preserve"], strict=True)
            ]
        return out

    def finish(self, part: dict[str, Any]) -> Batch:
        """The device half: sample latents (from the cache or the VAE), conditioning for the captions."""
        model, device = self.model, self.device
        g = torch.Generator(device=device).manual_seed(part["seed"])
        if "mean" in part:
            mean, std = part["mean"].to(device, non_blocking=True), part["std"].to(device, non_blocking=True)
        else:
            with torch.no_grad():
                mean, std = model.encode_posterior(part["pixels"].to(device, non_blocking=True))
        latents = mean
        if model.samples_posterior:
            latents = mean + std * torch.randn(mean.shape, generator=g, device=device, dtype=mean.dtype)
        latents = model.scale_latents(latents)
        text = self.encode(part["captions"])
        weights = part["weights"]
        batch = Batch(latents=latents, text=text, time_ids=torch.tensor(part["time_ids"]), generator=g)
        if any(w != 1.0 for w in weights):
            batch.weights = torch.tensor(weights, device=device)
        if "preserve" in part:
            batch.preserve = self.encode(part["preserve"])
            batch.preserve_mask = torch.tensor(part["preserve_mask"], device=device)
        return batch

    def encode(self, captions: list[str]) -> TextCond:
        """The captions' conditioning: from the text cache, or encoded now (with grad when the encoder trains)."""
        if self.text is not None:
            return self.text.get(captions)
        model = self.model
        with torch.no_grad() if not self.cfg.network.train_text_encoder else contextlib.nullcontext():
            return model.encode_text(model.tokenize(captions))

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Done:
    """A computed value that looks like a finished future."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


def center_crop(item: D.Item) -> tuple[int, int]:
    bw, bh = item.bucket
    scale = max(bw / item.width, bh / item.height)
    nw, nh = max(bw, round(item.width * scale)), max(bh, round(item.height * scale))
    return (nh - bh) // 2, (nw - bw) // 2


def seed_for(*parts: object) -> int:
    return int(hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def cache_root(run: RunFolder) -> Path:
    """The project's .lorawb/cache when the run lives in a project, else the run folder."""
    project = run.path.parent.parent
    if (project / "lorawb.toml").is_file():
        return project / ".lorawb" / "cache"
    return run.path / "cache"
