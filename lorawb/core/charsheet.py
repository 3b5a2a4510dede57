"""The character sheet: what `lorawb generate` draws a first dataset (v0) from, in lorawb.toml.

A one-character project writes it as ``[generate]``::

    [generate]
    description = "woman with short blue hair, orange jumpsuit, pink scarf"   # the character, until a LoRA exists
    refs = "refs"                    # reference images (IP-Adapter, reference editing, the pre-sort)
    contexts = ["forest", "spaceship"]   # each variation list defaults to the [tags.groups] list of that name
    styles = ["watercolor", "photo"]
    poses = ["standing", "waving"]   # with ControlNet: the built-in skeletons of these names
    negative = "blurry"
    count = 2                        # images per combination

``CharacterSheet`` holds what describes one character; ``GenerateSection`` adds how the job
draws (the variation helper and its model folders, steps, guidance, size). Several characters
(``[characters.<name>]``) are character sheets with the same fields. No torch here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The variation axes, in the order a caption names them (after the trigger).
AXES = ("context", "style", "pose", "expression", "outfit")
HELPERS = ("none", "ip-adapter", "controlnet", "edit")


class CharacterSheet(BaseModel):
    """One character: its description, references and the variations to draw it in."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    trigger: str = Field("", description="the character's trigger (empty: [project] trigger)")
    description: str = Field(
        "", description="what stands for the character in the prompt until a LoRA exists (its invariant features)"
    )
    refs: str = Field("refs", description="folder of reference images (relative to the project)")
    contexts: list[str] | None = Field(None, description="contexts to draw in (default: [tags.groups] context)")
    styles: list[str] | None = Field(None, description="styles (default: [tags.groups] style)")
    poses: list[str] | None = Field(None, description="poses (default: [tags.groups] pose)")
    expressions: list[str] | None = Field(None, description="expressions (default: [tags.groups] expression)")
    outfits: list[str] | None = Field(None, description="outfits (default: [tags.groups] outfit)")
    negative: str = Field("", description="negative prompt")
    count: int = Field(1, ge=1, le=1000, description="images per combination of the variations")

    @field_validator("trigger")
    @classmethod
    def _one_tag(cls, v: str) -> str:
        if "," in v or "\n" in v:
            raise ValueError("the trigger must be a single tag (no commas or newlines)")
        return v.strip()

    @field_validator("contexts", "styles", "poses", "expressions", "outfits")
    @classmethod
    def _clean(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        out: list[str] = []
        for item in v:
            item = " ".join(str(item).split())
            if "," in item:
                raise ValueError(f"{item!r}: one value per entry (no commas)")
            if item and item not in out:
                out.append(item)
        return out

    def axes(self, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        """Each variation axis with its values: the sheet's list, else the tag group of that name
        (``context`` or ``contexts``); axes with no values are left out."""
        out: dict[str, list[str]] = {}
        for axis in AXES:
            mine = getattr(self, axis + "s")
            values = mine if mine is not None else (groups.get(axis) or groups.get(axis + "s") or [])
            values = [" ".join(v.split()) for v in values if v.strip()]
            if values:
                out[axis] = values
        return out


class GenerateSection(CharacterSheet):
    """``[generate]``: a one-character project's sheet, and how candidates are drawn."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    helper: Literal["none", "ip-adapter", "controlnet", "edit"] = Field(
        "none", alias="with", description="variation helper: none, ip-adapter, controlnet or edit"
    )
    ip_adapter: str = Field("", description="an IP-Adapter .safetensors file (image_proj + ip_adapter keys)")
    image_encoder: str = Field(
        "", description="its CLIP image encoder folder (default: image_encoder/ beside the adapter file or above it)"
    )
    ip_adapter_scale: float = Field(0.6, ge=0.0, le=2.0, description="how strongly the reference steers")
    controlnet: str = Field("", description="an OpenPose ControlNet folder (diffusers layout)")
    controlnet_scale: float = Field(1.0, ge=0.0, le=2.0, description="how strongly the pose steers")
    edit_model: str = Field("", description="a reference-editing base model (e.g. a Flux.1 Kontext folder)")
    lora_weight: float = Field(1.0, ge=-4.0, le=4.0, description="the weight of --lora")
    steps: int = Field(0, ge=0, le=1000, description="sampling steps (0: the model's recommendation, else 20)")
    cfg: float = Field(0.0, ge=0.0, le=50.0, description="guidance scale (0: the model's recommendation)")
    width: int = Field(0, ge=0, le=8192, description="image width (0: the model's, else [project] resolution)")
    height: int = Field(0, ge=0, le=8192, description="image height (0: as width)")
    sampler: Literal["", "ddim", "euler", "dpm"] = Field("", description="sampler ('': [sample] scheduler)")
    seed: int = Field(0, ge=0, description="shifts every candidate's seed")
    batch: int = Field(8, ge=1, le=256, description="images per pipeline call")
