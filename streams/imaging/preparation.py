"""Reading a study's series, checking it for technical defects and preprocessing its pixels for
one AI service: the image work of an inference agent, with no Kafka or Triton in it.

It runs in worker processes (streams/agents/prepare_pool.py), so it must stay importable without
the Faust app: everything it needs comes in as arguments that pickle (the service's spec, the
study event, the read limits), and everything it raises pickles too (InputRejected does).
"""

from __future__ import annotations

import os
import pickle
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streams.contract.catalog import ServiceSpec
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.defects import check_series
from streams.imaging.dicom_io import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_PARSE_S
from streams.imaging.preprocess import to_series_input
from streams.imaging.series import read_series
from streams.imaging.wado import ArchiveAccess, is_archive_uri, read_archive_series
from streams.rules.routing import matching_series

#: Memory one study's preparation may take in a worker process, beyond what the process holds
#: at rest. The other bounds allow at most about 6 x the pixel budget (an 8-bit series projected
#: as one slab: the stack, the slab's copy and its float32 form), 768 MiB at the defaults; a
#: 16-bit CT series of the whole budget (256 x 512 x 512) measures 193 MiB (docs/security.md).
DEFAULT_MAX_PREPARE_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class ReadLimits:
    """Where study files may live and how much reading them may cost (streams.settings)."""

    roots: tuple[Path, ...]
    max_file_bytes: int
    max_pixel_bytes: int
    max_elements: int = DEFAULT_MAX_ELEMENTS
    max_parse_s: float = DEFAULT_MAX_PARSE_S
    max_prepare_bytes: int = DEFAULT_MAX_PREPARE_BYTES
    #: Archives whose WADO-RS series URIs may be fetched (none by default).
    archive: ArchiveAccess = field(default_factory=ArchiveAccess)


def load_and_preprocess(spec: ServiceSpec, study: dict[str, Any],
                        limits: ReadLimits) -> tuple[np.ndarray, float, float]:
    """(model input tensor, fetch seconds, preprocess seconds) for the study's first series
    that `spec` reads: file I/O, DICOM decoding, defect checks, then the pixel work.

    Raises:
        InputRejected: a bad file or event (dead-lettered) or a technical defect of the images
            (reported as a technical_defect Finding).
    """
    try:
        return _load_and_preprocess(spec, study, limits)
    except MemoryError as exc:  # past RLIMIT_DATA in a worker process (prepare_pool.py)
        raise InputRejected(Reason.PREPARATION_MEMORY_EXCEEDED,
                            f"preparing the study needed more than {limits.max_prepare_bytes} "
                            "bytes") from exc


def _load_and_preprocess(spec: ServiceSpec, study: dict[str, Any],
                         limits: ReadLimits) -> tuple[np.ndarray, float, float]:
    series = matching_series(spec, study)
    if not series:
        raise InputRejected(Reason.SCHEMA_VIOLATION, f"no series for service {spec.id}")
    t0 = time.perf_counter()
    chosen = series[0]
    if is_archive_uri(chosen["uri"]):
        images = read_archive_series(
            chosen["uri"], int(chosen["instance_count"]), limits.archive,
            max_slices=spec.checks.max_slices, max_bytes=limits.max_file_bytes,
            max_pixel_bytes=limits.max_pixel_bytes, max_elements=limits.max_elements,
            max_parse_s=limits.max_parse_s, modality=chosen.get("modality"))
    else:
        images = read_series(chosen["uri"], int(chosen["instance_count"]), limits.roots,
                             max_slices=spec.checks.max_slices, max_bytes=limits.max_file_bytes,
                             max_pixel_bytes=limits.max_pixel_bytes,
                             max_elements=limits.max_elements, max_parse_s=limits.max_parse_s,
                             series_uid=chosen.get("series_uid"),
                             modality=chosen.get("modality"),
                             hospital_id=str(study["hospital_id"]))
    t1 = time.perf_counter()
    check_series(spec.checks, spec.select, images, int(chosen["instance_count"]))
    tensor = to_series_input(images.pixels, spec.preprocess, photometric=images.photometric,
                             slope=images.slope, intercept=images.intercept,
                             window_center=images.window_center,
                             window_width=images.window_width)
    del images
    if not np.isfinite(tensor).all():  # never hand the model NaN or infinity
        raise InputRejected(Reason.NON_FINITE_INPUT, "preprocessing gave non-finite values")
    return tensor, t1 - t0, time.perf_counter() - t1


def load_and_preprocess_many(
        spec: ServiceSpec, studies: list[dict[str, Any]],
        limits: ReadLimits) -> list[tuple[np.ndarray, float, float] | Exception]:
    """load_and_preprocess for each study, in one call: a chunk of a batch makes one round trip
    to a worker process instead of one per study. A study that fails has its exception in its
    place; the others go on."""
    out: list[tuple[np.ndarray, float, float] | Exception] = []
    for study in studies:
        try:
            out.append(load_and_preprocess(spec, study, limits))
        except Exception as exc:
            out.append(_picklable(exc))
    return out


def _picklable(exc: Exception) -> Exception:
    """`exc`, or a RuntimeError naming it when it would not survive the trip back (one bad
    exception must not fail the whole chunk's results)."""
    try:
        pickle.dumps(exc)
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def bound_memory(extra_bytes: int) -> None:
    """Let this process's data (heap and private mappings) grow by at most ``extra_bytes``
    beyond what it holds now: past it an allocation fails with MemoryError, which
    load_and_preprocess turns into PREPARATION_MEMORY_EXCEEDED, instead of the kernel's OOM
    killer ending the process (or the worker beside it)."""
    held = 0
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmData:"):
                held = int(line.split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (held + extra_bytes, held + extra_bytes))


def start_worker_process(parent: int, max_prepare_bytes: int) -> None:
    """Worker-process initializer (streams/agents/prepare_pool.py): bound its memory, and leave
    when the worker that started it is gone."""
    exit_with_parent(parent)
    _warm_blas()
    bound_memory(max_prepare_bytes)


def _warm_blas() -> None:
    """Make the BLAS/LAPACK library allocate its per-thread buffers now, below the bound: it
    allocates them on first use, and an allocation refused there spins instead of failing
    (OpenBLAS retries), where a refused numpy or Python allocation raises MemoryError."""
    square = np.ones((512, 512), dtype=np.float64)
    _ = square @ square
    _ = square.astype(np.float32) @ square.astype(np.float32)
    np.linalg.lstsq(np.ones((4096, 3)), np.ones(4096), rcond=None)


def exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """Worker-process initializer: leave when the worker that started us is gone.

    A worker killed with SIGKILL never tells its pool, and the pool's processes hold both ends of
    their task queue, so nothing else would ever end them.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
