"""Identity: what measures it (an image embedder, on the whole image, the subject or the face; or faces),
against the dataset, with the dataset's own consistency as its ceiling; per region for several figures.

- ``IdentityJudge``: embeds the dataset once (cached in ``.lorawb/matrix/``) and scores an image
  (``score``), or given regions of it (``by_region``: left/right halves, face boxes, any box) —
  ``identity_by_region(judge, image, regions)`` for callers that place several characters.
  With a face model (``[matrix] face_embedder``) identity is the similarity of each detected face to the
  dataset's faces, and an image or region without a face is ``"no face found"``, not a low score.
- ``leave_one_out``: the dataset's own consistency, each training image against the rest with the
  same measure and k: the most a generated image can be expected to reach ("identity 0.71 ·
  dataset 0.77 (92%)"). ``IdentityJudge.ceiling`` measures it once per dataset state and caches it.
- ``subject_box``: the central subject region, for ``[matrix] crop = "subject"`` (a forest behind
  the character does not count as identity).

No UI here; the matrix scorer (lorawb.matrix.scores) and the multi-character scores call it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lorawb.core.fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from PIL import Image

    from lorawb.core.project import Project
    from lorawb.matrix.embedder import Embedder
    from lorawb.matrix.faces import Face, FaceModel
    from lorawb.matrix.settings import MatrixSettings

Crop = Literal["none", "subject", "face"]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
Region = Box | Literal["whole", "left", "right"]
# The central subject region as shares of width and height: a standing figure, not the scenery beside it.
SUBJECT = (0.2, 0.05, 0.8, 1.0)
NO_FACE = "no face found"


def subject_box(width: int, height: int) -> Box:
    x0, y0, x1, y1 = SUBJECT
    return (x0 * width, y0 * height, x1 * width, y1 * height)


def region_box(region: Region, width: int, height: int) -> Box:
    if region == "whole":
        return (0.0, 0.0, float(width), float(height))
    if region == "left":
        return (0.0, 0.0, width / 2, float(height))
    if region == "right":
        return (width / 2, 0.0, float(width), float(height))
    return tuple(float(v) for v in region)  # type: ignore[return-value]


def crop_to(image: Image.Image, box: Box) -> Image.Image:
    x0, y0, x1, y1 = (round(v) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    return image.crop((x0, y0, x1, y1))


def top_k_mean(sims: np.ndarray, k: int) -> float:
    k = max(1, min(k, len(sims)))
    return float(np.sort(sims)[-k:].mean())


def leave_one_out(vectors: np.ndarray, owners: Sequence[int], k: int) -> dict[int, float]:
    """Per dataset image (``owners``: the image each row of ``vectors`` came from): its identity against
    the other images' rows (mean of the top-k similarities; its best row when it has several)."""
    owners = np.asarray(list(owners))
    out: dict[int, float] = {}
    for img in sorted(set(owners.tolist())):
        others = vectors[owners != img]
        if not len(others):
            continue
        mine = vectors[owners == img]
        out[int(img)] = max(top_k_mean(others @ v, k) for v in mine)
    return out


@dataclass(frozen=True)
class Ceiling:
    """The dataset's own consistency: each image against the rest (leave-one-out), same measure and k."""

    value: float | None
    images: int  # dataset images measured (those with a face, with a face model)
    k: int
    measured_by: str
    per_image: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "images": self.images, "k": self.k, "measured_by": self.measured_by}


def of_ceiling(identity: float | None, ceiling: float | None) -> str:
    """``identity 0.71 · dataset 0.77 (92%)``; the share is left out where the ceiling is not positive."""
    if identity is None:
        return "identity -"
    text = f"identity {identity:.2f}"
    if ceiling is not None:
        text += f" · dataset {ceiling:.2f}"
        if ceiling > 0:
            text += f" ({100 * identity / ceiling:.0f}%)"
    return text


