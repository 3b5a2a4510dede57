"""The machine's lanes: where the runner may start a job (one job per GPU by default).

``CUDA_VISIBLE_DEVICES`` names them when it is set (``0,1`` → lanes 0 and 1, UUIDs too);
otherwise the NVIDIA GPUs the driver lists; with no GPU, one CPU lane. A job that asks for N
GPUs (``train.num_processes``, ``--num-processes``) waits until N lanes are free and runs with
``CUDA_VISIBLE_DEVICES`` set to them. No torch here: the runner must start in a blink.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CPU_LANE = "cpu"


def detect_lanes() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        lanes = [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return lanes or [CPU_LANE]
    n = count_gpus()
    return [str(i) for i in range(n)] if n else [CPU_LANE]


def count_gpus() -> int:
    """NVIDIA GPUs present: the driver's /proc entries, else `nvidia-smi -L`; 0 without either."""
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        n = sum(1 for _ in proc.iterdir())
        if n:
            return n
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def is_cpu(lanes: list[str]) -> bool:
    return lanes == [CPU_LANE]
