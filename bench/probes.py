"""What the benchmark reads from the machine: hardware, per-process CPU time and memory from
/proc, and Triton's own inference counters from its Prometheus endpoint (Linux only)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model and GPU (if any) of the machine the run used."""
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    gpu = "none"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, check=False)
        gpu = out.stdout.strip() or "none"
    return {"cores": os.cpu_count(), "memory_bytes": mem_kib * 1024, "cpu_model": cpu,
            "gpu": gpu, "kernel": platform.release(), "python": platform.python_version()}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Triton's Python-backend stubs are child processes)."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (their threads included), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / _TICKS


def tree_memory(pid: int) -> tuple[int, int]:
    """memory() summed over `pid` and its descendants (a worker's preprocessing processes):
    current RSS, and the sum of each process's own peak."""
    stats = [memory(p) for p in process_tree(pid)]
    return sum(s[0] for s in stats), sum(s[1] for s in stats)


def memory(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in bytes, from /proc/<pid>/status (VmRSS, VmHWM)."""
    rss = hwm = 0
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


def triton_counts(metrics_url: str, model: str) -> tuple[float, float]:
    """(nv_inference_count, nv_inference_exec_count) for `model`, summed over versions."""
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    totals = []
    for name in ("nv_inference_count", "nv_inference_exec_count"):
        pattern = rf'^{name}\{{[^}}]*model="{re.escape(model)}"[^}}]*\}} (\S+)$'
        totals.append(sum(float(m) for m in re.findall(pattern, text, re.M)))
    return totals[0], totals[1]
