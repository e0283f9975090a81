"""Worker settings, read once from environment variables (12-factor style).

Each setting is declared once, below, as a dataclass field: its type, its default (one that
works with `make demo` on one machine) and, in its metadata made by `declare()`, its environment
variable and a one-line doc. `Settings.from_env()` parses every variable from those
declarations, and the README's settings table is generated from them
(`python -m services.ops.settings_doc`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from streams.imaging.dicom_io import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_PARSE_S
from streams.imaging.preparation import DEFAULT_MAX_PREPARE_BYTES
from streams.imaging.wado import DEFAULT_ATTEMPTS, DEFAULT_MAX_SERIES_BYTES, DEFAULT_TIMEOUT_S
from streams.kafka.security import KafkaSecurity

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Separator of a list of strings in one variable (a list of paths uses os.pathsep, like PATH).
LIST_SEPARATOR = ","


class SettingsError(ValueError):
    """A variable's value does not parse; the message names the variable."""


@dataclass(frozen=True)
class Declaration:
    """What a Settings field declares beyond its name and type."""

    #: The environment variable that sets it.
    env: str
    #: One line for the README table.
    doc: str


def declare(env: str, doc: str) -> dict[str, Declaration]:
    """The metadata of a Settings field: its environment variable and a one-line doc."""
    return {"declaration": Declaration(env, doc)}


