"""From one image's labels to the tags its caption gets: what taggers' users set, in one place.

Order of the steps (each is a setting of ``[tagger]`` in lorawb.toml):

1. thresholds: general tags at ``threshold``, character tags at ``character_threshold``;
   labels without a measured confidence (the toy world's reader, a caption) always pass;
2. the model's names as captions write them (``blue_hair`` -> ``blue hair``, kaomoji kept);
3. replacement pairs ``old=new``;
4. dropped: ``exclude`` (undesired tags), ``invariant`` (the character's invariant features:
   the trigger carries them, see docs/captions.md) and the trigger itself;
5. order: character tags first, then by confidence; at most ``max_tags``; the rating last.

Every dropped tag is kept with its reason, for the preview.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lorawb.core.captions import phrase_pattern, tag_key
from lorawb.core.config import TaggerSection
from lorawb.tagger.labels import CAPTION, CHARACTER, GENERAL, RATING, Label, caption_name, match_key


@dataclass(frozen=True)
class Scored:
    """A tag (or sentence) proposed for a caption, as the caption will write it."""

    tag: str
    score: float | None
    category: str
    source: str  # the model's own name for it (before underscores and replacements)


@dataclass
class Proposal:
    """What one image's caption should get from the model, and what was left out and why."""

    tags: list[Scored] = field(default_factory=list)
    dropped: list[tuple[Scored, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Rules:
    """The settings of one run, in the form the per-image step wants (keys precomputed)."""

    threshold: float
    character_threshold: float
    max_tags: int
    exclude: frozenset[str]
    invariant: frozenset[str]
    replace: dict[str, str]
    keep_underscores: bool
    character_first: bool
    ratings: bool
    trigger: str

    @classmethod
    def from_settings(cls, s: TaggerSection, trigger: str, *, use_invariant: bool = True) -> Rules:
        pairs = {}
        for pair in s.replace:
            old, _, new = pair.partition("=")
            pairs[match_key(old)] = new.strip()
        return cls(
            threshold=s.threshold,
            character_threshold=s.character_threshold,
            max_tags=s.max_tags,
            exclude=frozenset(match_key(t) for t in s.exclude if t.strip()),
            invariant=frozenset(match_key(t) for t in s.invariant if t.strip()) if use_invariant else frozenset(),
            replace=pairs,
            keep_underscores=s.keep_underscores,
            character_first=s.character_first,
            ratings=s.ratings,
            trigger=trigger,
        )


def select_tags(labels: tuple[Label, ...] | list[Label], rules: Rules) -> Proposal:
    """The tags one image gets from its labels under ``rules``."""
    out = Proposal()
    kept: list[Scored] = []
    best_rating: Label | None = None
    trigger_key = tag_key(rules.trigger) if rules.trigger else None
    for label in labels:
        if label.category == RATING:
            if best_rating is None or (label.score or 0.0) > (best_rating.score or 0.0):
                best_rating = label
            continue
        if label.category == CAPTION:
            kept.append(Scored(_replace_words(label.name, rules.replace), label.score, CAPTION, label.name))
            continue
        floor = rules.character_threshold if label.category == CHARACTER else rules.threshold
        if label.score is not None and label.score < floor:
            continue  # below the threshold: not shown either (a WD model scores every tag it knows)
        scored = _named(label, rules)
        reason = _drop_reason(scored.tag, rules, trigger_key)
        if reason:
            out.dropped.append((scored, reason))
        else:
            kept.append(scored)
    kept = _dedupe(kept)
    kept.sort(key=lambda s: _order(s, rules))
    if rules.max_tags and len(kept) > rules.max_tags:
        for s in kept[rules.max_tags :]:
            out.dropped.append((s, f"over max_tags {rules.max_tags}"))
        kept = kept[: rules.max_tags]
    if rules.ratings and best_rating is not None:
        rating = _named(best_rating, rules)
        reason = _drop_reason(rating.tag, rules, trigger_key)
        if reason:
            out.dropped.append((rating, reason))
        else:
            kept.append(rating)
    out.tags = kept
    return out


def _named(label: Label, rules: Rules) -> Scored:
    tag = caption_name(label.name, keep_underscores=rules.keep_underscores)
    tag = rules.replace.get(match_key(label.name), tag)
    return Scored(tag, label.score, label.category, label.name)


def _drop_reason(tag: str, rules: Rules, trigger_key: str | None) -> str | None:
    key = match_key(tag)
    if trigger_key is not None and key == match_key(rules.trigger):
        return "the trigger (already first)"
    if key in rules.exclude:
        return "excluded"
    if key in rules.invariant:
        return "invariant: the trigger carries it"
    return None


def _dedupe(tags: list[Scored]) -> list[Scored]:
    """One of each tag (two model tags may become one after replacement): the most confident stays."""
    best: dict[str, Scored] = {}
    for s in tags:
        key = match_key(s.tag)
        have = best.get(key)
        if have is None or (s.score or 0.0) > (have.score or 0.0):
            best[key] = s
    return [s for s in tags if best[match_key(s.tag)] is s]


def _order(s: Scored, rules: Rules) -> tuple[int, float]:
    group = 0 if (rules.character_first and s.category == CHARACTER) else 1
    # Labels without a confidence keep the backend's order (a stable sort, all equal here).
    return group, -(s.score if s.score is not None else 0.0)


def _replace_words(sentence: str, pairs: dict[str, str]) -> str:
    """Replacement pairs applied to a sentence as whole words (``girl=woman``)."""
    for old_key, new in pairs.items():
        sentence = phrase_pattern(old_key).sub(lambda _m, n=new: n, sentence)
    return sentence


__all__ = ["GENERAL", "Proposal", "Rules", "Scored", "select_tags"]
