"""The project's own settings in lorawb.toml (the core sections).

lorawb.toml also holds the training defaults (sections ``model``, ``dataset``,
``network``, ``train``, ``sample``, ``save``); those belong to
``lorawb.train.config`` and are kept here as raw tables, validated when a run
is configured.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TRAINING_SECTIONS = ("model", "dataset", "network", "train", "sample", "save")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectSection(Strict):
    name: str = ""
    trigger: str = ""
    resolution: int = Field(512, ge=8, le=4096, description="training resolution (bucket area); tiny toy models use 32")
    min_resolution: int = Field(256, ge=1, description="images below this on their short side are flagged")
    dataset_dir: str = "dataset"
    inbox_dir: str = "inbox"

    @field_validator("trigger")
    @classmethod
    def _trigger_one_line(cls, v: str) -> str:
        if "," in v or "\n" in v:
            raise ValueError("the trigger must be a single tag (no commas or newlines)")
        return v.strip()


class TagsSection(Strict):
    # Named groups of tags for the composition table: {"context": ["forest", ...], ...}
    groups: dict[str, list[str]] = Field(default_factory=dict)


class TriageSection(Strict):
    dup_threshold: int = Field(6, ge=0, le=64, description="perceptual-hash distance for near-duplicates")
    keep_folder: str = Field("", description="dataset subfolder that kept inbox images move into")


class UISection(Strict):
    theme: str = "lorawb-dark"
    images: Literal["auto", "halfcell", "unicode", "sixel", "tgp"] = "auto"
    watch: Literal["auto", "poll", "off"] = Field(
        "auto", description="file watching: inotify (else polling), always polling (network folders), or off"
    )


class ProjectConfig(Strict):
    project: ProjectSection = Field(default_factory=ProjectSection)
    tags: TagsSection = Field(default_factory=TagsSection)
    triage: TriageSection = Field(default_factory=TriageSection)
    ui: UISection = Field(default_factory=UISection)
    # Training defaults, validated by lorawb.train.config.
    model: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict)
    network: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    sample: dict[str, Any] = Field(default_factory=dict)
    save: dict[str, Any] = Field(default_factory=dict)
    matrix: dict[str, Any] = Field(default_factory=dict)

    def training_defaults(self) -> dict[str, Any]:
        return {name: dict(getattr(self, name)) for name in TRAINING_SECTIONS}


DEFAULT_TOML = """\
# lorawb project settings. Edit by hand or from the app; comments are kept on save.

[project]
name = "{name}"
# The trigger phrase leads every caption; the rest of a caption says what varies.
trigger = "{trigger}"
# Training resolution: aspect-ratio buckets hold about resolution x resolution pixels.
resolution = 512
# Images whose short side is below this are flagged as low resolution.
min_resolution = 256

[tags.groups]
# Tag groups for the composition table: the character should appear across all of them.
context = ["forest", "spaceship", "bar", "beach"]
style = ["watercolor", "pixel art", "photo", "sketch"]

[triage]
# Perceptual-hash distance (0-64) under which two images count as near-duplicates.
dup_threshold = 6

[ui]
theme = "lorawb-dark"
# auto, halfcell, unicode, sixel or tgp (Kitty graphics)
images = "auto"

# Training defaults; every run freezes the resolved config into runs/<id>/config.toml.
[model]
# A local diffusers folder or a single .safetensors file (SD1.x/2.x or SDXL).
path = ""

[train]
max_steps = 1000
batch_size = 1
learning_rate = 1e-4

[sample]
every_n_steps = 200
prompts = ["{{trigger}}, forest", "{{trigger}}, spaceship", "{{trigger}}, bar", "{{trigger}}, beach"]

[save]
every_n_steps = 500
"""
