"""The project's ``[matrix]`` settings in lorawb.toml (validated here; errors name key and line).

::

    [matrix]
    embedder = "models/clip-vit-b32"   # a local transformers CLIP or DINOv2 folder for the scores
    face_embedder = "models/buffalo_l" # optional: faces (SCRFD + ArcFace .onnx) measure identity
    crop = "subject"                   # identity on the central subject region (or "face", or "none")
    memorisation_threshold = 0.95      # a cell this close to one training image is flagged
    target_minutes = 10                # `matrix new` fits a new matrix to about this long (0: the full one)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from lorawb.core import tomlio

if TYPE_CHECKING:
    from lorawb.core.project import Project


class MatrixSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedder: str = Field(
        "",
        description="a local transformers CLIP (CLIPModel, CLIPVisionModelWithProjection) or DINOv2 (Dinov2Model) "
        "folder that embeds images for the scores; nothing is downloaded",
    )
    face_embedder: str = Field(
        "",
        description="a local InsightFace-format folder (an SCRFD detector det_*.onnx and an ArcFace recognition "
        ".onnx, run with onnxruntime): identity becomes the similarity of the detected faces to the dataset's faces",
    )
    crop: Literal["none", "subject", "face"] = Field(
        "none",
        description="what a whole-image embedder looks at for identity: the whole image, the central subject "
        "region, or the detected face's box (needs face_embedder)",
    )
    collapse_ratio: float = Field(
        0.5,
        ge=0,
        le=1,
        description="diversity: a checkpoint × weight whose seeds differ less than this share of the base "
        "model's diversity is flagged as collapsed",
    )
    scorer: Literal["auto", "embedder", "toyworld", "none"] = Field(
        "auto", description="auto: the embedder when set, else the toy-world reader for toy-world models"
    )
    top_k: int = Field(5, ge=1, le=100, description="identity: mean similarity to this many nearest dataset images")
    memorisation_threshold: float = Field(
        0.95, gt=0, le=1, description="flag a cell whose nearest training image is at least this similar"
    )
    max_cells: int = Field(2000, ge=1, description="refuse bigger matrices unless --yes")
    target_minutes: float = Field(
        10,
        ge=0,
        description="`matrix new` (and n in the Matrix tab) fits a new matrix's seeds, prompts, checkpoints and "
        "weights to about this many minutes of drawing at the measured speed, saying what it left out; "
        "0: the full matrix",
    )
    max_sheet_pixels: int = Field(40_000_000, ge=10_000, description="contact sheets are downscaled below this")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the matrix draws")
    precision: Literal["auto", "fp16", "bf16", "fp32"] = Field("auto", description="GPU weights (CPU: fp32)")
    max_loaded: int = Field(2, ge=1, le=64, description="LoRAs kept loaded at once")


def matrix_settings(project: Project) -> MatrixSettings:
    return tomlio.validate(
        MatrixSettings, dict(project.config.matrix), path=project.config_path, text=project.config_text, prefix="matrix"
    )
