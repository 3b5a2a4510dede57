"""The doctor's training checks: lorawb.toml read as the trainer reads it, handed to the core's doctor.

core never imports train (tests/test_layering.py), so the core's ``diagnose`` reports on the dataset
and receives the trainer's view as a ``TrainingFacts``: the settings a run would refuse
(file:line: key, as `lorawb train` says them), the trainer's buckets, a resolution far from the
model's, the reg folder a run would use. ``doctor`` is the whole report, what `lorawb doctor` prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lorawb.core.doctor import DoctorReport, TrainingFacts, diagnose
from lorawb.errors import ConfigError

if TYPE_CHECKING:
    from lorawb.core.dataset import Progress, ScanResult
    from lorawb.core.project import Project


def training_facts(project: Project) -> TrainingFacts:
    """What a run started now would make of lorawb.toml (no torch: the doctor stays fast)."""
    from lorawb.train.config import bucket_settings, project_training, resolve_config
    from lorawb.train.modelpath import recommend, resolution_warning

    training = project_training(project)
    warnings = []
    if training.config.model.path:
        rec = recommend(training.config.model.path, training.config.model.config)
        warning = resolution_warning(training.config.dataset.resolution, rec)
        if warning:
            warnings.append(warning)
    try:
        ds = resolve_config(project).dataset
        reg_path, weight = ds.reg_path or "none", ds.prior_loss_weight
    except ConfigError:
        reg_path, weight = "none", 1.0
    return TrainingFacts(list(training.errors), bucket_settings(project, training), warnings, reg_path, weight)


def doctor(project: Project, scan: ScanResult | None = None, progress: Progress | None = None) -> DoctorReport:
    """The whole health report: the dataset (core) and the training settings (the trainer's reading)."""
    return diagnose(project, scan, progress, training_facts(project))
