"""README's "Layout" section names every Python package of streams/ and services/, one row each,
and names nothing that is gone: a package added, moved or removed without its row fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def named_paths() -> list[str]:
    """The folder of each row of the Layout section's table (`| `path/` | what it holds |`)."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Layout\n(.*?)^## ", text, re.S | re.M)
    assert section, 'README.md has no "## Layout" section'
    return re.findall(r"^\| `([^`]+)` \|", section.group(1), re.M)


def python_packages() -> set[str]:
    return {f"{init.parent.relative_to(ROOT).as_posix()}/"
            for top in ("streams", "services") for init in (ROOT / top).rglob("__init__.py")
            if "__pycache__" not in init.parts}


def test_every_package_has_its_line() -> None:
    missing = python_packages() - set(named_paths())
    assert not missing, f"README Layout lacks a line for {sorted(missing)}"


def test_every_line_names_an_existing_folder_once() -> None:
    named = named_paths()
    assert len(named) == len(set(named)), "a folder has two lines"
    for path in named:
        assert path.endswith("/") and (ROOT / path).is_dir(), f"README Layout names {path}"
        if path.startswith(("streams/", "services/")):
            assert path in python_packages(), f"{path} is not a Python package"


def test_the_packages_are_found() -> None:
    """The check above is only as good as this list (guards against a silent empty walk)."""
    assert {"streams/contract/", "streams/analytics/", "services/ops/"} <= python_packages()
