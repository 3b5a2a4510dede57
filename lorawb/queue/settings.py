"""The ``[queue]`` settings: where queued jobs run (this machine, or Slurm) and how.

Read from the machine's ``~/.config/lorawb/config.toml`` and then the project's ``lorawb.toml``
(the project's keys win), so a cluster login node can say ``executor = "slurm"`` once for
every project, and one project can still ask for its own partition::

    [queue]
    executor = "slurm"          # "local" (default): this machine's GPU lanes
    partition = "gpu"
    account = "my-lab"
    gpus = 1                    # GPUs per job (--gres=gpu:N); default: the job's own process count
    time = "4:00:00"            # the job's time limit; it is asked to save and stop before it
    sbatch = ["--qos=normal", "--mem=32G"]   # more #SBATCH lines, as written
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lorawb.core import tomlio
from lorawb.core.userdirs import config_home

if TYPE_CHECKING:
    from pathlib import Path

    from lorawb.core.project import Project


class QueueSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    executor: Literal["local", "slurm"] = Field(
        "local", description="local: this machine's GPUs, one job per GPU lane; slurm: each job an sbatch"
    )
    max_requeues: int = Field(
        3, ge=0, le=100, description="how often a job that died (or was preempted) is started again from its checkpoint"
    )
    partition: str = Field("", description="Slurm partition (--partition); empty: the cluster's default")
    account: str = Field("", description="Slurm account (--account)")
    gpus: int | None = Field(None, ge=0, description="GPUs per Slurm job (--gres=gpu:N); default: the job's processes")
    cpus: int = Field(0, ge=0, description="CPUs per Slurm job (--cpus-per-task); 0: the partition's default")
    time: str = Field("", description="Slurm time limit (--time), e.g. 4:00:00")
    signal_grace: int = Field(
        120, ge=0, description="seconds before the time limit when Slurm asks the job to save and stop"
    )
    sbatch: list[str] = Field(default_factory=list, description="extra #SBATCH lines, e.g. --qos=high")


def machine_config_path() -> Path:
    return config_home() / "config.toml"


def queue_settings(project: Project | None = None) -> QueueSettings:
    """The machine's ``[queue]`` with the project's keys over it; errors name the file and key."""
    data: dict[str, Any] = {}
    machine = machine_config_path()
    if machine.is_file():
        doc, text = tomlio.load_document(machine)
        table = tomlio.to_plain(doc).get("queue", {})
        tomlio.validate(QueueSettings, table, path=machine, text=text, prefix="queue")
        data.update(table)
    if project is not None and project.config.queue:
        data.update(dict(project.config.queue))
        return tomlio.validate(QueueSettings, data, path=project.config_path, text=project.config_text, prefix="queue")
    return QueueSettings.model_validate(data)
