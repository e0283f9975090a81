"""Starting and stopping local processes the tests, benchmarks and demo drive (a stream worker,
Prometheus): one way to do it, so every caller logs to a file and never leaves a process behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from streams.settings import REPO_ROOT


def spawn(argv: Sequence[str], *, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `argv` from the repository root with stdout and stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(list(argv), cwd=REPO_ROOT, env=dict(env), stdout=out,
                                stderr=subprocess.STDOUT)


def spawn_worker(env: Mapping[str, str], log: Path,
                 loglevel: str = "info") -> subprocess.Popen[bytes]:
    """A `radstream worker` process configured by RADSTREAM_* variables in `env`."""
    return spawn([sys.executable, "-m", "services.cli", "worker", "-l", loglevel], env=env,
                 log=log)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
