"""The toy world's attribute reader as a tagger (``--model toyworld``): honest tags on a CPU.

It reads hair, outfit, accessory, context, style and pose back from a toy-world image
(``lorawb.toyworld.reader``; 100% on the generator's own images) and writes them as the
toy world's captions do (``blue hair, orange outfit, scarf, forest, flat, standing``).
The reader is a nearest-colour match and measures no confidence: its labels have none,
so thresholds do not apply to them. On images that are not of the toy world it still
answers, and what it answers means nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from lorawb.tagger.backends import BackendOptions
from lorawb.tagger.labels import GENERAL, Label, Prediction
from lorawb.toyworld import reader, world


class ToyworldBackend:
    name = "toyworld reader"
    confidence = "none measured: the toy world's reader is a nearest-colour match (exact on toy-world images)"
    min_side = world.SIZE

    def __init__(self, options: BackendOptions) -> None:
        self.batch_size = max(1, options.batch_size)
        # The reader's answers change only with its code and the world's tables.
        h = hashlib.blake2b(digest_size=8)
        for mod in (reader, world):
            h.update(Path(mod.__file__ or "").read_bytes())
        self.key = f"toyworld:{h.hexdigest()}"

    def prepare(self, image: Image.Image) -> np.ndarray:
        return reader.to_array(image)

    def predict(self, batch: list[np.ndarray]) -> list[Prediction]:
        out: list[Prediction] = []
        for a in batch:
            r = reader.read(a)
            spec = world.Spec(r.hair, r.outfit, r.accessory, r.context, r.style, r.pose)
            out.append(tuple(Label(t, None, GENERAL) for t in spec.tags()))
        return out
