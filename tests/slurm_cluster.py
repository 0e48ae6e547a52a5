"""A one-node SLURM cluster on the test machine, from Debian's packages (slurm-wlm, munge).

slurmctld and slurmd are started directly (no systemd), with no accounting
database (``accounting_storage/none``: job status comes from ``squeue``),
``proctrack/linuxproc`` and ``task/none`` so it runs inside a container. Needs
root; everything else is a skip reason, never a silent pass.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF_DIR = Path("/etc/slurm")
STATE = Path("/var/spool/sfc-test-slurm")
PID_FILES = {"slurmctld": Path("/run/sfc-test-slurmctld.pid"), "slurmd": Path("/run/sfc-test-slurmd.pid")}


class Unavailable(Exception):
    """Why a local SLURM cannot run here (the test skips with this reason)."""


def _run(*cmd, check=True, **kwargs):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kwargs)


def install_packages() -> None:
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    if os.geteuid() != 0:
        raise Unavailable("SLURM is not installed and the tests are not running as root")
    if not shutil.which("apt-get"):
        raise Unavailable("SLURM is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run("apt-get", "update", "-qq", env=env, timeout=300)
        _run("apt-get", "install", "-y", "-qq", "slurm-wlm", "munge", env=env, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"apt-get could not install slurm-wlm and munge: {getattr(exc, 'stderr', exc)}") from None


def _node_resources() -> tuple[int, int]:
    out = _run("slurmd", "-C").stdout
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    return int(fields["CPUs"]), int(fields["RealMemory"])


def write_config() -> None:
    host = socket.gethostname().split(".")[0]
    cpus, memory = _node_resources()
    for path in (STATE / "ctld", STATE / "d", Path("/var/log/slurm")):
        path.mkdir(parents=True, exist_ok=True)
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    (CONF_DIR / "slurm.conf").write_text(f"""\
ClusterName=sfctest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={STATE}/ctld
SlurmdSpoolDir={STATE}/d
SlurmctldPidFile={PID_FILES['slurmctld']}
SlurmdPidFile={PID_FILES['slurmd']}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldLogFile=/var/log/slurm/sfctest-slurmctld.log
SlurmdLogFile=/var/log/slurm/sfctest-slurmd.log
NodeName={host} CPUs={cpus} RealMemory={max(memory - 1024, 1024)} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")


def start_munge() -> None:
    if _run("pgrep", "-x", "munged", check=False).returncode == 0:
        return
    key = Path("/etc/munge/munge.key")
    key.parent.mkdir(parents=True, exist_ok=True)
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    for folder in ("/etc/munge", "/run/munge", "/var/lib/munge", "/var/log/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    started = _run("su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged", check=False)
    if started.returncode != 0:
        _run("/usr/sbin/munged", "--force")


def start() -> None:
    """Install (if needed) and start munge, slurmctld and slurmd; wait until the node is idle."""
    if os.geteuid() != 0:
        raise Unavailable("a local SLURM cluster needs root (slurmd runs jobs as their users)")
    install_packages()
    write_config()
    start_munge()
    for daemon in ("slurmctld", "slurmd"):
        if not (PID_FILES[daemon].exists() and _run("pgrep", "-F", str(PID_FILES[daemon]), check=False).returncode == 0):
            _run(daemon)
    deadline = time.time() + 60
    while time.time() < deadline:
        state = _run("sinfo", "-h", "-o", "%T", check=False).stdout
        if any(s in state for s in ("idle", "mix", "alloc")):
            return
        time.sleep(1)
    stop()
    raise Unavailable(f"the SLURM node did not become idle within 60 s (sinfo: {state.strip()!r})")


def stop() -> None:
    """Stop the daemons started by :func:`start` (munge stays: other services may use it)."""
    for daemon in ("slurmd", "slurmctld"):
        pid_file = PID_FILES[daemon]
        if pid_file.exists():
            _run("pkill", "-F", str(pid_file), check=False)
    deadline = time.time() + 20
    while time.time() < deadline and any(
            _run("pgrep", "-F", str(p), check=False).returncode == 0 for p in PID_FILES.values() if p.exists()):
        time.sleep(0.5)
