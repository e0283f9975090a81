"""`radstream publish PATH`: announce every DICOM study under PATH on the bus.

Also `publish_path`, the same as a function for the demo and the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from services.publisher.announce import PRIORITIES, build_announcement, sanitize_id
from services.publisher.producer import PublishReport, StudyPublisher
from services.publisher.pseudonym import Pseudonymizer, load_key_from_env
from services.publisher.scan import ScanStats, StudyGroup, group_instances, scan_tree
from streams.contract.schemas import EventKind, SchemaViolation, validate
from streams.kafka.security import KafkaSecurity

#: A progress line goes to stderr after this many studies.
PROGRESS_EVERY = 100
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_FLUSH_TIMEOUT_S = 30.0

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Announcements:
    """The schema-valid events built from a folder tree, and what was found on the way."""

    events: list[dict[str, Any]] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    series: int = 0
    instances: int = 0
    rejected: int = 0


def _resolved_headers(path: Path, stats: ScanStats) -> Iterator[Any]:
    for header in scan_tree(path, stats):
        yield dataclasses.replace(header, path=header.path.resolve())


def _outside_root(study: StudyGroup, root: Path) -> bool:
    return any(not h.path.is_relative_to(root) for s in study.series for h in s.instances)


def build_announcements(path: Path, *, root: Path, hospital_id: str | None, priority: str,
                        key: bytes, log: Log = _stderr) -> Announcements:
    """Scan PATH and build one validated StudyAnnounced body per study.

    Every file must resolve to a place under `root` (the DICOM root the workers read from);
    a study with a file elsewhere (e.g. through a symlink) is rejected, not announced.
    Raises ValueError when PATH itself is missing or outside `root`.
    """
    root = root.resolve()
    path = path.resolve()
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if not path.is_relative_to(root):
        raise ValueError(f"{path} is not under the DICOM root {root}")
    pseudonymizer = Pseudonymizer(key)
    result = Announcements()
    for study in group_instances(_resolved_headers(path, result.stats)):
        if _outside_root(study, root):
            log(f"study {study.study_uid}: rejected, a file lies outside the DICOM root {root}")
            result.rejected += 1
            continue
        hospital = hospital_id or sanitize_id(study.first.institution, 32)
        event = build_announcement(study, hospital_id=hospital, pseudonymizer=pseudonymizer,
                                   priority=priority)
        try:
            validate(EventKind.STUDY_ANNOUNCED, event)
        except SchemaViolation as exc:
            log(f"study {study.study_uid}: rejected, {exc.detail}")
            result.rejected += 1
            continue
        result.events.append(event)
        result.series += len(study.series)
        result.instances += study.instance_count
    return result


def publish_path(path: Path, *, root: Path, hospital_id: str | None, priority: str,
                 bootstrap: str, key: bytes,
                 flush_timeout: float = DEFAULT_FLUSH_TIMEOUT_S,
                 log: Log = _stderr, progress_every: int = PROGRESS_EVERY,
                 security: KafkaSecurity | None = None,
                 intake: bool | None = None) -> PublishReport:
    """Announce every DICOM study under `path`; returns what was delivered and found.

    `security` and `intake` are StudyPublisher's (default: the RADSTREAM_KAFKA_* environment).
    """
    found = build_announcements(path, root=root, hospital_id=hospital_id, priority=priority,
                                key=key, log=log)
    total = len(found.events)
    publisher = StudyPublisher(bootstrap, security=security, intake=intake)
    for n, event in enumerate(found.events, 1):
        publisher.publish(event)
        if progress_every and n % progress_every == 0 and n < total:
            log(f"queued {n}/{total} studies ({publisher.delivered} acknowledged)")
    report = publisher.flush(flush_timeout)
    return dataclasses.replace(
        report, studies=total, series=found.series, instances=found.instances,
        files=found.stats.files, skipped_files=found.stats.skipped, rejected=found.rejected)


def _summary(verb: str, done: int, studies: int, series: int, instances: int, files: int,
             skipped: int) -> str:
    count = f"{done}" if done == studies else f"{done} of {studies}"
    return (f"{verb} {count} studies ({series} series, {instances} instances) from {files} "
            f"files; {skipped} non-DICOM files skipped")


def _print_events(events: list[dict[str, Any]]) -> None:
    try:
        for event in events:
            sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(args: argparse.Namespace) -> int:
    """Handler of `radstream publish`."""
    path = Path(args.path)
    root = Path(args.root) if args.root else (path if path.is_dir() else path.parent)
    try:
        key = load_key_from_env()
        if args.dry_run:
            found = build_announcements(path, root=root, hospital_id=args.hospital_id,
                                        priority=args.priority, key=key)
            _print_events(found.events)
            n = len(found.events)
            _stderr(_summary("dry run: would publish", n, n, found.series,
                             found.instances, found.stats.files, found.stats.skipped))
            if found.rejected:
                _stderr(f"error: {found.rejected} studies rejected (see above)")
            return 1 if found.rejected else 0
        report = publish_path(path, root=root, hospital_id=args.hospital_id,
                              priority=args.priority, bootstrap=args.bootstrap, key=key,
                              flush_timeout=args.flush_timeout, intake=args.intake)
    except ValueError as exc:
        _stderr(f"error: {exc}")
        return 1
    _stderr(_summary("published", report.delivered, report.studies, report.series,
                     report.instances, report.files, report.skipped_files))
    if report.not_delivered:
        _stderr(f"error: {report.not_delivered} of {report.studies} studies not delivered to "
                f"{args.bootstrap} within {args.flush_timeout:g}s "
                f"({report.failed} failed, {report.pending} still queued"
                f"{'; last error: ' + report.last_error if report.last_error else ''})")
    if report.rejected:
        _stderr(f"error: {report.rejected} studies rejected (see above)")
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `publish PATH` to the radstream command line."""
    parser = subparsers.add_parser(
        "publish", help="announce the DICOM studies under a folder on radiology.studies.v1",
        description="Announce every DICOM study under PATH (one StudyAnnounced event per study). "
                    "Needs the hospital's pseudonym key in RADSTREAM_PSEUDONYM_KEY.")
    parser.add_argument("path", metavar="PATH", help="a DICOM file or a folder of them")
    parser.add_argument("--root", default=None,
                        help="the DICOM root the workers read from; every file must be under it "
                             "(default: PATH)")
    parser.add_argument("--hospital-id", default=os.environ.get("RADSTREAM_HOSPITAL_ID"),
                        help="registered hospital id (default: $RADSTREAM_HOSPITAL_ID, else each "
                             "study's InstitutionName)")
    parser.add_argument("--priority", choices=PRIORITIES, default="routine")
    parser.add_argument("--bootstrap", default=os.environ.get("RADSTREAM_KAFKA",
                                                              DEFAULT_BOOTSTRAP),
                        help="Kafka bootstrap servers (default: $RADSTREAM_KAFKA or %(default)s)")
    parser.add_argument("--flush-timeout", type=float, default=DEFAULT_FLUSH_TIMEOUT_S,
                        help="seconds to wait for the broker to acknowledge (default: "
                             "%(default)s)")
    parser.add_argument("--intake", action=argparse.BooleanOptionalAction, default=None,
                        help="send to the hospital's own topic radiology.intake.<hospital-id>.v1, "
                             "the only one it may write on a secured cluster (default: on when "
                             "RADSTREAM_KAFKA_SECURITY=sasl_ssl; credentials: "
                             "RADSTREAM_KAFKA_USER, _PASSWORD or _PASSWORD_FILE, _CA)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the events as JSON lines instead of publishing")
    parser.set_defaults(func=run)
