"""`make bench`: every scenario of the performance issue in one invocation, on the same machine,
broker and models, then the ratios between them.

    .venv/bin/python -m bench.run [--studies N] [--soak-s S] [--workers 1,2] [--smoke]

(a) Triton alone, (b) the naive per-message pipeline, (c) radstream draining a backlog as fast
as it can (its maximum sustainable load), (d) radstream at half that rate for latency, held for
the soak; (a)-(c) also on the `identity` model, which isolates the orchestration cost. Results go
to bench/results/<run>.json, latest.json and a PNG plot next to them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import infra, probes, report
from bench.backlog import describe as describe_backlog
from bench.backlog import run_backlog
from bench.traffic import (
    BENCH_HOSPITAL,
    Collector,
    Outcome,
    Sent,
    fresh_uids,
    image_pool,
    publish,
)
from bench.triton_alone import prepared_tensors, sweep
from streams.contract.catalog import service
from streams.settings import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
STATE = REPO_ROOT / ".state" / "bench"


@dataclass(frozen=True)
class Plan:
    """How much load each scenario gets (the smoke plan is tiny and says so in the JSON)."""

    sweep_s: float
    naive_studies: dict[str, int]
    radstream_studies: dict[str, int]
    soak_s: float
    pool: int
    workers: tuple[int, ...]
    #: RADSTREAM_DEDUP_HORIZON_S and RADSTREAM_REVIEW_HORIZON_S of the radstream workers.
    horizon_s: float
    #: (d) runs this long at half load before the soak's RSS window opens: per-study state
    #: fills to rate x horizon, by design, and is first forgotten a quarter horizon later.
    warmup_s: float = 0.0


def plan(args: argparse.Namespace, reference: str, identity: str) -> Plan:
    if args.smoke:
        return Plan(sweep_s=0.5, naive_studies={reference: 20, identity: 20},
                    radstream_studies={reference: 40, identity: 40}, soak_s=3.0, pool=8,
                    workers=(1,), horizon_s=args.horizon_s, warmup_s=0.0)
    return Plan(sweep_s=args.sweep_s,
                naive_studies={reference: args.naive_studies, identity: args.naive_studies},
                radstream_studies={reference: args.studies, identity: args.identity_studies},
                soak_s=args.soak_s, pool=args.pool,
                workers=tuple(int(w) for w in args.workers.split(",")),
                horizon_s=args.horizon_s,
                warmup_s=1.25 * args.horizon_s if args.warmup_s is None else args.warmup_s)


class Window:
    """CPU and memory between the first outcome and the last (start-up of a process and the
    wait for its first batch are not the steady state being measured).

    Triton's batch counters are read from construction, before the first study is published:
    a small run can have all of its batches executed before the first outcome is seen.
    """

    def __init__(self, triton: infra.Triton, model: str, cpu_pids: Sequence[int]) -> None:
        self._triton, self._model, self._pids = triton, model, list(cpu_pids)
        self._counts0 = probes.triton_counts(triton.metrics_url, model)
        self.first: tuple[int, float, float] | None = None
        self.rss_samples: list[tuple[float, int]] = []
        self._next_rss = 0.0

    def _cpu(self) -> tuple[float, float]:
        tr = (probes.cpu_seconds(probes.process_tree(self._triton.pid))
              if self._triton.pid else 0.0)
        return sum(probes.cpu_seconds(probes.process_tree(p)) for p in self._pids), tr

    def tick(self, outcome: Outcome) -> None:
        if self.first is None and outcome.finished_at:
            cpu, tr = self._cpu()
            self.first = (len(outcome.finished_at), cpu, tr)
        now = time.monotonic()
        if self._pids and now >= self._next_rss:
            self.rss_samples.append((time.time(),
                                     sum(probes.tree_memory(p)[0] for p in self._pids)))
            self._next_rss = now + 1.0

    def close(self, outcome: Outcome) -> dict[str, Any]:
        n = len(outcome.finished_at)
        #: Whole-life CPU of the measured processes (start-up included), for reference.
        total = {"process_cpu_s": self._cpu()[0] if self._pids else None}
        if self.first is None:
            return {"studies_in_window": 0, "cpu_s_per_study": None,
                    "triton_cpu_s_per_study": None, "mean_triton_batch": None, **total}
        n0, cpu0, tr0 = self.first
        counts0 = self._counts0
        cpu1, tr1 = self._cpu()
        counts1 = probes.triton_counts(self._triton.metrics_url, self._model)
        studies = n - n0
        return {"studies_in_window": studies,
                "cpu_s_per_study": report.per_study(cpu1 - cpu0 if self._pids else None,
                                                    studies),
                "triton_cpu_s_per_study": report.per_study(
                    tr1 - tr0 if self._triton.pid else None, studies),
                "mean_triton_batch": report.mean_batch(counts1[0] - counts0[0],
                                                       counts1[1] - counts0[1]), **total}


def outcome_result(name: str, kind: str, model: str, sent: Sent, outcome: Outcome,
                   window: dict[str, Any], peak_rss: int | None,
                   notes: str, **extra: Any) -> dict[str, Any]:
    done = sorted(outcome.finished_at.values())
    span = done[-1] - done[0] if len(done) > 1 else 0.0
    latencies = [outcome.finished_at[u] - sent.at[u] for u in outcome.finished_at if u in sent.at]
    return {"name": name, "kind": kind, "model": model, "studies": len(sent.at),
            "completed": len(done), "deadletters": outcome.deadletters,
            "duplicates": outcome.duplicates,
            "studies_per_s": report.rate(len(done) - 1, span),
            "latency_s": report.percentiles(latencies), "peak_rss_bytes": peak_rss,
            "notes": notes, **window, **extra}


def run_triton_alone(triton: infra.Triton, model: str, pool: list[Path],
                     seconds: float) -> dict[str, Any]:
    spec = service("chest-xray")
    tensors = prepared_tensors(pool)
    pids = probes.process_tree(triton.pid) if triton.pid else []
    cpu0 = probes.cpu_seconds(pids)
    counts0 = probes.triton_counts(triton.metrics_url, model)
    points = sweep(triton.grpc, model, tensors, seconds, input_name=spec.input_name,
                   output_name=spec.output_name)
    counts1 = probes.triton_counts(triton.metrics_url, model)
    studies = sum(p["studies"] for p in points)
    best = max(points, key=lambda p: p["studies_per_s"])
    unbatched = next((p for p in points if p["batch"] == 1 and p["concurrency"] == 1), None)
    return {"name": f"(a) triton alone b={best['batch']} c={best['concurrency']}",
            "kind": "triton_alone", "model": model, "studies": best["studies"],
            "studies_per_s": best["studies_per_s"], "latency_s": best["request_latency_s"],
            "mean_triton_batch": report.mean_batch(counts1[0] - counts0[0],
                                                   counts1[1] - counts0[1]),
            "cpu_s_per_study": None,
            "triton_cpu_s_per_study": report.per_study(
                probes.cpu_seconds(pids) - cpu0 if pids else None, studies),
            "peak_rss_bytes": None, "sweep": points,
            "batched_over_unbatched": report._div(best["studies_per_s"],
                                                  unbatched["studies_per_s"] if unbatched
                                                  else None),
            "notes": "grpc.aio, preprocessed tensors in memory, no Kafka; latency is per "
                     "request (a whole batch); batch and CPU cover the whole sweep"}


def run_naive(args: argparse.Namespace, triton: infra.Triton, model: str, pool: list[Path],
              root: Path, n: int) -> dict[str, Any]:
    collector = Collector(args.bootstrap)
    proc = infra.start_naive(bootstrap=args.bootstrap, triton_grpc=triton.grpc, model=model,
                             dicom_root=root, count=n, log=STATE / "logs" / f"naive-{model}.log")
    try:
        uids, sent = fresh_uids(n), Sent()
        window = Window(triton, model, [proc.pid])
        publish(args.bootstrap, uids, pool, sent)

        def tick(outcome: Outcome) -> None:
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"naive baseline exited with {proc.returncode}")
            window.tick(outcome)

        outcome = collector.wait(set(uids), args.timeout_s, Outcome(), tick)
        stats = window.close(outcome)
        peak = probes.memory(proc.pid)[1]
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(30)
        except Exception:
            proc.kill()
            raise
        collector.close()
    return outcome_result("(b) naive per-message", "naive", model, sent, outcome, stats, peak,
                          "backlog drained one message at a time: consume, read+preprocess, "
                          "sync gRPC infer, produce and flush; latency includes queueing")


def horizon_env(horizon_s: float) -> dict[str, str]:
    return {"RADSTREAM_DEDUP_HORIZON_S": str(horizon_s),
            "RADSTREAM_REVIEW_HORIZON_S": str(horizon_s)}


def run_radstream(args: argparse.Namespace, triton: infra.Triton, model: str,
                  reference: str, pool: list[Path], root: Path, n: int, workers: int,
                  soak_s: float | None, warmup_s: float = 0.0) -> list[dict[str, Any]]:
    """(c) drain a backlog of `n` studies; then, when `soak_s` is set, (d) half that rate."""
    collector = Collector(args.bootstrap)
    procs = infra.start_workers(workers, bootstrap=args.bootstrap, triton_grpc=triton.grpc,
                                model=model, dicom_root=root,
                                state=STATE / "faust", logs=STATE / "logs",
                                extra_env=horizon_env(args.horizon_s))
    results = []
    try:
        uids, sent = fresh_uids(n), Sent()
        window = Window(triton, model, procs.pids)
        publish(args.bootstrap, uids, pool, sent)

        def tick(outcome: Outcome) -> None:
            procs.check_alive()
            window.tick(outcome)

        outcome = collector.wait(set(uids), args.timeout_s, Outcome(), tick)
        stats = window.close(outcome)
        c = outcome_result(f"(c) radstream max, {workers} worker{'s' * (workers > 1)}",
                           "radstream", model, sent, outcome, stats, procs.memory()[1],
                           "backlog published up front and drained; latency includes "
                           "queueing", workers=workers)
        results.append(c)
        if soak_s:
            c["settle_s"] = settle(procs)
            results.append(half_load(args, triton, model, pool, procs, collector,
                                     c["studies_per_s"] / 2, soak_s, warmup_s))
    finally:
        procs.stop()
        collector.close()
    return results


def settle(procs: infra.Workers, *, idle_share: float = 0.15, timeout_s: float = 180.0) -> float:
    """Wait until the workers are nearly idle; return how long that took.

    Draining a backlog, the inference agent gets ahead of the agents that read its outputs
    (statistics, quality): they are still busy when the last Finding is out. (d) must start
    from a quiet worker, or it measures that leftover work as latency.
    """
    start = time.monotonic()
    before = procs.cpu_seconds()
    while time.monotonic() - start < timeout_s:
        time.sleep(2.0)
        now = procs.cpu_seconds()
        if now - before < idle_share * 2.0 * len(procs.procs):
            break
        before = now
    return time.monotonic() - start


def half_load(args: argparse.Namespace, triton: infra.Triton, model: str, pool: list[Path],
              procs: infra.Workers, collector: Collector, rate: float,
              soak_s: float, warmup_s: float) -> dict[str, Any]:
    """(d) a paced publisher at `rate` for `warmup_s` + `soak_s`: latency over all of it, and
    the worker's RSS over time; its growth over the soak is measured after the warm-up."""
    uids, sent = fresh_uids(max(2, int(rate * (warmup_s + soak_s)))), Sent()
    stop = threading.Event()
    publisher = threading.Thread(target=publish, args=(args.bootstrap, uids, pool, sent),
                                 kwargs={"rate_per_s": rate, "stop": stop}, daemon=True)
    window = Window(triton, model, procs.pids)

    def tick(outcome: Outcome) -> None:
        procs.check_alive()
        window.tick(outcome)

    rss_start = procs.memory()[0]
    publisher.start()
    try:
        outcome = collector.wait(set(uids), warmup_s + soak_s + args.timeout_s, Outcome(), tick)
    finally:
        stop.set()
        publisher.join(60)
    procs.check_alive()
    stats = window.close(outcome)
    rss_end = procs.memory()[0]
    return outcome_result("(d) radstream half load + soak", "radstream_half_load", model,
                          sent, outcome, stats, procs.memory()[1],
                          f"paced at {rate:.1f}/s for {warmup_s:.0f}s of warm-up, then "
                          f"{soak_s:.0f}s (the soak)",
                          offered_per_s=rate, soak_s=soak_s, warmup_s=warmup_s,
                          rss_start_bytes=rss_start, rss_end_bytes=rss_end,
                          # The target: growth over the soak, once the state has filled.
                          rss_growth=(report.growth_after(window.rss_samples, warmup_s)
                                      if warmup_s else report.growth(rss_start, rss_end)),
                          # Including the fill: what a worker's first horizon adds.
                          rss_growth_from_start=report.growth(rss_start, rss_end),
                          rss_samples=window.rss_samples, workers=len(procs.procs))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="radstream benchmark (see docs/performance.md)")
    p.add_argument("--bootstrap", help="use this Kafka instead of starting a private one")
    p.add_argument("--triton-grpc", help="use this Triton instead of starting a private one")
    p.add_argument("--triton-metrics", default="http://127.0.0.1:8002/metrics")
    p.add_argument("--triton-pid", type=int, help="the external Triton's pid, for its CPU time")
    p.add_argument("--reference-model", default=service("chest-xray").model)
    p.add_argument("--identity-model", default="identity")
    p.add_argument("--studies", type=int, default=3000, help="(c) backlog, reference model")
    p.add_argument("--identity-studies", type=int, default=10000, help="(c) on identity")
    p.add_argument("--naive-studies", type=int, default=500)
    p.add_argument("--backlog-studies", type=int, default=2000,
                   help="(f) routine backlog ahead of 20 emergency studies")
    p.add_argument("--sweep-s", type=float, default=4.0, help="seconds per (a) sweep point")
    p.add_argument("--soak-s", type=float, default=60.0, help="(d) duration; 600 = full soak")
    p.add_argument("--warmup-s", type=float,
                   help="(d) at half load before the soak's RSS window (default: 1.25 x the "
                        "horizon, the state's fill and its first forgetting; 0 in --smoke)")
    p.add_argument("--horizon-s", type=float, default=60.0,
                   help="the workers' dedup and review horizons (streams/rules/horizon.py): "
                        "short, so "
                        "the soak reaches the plateau of per-study state; the product's "
                        "defaults (a day, 14 days) hold studies/s x horizon entries")
    p.add_argument("--pool", type=int, default=64, help="distinct DICOM images reused")
    p.add_argument("--workers", default="1", help="worker counts for (c), e.g. 1,2")
    p.add_argument("--timeout-s", type=float, default=300.0)
    p.add_argument("--smoke", action="store_true", help="a few dozen studies per scenario")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    ref, ident = args.reference_model, args.identity_model
    pl = plan(args, ref, ident)
    started = dt.datetime.now(dt.UTC)
    root = STATE / "dicom"
    # The worker reads a hospital's files only under <root>/<hospital_id>/.
    pool = image_pool(root / BENCH_HOSPITAL / "pool", pl.pool)
    kafka = None if args.bootstrap else infra.private_kafka(STATE)
    if kafka is not None:
        args.bootstrap = kafka.bootstrap
    triton = (infra.external_triton(args.triton_grpc, args.triton_metrics, args.triton_pid)
              if args.triton_grpc else infra.private_triton(STATE))
    scenarios: list[dict[str, Any]] = []
    try:
        for model in (ref, ident):
            print(f"[bench] {model}: (a) Triton alone", flush=True)
            scenarios.append(run_triton_alone(triton, model, pool, pl.sweep_s))
            print(f"[bench] {model}: (b) naive baseline", flush=True)
            scenarios.append(run_naive(args, triton, model, pool, root,
                                       pl.naive_studies[model]))
            for w in pl.workers:
                print(f"[bench] {model}: (c) radstream, {w} worker(s)", flush=True)
                soak = pl.soak_s if model == ref and w == 1 else None
                scenarios.extend(run_radstream(args, triton, model, ref, pool, root,
                                               pl.radstream_studies[model], w, soak,
                                               pl.warmup_s))
        print(f"[bench] {ref}: (f) emergency studies behind a routine backlog", flush=True)
        backlog_result = run_backlog(args, triton, ref, pool, root, STATE,
                                     30 if args.smoke else args.backlog_studies,
                                     5 if args.smoke else 20)
    finally:
        triton.stop()
        if kafka is not None:
            kafka.stop()
    values = report.ratios(scenarios, ref, ident)
    result = {"run": started.strftime("%Y%m%dT%H%M%SZ"), "started_at": started.isoformat(),
              "finished_at": dt.datetime.now(dt.UTC).isoformat(),
              "machine": probes.machine(), "smoke": args.smoke,
              "plan": {"sweep_s": pl.sweep_s, "naive_studies": pl.naive_studies,
                       "radstream_studies": pl.radstream_studies, "soak_s": pl.soak_s,
                       "image_pool": pl.pool, "workers": list(pl.workers),
                       "horizon_s": pl.horizon_s, "warmup_s": pl.warmup_s,
                       "full_soak": pl.soak_s >= 600},
              "bootstrap": args.bootstrap, "private_kafka": kafka is not None,
              "reference_model": ref, "identity_model": ident, "scenarios": scenarios,
              "ratios": values, "targets_met": report.verdicts(values),
              "backlog": backlog_result}
    write(result, args.out)
    print(report.table(scenarios, values))
    print(describe_backlog(backlog_result))
    if pl.soak_s < 600:
        print(f"soak: {pl.soak_s:.0f}s, shorter than the 10-minute soak "
              "(make bench SOAK_S=600 for the full one)")
    return 0


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    (out / f"bench-{result['run']}.json").write_text(text)
    (out / "latest.json").write_text(text)
    try:
        from bench.plot import draw
    except ImportError:  # matplotlib is the `bench` extra
        print("matplotlib missing: no plot (pip install -e '.[bench]')")
        return
    draw(result, out / f"bench-{result['run']}.png")
    draw(result, out / "latest.png")
    print(f"results: {out / ('bench-' + result['run'] + '.json')} (+ latest.json, latest.png)")


if __name__ == "__main__":
    raise SystemExit(main())