@dataclass(frozen=True)
class Settings:
    kafka: str = field(default="127.0.0.1:9092", metadata=declare(
        "RADSTREAM_KAFKA", "Kafka bootstrap servers (`host:port[,host:port]`)"))
    triton_grpc: str = field(default="127.0.0.1:8001", metadata=declare(
        "RADSTREAM_TRITON_GRPC", "Triton gRPC endpoint"))
    #: Anything outside these folders is dead-lettered (docs/security.md).
    dicom_roots: tuple[Path, ...] = field(
        default_factory=lambda: (REPO_ROOT / ".state" / "dicom",), metadata=declare(
        "RADSTREAM_DICOM_ROOTS", "`:`-separated folders study `file://` URIs may point into"))
    #: Any other http(s) URI is dead-lettered with `archive_not_allowed`, before any request
    #: (streams/imaging/wado.py, docs/security.md).
    archive_urls: tuple[str, ...] = field(default=(), metadata=declare(
        "RADSTREAM_ARCHIVE_URLS", "comma-separated DICOMweb base URLs (e.g. "
        "`http://127.0.0.1:8042/dicom-web`) whose WADO-RS series study URIs may name (none: "
        "every archive URI is refused)"))
    #: Beyond it: `archive_timeout`.
    archive_timeout_s: float = field(default=DEFAULT_TIMEOUT_S, metadata=declare(
        "RADSTREAM_ARCHIVE_TIMEOUT_S", "longest fetch of one series from an archive, retries "
        "included"))
    #: Refused connections, 5xx and 429 are retried with backoff behind a circuit breaker;
    #: then `archive_unavailable`.
    archive_attempts: int = field(default=DEFAULT_ATTEMPTS, metadata=declare(
        "RADSTREAM_ARCHIVE_ATTEMPTS", "requests for one series before the archive is called "
        "unavailable"))
    #: Each instance also keeps RADSTREAM_MAX_FILE_BYTES; beyond either: `file_too_large`.
    archive_max_series_bytes: int = field(default=DEFAULT_MAX_SERIES_BYTES, metadata=declare(
        "RADSTREAM_ARCHIVE_MAX_SERIES_BYTES", "largest WADO-RS answer for one series"))
    app_id: str = field(default="radstream", metadata=declare(
        "RADSTREAM_APP_ID", "consumer group and table prefix"))
    #: 0.0.0.0 in a pod so Prometheus can scrape.
    bind_host: str = field(default="127.0.0.1", metadata=declare(
        "RADSTREAM_BIND_HOST", "address of the stats API and /metrics"))
    web_port: int = field(default=6066, metadata=declare(
        "RADSTREAM_WEB_PORT", "port of the stats API and dashboard"))
    metrics_port: int = field(default=9108, metadata=declare(
        "RADSTREAM_METRICS_PORT", "port of Prometheus /metrics"))
    services: tuple[str, ...] = field(default=(), metadata=declare(
        "RADSTREAM_SERVICES", "comma-separated AI services this worker runs (none: all of the "
        "catalog)"))
    #: Secured clusters; with none, hospitals write the studies topic directly.
    intake_hospitals: tuple[str, ...] = field(default=(), metadata=declare(
        "RADSTREAM_INTAKE_HOSPITALS", "comma-separated hospitals whose "
        "`radiology.intake.<id>.v1` topics the worker gates into the studies topic"))
    #: An agent takes up to `batch_max` studies or waits `batch_within_s`.
    batch_max: int = field(default=32, metadata=declare(
        "RADSTREAM_BATCH_MAX", "micro-batch size of the AI agents"))
    batch_within_s: float = field(default=0.05, metadata=declare(
        "RADSTREAM_BATCH_WITHIN_S", "how long an AI agent waits to fill a micro-batch"))
    #: The statistics aggregators batch wider: nobody waits for a count, and a Latency cell is
    #: ~2.5 KB of sketches rewritten (and sent to the changelog) once per batch, however many
    #: of the batch's events it folds in.
    stats_batch_max: int = field(default=512, metadata=declare(
        "RADSTREAM_STATS_BATCH_MAX", "micro-batch size of the statistics aggregators (each cell "
        "is rewritten once per batch)"))
    stats_batch_within_s: float = field(default=0.5, metadata=declare(
        "RADSTREAM_STATS_BATCH_WITHIN_S", "how long a statistics aggregator waits to fill a "
        "micro-batch"))
    producer_linger_s: float = field(default=0.005, metadata=declare(
        "RADSTREAM_PRODUCER_LINGER_S", "how long the producer gathers a batch's outcomes into "
        "one request"))
    #: Faust fixes 1.5 s; streams/kafka/fetch_wait.py says why a busy worker needs a short one.
    fetch_max_wait_s: float = field(default=0.1, metadata=declare(
        "RADSTREAM_FETCH_MAX_WAIT_S", "how long one broker fetch waits for new records (longer: "
        "fewer empty fetches when idle, but a busy worker can fall seconds behind; "
        "docs/performance.md, round 7)"))
    preprocess_processes: int = field(default=2, metadata=declare(
        "RADSTREAM_PREPROCESS_PROCESSES", "processes reading DICOM and preprocessing beside the "
        "event loop (0: threads of the worker, `RADSTREAM_PREPROCESS_THREADS`)"))
    #: Used too when a preprocessing process died (streams/imaging/preparation.py).
    preprocess_threads: int = field(default=2, metadata=declare(
        "RADSTREAM_PREPROCESS_THREADS", "threads doing that work when processes are off"))
    #: An unavailable Triton is waited out behind a circuit breaker instead: nothing is lost.
    triton_attempts: int = field(default=6, metadata=declare(
        "RADSTREAM_TRITON_ATTEMPTS", "Triton rejections before a study is dead-lettered with "
        "`inference_failed`"))
    triton_timeout_s: float = field(default=30.0, metadata=declare(
        "RADSTREAM_TRITON_TIMEOUT_S", "per-call deadline; a slower answer counts as Triton "
        "being unavailable"))
    max_file_bytes: int = field(default=64 * 1024 * 1024, metadata=declare(
        "RADSTREAM_MAX_FILE_BYTES", "largest DICOM file the worker reads"))
    #: Rows x Columns x Samples x Frames x BitsAllocated/8, from the header before decoding.
    max_pixel_bytes: int = field(default=128 * 1024 * 1024, metadata=declare(
        "RADSTREAM_MAX_PIXEL_BYTES", "largest decoded image, checked before any pixel is decoded"))
    max_event_bytes: int = field(default=1024 * 1024, metadata=declare(
        "RADSTREAM_MAX_EVENT_BYTES", "largest StudyAnnounced body, checked before JSON parsing"))
    #: Sequence items count too; beyond it: `dicom_too_many_elements` (docs/security.md).
    max_dicom_elements: int = field(default=DEFAULT_MAX_ELEMENTS, metadata=declare(
        "RADSTREAM_MAX_DICOM_ELEMENTS", "most data elements the worker parses in one DICOM file"))
    #: Beyond it: `dicom_parse_timeout`.
    max_parse_s: float = field(default=DEFAULT_MAX_PARSE_S, metadata=declare(
        "RADSTREAM_MAX_PARSE_S", "CPU time one DICOM file's header and elements may take to parse"))
    #: Enforced in each preprocessing process (RLIMIT_DATA above its memory at rest); beyond it:
    #: `preparation_memory_exceeded`.
    max_prepare_bytes: int = field(default=DEFAULT_MAX_PREPARE_BYTES, metadata=declare(
        "RADSTREAM_MAX_PREPARE_BYTES", "memory one study's reading and preprocessing may take"))
    # Clinical quality monitoring (streams/analytics/quality_monitor.py explains the rules).
    quality_auc_floor: float = field(default=0.81, metadata=declare(
        "RADSTREAM_QUALITY_AUC_FLOOR", "AUC against radiologists below which a service or "
        "device is alerted on"))
    #: 1.96: the whole 95 % interval lies under the floor; 0: the point estimate decides.
    quality_auc_z: float = field(default=1.96, metadata=declare(
        "RADSTREAM_QUALITY_AUC_Z", "an AUC alert needs AUC + z × SE below the floor"))
    quality_min_reviews: int = field(default=40, metadata=declare(
        "RADSTREAM_QUALITY_MIN_REVIEWS", "reviews a window needs before the AUC rule applies"))
    quality_window: int = field(default=400, metadata=declare(
        "RADSTREAM_QUALITY_WINDOW", "sliding window of the last N reviews per service × finding"))
    quality_device_window: int = field(default=80, metadata=declare(
        "RADSTREAM_QUALITY_DEVICE_WINDOW", "sliding window of the last N reviews per service × "
        "finding × device"))
    quality_defect_ceiling: float = field(default=0.05, metadata=declare(
        "RADSTREAM_QUALITY_DEFECT_CEILING", "technical-defect share above which a service or "
        "device is alerted on"))
    quality_defect_window: int = field(default=200, metadata=declare(
        "RADSTREAM_QUALITY_DEFECT_WINDOW", "sliding window of the last K Findings per service "
        "(and device) for the defect rule"))
    quality_defect_min_findings: int = field(default=50, metadata=declare(
        "RADSTREAM_QUALITY_DEFECT_MIN_FINDINGS", "Findings a defect window needs before the "
        "defect rule applies"))
    quality_rearm_margin: float = field(default=0.02, metadata=declare(
        "RADSTREAM_QUALITY_REARM_MARGIN", "how far a value must recover past its threshold "
        "before its alert re-arms"))
    #: Per-study state kept for this much event time (streams/rules/horizon.py): a day covers
    #: an overnight outage, and the reference centre reads a week's studies within the week.
    #: Memory grows with studies/s x horizon (README, "Memory").
    dedup_horizon_s: float = field(default=24 * 3600.0, metadata=declare(
        "RADSTREAM_DEDUP_HORIZON_S", "event time after which a study's seen records and "
        "fingerprint are forgotten (see \"Memory\")"))
    review_horizon_s: float = field(default=14 * 24 * 3600.0, metadata=declare(
        "RADSTREAM_REVIEW_HORIZON_S", "event time a Finding waits in the quality join for its "
        "review"))
    #: `earliest` loses nothing.
    offset_reset: str = field(default="earliest", metadata=declare(
        "RADSTREAM_OFFSET_RESET", "where a new consumer group starts"))
    #: Kafka's default, 45-60 s, is long for a hospital.
    session_timeout_s: float = field(default=15.0, metadata=declare(
        "RADSTREAM_SESSION_TIMEOUT_S", "how long a crashed worker's partitions wait before "
        "another worker takes them"))
    #: `memory://` is rebuilt from the changelog at start.
    store: str = field(default="memory://", metadata=declare(
        "RADSTREAM_STORE", "Faust table store (`rocksdb://` keeps tables on disk)"))
    datadir: Path = field(default=REPO_ROOT / ".state" / "faust", metadata=declare(
        "RADSTREAM_DATADIR", "where Faust keeps local state"))
    #: Read by KafkaSecurity.from_env from its own variables (streams/kafka/security.py).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity, metadata=declare(
        "RADSTREAM_KAFKA_SECURITY", "`plaintext` or `sasl_ssl` (SASL/SCRAM over TLS) with "
        "`RADSTREAM_KAFKA_USER`, `_PASSWORD` / `_PASSWORD_FILE`, `_CA`, `_SASL_MECHANISM` "
        "(streams/kafka/security.py)"))
    #: The `identity` model isolates the stream layer's cost (docs/performance.md).
    model_override: str = field(default="", metadata=declare(
        "RADSTREAM_MODEL_OVERRIDE", "benchmarks only: send every service's tensors to this "
        "Triton model (e.g. `identity`)"))

    @staticmethod
    def forget_per_call(batch_max: int) -> int:
        """Expired per-study entries an agent deletes per micro-batch and partition
        (streams/rules/horizon.py): twice what one batch can write, so forgetting keeps up."""
        return 2 * batch_max

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: the process environment); unset variables keep their
        defaults.

        Raises:
            SettingsError: naming the variable whose value does not parse.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f, hint, decl in declarations():
            if hint is KafkaSecurity:
                values[f.name] = KafkaSecurity.from_env(env)  # several variables, its own rules
            elif decl.env in env:
                value = parse(hint, env[decl.env], decl.env)
                if value != ():  # an empty list keeps the default (RADSTREAM_DICOM_ROOTS="")
                    values[f.name] = value
        return cls(**values)


def declarations() -> Iterator[tuple[Field[Any], Any, Declaration]]:
    """(field, resolved type, declaration) of every setting, in declaration order."""
    hints = get_type_hints(Settings)
    for f in fields(Settings):
        yield f, hints[f.name], f.metadata["declaration"]


def parse(hint: Any, raw: str, env: str) -> Any:
    """`raw`, the value of variable `env`, as type `hint`."""
    if get_origin(hint) is tuple:
        item = get_args(hint)[0]
        separator = os.pathsep if item is Path else LIST_SEPARATOR
        return tuple(parse(item, part, env) for part in raw.split(separator) if part)
    if hint is str:
        return raw
    if hint is Path:
        return Path(raw)
    if hint in (int, float):
        try:
            return hint(raw)
        except ValueError:
            kind = "an integer" if hint is int else "a number"
            raise SettingsError(f"{env} must be {kind}, not {raw!r}") from None
    raise TypeError(f"no parser for {env} of type {hint!r}")
