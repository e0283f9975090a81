"""Worker settings, read once from environment variables (12-factor style).

Every knob has a default that works with `make demo` on one machine. Names are documented in
README.md; `Settings.from_env()` is the only place that reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from streams.kafka.security import KafkaSecurity

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    #: Kafka bootstrap servers (librdkafka/aiokafka `host:port[,host:port]`).
    kafka: str = "127.0.0.1:9092"
    #: Triton gRPC endpoint.
    triton_grpc: str = "127.0.0.1:8001"
    #: Directories a study's `file://` URIs may point into; anything else is dead-lettered.
    dicom_roots: tuple[Path, ...] = field(
        default_factory=lambda: (REPO_ROOT / ".state" / "dicom",))
    #: Faust consumer group / app id.
    app_id: str = "radstream"
    #: Address the stats API and /metrics listen on (0.0.0.0 in a pod so Prometheus can scrape).
    bind_host: str = "127.0.0.1"
    #: Port of the stats HTTP API (Faust web).
    web_port: int = 6066
    #: Port of the Prometheus /metrics endpoint.
    metrics_port: int = 9108
    #: AI services this worker runs agents for (empty: all services in the catalog).
    services: tuple[str, ...] = ()
    #: Hospitals whose intake topics (`radiology.intake.<id>.v1`) this worker gates into the
    #: studies topic (secured clusters; empty: hospitals write the studies topic directly).
    intake_hospitals: tuple[str, ...] = ()
    #: Micro-batches: an agent takes up to `batch_max` studies or waits `batch_within_s`.
    batch_max: int = 32
    batch_within_s: float = 0.05
    #: The statistics aggregators batch wider: nobody waits for a count, and a Latency cell is
    #: ~2.5 KB of sketches rewritten (and sent to the changelog) once per batch, however many
    #: of the batch's events it folds in.
    stats_batch_max: int = 512
    stats_batch_within_s: float = 0.5
    #: How long the producer gathers records into one request (Faust's producer_linger).
    producer_linger_s: float = 0.005
    #: How long one broker fetch waits for new records (Faust fixes 1.5 s;
    #: streams/kafka/fetch_wait.py
    #: says why a busy worker needs a short one).
    fetch_max_wait_s: float = 0.1
    #: Worker processes decoding DICOM and preprocessing pixels beside the event loop (0: do it
    #: in `preprocess_threads` threads of the worker process instead, under its GIL).
    preprocess_processes: int = 2
    #: Threads for the same work when processes are off, or a process died (prepare_pool.py).
    preprocess_threads: int = 2
    #: Triton rejections before a study is dead-lettered with `inference_failed` (an unavailable
    #: Triton is waited out behind a circuit breaker instead: nothing is lost).
    triton_attempts: int = 6
    #: Per-call deadline; a slower answer counts as Triton being unavailable.
    triton_timeout_s: float = 30.0
    #: Largest DICOM file the worker reads (bytes).
    max_file_bytes: int = 64 * 1024 * 1024
    #: Largest decoded image (Rows x Columns x Samples x Frames x BitsAllocated/8), checked from
    #: the DICOM header before any pixel is decoded.
    max_pixel_bytes: int = 128 * 1024 * 1024
    #: Largest StudyAnnounced body (bytes), checked before JSON parsing.
    max_event_bytes: int = 1024 * 1024
    #: Clinical quality monitoring (streams/analytics/quality.py): AUC floor against radiologists,
    #: the
    #: reviews a window needs first (M), sliding windows of the last N reviews per
    #: service x finding and per device, the technical-defect ceiling over the last K Findings,
    #: and how far a value must recover before its alert re-arms.
    quality_auc_floor: float = 0.81
    #: An AUC alert needs AUC + z * SE below the floor (1.96: the whole 95 % CI; 0: the estimate).
    quality_auc_z: float = 1.96
    quality_min_reviews: int = 40
    quality_window: int = 400
    quality_device_window: int = 80
    quality_defect_ceiling: float = 0.05
    quality_defect_window: int = 200
    quality_defect_min_findings: int = 50
    quality_rearm_margin: float = 0.02
    #: How long (event time) per-study state is kept (streams/rules/horizon.py): the stats seen
    #: entries and router fingerprints recognise copies published within it (a day covers an
    #: overnight outage); a Finding waits this long in the quality join for its reviews (the
    #: reference centre reads a week's studies within the week). Memory grows with
    #: studies/s x horizon (README, "Memory").
    dedup_horizon_s: float = 24 * 3600.0
    review_horizon_s: float = 14 * 24 * 3600.0
    #: Where a consumer group with no committed offset starts: `earliest` loses nothing.
    offset_reset: str = "earliest"
    #: Kafka consumer-group session timeout: how long a crashed worker's partitions wait before
    #: another worker takes them over (Kafka's default, 45-60 s, is long for a hospital).
    session_timeout_s: float = 15.0
    #: Faust table store; `memory://` is rebuilt from the changelog at start.
    store: str = "memory://"
    #: Where Faust keeps local state.
    datadir: Path = REPO_ROOT / ".state" / "faust"
    #: How the worker authenticates to Kafka (RADSTREAM_KAFKA_SECURITY/_USER/_PASSWORD/_CA, see
    #: streams/kafka/security.py); the default is today's PLAINTEXT local broker.
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    #: Benchmarks only: every AI service calls this Triton model instead of its own (the
    #: `identity` model isolates the stream layer's cost; see docs/performance.md). Empty: off.
    model_override: str = ""

    @staticmethod
    def forget_per_call(batch_max: int) -> int:
        """Expired per-study entries an agent deletes per micro-batch and partition
        (streams/rules/horizon.py): twice what one batch can write, so forgetting keeps up."""
        return 2 * batch_max

    @classmethod
    def from_env(cls) -> Settings:
        d = cls()
        roots = _env("RADSTREAM_DICOM_ROOTS", "")
        services = _env("RADSTREAM_SERVICES", "")
        return cls(
            kafka=_env("RADSTREAM_KAFKA", d.kafka),
            triton_grpc=_env("RADSTREAM_TRITON_GRPC", d.triton_grpc),
            dicom_roots=tuple(Path(p) for p in roots.split(os.pathsep) if p) or d.dicom_roots,
            app_id=_env("RADSTREAM_APP_ID", d.app_id),
            bind_host=_env("RADSTREAM_BIND_HOST", d.bind_host),
            web_port=int(_env("RADSTREAM_WEB_PORT", str(d.web_port))),
            metrics_port=int(_env("RADSTREAM_METRICS_PORT", str(d.metrics_port))),
            services=tuple(s for s in services.split(",") if s),
            intake_hospitals=tuple(h for h in _env("RADSTREAM_INTAKE_HOSPITALS", "").split(",")
                                   if h),
            batch_max=int(_env("RADSTREAM_BATCH_MAX", str(d.batch_max))),
            batch_within_s=float(_env("RADSTREAM_BATCH_WITHIN_S", str(d.batch_within_s))),
            stats_batch_max=int(_env("RADSTREAM_STATS_BATCH_MAX", str(d.stats_batch_max))),
            stats_batch_within_s=float(_env("RADSTREAM_STATS_BATCH_WITHIN_S",
                                            str(d.stats_batch_within_s))),
            producer_linger_s=float(_env("RADSTREAM_PRODUCER_LINGER_S",
                                         str(d.producer_linger_s))),
            fetch_max_wait_s=float(_env("RADSTREAM_FETCH_MAX_WAIT_S", str(d.fetch_max_wait_s))),
            preprocess_processes=int(_env("RADSTREAM_PREPROCESS_PROCESSES",
                                          str(d.preprocess_processes))),
            preprocess_threads=int(_env("RADSTREAM_PREPROCESS_THREADS", str(d.preprocess_threads))),
            triton_attempts=int(_env("RADSTREAM_TRITON_ATTEMPTS", str(d.triton_attempts))),
            triton_timeout_s=float(_env("RADSTREAM_TRITON_TIMEOUT_S", str(d.triton_timeout_s))),
            max_file_bytes=int(_env("RADSTREAM_MAX_FILE_BYTES", str(d.max_file_bytes))),
            max_pixel_bytes=int(_env("RADSTREAM_MAX_PIXEL_BYTES", str(d.max_pixel_bytes))),
            max_event_bytes=int(_env("RADSTREAM_MAX_EVENT_BYTES", str(d.max_event_bytes))),
            quality_auc_floor=float(_env("RADSTREAM_QUALITY_AUC_FLOOR", str(d.quality_auc_floor))),
            quality_auc_z=float(_env("RADSTREAM_QUALITY_AUC_Z", str(d.quality_auc_z))),
            quality_min_reviews=int(_env("RADSTREAM_QUALITY_MIN_REVIEWS",
                                         str(d.quality_min_reviews))),
            quality_window=int(_env("RADSTREAM_QUALITY_WINDOW", str(d.quality_window))),
            quality_device_window=int(_env("RADSTREAM_QUALITY_DEVICE_WINDOW",
                                           str(d.quality_device_window))),
            quality_defect_ceiling=float(_env("RADSTREAM_QUALITY_DEFECT_CEILING",
                                              str(d.quality_defect_ceiling))),
            quality_defect_window=int(_env("RADSTREAM_QUALITY_DEFECT_WINDOW",
                                           str(d.quality_defect_window))),
            quality_defect_min_findings=int(_env("RADSTREAM_QUALITY_DEFECT_MIN_FINDINGS",
                                                 str(d.quality_defect_min_findings))),
            quality_rearm_margin=float(_env("RADSTREAM_QUALITY_REARM_MARGIN",
                                            str(d.quality_rearm_margin))),
            dedup_horizon_s=float(_env("RADSTREAM_DEDUP_HORIZON_S", str(d.dedup_horizon_s))),
            review_horizon_s=float(_env("RADSTREAM_REVIEW_HORIZON_S", str(d.review_horizon_s))),
            offset_reset=_env("RADSTREAM_OFFSET_RESET", d.offset_reset),
            session_timeout_s=float(_env("RADSTREAM_SESSION_TIMEOUT_S",
                                         str(d.session_timeout_s))),
            store=_env("RADSTREAM_STORE", d.store),
            datadir=Path(_env("RADSTREAM_DATADIR", str(d.datadir))),
            kafka_security=KafkaSecurity.from_env(),
            model_override=_env("RADSTREAM_MODEL_OVERRIDE", d.model_override),
        )
