"""What to draw: one image's parameters (``ImageRequest``) and how requests batch (no torch here).

Requests that share every setting but prompt, negative prompt and seed can be drawn in one
pipeline call; ``plan_batches`` groups them so that the costly change (a different LoRA file)
happens as rarely as possible. lorawb.matrix.generate draws the batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    seed: int
    negative: str = ""
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg: float = 7.0
    sampler: str = "ddim"
    loras: tuple[tuple[str, float], ...] = ()  # (LoRA file, weight); weight 0 means "not applied"
    helper: str = ""  # the generator's variation helper draws it ("ip-adapter", "controlnet", "edit")
    helper_input: str = ""  # that helper's image: a reference, or a pose skeleton

    @property
    def active_loras(self) -> tuple[tuple[str, float], ...]:
        return tuple((p, float(w)) for p, w in self.loras if float(w) != 0.0)

    def setting(self) -> tuple[Any, ...]:
        """What a batch must share: everything but prompt, negative prompt and seed (a helper's image
        too: the pipelines give one reference or pose to every prompt of a call)."""
        return (
            self.active_loras,
            self.sampler,
            self.steps,
            self.width,
            self.height,
            float(self.cfg),
            self.helper,
            self.helper_input,
        )


def plan_batches(requests: Sequence[ImageRequest], size: int = 8) -> list[list[ImageRequest]]:
    """Requests in batches of at most ``size`` sharing one setting; LoRA files outermost (loading is the cost).

    Files keep the order they first appear in (the base model, with no LoRA, first); within a
    file, settings keep their first-appearance order; requests keep their order in a batch.
    """
    file_order: dict[tuple[str, ...], int] = {(): -1}
    setting_order: dict[tuple[Any, ...], int] = {}
    groups: dict[tuple[Any, ...], list[ImageRequest]] = {}
    for r in requests:
        files = tuple(p for p, _ in r.active_loras)
        file_order.setdefault(files, len(file_order))
        s = r.setting()
        setting_order.setdefault(s, len(setting_order))
        groups.setdefault(s, []).append(r)
    ordered = sorted(groups, key=lambda s: (file_order[tuple(p for p, _ in s[0])], setting_order[s]))
    out: list[list[ImageRequest]] = []
    for s in ordered:
        items = groups[s]
        out += [items[i : i + size] for i in range(0, len(items), size)]
    return out
