"""The benchmark's PNG: throughput per scenario, latency percentiles, RSS during the soak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def draw(result: dict[str, Any], path: Path) -> None:
    scenarios = result["scenarios"]
    labels = [f"{s['name']}\n[{s['model']}]" for s in scenarios]
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    ax = axes[0]
    ax.barh(labels, [s["studies_per_s"] or 0 for s in scenarios], color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("studies/s (log)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("throughput")

    ax = axes[1]
    for i, q in enumerate(("p50", "p95", "p99")):
        ys = [(s["latency_s"][q] or 0) * 1000 for s in scenarios]
        ax.barh([y + i * 0.27 for y in range(len(scenarios))], ys, height=0.27, label=q)
    ax.set_yticks([y + 0.27 for y in range(len(scenarios))], labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end ms (log)")
    ax.invert_yaxis()
    ax.legend()
    ax.set_title("latency")

    ax = axes[2]
    for s in scenarios:
        samples = s.get("rss_samples") or []
        if samples:
            t0 = samples[0][0]
            ax.plot([t - t0 for t, _ in samples], [r / 2**20 for _, r in samples],
                    label=f"{s['name']} [{s['model']}]")
    ax.set_xlabel("s")
    ax.set_ylabel("worker RSS MiB")
    ax.set_title("soak")
    if ax.lines:
        ax.legend(fontsize=7)
    m = result["machine"]
    fig.suptitle(f"radstream bench {result['run']}: {m['cores']} cores, "
                 f"{m['memory_bytes'] / 2**30:.0f} GiB, {m['cpu_model']}, GPU {m['gpu']}"
                 + (" (smoke)" if result["smoke"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
