"""(f) Emergency studies behind a routine backlog: how long each waits, with and without the
priority lane, measured in the same run on the same worker.

A backlog of routine chest radiographs is published first; then, at the same moment, a few
emergency studies (which take chest-xray's priority lane) and as many routine "control" studies
(same position in time, routine lane). The control group is the baseline: what an emergency
would wait without the lane.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from bench import infra
from bench.traffic import Collector, Outcome, Sent, fresh_uids, publish


def _waits(uids: list[str], sent: Sent, outcome: Outcome) -> list[float]:
    return sorted(outcome.finished_at[u] - sent.at[u] for u in uids if u in outcome.finished_at)


def run_backlog(args: argparse.Namespace, triton: infra.Triton, model: str, pool: list[Path],
                root: Path, state: Path, backlog: int, emergencies: int) -> dict[str, Any]:
    collector = Collector(args.bootstrap)
    procs = infra.start_workers(1, bootstrap=args.bootstrap, triton_grpc=triton.grpc,
                                model=model, dicom_root=root, state=state / "faust",
                                logs=state / "logs")
    try:
        routine, urgent, control = (fresh_uids(backlog), fresh_uids(emergencies),
                                    fresh_uids(emergencies))
        sent = Sent()
        publish(args.bootstrap, routine, pool, sent)
        publish(args.bootstrap, urgent, pool, sent, priority="emergency")
        publish(args.bootstrap, control, pool, sent)
        everything = set(routine) | set(urgent) | set(control)

        def tick(_: Outcome) -> None:
            procs.check_alive()

        outcome = collector.wait(everything, args.timeout_s, Outcome(), tick)
    finally:
        procs.stop()
        collector.close()
    emergency_wait, control_wait = _waits(urgent, sent, outcome), _waits(control, sent, outcome)
    backlog_wait = _waits(routine, sent, outcome)
    last_emergency = max((outcome.finished_at[u] for u in urgent if u in outcome.finished_at),
                         default=float("nan"))
    after = sum(1 for u in routine if outcome.finished_at.get(u, 0.0) > last_emergency)
    result = {
        "name": "(f) emergency behind a routine backlog", "model": model,
        "backlog": backlog, "emergencies": emergencies,
        "resolved": len(outcome.finished_at), "expected": len(everything),
        "deadletters": outcome.deadletters,
        "emergency_wait_p50_s": statistics.median(emergency_wait) if emergency_wait else None,
        "emergency_wait_max_s": emergency_wait[-1] if emergency_wait else None,
        "control_wait_p50_s": statistics.median(control_wait) if control_wait else None,
        "control_wait_max_s": control_wait[-1] if control_wait else None,
        "backlog_drain_s": backlog_wait[-1] if backlog_wait else None,
        "backlog_finished_after_last_emergency": after,
    }
    if emergency_wait and control_wait and statistics.median(emergency_wait) > 0:
        result["control_over_emergency_wait"] = round(
            statistics.median(control_wait) / statistics.median(emergency_wait), 2)
    return result


def describe(r: dict[str, Any]) -> str:
    def f(key: str) -> str:
        value = r.get(key)
        return f"{value:.2f}s" if isinstance(value, float) else "n/a"
    return (f"(f) backlog of {r['backlog']} routine + {r['emergencies']} emergency: emergency "
            f"wait p50 {f('emergency_wait_p50_s')} (max {f('emergency_wait_max_s')}), same-time "
            f"routine control p50 {f('control_wait_p50_s')} (max {f('control_wait_max_s')}), "
            f"ratio {r.get('control_over_emergency_wait', 'n/a')}; "
            f"{r['backlog_finished_after_last_emergency']} of the backlog finished after the last "
            f"emergency; resolved {r['resolved']}/{r['expected']}")