@dataclass(frozen=True)
class RegionIdentity:
    """One region's (or one face's) identity, or why there is none (``outcome`` = ``"no face found"``)."""

    box: Box
    identity: float | None
    nearest: float | None  # similarity to the single nearest dataset image (face)
    outcome: str  # "ok" or NO_FACE
    faces: int = 0  # faces found in the region (face model only)

    def as_dict(self) -> dict[str, Any]:
        return {
            "box": [round(v, 1) for v in self.box],
            "identity": self.identity,
            "nearest": self.nearest,
            "outcome": self.outcome,
            "faces": self.faces,
        }


class _Cropped:
    """An embedder seen through a crop: what ``dataset_embeddings`` caches for the subject or face crop."""

    def __init__(self, judge: IdentityJudge) -> None:
        assert judge.embedder is not None
        self.judge = judge
        self.key = f"{judge.embedder.key}-{judge.crop}" + (f"-{judge.faces.key}" if judge.faces else "")
        self.key = hashlib.sha1(self.key.encode()).hexdigest()[:16] if judge.crop != "none" else judge.embedder.key

    def images(self, images: Sequence[Image.Image]) -> np.ndarray:
        assert self.judge.embedder is not None
        return self.judge.embedder.images([self.judge.cropped(im) for im in images])


