"""`radstream publish PATH`: announce every DICOM study under PATH on the bus.

Also `publish_path`, the same as a function for the demo and the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from services.publisher.announce import PRIORITIES, build_announcement, check_hospital_id
from services.publisher.producer import PublishReport, StudyPublisher
from services.publisher.pseudonym import Pseudonymizer, load_key_from_env
from services.publisher.scan import (
    QUIET_REASONS,
    InstanceHeader,
    ScanStats,
    StudyGroup,
    group_instances,
    scan_tree,
)
from services.publisher.stage import stage_announcement
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
    #: The study each event announces (same order): staging reads its files.
    studies: list[StudyGroup] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    series: int = 0
    instances: int = 0
    rejected: int = 0

    @property
    def study_uids(self) -> dict[str, str]:
        """The hospital's StudyInstanceUID -> the keyed one on the bus (hospital-side only)."""
        return {g.study_uid: e["study_uid"] for g, e in zip(self.studies, self.events,
                                                           strict=True)}


def _resolved_headers(path: Path, folder: Path, stats: ScanStats,
                      log: Log) -> Iterator[InstanceHeader]:
    def skipped(file: Path, reason: str) -> None:
        # The hospital's own log: the file's place in its tree is its business, the bus never
        # sees it.
        log(f"skipped {_relative(file, folder)}: {reason}")

    for header in scan_tree(path, stats, skipped):
        yield dataclasses.replace(header, path=header.path.resolve())


def _relative(file: Path, base: Path) -> str:
    return str(file.relative_to(base)) if file.is_relative_to(base) else file.name


def _escapes(study: StudyGroup, folder: Path) -> bool:
    return any(not h.path.is_relative_to(folder) for s in study.series for h in s.instances)


def build_announcements(path: Path, *, root: Path, hospital_id: str, priority: str,
                        key: bytes, devices: dict[str, str] | None = None,
                        log: Log = _stderr) -> Announcements:
    """Scan PATH and build one validated StudyAnnounced body per study (nothing is staged).

    The events' URIs point into `<root>/<hospital_id>/`, where `stage_announcement` puts the
    files. Every file must resolve to a place inside PATH: a study with a file elsewhere (e.g.
    through a symlink) is rejected, not announced. Files that cannot be read are skipped and
    counted by reason (`stats.reasons`); the other studies are still announced.
    Raises ValueError when PATH is missing or the hospital id is malformed.
    """
    hospital_id = check_hospital_id(hospital_id)
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    root = root.resolve()
    path = path.resolve()
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    folder = path if path.is_dir() else path.parent
    pseudonymizer = Pseudonymizer(key)
    result = Announcements()
    for study in group_instances(_resolved_headers(path, folder, result.stats, log)):
        if _escapes(study, folder):
            log("a study was rejected: one of its files lies outside the published folder")
            result.rejected += 1
            continue
        try:
            event = build_announcement(study, hospital_id=hospital_id,
                                       pseudonymizer=pseudonymizer, root=root,
                                       priority=priority, devices=devices)
        except Exception as exc:  # one odd study must not stop the run; name no header value
            log(f"a study was rejected: its headers could not be announced "
                f"({type(exc).__name__})")
            result.rejected += 1
            continue
        try:
            validate(EventKind.STUDY_ANNOUNCED, event)
        except SchemaViolation as exc:
            log(f"study {event['study_uid']}: rejected, {exc.detail}")
            result.rejected += 1
            continue
        result.events.append(event)
        result.studies.append(study)
        result.series += len(study.series)
        result.instances += study.instance_count
    return result


def stage_announcements(found: Announcements, root: Path, log: Log = _stderr) -> Announcements:
    """Stage the files of every study in ``found`` under `<root>/<hospital_id>/` (see
    stage.py); returns the announcements whose files are in place, the others rejected."""
    staged = Announcements(stats=found.stats, rejected=found.rejected)
    root = root.resolve()
    for study, event in zip(found.studies, found.events, strict=True):
        try:
            stage_announcement(root, study, event)
        except OSError as exc:
            log(f"study {event['study_uid']}: rejected, its files could not be staged under "
                f"the DICOM root ({type(exc).__name__}, errno {exc.errno})")
            staged.rejected += 1
            continue
        staged.events.append(event)
        staged.studies.append(study)
        staged.series += len(study.series)
        staged.instances += study.instance_count
    return staged


def publish_path(path: Path, *, root: Path, hospital_id: str, priority: str,
                 bootstrap: str, key: bytes, devices: dict[str, str] | None = None,
                 flush_timeout: float = DEFAULT_FLUSH_TIMEOUT_S,
                 log: Log = _stderr, progress_every: int = PROGRESS_EVERY,
                 security: KafkaSecurity | None = None,
                 intake: bool | None = None) -> PublishReport:
    """Announce every DICOM study under `path`; returns what was delivered and found.

    Each study's files are staged under `<root>/<hospital_id>/` before its event is sent.
    `security` and `intake` are StudyPublisher's (default: the RADSTREAM_KAFKA_* environment).
    """
    found = stage_announcements(
        build_announcements(path, root=root, hospital_id=hospital_id, priority=priority,
                            key=key, devices=devices, log=log), root, log)
    total = len(found.events)
    publisher = StudyPublisher(bootstrap, security=security, intake=intake)
    for n, event in enumerate(found.events, 1):
        publisher.publish(event)
        if progress_every and n % progress_every == 0 and n < total:
            log(f"queued {n}/{total} studies ({publisher.delivered} acknowledged)")
    report = publisher.flush(flush_timeout)
    return dataclasses.replace(
        report, studies=total, series=found.series, instances=found.instances,
        files=found.stats.files, skipped_files=found.stats.skipped,
        skipped_reasons=dict(found.stats.reasons), rejected=found.rejected,
        study_uids=found.study_uids)


