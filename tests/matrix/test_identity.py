"""Identity against its ceiling, faces with tiny ONNX models, subject crop, PRES, diversity and spreads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lorawb.matrix import identity as ident
from lorawb.matrix.cells import Cell, LoraRef, Params
from lorawb.matrix.identity import NO_FACE, IdentityJudge, identity_by_region, leave_one_out
from lorawb.matrix.scores import EmbedderScorer, ToyScorer, diversity, encode_vec
from lorawb.matrix.settings import MatrixSettings
from tests.matrix.onnx_faces import build_face_models

BG = (90, 120, 90)


def cell(prompt: str, lora: bool = True, control: int | None = None, seed: int = 0) -> Cell:
    params = Params(
        "m",
        LoraRef("l.safetensors", "step 1") if lora else None,
        1.0 if lora else 0.0,
        prompt,
        "",
        seed,
        1.5,
        2,
        "ddim",
        64,
        64,
    )
    return Cell(params, control=control, plain_prompt=prompt.removeprefix("zkx, "))


def face_image(faces: list[tuple[int, int, tuple[int, int, int]]], bg=BG) -> Image.Image:
    """A 64×64 image with red 16×16 "faces" at grid cells (col, row) of 16 px, in the given colours."""
    im = Image.new("RGB", (64, 64), bg)
    for col, row, colour in faces:
        im.paste(Image.new("RGB", (16, 16), colour), (col * 16, row * 16))
    return im


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory) -> Path:
    return build_face_models(tmp_path_factory.mktemp("faces") / "buffalo_tiny")


def test_leave_one_out_of_identical_images_is_one_and_of_distinct_ones_less():
    same = np.tile(np.array([[0.6, 0.8]], np.float32), (4, 1))
    assert leave_one_out(same, range(4), k=2) == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})
    spread = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6]], np.float32)
    per = leave_one_out(spread, range(4), k=1)
    assert per[0] == pytest.approx(0.8) and all(v < 1.0 for v in per.values())
    # several rows per image (faces): an image is never compared with its own rows
    assert leave_one_out(np.array([[1, 0], [1, 0], [0, 1]], np.float32), [0, 0, 1], k=1) == {0: 0.0, 1: 0.0}
    assert ident.of_ceiling(0.71, 0.77) == "identity 0.71 · dataset 0.77 (92%)"


def test_the_toy_readers_ceiling_is_one_for_a_dataset_of_one_drawing(tmp_path):
    from lorawb.toyworld import sample, world

    spec = sample.dataset_specs()[0]
    paths = []
    for i in range(4):
        p = tmp_path / f"same_{i}.png"
        world.write_image(p, spec, "x", 32)
        paths.append(p)
    assert ToyScorer(paths).ceiling == pytest.approx(1.0)
    varied = []
    for i, s in enumerate(
        sample.dataset_specs()[:8] + [world.with_(spec, hair="red"), world.with_(spec, outfit="green")]
    ):
        p = tmp_path / f"v_{i}.png"
        world.write_image(p, s, "x", 32)
        varied.append(p)
    c = ToyScorer(varied).ceiling
    assert c is not None and 0.5 < c < 1.0


def test_the_embedder_ceiling_is_measured_once_and_cached(tmp_path, monkeypatch):
    from lorawb.matrix.embedder import load_embedder
    from tests.matrix.test_scores import build_dinov2

    emb = load_embedder(build_dinov2(tmp_path / "dinov2"))
    paths = []
    for i in range(3):
        p = tmp_path / "dataset" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        face_image([(1, 1, (250, 20, 20))]).save(p)
        paths.append(p)
    judge = IdentityJudge(emb, top_k=2)
    judge.load_dataset(paths, tmp_path, tmp_path / "cache" / "embeddings")
    first = judge.ceiling(tmp_path / "cache")
    assert first.value == pytest.approx(1.0, abs=1e-4) and first.images == 3 and first.k == 2
    monkeypatch.setattr(ident, "leave_one_out", lambda *a, **k: pytest.fail("measured again"))
    assert judge.ceiling(tmp_path / "cache").value == first.value
    # the subject crop looks at the centre only: another cache key, and a background change outside it is not seen
    crop = IdentityJudge(emb, crop="subject", top_k=2)
    crop.load_dataset(paths, tmp_path, tmp_path / "cache" / "embeddings")
    assert crop.cropped(Image.new("RGB", (100, 100))).size == (60, 95)
    moved = face_image([(1, 1, (250, 20, 20))])
    moved.paste(Image.new("RGB", (8, 64), (255, 255, 0)), (0, 0))  # the left edge, outside the subject region
    assert crop.match(emb.images([crop.cropped(moved)])[0])[0] == pytest.approx(1.0, abs=1e-4)
    assert judge.match(emb.images([moved])[0])[0] < 0.9999


def test_faces_detect_crop_embed_and_match_with_tiny_onnx_models(face_dir, tmp_path):
    from lorawb.matrix.faces import FaceModel

    model = FaceModel(face_dir)
    assert model.det_size == (64, 64) and model.has_points and model.rec_size == 112
    two = face_image([(1, 2, (250, 20, 20)), (2, 0, (250, 20, 120))])
    found = model.detect(two)
    assert sorted(f.box for f in found) == [(16.0, 32.0, 32.0, 48.0), (32.0, 0.0, 48.0, 16.0)]
    assert model.detect(face_image([])) == []
    # the dataset: one character, a red face, in various places (and one image without a face)
    paths = []
    for i, (col, row) in enumerate([(1, 1), (2, 1), (1, 2), (2, 2)]):
        p = tmp_path / "dataset" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        face_image([(col, row, (250, 20, 20))]).save(p)
        paths.append(p)
    face_image([]).save(tmp_path / "dataset" / "noface.png")
    paths.append(tmp_path / "dataset" / "noface.png")
    judge = IdentityJudge(faces=model, top_k=2)
    judge.load_dataset(paths, tmp_path, tmp_path / "cache")
    assert judge.by_faces and judge.dataset_images_with_rows == 4 and judge.owners == [0, 1, 2, 3]
    assert judge.ceiling(tmp_path).value == pytest.approx(1.0, abs=1e-5)
    # per region: left half holds the character's face, right half another face; "no face found" is its own outcome
    left, right, top = identity_by_region(judge, two, ["left", "right", (0, 0, 16, 16)])
    assert left.outcome == "ok" and left.identity == pytest.approx(1.0, abs=1e-5) and left.faces == 1
    assert right.outcome == "ok" and right.identity < left.identity - 0.01
    assert top.outcome == NO_FACE and top.identity is None
    per_face = judge.faces_of(two)
    assert len(per_face) == 2 and max(f.identity for f in per_face) == pytest.approx(1.0, abs=1e-5)
    # cached: a second judge reads the dataset's faces without detecting again
    again = IdentityJudge(faces=model, top_k=2)
    calls = []
    real = model.detect
    model.detect = lambda im: calls.append(1) or real(im)  # type: ignore[method-assign]
    again.load_dataset(paths, tmp_path, tmp_path / "cache")
    assert calls == [] and np.allclose(again.vectors, judge.vectors)


def test_a_face_scorer_scores_faces_and_says_when_it_found_none(face_dir, tmp_path):
    from lorawb.matrix.faces import FaceModel
    from lorawb.matrix.scores import summarize  # noqa: F401  (the summary counts no-face cells; see below)

    p = tmp_path / "dataset" / "a.png"
    p.parent.mkdir()
    face_image([(1, 1, (250, 20, 20))]).save(p)
    q = tmp_path / "dataset" / "b.png"
    face_image([(2, 1, (250, 20, 20))]).save(q)
    scorer = EmbedderScorer(
        None, [p, q], tmp_path, tmp_path / "cache" / "emb", MatrixSettings(top_k=1), faces=FaceModel(face_dir)
    )
    assert scorer.measures == ("identity", "memorisation", "prior") and scorer.name.startswith("faces (buffalo_tiny")
    rows = scorer.score(
        [cell("zkx, forest"), cell("zkx, bar", seed=1), cell("red outfit, beach", control=0)],
        [face_image([(1, 2, (250, 20, 20))]), face_image([]), face_image([(3, 3, (250, 20, 120))])],
        lambda _id: None,
    )
    assert rows[0]["identity"] == pytest.approx(1.0, abs=1e-5) and rows[0]["faces"][0]["box"] == [16, 32, 32, 48]
    assert rows[0]["ceiling"] == pytest.approx(1.0, abs=1e-5)
    assert rows[1]["face"] == NO_FACE and "identity" not in rows[1]
    assert "identity" not in rows[2] and rows[2]["prior"] < 1.0  # a control prompt: PRES, not identity


def test_pres_and_diversity_on_images_whose_answer_is_known(tmp_path):
    from lorawb.toyworld import sample, world

    paths = []
    for i, s in enumerate(sample.dataset_specs()[::5]):
        p = tmp_path / f"d{i}.png"
        world.write_image(p, s, "x", 32)
        paths.append(p)
    scorer = ToyScorer(paths)
    mira = world.render(world.Spec(**sample.CHARACTER, context="beach"), 32)
    other = world.render(world.Spec(hair="red", outfit="green", context="beach"), 32)
    ctl_lora, ctl_base = (
        cell("red hair, green outfit, beach", control=0),
        cell("red hair, green outfit, beach", False, 0),
    )
    rows = scorer.score([ctl_base, ctl_lora], [other, mira], {ctl_base.id: other}.get)
    assert rows[1]["prior"] == pytest.approx(1.0) and rows[0]["prior"] < 0.5  # the LoRA pulled the class prompt to her
    assert "identity" not in rows[1]
    # diversity: the same image for every seed is 0; different images are not
    cells = [cell("zkx, forest", seed=s) for s in range(3)]
    same = {c.id: {"scorer": "s", "vec": encode_vec(np.array([0.6, 0.8]))} for c in cells}
    assert diversity(cells, same, "s") == pytest.approx(0.0, abs=1e-3)
    vecs = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.0])]
    varied = {c.id: {"scorer": "s", "vec": encode_vec(v)} for c, v in zip(cells, vecs, strict=True)}
    assert diversity(cells, varied, "s") == pytest.approx(2 / 3, abs=1e-3)
    reads = {
        c.id: {"scorer": "r", "reading": {"hair": h, "pose": "standing"}} for c, h in zip(cells, "aab", strict=True)
    }
    assert diversity(cells, reads, "r") == pytest.approx((0 + 0.5 + 0.5) / 3)
    assert diversity(cells[:1], varied, "s") is None  # one seed: nothing to measure


def _row(name: str, identity: float, leak: float, seed_sd: float | None, prompt_sd: float | None = None):
    from lorawb.matrix.scores import SummaryRow

    r = SummaryRow(name, 1.0, identity=identity, leak=leak, seed_sd=seed_sd, prompt_sd=prompt_sd, seeds=2, prompts=4)
    r.net = identity - leak
    return r


def test_the_recommendation_refuses_to_separate_candidates_within_the_spread():
    from lorawb.matrix.scores import Summary, SummaryRow, format_table

    base = SummaryRow("base", 0.0, identity=0.4, prior=0.3, diversity=0.5)
    close = Summary(
        "CLIP (x)", ("identity", "leak"), [base, _row("step 100", 0.70, 0.1, 0.03), _row("step 200", 0.72, 0.1, 0.04)]
    )
    close.ceiling = 0.8
    rec = close.recommendation()
    assert rec.startswith("step 200 at weight 1: identity 0.72 · dataset 0.80 (90%), leak 0.10")
    assert (
        "step 100 at weight 1 is within the spread (margin 0.020 ≤ 0.040): this matrix does not tell them apart" in rec
    )
    assert close.within_spread() == pytest.approx((0.02, 0.04))
    # the prompt-to-prompt spread counts too
    by_prompt = Summary("r", ("identity",), [_row("a", 0.80, 0, 0.01, 0.15), _row("b", 0.70, 0, 0.01, 0.02)])
    assert by_prompt.within_spread() is not None
    apart = Summary(
        "CLIP (x)", ("identity", "leak"), [base, _row("step 100", 0.50, 0.1, 0.03), _row("step 200", 0.72, 0.1, 0.04)]
    )
    assert apart.within_spread() is None and "within the spread" not in apart.recommendation()
    single = Summary("r", ("identity",), [_row("a", 0.8, 0, None), _row("b", 0.7, 0, None)])
    assert "one seed and one prompt: no spread" in single.recommendation()
    table = format_table(close)
    assert table.splitlines()[0] == "dataset ceiling (each training image against the rest, CLIP (x)): 0.80"
    assert "PRES" in table.splitlines()[1] and "±seed" in table.splitlines()[1]


def test_summaries_measure_spreads_pres_and_collapse_from_cell_scores(lora_project):
    """The drawn test matrix (checkpoints 1, 2 × weights 0, 1 × 2 contexts × 2 seeds + a control), given scores."""
    from lorawb.matrix.folder import MatrixFolder
    from lorawb.matrix.plan import plan_matrix
    from lorawb.matrix.scores import summarize

    plan = plan_matrix(MatrixFolder(lora_project / "matrices" / "small"))
    scores = {}
    for c in plan.layout.cells.values():
        p = c.params
        row = {"scorer": "s", "ceiling": 0.9}
        step2 = p.lora is not None and "2" in (p.lora.label or "")
        # step 2 draws one image whatever the seed; base and step 1 vary with it
        row["vec"] = encode_vec(
            np.array([1.0, 0.0]) if step2 else np.array([np.cos(p.seed * 1.5), np.sin(p.seed * 1.5)])
        )
        if c.is_control:
            row["prior"] = 0.2 if p.lora is None else 0.6
        else:
            row["identity"] = (
                (0.3 if p.lora is None else 0.8) + (0.05 if p.seed else -0.05) + (0.1 if "forest" in p.prompt else 0.0)
            )
        scores[c.id] = row
    s = summarize(plan.layout, scores, set(scores), "s", ("identity", "prior"), collapse_ratio=0.5)
    rows = {(r.checkpoint, r.weight): r for r in s.rows}
    base, one, two = rows[("base", 0.0)], rows[("step 1", 1.0)], rows[("step 2", 1.0)]
    assert s.ceiling == 0.9 and "diversity" in s.measures
    assert base.prior == pytest.approx(0.2) and two.prior == pytest.approx(0.6)
    assert two.seeds == 2 and two.seed_sd == pytest.approx(
        np.std([0.8, 0.9], ddof=1)
    )  # seeds 0 and 1, forest +0.1 in both
    assert two.prompts == 2 and two.prompt_sd == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert base.diversity == pytest.approx(1 - np.cos(1.5), abs=1e-3) and two.diversity == pytest.approx(0.0, abs=1e-3)
    assert two.collapsed and not one.collapsed
    assert "within the spread" in s.recommendation()  # step 1 and step 2 score the same


def test_make_scorer_reads_face_embedder_and_crop_from_the_settings(face_dir, tmp_path):
    from types import SimpleNamespace

    from lorawb.core.config import ProjectConfig
    from lorawb.errors import ConfigError
    from lorawb.matrix.scores import make_scorer

    (tmp_path / "dataset").mkdir()
    face_image([(1, 1, (250, 20, 20))]).save(tmp_path / "dataset" / "a.png")
    face_image([(2, 2, (250, 20, 20))]).save(tmp_path / "dataset" / "b.png")
    project = SimpleNamespace(
        root=tmp_path,
        dataset_dir=tmp_path / "dataset",
        state_dir=tmp_path / ".lorawb",
        config_path=tmp_path / "lorawb.toml",
        config=ProjectConfig(),
        resolve=lambda p: tmp_path / p,
    )
    ctx = SimpleNamespace(toyworld=False)
    scorer = make_scorer(project, ctx, MatrixSettings(face_embedder=str(face_dir)))  # type: ignore[arg-type]
    assert scorer.name.startswith("faces (buffalo_tiny") and scorer.ceiling == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / ".lorawb" / "matrix" / "ceiling").is_dir()
    with pytest.raises(ConfigError, match='crop = "face" needs a face detector'):
        make_scorer(project, ctx, MatrixSettings(crop="face"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="crops for an image embedder"):
        make_scorer(project, ctx, MatrixSettings(face_embedder=str(face_dir), crop="subject"))  # type: ignore[arg-type]


def test_judge_for_a_project_scores_regions_against_one_characters_images(face_dir, tmp_path):
    from types import SimpleNamespace

    from lorawb.matrix.identity import judge_for

    (tmp_path / "dataset").mkdir()
    mira, tom = tmp_path / "dataset" / "mira.png", tmp_path / "dataset" / "tom.png"
    face_image([(1, 1, (250, 20, 20))]).save(mira)
    face_image([(1, 1, (250, 20, 120))]).save(tom)
    project = SimpleNamespace(
        root=tmp_path,
        dataset_dir=tmp_path / "dataset",
        state_dir=tmp_path / ".lorawb",
        config_path=tmp_path / "lorawb.toml",
        resolve=lambda p: tmp_path / p,
    )
    assert judge_for(project, settings=MatrixSettings())[0] is None  # type: ignore[arg-type]
    settings = MatrixSettings(face_embedder=str(face_dir), top_k=1)
    judge_mira, why = judge_for(project, [mira], settings)  # type: ignore[arg-type]
    judge_tom, _ = judge_for(project, [tom], settings)  # type: ignore[arg-type]
    assert why == "" and judge_mira is not None and judge_tom is not None
    pair = face_image([(0, 1, (250, 20, 20)), (3, 1, (250, 20, 120))])  # mira left, tom right
    left_m, right_m = judge_mira.by_region(pair, ["left", "right"])
    left_t, right_t = judge_tom.by_region(pair, ["left", "right"])
    assert left_m.identity > right_m.identity and right_t.identity > left_t.identity
