"""Stage each announced series where the workers read it, under names that say nothing.

Why: a `file://` URI on the bus would otherwise carry the hospital's own folder and file names,
and those are often patient names, MRNs or dates ("/pacs/SMITH_JOHN_19610312/..."). The
publisher instead links every instance of an announced series to

    <root>/<hospital_id>/<keyed study UID>/<keyed series UID>/<NNNNN>.dcm

(hard links, falling back to copies across file systems), so the only names on the bus are the
configured hospital id and keyed UIDs, and every URI of hospital H lies under `<root>/<H>/`,
the one folder the workers accept for H. Staging is idempotent: the same study staged twice
leaves the same files; a changed series is brought up to date. `staged_uri` is pure (the
announcement needs it); `stage_study` is the I/O.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.publisher.scan import STAGED_MARKER, InstanceHeader, StudyGroup

#: Staged file names: the instance's position in the series (InstanceNumber order), from 1.
NAME_DIGITS = 5


def instance_name(position: int) -> str:
    """Name of the series' instance at ``position`` (1 = the first, the one the URI names)."""
    return f"{position:0{NAME_DIGITS}d}.dcm"


def series_dir(root: Path, hospital_id: str, study_uid: str, series_uid: str) -> Path:
    """Folder of one staged series; ``study_uid`` and ``series_uid`` are the keyed UIDs."""
    return root / hospital_id / study_uid / series_uid


def staged_uri(root: Path, hospital_id: str, study_uid: str, series_uid: str) -> str:
    """The announced URI of a staged series: its first instance."""
    return (series_dir(root, hospital_id, study_uid, series_uid) / instance_name(1)).as_uri()


def _same(source: Path, target: Path) -> bool:
    try:
        return os.path.samefile(source, target) or filecmp.cmp(source, target, shallow=False)
    except OSError:
        return False


def _place(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s content: a hard link, else a copy; never half-written
    (a temporary dot-name the workers skip, then an atomic rename)."""
    if target.exists() and _same(source, target):
        return
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another file system, or links not allowed there
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def stage_series(instances: Sequence[InstanceHeader], folder: Path) -> None:
    """Make ``folder`` hold exactly ``instances`` (in order) under their staged names."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {instance_name(i): h.path for i, h in enumerate(instances, 1)}
    for name, source in wanted.items():
        _place(source, folder / name)
    for entry in os.scandir(folder):
        if entry.name not in wanted and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def stage_study(root: Path, hospital_id: str, study_uid: str,
                series: Sequence[tuple[str, Sequence[InstanceHeader]]]) -> None:
    """Stage every series of one study: ``series`` is (keyed series UID, instances in order).

    Raises OSError when the root cannot be written or a source file has gone.
    """
    study_dir = root / hospital_id / study_uid
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / STAGED_MARKER).touch()
    for series_uid, instances in series:
        stage_series(instances, series_dir(root, hospital_id, study_uid, series_uid))


def stage_announcement(root: Path, study: StudyGroup, event: dict[str, Any]) -> None:
    """Stage the files of ``study`` where ``event`` (its announcement, built with the same
    root) says they are: the announcement keeps the study's series order."""
    stage_study(root, event["hospital_id"], event["study_uid"],
                [(item["series_uid"], group.instances)
                 for item, group in zip(event["series"], study.series, strict=True)])
