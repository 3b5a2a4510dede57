"""Jobs run by detached processes: the folder's lock, pid file and stop request, and the launcher.

A training run (``runs/<id>/``) and a matrix run (``matrices/<id>/``) are both jobs: a
folder that one worker process owns while it runs, that survives the app closing and the
SSH connection dropping, and that anyone can ask to stop. No torch here.

    run.lock       flock'ed by the worker: a second worker on the same folder is refused
    run.pid        the worker's pid while it runs
    stop.request   created by ``request_stop``; the worker finishes what it is doing and stops

The launcher takes the lock *before* starting the worker and hands the locked file to it
(``--lock-fd``), so the job counts as alive from the moment ``spawn`` returns. Several
processes (``num_processes > 1``) are started through ``accelerate launch``; the
launcher process then holds the lock and its workers are told so (``LORAWB_LOCK_HELD``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorawb.errors import RunError
from lorawb.train.events import EventWriter

LOCK_HELD_ENV = "LORAWB_LOCK_HELD"


@dataclass
class JobFolder:
    """A folder owned by one detached worker while it runs."""

    path: Path

    # What the messages call the worker and the job ("another trainer is already running this run").
    worker_name = "worker"
    job_name = "job"

    @property
    def id(self) -> str:
        return self.path.name

    lock_file = property(lambda self: self.path / "run.lock")
    pid_file = property(lambda self: self.path / "run.pid")
    stop_file = property(lambda self: self.path / "stop.request")
    events = property(lambda self: self.path / "events.jsonl")

    def create(self) -> JobFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def busy_hint(self) -> str:
        """What to do when the job is already running (shown with the refusal)."""
        return "wait for it to finish or stop it first"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_alive(self) -> bool:
        """True when a worker holds the lock (robust across hosts' pid reuse)."""
        if not self.lock_file.exists():
            return False
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            pid = self.pid()
            return pid is not None and pid_alive(pid)
        with open(self.lock_file, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False

    def request_stop(self) -> None:
        if not self.is_alive():
            raise RunError(f"this {self.job_name} is not running", path=self.path)
        self.stop_file.write_text(str(time.time()))

    def stop_requested(self) -> bool:
        return self.stop_file.exists()


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, killed but not yet reaped by its parent, has not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def wait_stopped(job: JobFolder, wait: float) -> bool:
    """Ask ``job`` to stop; with ``wait``, wait up to that many seconds. True when it has stopped."""
    job.request_stop()
    deadline = time.time() + wait
    while wait and time.time() < deadline:
        if not job.is_alive():
            return True
        time.sleep(0.2)
    return not job.is_alive()


# --- the launcher ---------------------------------------------------------------------------------


def take_lock(job: JobFolder) -> Any:
    """Lock ``job`` for a worker about to start (the open file is inherited by it); records ``starting``."""
    import fcntl

    job.create()
    fh = open(job.lock_file, "a+")  # noqa: SIM115 - handed to the worker
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise RunError(
            f"another {job.worker_name} is already running this {job.job_name}", path=job.path, hint=job.busy_hint()
        ) from exc
    os.set_inheritable(fh.fileno(), True)
    # A request left by an earlier process is stale; one made from now on (even before the worker
    # holds the lock) is for this start, so the worker must not clear it.
    with contextlib.suppress(FileNotFoundError):
        job.stop_file.unlink()
    # Record that the job is starting, so monitors show it before the worker has imported torch.
    with contextlib.suppress(OSError), EventWriter(job.events) as ev:
        ev.status("starting")
    return fh


def worker_command(module: str, args: Sequence[str], num_processes: int = 1) -> list[str]:
    """``python -m MODULE ARGS`` (through ``accelerate launch`` for several processes)."""
    if num_processes > 1:
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(num_processes),
            "--num_machines",
            "1",
            "-m",
            module,
            *args,
        ]
    return [sys.executable, "-m", module, *args]


def worker_env(num_processes: int = 1) -> dict[str, str]:
    """The worker's environment: this lorawb importable, offline hub, unbuffered output."""
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    if num_processes > 1:
        # The accelerate launcher holds the lock; its worker processes must not try to take it.
        env[LOCK_HELD_ENV] = "1"
    return env


def spawn(
    job: JobFolder,
    module: str,
    args: Sequence[str],
    num_processes: int = 1,
    out: str = "worker.out",
    env: dict[str, str] | None = None,
) -> None:
    """Start ``python -m MODULE JOB_DIR ARGS --lock-fd N`` in a new session, locked, output to ``out``
    (``env``: variables set for the worker on top of its usual environment, e.g. its GPUs)."""
    lock = take_lock(job)
    try:
        cmd = worker_command(module, [str(job.path), *args, "--lock-fd", str(lock.fileno())], num_processes)
        with open(job.path / out, "ab") as fh:
            subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(lock.fileno(),),
                env={**worker_env(num_processes), **(env or {})},
                cwd=job.path,
            )
    except OSError as exc:
        raise RunError(f"cannot start the {job.worker_name} process: {exc}", path=job.path) from exc
    finally:
        lock.close()  # the worker holds the lock now (same open file)


# --- the worker side ------------------------------------------------------------------------------


def lock_is_held_for_us() -> bool:
    """True in the processes of an accelerate launch: the launcher (or rank 0's parent) holds the lock."""
    return int(os.environ.get("RANK", "0")) != 0 or os.environ.get(LOCK_HELD_ENV) == "1"


@contextlib.contextmanager
def hold_lock(job: JobFolder, lock_fd: int | None = None) -> Iterator[None]:
    """flock the job's lock for the worker's lifetime; a second worker on the same folder is refused.

    With ``lock_fd`` the launcher already holds the lock on that open file; taking it again on
    the same open file succeeds, so the job never looks dead between launch and start.
    """
    import fcntl

    job.create()
    fh = os.fdopen(lock_fd, "a+") if lock_fd is not None else open(job.lock_file, "a+")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        pid = job.pid()
        raise RunError(
            f"another {job.worker_name} is already running this {job.job_name}{f' (pid {pid})' if pid else ''}",
            path=job.path,
            hint=job.busy_hint(),
        ) from exc
    try:
        job.pid_file.write_text(f"{os.getpid()}\n")
        if lock_fd is None:  # started by hand, not by a launcher (which cleared stale requests itself)
            with contextlib.suppress(FileNotFoundError):
                job.stop_file.unlink()  # a stale request from an earlier process
        yield
    finally:
        with contextlib.suppress(OSError):
            job.pid_file.unlink()
        with contextlib.suppress(FileNotFoundError):
            job.stop_file.unlink()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


@contextlib.contextmanager
def job_log(job: JobFolder, name: str, rank: int = 0) -> Iterator[logging.Logger]:
    """The job's human log (``job.log``, appended across resumes; ``<stem>.rank<N>.log`` for other ranks)."""
    log = logging.getLogger(f"lorawb.{name}.{job.id}.{rank}")
    log.setLevel(logging.INFO)
    log.propagate = False
    path: Path = job.log if rank == 0 else job.log.with_name(f"{job.log.stem}.rank{rank}.log")  # type: ignore[attr-defined]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    try:
        yield log
    finally:
        log.removeHandler(handler)
        handler.close()


class StopFlag:
    """Set by the job's stop request, SIGTERM or the first Ctrl-C (the second Ctrl-C interrupts at once)."""

    def __init__(self, job: JobFolder) -> None:
        self.job = job
        self._flag = False
        self._old: dict[int, Any] = {}

    def requested(self) -> bool:
        return self._flag or self.job.stop_requested()

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._flag:
            raise KeyboardInterrupt
        self._flag = True

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
