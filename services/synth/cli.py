"""`radstream synth OUT`: write the simulated city's studies (real DICOM) and their ground truth.

Every AI service with a phantom generator (:mod:`services.synth.city`), not-applicable studies,
technical defects and arrival times; the answer key is ``OUT/city_truth.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_prevalence(specs: list[str]) -> dict[str, float]:
    """``["lung_nodule=0.5", ...]`` (the CLI form) to a finding code -> prevalence mapping."""
    out: dict[str, float] = {}
    for spec in specs:
        code, sep, rate = spec.partition("=")
        try:
            if not sep or not code:
                raise ValueError
            out[code] = float(rate)
        except ValueError:
            raise ValueError(f"expected CODE=RATE, got {spec!r}") from None
    return out


def run(args: argparse.Namespace) -> int:
    import time

    from services.ops.progress import Progress
    from services.synth.city import CITY_TRUTH_FILE, Load, generate_city, summarize
    from services.synth.faults import parse_faults

    progress = Progress()
    load = (Load(rate_per_s=args.rate, compress_day_s=args.compress_day_s,
                 start_hour=args.start_hour) if args.rate is not None
            else Load(times_real=args.times_real, compress_day_s=args.compress_day_s,
                      start_hour=args.start_hour))
    start = time.perf_counter()
    try:
        truths = generate_city(Path(args.out), args.n, seed=args.seed, load=load,
                               defect_rate=args.defect_rate,
                               not_applicable_rate=args.not_applicable_rate,
                               services=args.service or None,
                               prevalence=parse_prevalence(args.prevalence),
                               device_faults=parse_faults(args.fault),
                               on_progress=lambda d, t: progress.update(f"writing study {d}/{t}"))
    except ValueError as exc:  # a bad option value: say which, without a traceback
        print(f"radstream synth: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    summary = summarize(truths)
    span = max((t.announce_at_s for t in truths), default=0.0)
    progress.done(f"wrote {summary['studies']} studies ({summary['files']} files) in "
                  f"{elapsed:.1f}s ({summary['studies'] / max(elapsed, 1e-9):.1f} studies/s) to "
                  f"{args.out}; truth in {Path(args.out) / CITY_TRUTH_FILE}")
    progress.done(f"services {summary['services']}")
    progress.done(f"defects {summary['defects']}; priorities {summary['priorities']}; "
                  f"announcements span {span:.0f}s at {load.rate:.3f}/s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the simulated city's studies as DICOM, with truth")
    p.add_argument("out", help="output folder")
    p.add_argument("-n", type=int, default=100, help="number of studies (default 100)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--service", action="append", default=[], metavar="ID",
                   help="only this catalog service (repeatable; default: all with a phantom)")
    p.add_argument("--defect-rate", type=float, default=0.05)
    p.add_argument("--not-applicable-rate", type=float, default=0.05)
    p.add_argument("--prevalence", action="append", default=[], metavar="CODE=RATE",
                   help="plant this finding at this rate instead of its phantom's own, e.g. "
                        "lung_nodule=0.5; repeatable")
    p.add_argument("--fault", action="append", default=[], metavar="DEVICE=FAULT",
                   help="degrade one device's images (wrong_window or blur), e.g. "
                        "H001-DX01=wrong_window; repeatable (drift demonstration)")
    p.add_argument("--times-real", type=float, default=1.0,
                   help="load as a multiple of the real city's 80,000 studies/week")
    p.add_argument("--rate", type=float, default=None,
                   help="load in studies/s (overrides --times-real)")
    p.add_argument("--compress-day-s", type=float, default=None,
                   help="play the 24 h arrival curve in this many seconds")
    p.add_argument("--start-hour", type=float, default=0.0)
    p.set_defaults(func=run)
