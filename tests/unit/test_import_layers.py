"""The import layering of pyproject.toml's [tool.importlinter] contracts holds: streams/ packages
import only downward (contract < rules < analytics, imaging, triton, kafka < settings, metrics <
the worker's wiring, agents and web < app), nothing in streams/ imports services/, and no package
has import cycles among its modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_contracts_are_kept() -> None:
    # --no-cache: nothing is written into the checkout.
    run = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=False)
    report = run.stdout + run.stderr
    assert "Contracts: " in report, report  # the contracts were found and checked
    assert run.returncode == 0, report


def test_a_broken_layer_is_reported(tmp_path: Path) -> None:
    """The check can fail: the same contracts reject an upward import."""
    config = (ROOT / "pyproject.toml").read_text()
    # Put rules above analytics: analytics importing rules (streams.rules.horizon) now breaks it.
    upside_down = config.replace('  "analytics | imaging | triton | kafka",\n  "rules",\n',
                                 '  "rules",\n  "analytics | imaging | triton | kafka",\n')
    assert upside_down != config
    (tmp_path / "pyproject.toml").write_text(upside_down)
    run = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config",
                          str(tmp_path / "pyproject.toml"),
                          "--contract", "streams-layers"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode != 0
    assert "streams.analytics is not allowed to import streams.rules" in run.stdout, run.stdout
