"""The variation grid: every candidate a character sheet asks for, as a pure function of the sheet.

The axes (contexts × styles × poses × expressions × outfits, each from the sheet or the
project's ``[tags.groups]``) multiply, × ``count`` images per combination. A candidate's seed
is a stable hash of its values and its number within the combination (plus the sheet's
``seed``), so adding a context never changes the other candidates, and a rerun finds them.

Its prompt: before a LoRA exists the *description* stands for the character
(``woman with short blue hair, orange jumpsuit, forest, watercolor``: a base model does not know
the trigger, and an unknown word in the prompt only adds noise); with a LoRA (``--lora``, v1 →
v2) the trigger does (``zkx_mira, forest, watercolor``); reference editing asks for "the same
character" in the new setting. Its caption always leads with the trigger and then names what
varies (``zkx_mira, forest, watercolor, waving``), so training binds the invariant look to the
trigger. No torch here.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from lorawb.core.captions import Caption, join_tags, tag_key
from lorawb.core.charsheet import AXES, CharacterSheet
from lorawb.errors import ConfigError
from lorawb.generate import poses

EDIT_PROMPT = "the same character"


@dataclass(frozen=True)
class Candidate:
    """One image to draw: what varies, its seed, prompt and caption, and the helper's input."""

    values: tuple[tuple[str, str], ...]  # (axis, value), in AXES order
    number: int  # which of the combination's ``count`` images
    seed: int
    prompt: str
    plain_prompt: str  # the prompt without the trigger: what "prompt following" is measured against
    caption: str  # trigger first, then the values
    reference: str = ""  # a reference image (project-relative): IP-Adapter and editing draw from it
    pose: str = ""  # the library pose a ControlNet draws it in

    @property
    def value_dict(self) -> dict[str, str]:
        return dict(self.values)


def stable_seed(values: Sequence[tuple[str, str]], number: int, base: int) -> int:
    """A seed from the values and the number alone (a different combination never shares it by design)."""
    key = "|".join(f"{a}={tag_key(v)}" for a, v in values) + f"#{number}"
    return (base + zlib.crc32(key.encode("utf-8"))) % (2**31)


def caption_for(trigger: str, values: Sequence[tuple[str, str]]) -> str:
    """The trigger, then each value's tags once (``zkx_mira, forest, watercolor``)."""
    tags: list[str] = [trigger] if trigger else []
    seen = {tag_key(t) for t in tags}
    for _axis, value in values:
        for tag in Caption.parse(value).tags:
            if tag_key(tag) not in seen:
                seen.add(tag_key(tag))
                tags.append(tag)
    return join_tags(tags)


def _check_poses(values: list[str]) -> list[str]:
    unknown = [v for v in values if poses.find(v) is None]
    if unknown:
        raise ConfigError(
            f"generate.poses: no skeleton for {', '.join(repr(u) for u in unknown)} in lorawb's pose library",
            hint="with ControlNet the poses are drawn from the library: " + ", ".join(poses.names()),
        )
    return [poses.find(v).name for v in values]  # type: ignore[union-attr]


def variation_grid(
    sheet: CharacterSheet,
    groups: dict[str, list[str]],
    trigger: str,
    *,
    count: int = 0,
    lora: bool = False,
    helper: str = "none",
    refs: Sequence[str] = (),
    pairs: Sequence[tuple[str, str]] = (),
    seed: int = 0,
) -> list[Candidate]:
    """The candidates of ``sheet`` (``count``: images per combination, else the sheet's).

    ``pairs``: only these (context, style) pairs (the dataset's gaps), zipped instead of multiplied.
    ``refs``: reference images, spread over the candidates (IP-Adapter and editing need one).
    """
    if not trigger:
        raise ConfigError(
            "no trigger: the captions lead with it", hint="set [project] trigger (or [generate] trigger) in lorawb.toml"
        )
    if not lora and helper != "edit" and not sheet.description.strip():
        raise ConfigError(
            "generate.description: describe the character (its invariant look), e.g. "
            '"woman with short blue hair, orange jumpsuit, pink scarf"',
            hint="before a LoRA exists the description stands for the character in every prompt",
        )
    if helper in ("ip-adapter", "edit") and not refs:
        raise ConfigError(
            f"--with {helper} draws from reference images, and the refs folder has none",
            hint="put one or more images of the character in refs/ ([generate] refs names the folder)",
        )
    axes = sheet.axes(groups)
    if helper == "controlnet":
        axes["pose"] = _check_poses(axes["pose"]) if "pose" in axes else poses.names()
        axes = {a: axes[a] for a in AXES if a in axes}
    combos: list[tuple[tuple[str, str], ...]]
    if pairs:
        rest = [a for a in axes if a not in ("context", "style")]
        combos = [
            (("context", c), ("style", s), *zip(rest, more, strict=True))
            for (c, s) in pairs
            for more in itertools.product(*(axes[a] for a in rest))
        ]
        combos = [tuple(sorted(c, key=lambda av: AXES.index(av[0]))) for c in combos]
    else:
        combos = [tuple(zip(axes, vals, strict=True)) for vals in itertools.product(*axes.values())]
    per = count or sheet.count
    out: list[Candidate] = []
    for values in combos:
        words = [v for _a, v in values]
        for number in range(per):
            s = stable_seed(values, number, seed)
            if helper == "edit":
                prompt = ", ".join([EDIT_PROMPT, *words])
                plain = prompt
            elif lora:
                prompt = ", ".join([trigger, *words])
                plain = ", ".join(words)
            else:
                prompt = ", ".join([sheet.description.strip(), *words])
                plain = prompt
            out.append(
                Candidate(
                    values=values,
                    number=number,
                    seed=s,
                    prompt=prompt,
                    plain_prompt=plain,
                    caption=caption_for(trigger, values),
                    reference=refs[s % len(refs)] if refs and helper in ("ip-adapter", "edit") else "",
                    pose=dict(values).get("pose", "") if helper == "controlnet" else "",
                )
            )
    return out
