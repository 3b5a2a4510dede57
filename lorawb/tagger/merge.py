"""Folding a model's tags into a caption: the modes, the trigger first, kept tags never removed.

``AutoTag`` is a ``lorawb.core.caption_ops`` operation, so its change set is previewed,
applied, conflict-checked and undone by the same engine as every bulk edit.

- ``fill``: only images without a caption (or with an empty one) get one;
- ``append``: the model's tags that the caption lacks are added at its end;
- ``replace``: everything after the trigger is rewritten, except the ``keep`` tags the
  caption had (they stay, in their order, right after the trigger).

In every mode the trigger (``[project] trigger``) leads the result: added where missing,
moved to the front where elsewhere, never removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lorawb.core.caption_ops import CaptionFile, Operation
from lorawb.core.captions import Caption, join_tags, tag_key, trigger_position
from lorawb.core.cast import folder_of, held
from lorawb.core.characters import Character, lead_triggers
from lorawb.core.config import TAG_MODES
from lorawb.errors import CaptionError
from lorawb.tagger.labels import match_key
from lorawb.tagger.select import Proposal


@dataclass
class AutoTag(Operation):
    """The tags each image's proposal brings, folded into its caption by ``mode``."""

    proposals: dict[str, Proposal]  # image (relative to the project) -> what its caption gets
    mode: str = "fill"
    trigger: str = ""
    keep: tuple[str, ...] = ()
    model: str = "model"
    label: str = field(default="auto-tag")
    chars: tuple[Character, ...] = ()  # several characters: each image's own triggers lead, in the project's order

    def __post_init__(self) -> None:
        if self.mode not in TAG_MODES:
            raise CaptionError(f"bad mode {self.mode!r}: use fill, append or replace")
        self.keep_keys = frozenset(match_key(t) for t in self.keep if t.strip())
        self.label = f"auto-tag ({self.mode}, {self.model})"

    def rewrite_caption(self, cf: CaptionFile) -> str:
        old = cf.text or ""
        proposal = self.proposals.get(cf.image)
        if proposal is None or not proposal.tags:
            return old  # not tagged (skipped, cancelled) or nothing passed the thresholds
        new_tags = [s.tag for s in proposal.tags]
        if len(self.chars) < 2:
            return merge_caption(old, new_tags, mode=self.mode, trigger=self.trigger, keep_keys=self.keep_keys)
        h = held(cf.image, folder_of(cf.image), old, self.chars)
        triggers = [c.trigger for c in self.chars if c.name in h.names]
        first = triggers[0] if triggers else ""
        keep = self.keep_keys | {match_key(t) for t in triggers}  # replace mode keeps every trigger it holds
        new = merge_caption(old, new_tags, mode=self.mode, trigger=first, keep_keys=keep)
        if new == old:
            return old
        cap = Caption.parse(new)
        have = {tag_key(t) for t in cap.tags}
        tags = lead_triggers([*(t for t in triggers if tag_key(t) not in have), *cap.tags], list(self.chars))
        return new if tuple(tags) == cap.tags else cap.with_tags(tags).text()


def merge_caption(old: str, new_tags: list[str], *, mode: str, trigger: str, keep_keys: frozenset[str]) -> str:
    """The caption ``old`` with ``new_tags`` folded in by ``mode`` (the same text when nothing changes).

    Only the model's tags are de-duplicated; what the caption already had (a repeated tag,
    an empty one, a weight) is the user's and stays as it was, unless ``replace`` rewrites it.
    """
    cap = Caption.parse(old)
    tags = list(cap.tags)
    if not any(t.strip() for t in tags):
        lead = [trigger] if trigger else []
        return join_tags(_unique(lead + new_tags)) + "\n"  # a new caption file ends with a newline, as kohya's
    if mode == "fill":
        return old
    i = trigger_position(tags, trigger) if trigger else None
    exact = i is not None and tag_key(tags[i]) == tag_key(trigger)  # not a sentence that starts with it
    if mode == "append":
        if trigger and i is None:
            base = [trigger, *tags]
        elif exact and i:
            base = [tags[i], *tags[:i], *tags[i + 1 :]]
        else:
            base = tags
        have = {match_key(t) for t in tags}
        result = base + _unique([t for t in new_tags if match_key(t) not in have])
    else:  # replace: what follows the trigger is the model's, but for the kept tags
        head = [tags[i]] if exact else ([trigger] if trigger else [])
        rest = [t for j, t in enumerate(tags) if not (exact and j == i)]
        kept = [t for t in rest if match_key(t) in keep_keys]
        kept_keys = {match_key(t) for t in kept}
        result = head + kept + _unique([t for t in new_tags if match_key(t) not in kept_keys])
    if result == tags:
        return old
    return cap.with_tags(result).text()


def _unique(tags: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for t in tags:
        k = match_key(t)
        if k and k not in seen:
            seen.add(k)
            out.append(t)
    return out