def bad_files(reasons: Mapping[str, int]) -> str:
    """"2 (dicom_unreadable 1, file_too_large 1)" for the files that looked like DICOM but
    could not be used, or "" when there were none."""
    bad = {r: n for r, n in sorted(reasons.items()) if r not in QUIET_REASONS and n}
    if not bad:
        return ""
    return f"{sum(bad.values())} ({', '.join(f'{r} {n}' for r, n in bad.items())})"


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


@dataclass(frozen=True)
class PublisherConfig:
    """The hospital's publishing configuration: flags over the config file over the
    environment. Hospital and device ids are configured, never read from DICOM headers."""

    hospital_id: str
    root: Path
    #: Registered device ids by DeviceSerialNumber or StationName.
    devices: dict[str, str]


def _config_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the publisher config {path}: {exc}") from exc
    devices = data.get("devices", {})
    if not isinstance(devices, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in devices.items()):
        raise ValueError(f"{path}: [devices] must map serial numbers or station names to ids")
    return data


def resolve_config(args: argparse.Namespace) -> PublisherConfig:
    """Raises ValueError naming what is missing."""
    file = _config_file(args.config)
    hospital_id = (args.hospital_id or str(file.get("hospital_id", ""))
                   or os.environ.get("RADSTREAM_HOSPITAL_ID", ""))
    if not hospital_id:
        raise ValueError("no hospital id: pass --hospital-id, set hospital_id in --config, or "
                         "set RADSTREAM_HOSPITAL_ID (it is never taken from the DICOM headers)")
    roots = [r for r in os.environ.get("RADSTREAM_DICOM_ROOTS", "").split(":") if r]
    root = args.root or str(file.get("dicom_root", "")) or (roots[0] if roots else "")
    if not root:
        raise ValueError("no DICOM root: pass --root, set dicom_root in --config, or set "
                         "RADSTREAM_DICOM_ROOTS (the folder the workers read)")
    return PublisherConfig(check_hospital_id(hospital_id), Path(root),
                           dict(file.get("devices", {})))


def run(args: argparse.Namespace) -> int:
    """Handler of `radstream publish`."""
    path = Path(args.path)
    try:
        config = resolve_config(args)
        key = load_key_from_env()
        if args.dry_run:
            found = build_announcements(path, root=config.root, hospital_id=config.hospital_id,
                                        priority=args.priority, key=key,
                                        devices=config.devices)
            _print_events(found.events)
            n = len(found.events)
            _stderr(_summary("dry run: would publish", n, n, found.series,
                             found.instances, found.stats.files, _quiet(found.stats.reasons)))
            return _problems(found.rejected, found.stats.reasons)
        report = publish_path(path, root=config.root, hospital_id=config.hospital_id,
                              priority=args.priority, bootstrap=args.bootstrap, key=key,
                              devices=config.devices, flush_timeout=args.flush_timeout,
                              intake=args.intake)
    except ValueError as exc:
        _stderr(f"error: {exc}")
        return 1
    _stderr(_summary("published", report.delivered, report.studies, report.series,
                     report.instances, report.files, _quiet(report.skipped_reasons)))
    failed = 0
    if report.not_delivered:
        failed = 1
        _stderr(f"error: {report.not_delivered} of {report.studies} studies not delivered to "
                f"{args.bootstrap} within {args.flush_timeout:g}s "
                f"({report.failed} failed, {report.pending} still queued"
                f"{'; last error: ' + report.last_error if report.last_error else ''})")
    return _problems(report.rejected, report.skipped_reasons) or failed


def _quiet(reasons: Mapping[str, int]) -> int:
    return sum(n for r, n in reasons.items() if r in QUIET_REASONS)


def _problems(rejected: int, reasons: Mapping[str, int]) -> int:
    """Report rejected studies and unreadable files; 1 when there were any."""
    bad = bad_files(reasons)
    if bad:
        _stderr(f"error: {bad} files skipped as unusable DICOM (see above); the other "
                f"studies were announced")
    if rejected:
        _stderr(f"error: {rejected} studies rejected (see above)")
    return 1 if bad or rejected else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `publish PATH` to the radstream command line."""
    parser = subparsers.add_parser(
        "publish", help="announce the DICOM studies under a folder on radiology.studies.v1",
        description="Announce every DICOM study under PATH (one StudyAnnounced event per study),"
                    " after staging its files under ROOT/HOSPITAL_ID/ with keyed names. Needs "
                    "the hospital's pseudonym key in RADSTREAM_PSEUDONYM_KEY.")
    parser.add_argument("path", metavar="PATH", help="a DICOM file or a folder of them")
    parser.add_argument("--config", default=os.environ.get("RADSTREAM_PUBLISHER_CONFIG"),
                        help="TOML file with hospital_id, dicom_root and a [devices] table "
                             "(serial number or station name = registered device id); "
                             "default: $RADSTREAM_PUBLISHER_CONFIG")
    parser.add_argument("--root", default=None,
                        help="the DICOM root the workers read; files are staged under "
                             "ROOT/HOSPITAL_ID/ (default: dicom_root of --config, else the "
                             "first of $RADSTREAM_DICOM_ROOTS)")
    parser.add_argument("--hospital-id", default=None,
                        help="registered hospital id (default: hospital_id of --config, else "
                             "$RADSTREAM_HOSPITAL_ID; never the DICOM InstitutionName)")
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
                        help="print the events as JSON lines instead of staging and publishing")
    parser.set_defaults(func=run)