class IdentityJudge:
    """Identity against the dataset with one measure: faces (a face model), or an image embedder on the
    whole image, its subject region or its face box (``crop``)."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        faces: FaceModel | None = None,
        crop: Crop = "none",
        top_k: int = 5,
    ) -> None:
        if embedder is None and faces is None:
            raise ValueError("an identity judge needs an embedder or a face model")
        if crop == "face" and faces is None:
            raise ValueError('crop = "face" needs a face detector ([matrix] face_embedder)')
        self.embedder, self.faces, self.crop, self.top_k = embedder, faces, crop, top_k
        self.by_faces = faces is not None and (embedder is None or crop != "face")
        self.vectors = np.zeros((0, 1), np.float32)
        self.owners: list[int] = []  # the dataset image of each row of ``vectors``
        self.rels: list[str] = []  # dataset images, relative to the project

    @property
    def name(self) -> str:
        if self.by_faces:
            assert self.faces is not None
            return self.faces.name
        assert self.embedder is not None
        where = {"none": "", "subject": ", subject crop", "face": ", face crop"}[self.crop]
        return self.embedder.name[:-1] + where + ")" if where else self.embedder.name

    @property
    def key(self) -> str:
        parts = [self.name, str(self.top_k)]
        if self.embedder is not None:
            parts.append(self.embedder.key)
        if self.faces is not None:
            parts.append(self.faces.key)
        return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]

    # --- seeing an image ----------------------------------------------------------------------
    def cropped(self, image: Image.Image) -> Image.Image:
        """The part of ``image`` the image embedder looks at (whole, subject region, or the best face's box)."""
        image = image.convert("RGB")
        if self.crop == "subject":
            return crop_to(image, subject_box(*image.size))
        if self.crop == "face":
            assert self.faces is not None
            found = self.faces.detect(image)
            if found:
                return crop_to(image, _padded(found[0].box, image.size))
        return image

    def detect(self, image: Image.Image) -> list[Face]:
        assert self.faces is not None
        return self.faces.detect(image)

    def embed(self, image: Image.Image) -> tuple[np.ndarray, list[Box | None]]:
        """Rows to match against the dataset: one per face (faces), or one for the (cropped) image."""
        if self.by_faces:
            assert self.faces is not None
            found = self.faces.detect(image)
            return self.faces.embed(image, found), [f.box for f in found]
        assert self.embedder is not None
        return self.embedder.images([self.cropped(image)]), [None]

    # --- the dataset --------------------------------------------------------------------------
    def load_dataset(self, images: Sequence[Path], root: Path, cache_dir: Path) -> None:
        """Embed the dataset (cached per image by size and modification time)."""
        from lorawb.matrix.embedder import _open, dataset_embeddings

        self.rels = [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in images]
        if not self.by_faces:
            self.vectors = dataset_embeddings(_Cropped(self), cache_dir, root, images)  # type: ignore[arg-type]
            self.owners = list(range(len(images)))
            return
        rows, owners = _cached_faces(self, cache_dir, images, self.rels, _open)
        self.vectors, self.owners = rows, owners

    @property
    def dataset_images_with_rows(self) -> int:
        return len(set(self.owners))

    def match(self, vec: np.ndarray) -> tuple[float | None, float | None, str | None]:
        """(identity: top-k mean similarity, nearest similarity, nearest dataset image) of one row."""
        if not len(self.vectors):
            return None, None, None
        sims = self.vectors @ vec
        best = int(np.argmax(sims))
        return top_k_mean(sims, self.top_k), float(sims[best]), self.rels[self.owners[best]]

    # --- the ceiling --------------------------------------------------------------------------
    def ceiling(self, cache_dir: Path) -> Ceiling:
        """The dataset's leave-one-out consistency, measured once per dataset state and cached."""
        stamp = hashlib.sha1(
            json.dumps([self.rels, self.owners, self.vectors.shape[0], self.top_k]).encode()
            + self.vectors.astype(np.float32).tobytes()
        ).hexdigest()[:16]
        path = cache_dir / "ceiling" / f"{self.key}.json"
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("stamp") == stamp:
                return Ceiling(
                    cached["value"], cached["images"], cached["k"], cached["measured_by"], cached["per_image"]
                )
        except (OSError, ValueError, KeyError):
            pass
        per = leave_one_out(self.vectors, self.owners, self.top_k) if len(self.vectors) else {}
        per_image = {self.rels[i]: round(v, 6) for i, v in per.items()}
        value = float(np.mean(list(per.values()))) if per else None
        out = Ceiling(value, len(per), self.top_k, self.name, per_image)
        atomic_write_bytes(path, json.dumps({"stamp": stamp, **out.as_dict(), "per_image": per_image}).encode())
        return out

    # --- regions ------------------------------------------------------------------------------
    def by_region(self, image: Image.Image, regions: Sequence[Region] = ("whole",)) -> list[RegionIdentity]:
        """Identity of each region of ``image`` against the dataset.

        With a face model: the best-matching face whose centre lies in the region (``"no face found"``
        when none does); ``regions = ["faces"]`` is not a box: use ``faces_of`` for one result per face.
        With an image embedder: the region cropped (then the judge's own crop inside it) and embedded.
        """
        image = image.convert("RGB")
        out = []
        found: list[Face] | None = None
        vecs = None
        for region in regions:
            box = region_box(region, *image.size)
            if self.by_faces:
                if found is None:
                    found = self.detect(image)
                    vecs = self.faces.embed(image, found) if found else None  # type: ignore[union-attr]
                inside = [i for i, f in enumerate(found) if _centre_in(f.box, box)]
                if not inside:
                    out.append(RegionIdentity(box, None, None, NO_FACE, 0))
                    continue
                scored = [self.match(vecs[i])[:2] for i in inside]  # type: ignore[index]
                ident, near = max(scored, key=lambda t: t[0] if t[0] is not None else -2.0)
                out.append(RegionIdentity(box, ident, near, "ok", len(inside)))
            else:
                part = crop_to(image, box)
                vec = self.embedder.images([self.cropped(part)])[0]  # type: ignore[union-attr]
                ident, near, _ = self.match(vec)
                out.append(RegionIdentity(box, ident, near, "ok"))
        return out

    def faces_of(self, image: Image.Image) -> list[RegionIdentity]:
        """One result per detected face (best first); empty when none is found (face model only)."""
        if self.faces is None:
            raise ValueError("faces_of needs a face model ([matrix] face_embedder)")
        image = image.convert("RGB")
        found = self.faces.detect(image)
        if not found:
            return []
        vecs = self.faces.embed(image, found)
        out = []
        for f, v in zip(found, vecs, strict=True):
            ident, near, _ = self.match(v)
            out.append(RegionIdentity(f.box, ident, near, "ok", 1))
        return out


def judge_for(
    project: Project, dataset: Sequence[Path] | None = None, settings: MatrixSettings | None = None
) -> tuple[IdentityJudge | None, str]:
    """The project's identity judge (``[matrix]`` embedder, face_embedder, crop, top_k) with ``dataset``
    loaded (default: the project's dataset; pass one character's images for per-character scores).

    Returns (judge, "") or (None, why nothing can measure identity on real images).
    """
    from lorawb.matrix.scores import NO_EMBEDDER, dataset_images
    from lorawb.matrix.settings import matrix_settings

    settings = settings or matrix_settings(project)
    if not (settings.embedder or settings.face_embedder):
        return None, NO_EMBEDDER
    embedder = faces = None
    if settings.embedder:
        from lorawb.matrix.embedder import load_embedder

        embedder = load_embedder(project.resolve(settings.embedder), settings.device)
    if settings.face_embedder:
        from lorawb.matrix.faces import FaceModel

        faces = FaceModel(project.resolve(settings.face_embedder))
    crop = settings.crop if (settings.crop != "face" or faces is not None) else "none"
    judge = IdentityJudge(embedder, faces, crop if embedder is not None else "none", settings.top_k)
    paths = list(dataset) if dataset is not None else dataset_images(project)
    judge.load_dataset(paths, project.root, project.state_dir / "matrix" / "embeddings")
    return judge, ""


def identity_by_region(judge: IdentityJudge, image: Image.Image, regions: Sequence[Region]) -> list[RegionIdentity]:
    """Identity of each region of ``image`` (boxes, ``"left"``, ``"right"``, ``"whole"``) against the dataset."""
    return judge.by_region(image, regions)


def _centre_in(face: Box, box: Box) -> bool:
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    return box[0] <= cx < box[2] and box[1] <= cy < box[3]


def _padded(box: Box, size: tuple[int, int], pad: float = 0.25) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    return (
        max(0.0, box[0] - pad * w),
        max(0.0, box[1] - pad * h),
        min(float(size[0]), box[2] + pad * w),
        min(float(size[1]), box[3] + pad * h),
    )


def _cached_faces(
    judge: IdentityJudge, cache_dir: Path, images: Sequence[Path], rels: list[str], open_image: Any
) -> tuple[np.ndarray, list[int]]:
    """The dataset's face embeddings (every face of every image), cached per image by size and mtime."""
    from lorawb.matrix.embedder import _stamp

    assert judge.faces is not None
    path = cache_dir / f"faces-{hashlib.sha1(judge.faces.key.encode()).hexdigest()[:16]}.npz"
    cached: dict[str, tuple[str, np.ndarray]] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            index = json.loads(str(z["index"]))
            for rel, (stamp, start, stop) in index.items():
                cached[rel] = (stamp, z["vectors"][start:stop])
    except (OSError, ValueError, KeyError):
        cached = {}
    per: list[np.ndarray] = []
    changed = False
    for p, rel in zip(images, rels, strict=True):
        stamp = _stamp(p)
        hit = cached.get(rel)
        if hit and hit[0] == stamp:
            per.append(hit[1])
            continue
        im = open_image(p)
        found = judge.faces.detect(im)
        per.append(judge.faces.embed(im, found) if found else np.zeros((0, 0), np.float32))
        changed = True
    dim = next((v.shape[1] for v in per if v.size), 1)
    rows = [v if v.size else np.zeros((0, dim), np.float32) for v in per]
    owners = [i for i, v in enumerate(rows) for _ in range(len(v))]
    mat = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    if changed or set(cached) != set(rels):
        index, at = {}, 0
        for p, rel, v in zip(images, rels, rows, strict=True):
            index[rel] = (_stamp(p), at, at + len(v))
            at += len(v)
        buf = io.BytesIO()
        np.savez(buf, vectors=mat, index=np.array(json.dumps(index)))
        atomic_write_bytes(path, buf.getvalue())
    return mat, owners
