"""Preprocessing in worker processes (streams/agents/prepare_pool.py) on real DICOM files: the
same tensor and the same rejections as in-process, and a killed worker process loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.traffic import BENCH_HOSPITAL, announcement, image_pool
from streams.agents.prepare_pool import PreparePool
from streams.contract.catalog import service
from streams.contract.reasons import InputRejected, Reason
from streams.imaging.preparation import ReadLimits, load_and_preprocess
from streams.rules.intake import parse_study


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("dicom")
    return image_pool(root / BENCH_HOSPITAL / "pool", 3)


def _root(files: list[Path]) -> Path:
    """The root the files lie in: the benchmark's hospital has its folder right below it."""
    return next(p.parent for p in files[0].parents if p.name == BENCH_HOSPITAL)


@pytest.fixture
def pool(files: list[Path]) -> Iterator[PreparePool]:
    limits = ReadLimits((_root(files),), 64 << 20, 128 << 20)
    p = PreparePool(limits, processes=1, threads=1)
    try:
        yield p
    finally:
        p.shutdown()


def _study(path: Path) -> dict[str, Any]:
    return parse_study(announcement(f"2.25.{abs(hash(path))}", path))


def test_a_worker_process_prepares_what_the_worker_itself_would(
        pool: PreparePool, files: list[Path]) -> None:
    spec = service("chest-xray")
    study = _study(files[0])
    tensor, fetch_s, prep_s = asyncio.run(pool.prepare(spec, study))
    here = load_and_preprocess(spec, study, pool.limits)[0]
    assert tensor.dtype == np.float32 and np.array_equal(tensor, here)
    assert fetch_s > 0 and prep_s > 0


def test_a_rejection_comes_back_with_its_reason(pool: PreparePool, files: list[Path],
                                                tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.dcm"
    outside.write_bytes(files[0].read_bytes())
    with pytest.raises(InputRejected) as err:
        asyncio.run(pool.prepare(service("chest-xray"), _study(outside)))
    assert err.value.reason is Reason.FILE_OUTSIDE_ROOT


def test_a_killed_worker_process_loses_no_study(pool: PreparePool, files: list[Path]) -> None:
    spec = service("chest-xray")

    async def scenario() -> list[Any]:
        await pool.prepare(spec, _study(files[0]))  # the worker process is up
        processes = pool._pool._processes if pool._pool else {}
        for pid in list(processes):
            os.kill(pid, signal.SIGKILL)
        return list(await asyncio.gather(*(pool.prepare(spec, _study(f)) for f in files)))

    results = asyncio.run(scenario())
    assert len(results) == len(files) and all(r[0].shape == results[0][0].shape for r in results)
    assert pool.broken == 1
    # The replacement pool serves the next studies.
    assert asyncio.run(pool.prepare(spec, _study(files[1])))[0].shape == results[0][0].shape


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_worker_processes_leave_when_their_worker_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed worker cannot stop its pool: the processes must notice on their own."""
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "import multiprocessing, os\n"
        "from streams.imaging.preparation import exit_with_parent\n"
        "if __name__ == '__main__':\n"
        "    ctx = multiprocessing.get_context('spawn')\n"
        "    pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=exit_with_parent,\n"
        "                               initargs=(os.getpid(), 0.1))\n"
        "    pool.submit(int).result(); pool.submit(int).result()\n"
        "    print(' '.join(str(p) for p in pool._processes), flush=True)\n"
        "    time.sleep(60)\n")
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root)})
    assert parent.stdout is not None
    children = [int(p) for p in parent.stdout.readline().split()]
    assert children
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in children if _running(p)]
    assert not alive, f"orphaned worker processes {alive}"


def test_a_batch_in_chunks_gives_each_study_its_own_result(pool: PreparePool, files: list[Path],
                                                          tmp_path: Path) -> None:
    """prepare_many sends a batch to the processes in chunks; a bad study's exception takes
    its place and the others are prepared as one by one."""
    spec = service("chest-xray")
    outside = tmp_path / "elsewhere.dcm"
    outside.write_bytes(files[0].read_bytes())
    studies = [_study(files[0]), _study(outside), _study(files[1]), _study(files[2])]
    results = asyncio.run(pool.prepare_many(spec, studies))
    assert len(results) == 4
    bad = results[1]
    assert isinstance(bad, InputRejected) and bad.reason is Reason.FILE_OUTSIDE_ROOT
    for study, result in zip(studies, results, strict=True):
        if result is not bad:
            assert not isinstance(result, Exception)
            assert np.array_equal(result[0], load_and_preprocess(spec, study, pool.limits)[0])
    assert asyncio.run(pool.prepare_many(spec, [])) == []


def test_a_killed_worker_process_loses_no_study_of_a_chunked_batch(
        pool: PreparePool, files: list[Path]) -> None:
    spec = service("chest-xray")

    async def scenario() -> list[Any]:
        await pool.prepare(spec, _study(files[0]))
        for pid in list(pool._pool._processes if pool._pool else {}):
            os.kill(pid, signal.SIGKILL)
        return await pool.prepare_many(spec, [_study(f) for f in files])

    results = asyncio.run(scenario())
    assert len(results) == len(files)
    assert all(not isinstance(r, Exception) and r[0].shape == (1, 128, 128) for r in results)
    assert pool.broken == 1


def test_an_exception_that_would_not_pickle_comes_back_named() -> None:
    from streams.imaging.preparation import _picklable

    class Local(Exception):  # defined in a function: pickle cannot find it by name
        pass

    back = _picklable(Local("bad header"))
    assert isinstance(back, RuntimeError) and "Local: bad header" in str(back)
    kept = InputRejected(Reason.FILE_OUTSIDE_ROOT, "x")
    assert _picklable(kept) is kept


def test_a_study_needing_more_memory_than_allowed_fails_alone_with_its_reason(
        files: list[Path], tmp_path: Path) -> None:
    """Each preprocessing process runs under RLIMIT_DATA: a study past the bound ends as
    preparation_memory_exceeded (not an OOM-killed process), and the same process goes on."""
    from services.synth.hostile import phantom_dicom

    big = phantom_dicom(tmp_path / BENCH_HOSPITAL / "big" / "1.dcm", size=(4096, 4096))
    limits = ReadLimits((tmp_path, _root(files)), 64 << 20, 128 << 20,
                        max_prepare_bytes=48 << 20)  # the 32 MiB file and its pixels: 64 MiB
    pool = PreparePool(limits, processes=1, threads=1)
    try:
        with pytest.raises(InputRejected) as err:
            asyncio.run(pool.prepare(service("chest-xray"), _study(big)))
        assert err.value.reason is Reason.PREPARATION_MEMORY_EXCEEDED
        assert asyncio.run(pool.prepare(service("chest-xray"), _study(files[0])))[0].shape \
            == (1, 128, 128)
        assert pool.broken == 0
    finally:
        pool.shutdown()
