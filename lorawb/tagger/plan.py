"""One auto-tagging request, end to end: the model over the images, the rules, the change set and its preview.

``plan_tags`` writes nothing: it returns a ``TagPlan`` whose ``changeset`` is applied (and
undone) by ``lorawb.core.caption_history``, like every bulk edit. The preview is the
change set's unified diff with, under each file, the model's tags and their confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorawb.core import caption_ops
from lorawb.core.caption_ops import ChangeSet
from lorawb.core.captions import Caption
from lorawb.core.characters import Character, characters_of
from lorawb.core.config import TaggerSection
from lorawb.core.project import Project
from lorawb.core.tomlio import validate
from lorawb.tagger.backends import Backend, BackendOptions, open_backend
from lorawb.tagger.cache import PredictionCache
from lorawb.tagger.engine import Progress, RunResult, predict_images
from lorawb.tagger.labels import match_key
from lorawb.tagger.merge import AutoTag
from lorawb.tagger.select import Proposal, Rules, Scored, select_tags
from lorawb.words import plural


def tagger_settings(project: Project, **overrides: Any) -> TaggerSection:
    """The project's [tagger] settings with the given ones changed (validated; None leaves a setting alone)."""
    merged = project.config.tagger.model_dump()
    for key, value in overrides.items():
        if value is not None:
            merged[key] = value
    return validate(TaggerSection, merged, path=None, prefix="tagger")


@dataclass
class TagPlan:
    """What auto-tagging would change, with the model's reasons, before anything is written."""

    changeset: ChangeSet
    proposals: dict[str, Proposal]
    run: RunResult
    settings: TaggerSection
    model: str  # the backend, as shown: "WD tagger wd-v3 (CPU, 448 px)"
    confidence: str  # what the confidence column measures
    requested: int  # images asked for

    def summary(self) -> str:
        cs, run = self.changeset, self.run
        parts = [f"{cs.label}: {len(cs)} of {plural(self.requested, 'caption')} change"]
        parts.append(f"{run.computed} read by the model, {run.cached} from the cache")
        if run.skipped:
            parts.append(f"{len(run.skipped)} skipped (unreadable)")
        if run.cancelled:
            parts.append(f"cancelled: {len(run.predictions)} of {plural(self.requested, 'image')} tagged")
        return "; ".join(parts)

    def rows(self, image: str, old: str | None, new: str | None) -> list[tuple[Scored, str]]:
        """The model's tags for one image: (tag, what became of it: added / already there / dropped: why)."""
        proposal = self.proposals.get(image)
        if proposal is None:
            return []
        before = {match_key(t) for t in Caption.parse(old or "").tags}
        after = {match_key(t) for t in Caption.parse(new or "").tags}
        out: list[tuple[Scored, str]] = []
        for s in proposal.tags:
            key = match_key(s.tag)
            if key in before and key in after:
                out.append((s, "already there"))
            elif key in after:
                out.append((s, "added"))
            else:
                out.append((s, "not added (caption kept)" if self.settings.mode == "fill" else "not added"))
        out += [(s, f"dropped: {why}") for s, why in proposal.dropped]
        return out

    def preview(self, limit: int | None = None) -> str:
        """The unified diff of each change, then its tags: ``#  0.97  + red hair``."""
        out = [f"# model: {self.model}; confidence: {self.confidence}\n"]
        for ch in self.changeset.changes[:limit] if limit is not None else self.changeset.changes:
            out.append(caption_ops.change_diff(ch))
            for s, what in self.rows(ch.image, ch.old, ch.new):
                out.append(f"#  {format_confidence(s.score)}  {_MARKS.get(what, 'x')} {s.tag}  ({what})\n")
        for rel, why in self.run.skipped:
            out.append(f"# skipped {rel}: {why}\n")
        return "".join(out)

    def to_json(self) -> dict[str, Any]:
        cs = self.changeset
        return {
            "model": self.model,
            "confidence": self.confidence,
            "mode": self.settings.mode,
            "images": self.requested,
            "cached": self.run.cached,
            "computed": self.run.computed,
            "cancelled": self.run.cancelled,
            "skipped": [{"image": rel, "reason": why} for rel, why in self.run.skipped],
            "changed": len(cs),
            "files": [
                {
                    "image": ch.image,
                    "path": ch.rel,
                    "old": ch.old,
                    "new": ch.new,
                    "tags": [
                        {"tag": s.tag, "confidence": s.score, "category": s.category, "model_tag": s.source, "what": w}
                        for s, w in self.rows(ch.image, ch.old, ch.new)
                    ],
                }
                for ch in cs.changes
            ],
        }


_MARKS = {"added": "+", "already there": "="}


def format_confidence(score: float | None) -> str:
    return "   -" if score is None else f"{score:.2f}"


def plan_tags(
    project: Project,
    images: list[str],
    settings: TaggerSection,
    *,
    trust_remote_code: bool = False,
    device: str = "auto",
    use_cache: bool = True,
    use_invariant: bool = True,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    backend: Backend | None = None,
) -> TagPlan:
    """Run the model over ``images`` (relative to the project) and say what each caption would become."""
    if backend is None:
        options = BackendOptions(
            batch_size=settings.batch_size,
            prompt=settings.prompt,
            max_new_tokens=settings.max_new_tokens,
            trust_remote_code=trust_remote_code,
            device=device,
        )
        backend = open_backend(project, settings.model, options)
    cache = PredictionCache(project) if use_cache else None
    try:
        run = predict_images(project.root, images, backend, cache=cache, progress=progress, should_stop=should_stop)
    finally:
        if cache is not None:
            cache.close()
    rules = Rules.from_settings(settings, project.trigger, use_invariant=use_invariant)
    chars = tuple(characters_of(project.config))
    if len(chars) > 1:  # each image leaves out the invariant features of the characters it holds
        proposals = _per_character(project, run.predictions, rules, chars, use_invariant)
    else:
        proposals = {rel: select_tags(labels, rules) for rel, labels in run.predictions.items()}
    op = AutoTag(
        proposals,
        settings.mode,
        project.trigger,
        tuple(settings.keep),
        model=_short(backend.name),
        chars=chars if len(chars) > 1 else (),
    )
    tagged = [rel for rel in images if rel in proposals]
    # Read now, after the model ran: the change set's conflict check compares against this moment.
    files = caption_ops.read_captions(project.root, tagged)
    cs = caption_ops.build_changeset(project, op, files=files)
    cs.selection = plural(len(images), "image")
    return TagPlan(cs, proposals, run, settings, backend.name, backend.confidence, len(images))


def _per_character(
    project: Project, predictions: dict, rules: Rules, chars: tuple[Character, ...], use_invariant: bool
) -> dict[str, Proposal]:
    """Several characters: an image's tags without the invariant features of the characters it holds (its
    folders, the triggers its caption names), and without any character's trigger (the merge puts those)."""
    from dataclasses import replace

    from lorawb.core.cast import folder_of, held
    from lorawb.tagger.labels import match_key

    texts = {cf.image: cf.text for cf in caption_ops.read_captions(project.root, list(predictions))}
    triggers = frozenset(match_key(c.trigger) for c in chars)
    out: dict[str, Proposal] = {}
    for rel, labels in predictions.items():
        names = held(rel, folder_of(rel), texts.get(rel), chars).names
        own = {match_key(t) for c in chars if c.name in names for t in c.invariant} if use_invariant else set()
        out[rel] = select_tags(
            labels, replace(rules, invariant=rules.invariant | own, exclude=rules.exclude | triggers)
        )
    return out


def _short(name: str) -> str:
    return name.split(" (")[0]
