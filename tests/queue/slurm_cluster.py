"""A single-node Slurm cluster on localhost for the tests, started without systemd.

munged (as the munge user, with a fresh 1 KB key and its own socket), slurmctld and slurmd (as
root) in a temporary folder, on free ports, one CPU partition with this machine's CPUs; clients
find it through ``SLURM_CONF``. Needs root and Debian's ``slurm-wlm`` and ``munge`` (``.ci/run``
installs them); ``start`` raises ``Unavailable`` with the reason when it cannot run here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")


class Unavailable(Exception):
    """Why the cluster cannot start here (the tests skip with this reason)."""


@dataclass
class Cluster:
    root: Path
    conf: Path
    partition: str = "cpu"

    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def stop(self) -> None:
        """SIGTERM the three daemons together (SIGKILL what is left after 5 s) and remove the folder."""
        pids = []
        for name in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((self.root / name).read_text().strip()))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(timeout: float = 30.0) -> Cluster:
    if os.geteuid() != 0:
        raise Unavailable("starting munged and slurmd needs root")
    missing = [b for b in BINARIES if _which(b) is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)")
    try:
        import pwd

        pwd.getpwnam("munge")
    except KeyError as exc:
        raise Unavailable("no munge user (the munge package makes it)") from exc
    root = Path(tempfile.mkdtemp(prefix="lorawb-slurm-"))
    root.chmod(0o755)  # munged runs as the munge user and must reach its folder
    cluster = Cluster(root, root / "slurm.conf")
    try:
        _start(cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start(c: Cluster, timeout: float) -> None:
    root = c.root
    munge = root / "munge"  # the socket's folder: everyone may reach it (munged checks)
    secret = root / "munge-key"  # the key's: the munge user's alone
    for d in (munge, secret, root / "state", root / "spool", root / "log"):
        d.mkdir()
    key = secret / "munge.key"
    key.write_bytes(os.urandom(1024))
    for path in (munge, secret, key):
        shutil.chown(path, "munge", "munge")
    munge.chmod(0o755)
    secret.chmod(0o700)
    key.chmod(0o400)
    sock = munge / "munge.socket"
    out = subprocess.run(
        [
            _which("munged"),
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'seed'}",
        ],
        user="munge",
        group="munge",
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        raise Unavailable(f"munged did not start: {(out.stderr or out.stdout).strip()}")
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    c.conf.write_text(
        f"""ClusterName=lorawbtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName={c.partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
""",
        encoding="utf-8",
    )
    env = {**os.environ, **c.env()}
    for daemon in ("slurmctld", "slurmd"):
        out = subprocess.run([_which(daemon)], env=env, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise Unavailable(f"{daemon} did not start: {(out.stderr or out.stdout).strip()}{_log_tail(root)}")
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
        state = out.stdout.strip()
        if out.returncode == 0 and state in ("idle", "mixed", "allocated"):
            return
        time.sleep(0.2)
    raise Unavailable(f"the node did not come up within {timeout:g} s (sinfo: {state!r}){_log_tail(root)}")


def _log_tail(root: Path) -> str:
    tails = []
    for name in ("slurmctld.log", "slurmd.log"):
        with contextlib.suppress(OSError):
            lines = (root / "log" / name).read_text(errors="replace").splitlines()[-3:]
            tails.append(f"\n{name}: " + " | ".join(lines))
    return "".join(tails)
