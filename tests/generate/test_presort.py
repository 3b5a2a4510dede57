"""The pre-sort: identity against refs/ (else the dataset, else the other candidates) and prompt
following, by the project's scorer, each row saying what measured it; Triage's order from them."""

from __future__ import annotations

from dataclasses import dataclass

from lorawb.core.project import Project, init_project
from lorawb.generate import presort
from lorawb.matrix.cells import Params, Resolved
from lorawb.matrix.resolve import Context
from lorawb.toyworld import world
from lorawb.train.config import ModelSection

ON = dict(hair="blue", outfit="orange", accessory="scarf")
OFF = dict(hair="red", outfit="green", accessory="none")
PROMPT = "blue hair, orange outfit, scarf, {context}"


def ctx(toyworld: bool) -> Context:
    return Context(
        Resolved("m", "zkx_mira", 32, 32, 2, 1.5, "ddim", (None,)), ModelSection(), "sd1", None, {}, toyworld
    )


def candidates(project: Project, looks: list[dict[str, str]]) -> list[dict]:
    """Toy-world drawings of these looks in the inbox, with generate records (no model needed)."""
    project.inbox_dir.mkdir(exist_ok=True)
    out = []
    for i, look in enumerate(looks):
        context = world.CONTEXTS[i % 4]
        spec = world.Spec(**look, context=context, style=world.STYLES[(i // 2) % 4], seed=i)
        cid = f"gen-{context}-{i:010d}"
        world.render(spec).save(project.inbox_dir / f"{cid}.png")
        prompt = PROMPT.format(context=context)
        params = Params("m", None, 0.0, prompt, "", i, 1.5, 2, "ddim", 32, 32)
        out.append(
            {
                "id": cid,
                "file": f"inbox/{cid}.png",
                "params": params.as_dict(),
                "values": {"context": context},
                "plain_prompt": prompt,
            }
        )
    return out


def project_at(tmp_path) -> Project:
    return init_project(tmp_path / "p", trigger="zkx_mira")


@dataclass
class Item:
    rel: str


def order(project: Project, scores: dict, metric: str = "identity", reverse: bool = False) -> list[str]:
    items = [Item(f"inbox/{p.name}") for p in sorted(project.inbox_dir.glob("*.png"))]
    return [i.rel[len("inbox/") : -len(".png")] for i in presort.sort_by_score(items, scores, metric, reverse)]


def test_identity_against_refs_puts_the_on_model_candidates_first(tmp_path):
    project = project_at(tmp_path)
    (project.root / "refs").mkdir()
    # the refs agree on the look only (not on the context, style or pose)
    for i, (context, style, pose) in enumerate((("forest", "flat", "waving"), ("bar", "watercolor", "standing"))):
        spec = world.Spec(**ON, context=context, style=style, pose=pose, seed=50 + i)
        world.render(spec).save(project.root / "refs" / f"{i}.png")
    looks = [OFF, ON, OFF, ON, ON, OFF]
    recs = candidates(project, looks)
    out = tmp_path / "scores.jsonl"
    done = presort.score_candidates(project, recs, ctx(True), out)
    assert (done.scored, done.scorer, done.reference) == (6, "toy-world reader", "refs/ (2 images)")
    scores = presort.read_scores(out)
    row = scores[recs[1]["id"]]
    assert row["scorer"] == "toy-world reader" and row["reference"] == "refs/ (2 images)"
    assert row["identity"] == 1.0 and row["prompt_following"] == 1.0
    assert scores[recs[0]["id"]]["identity"] < 0.5
    on = {r["id"] for r, look in zip(recs, looks, strict=True) if look is ON}
    assert set(order(project, scores)[:3]) == on  # the likeliest keeps first
    assert set(order(project, scores, reverse=True)[-3:]) == on  # reversed: the off-model ones first
    assert presort.last_pass(out)["reference"] == "refs/ (2 images)"


def test_without_refs_the_dataset_then_the_other_candidates_are_the_reference(tmp_path):
    project = project_at(tmp_path)
    # the base model draws the character in a minority: each half is 2 on-model, 6 off-model
    looks = [ON if i in (0, 1, 8, 9) else OFF for i in range(16)]
    recs = candidates(project, looks)
    out = tmp_path / "scores.jsonl"
    done = presort.score_candidates(project, recs, ctx(True), out)
    assert done.reference == presort.CONSENSUS and done.scored == 16
    scores = presort.read_scores(out)
    on = [scores[r["id"]]["identity"] for r, look in zip(recs, looks, strict=True) if look is ON]
    off = [scores[r["id"]]["identity"] for r, look in zip(recs, looks, strict=True) if look is OFF]
    # each half against the other half's candidates that best follow the prompt, not its majority
    assert min(on) > max(off)
    d = project.dataset_dir / "5_zkx_mira"
    d.mkdir(parents=True)
    world.render(world.Spec(**ON, seed=9)).save(d / "a.png")
    assert presort.reference_images(project, "refs")[1] == "the dataset (1 image)"


def test_nothing_is_scored_without_a_scorer_and_the_reason_is_kept(tmp_path):
    project = project_at(tmp_path)
    recs = candidates(project, [ON, OFF])
    out = tmp_path / "scores.jsonl"
    done = presort.score_candidates(project, recs, ctx(False), out)
    assert done.scored == 0 and "no embedder configured" in done.reason
    assert done.describe().startswith("not scored: no embedder configured")
    assert presort.read_scores(out) == {}
    assert "no embedder configured" in presort.last_pass(out)["reason"]  # what Triage says instead of a number
    files = presort.GeneratedFiles(project)
    files.scores_path = out
    assert "no embedder configured" in files.sort_note("identity")
    # unscored items keep their name order
    assert order(project, {}) == sorted(order(project, {}))
