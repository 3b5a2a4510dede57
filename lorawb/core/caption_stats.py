"""Tag statistics over captions: frequency, co-occurrence with the trigger, captions missing it.

The same counts rank tag completion in the caption editor (the dataset's own vocabulary,
most frequent first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from lorawb.core.caption_ops import CaptionFile
from lorawb.core.captions import leads_with_trigger, tag_key, tag_name
from lorawb.core.cast import folder_of, held
from lorawb.core.characters import Character, group_label, pairs_of


@dataclass(frozen=True)
class TagCount:
    key: str  # the tag as matched (case-folded, no weight)
    name: str  # its most common spelling in the captions
    count: int  # captions that have it
    with_trigger: int  # captions that have it and lead with the trigger
    by_group: tuple[int, ...] = ()  # several characters: captions having it per TagStats.groups entry


@dataclass
class TagStats:
    trigger: str
    total: int  # captions looked at (images, with or without a caption file)
    captioned: int  # of which have a non-empty caption
    with_trigger: int  # captions that lead with the trigger
    tags: list[TagCount] = field(default_factory=list)  # most frequent first
    missing_trigger: list[str] = field(default_factory=list)  # images whose caption does not lead with it
    uncaptioned: list[str] = field(default_factory=list)  # images with no or an empty caption
    groups: list[str] = field(default_factory=list)  # several characters: each alone, each pair (lorawb.core.cast)

    def vocabulary(self) -> list[str]:
        """Tag spellings, most frequent first: the completion list."""
        return [t.name for t in self.tags]

    def count(self, tag: str) -> int:
        key = tag_key(tag)
        return next((t.count for t in self.tags if t.key == key), 0)


def leads_with_triggers(cf: CaptionFile, chars: Sequence[Character]) -> bool:
    """Several characters: the caption holds a character and leads with the triggers of the characters it
    holds, in the project's order (lorawb.core.characters.lead_triggers)."""
    h = held(cf.image, folder_of(cf.image), cf.text, chars)
    if not h.names:
        return False
    want = [c.key for c in chars if c.name in h.names]
    return [tag_key(t) for t in h.tags[: len(want)]] == want


def tag_stats(files: list[CaptionFile], trigger: str = "", chars: Sequence[Character] = ()) -> TagStats:
    """Tag counts; with several characters (``chars``), "with trigger" means leading with the triggers of the
    characters the image holds, and each tag is also counted per character alone and per pair."""
    multi = len(chars) > 1
    if multi:
        trigger = "+".join(c.trigger for c in chars)
    by_group: dict[str, Counter[str]] = {}
    counts: Counter[str] = Counter()
    with_trig: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    stats = TagStats(trigger=trigger, total=len(files), captioned=0, with_trigger=0)
    for cf in files:
        cap = cf.caption
        if not cap.tags or not any(cap.tags):
            stats.uncaptioned.append(cf.image)
        else:
            stats.captioned += 1
        labels: list[str] = []
        if multi:
            leads = leads_with_triggers(cf, chars)
            h = held(cf.image, folder_of(cf.image), cf.text, chars)
            labels = (
                [h.label]
                if len(h.names) < 2
                else [group_label((a, b)) for i, a in enumerate(h.names) for b in h.names[i + 1 :]]
            )
        else:
            leads = bool(trigger) and leads_with_trigger(cap, trigger)
        if leads:
            stats.with_trigger += 1
        elif trigger:
            stats.missing_trigger.append(cf.image)
        seen: set[str] = set()
        for t in cap.tags:
            k = tag_key(t)
            if not k or k in seen:
                continue
            seen.add(k)
            counts[k] += 1
            for label in labels:
                by_group.setdefault(label, Counter())[k] += 1
            if leads:
                with_trig[k] += 1
            sp = spellings.get(k)
            if sp is None:
                sp = spellings[k] = Counter()
            sp[tag_name(t)] += 1
    if multi:
        stats.groups = [c.name for c in chars] + [group_label((a.name, b.name)) for a, b in pairs_of(chars)]
    stats.tags = [
        TagCount(
            k,
            spellings[k].most_common(1)[0][0],
            n,
            with_trig[k],
            tuple(by_group.get(g, Counter())[k] for g in stats.groups),
        )
        for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return stats


def complete(vocabulary: list[str], prefix: str, limit: int = 8, exclude: set[str] | None = None) -> list[str]:
    """Tags from ``vocabulary`` (most frequent first) starting with ``prefix``, then containing it."""
    p = tag_key(prefix)
    if not p:
        return []
    exclude = exclude or set()
    starts, inside = [], []
    for name in vocabulary:
        k = tag_key(name)
        if k in exclude or k == p:
            continue
        if k.startswith(p):
            starts.append(name)
        elif p in k:
            inside.append(name)
        if len(starts) >= limit:
            break
    return (starts + inside)[:limit]
