"""`radstream synth OUT`: write synthetic studies (real DICOM) and their ground truth.

Without ``--city``: single-image chest X-ray studies (``ground_truth.jsonl``), as before.
With ``--city``: the simulated city of :mod:`services.synth.city` (every AI service with a
phantom generator, not-applicable studies, technical defects, arrival times; ``city_truth.jsonl``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    if args.city:
        return run_city(args)
    from services.demo.progress import Progress
    from services.synth.faults import parse_faults
    from services.synth.generate import GROUND_TRUTH_FILE, generate_studies

    progress = Progress()
    truths = generate_studies(Path(args.out), args.n, seed=args.seed,
                              lesion_rate=args.lesion_rate, hospitals=args.hospitals,
                              device_faults=parse_faults(args.fault),
                              on_progress=lambda d, t: progress.update(f"writing {d}/{t}"))
    lesions = sum(t.lesion for t in truths)
    progress.done(f"wrote {len(truths)} studies ({lesions} with a planted lesion) to {args.out}; "
                  f"ground truth in {Path(args.out) / GROUND_TRUTH_FILE}")
    return 0


def run_city(args: argparse.Namespace) -> int:
    import time

    from services.demo.progress import Progress
    from services.synth.city import CITY_TRUTH_FILE, Load, generate_city, summarize

    progress = Progress()
    load = (Load(rate_per_s=args.rate, compress_day_s=args.compress_day_s,
                 start_hour=args.start_hour) if args.rate is not None
            else Load(times_real=args.times_real, compress_day_s=args.compress_day_s,
                      start_hour=args.start_hour))
    start = time.perf_counter()
    truths = generate_city(Path(args.out), args.n, seed=args.seed, load=load,
                           defect_rate=args.defect_rate,
                           not_applicable_rate=args.not_applicable_rate,
                           services=args.service or None,
                           on_progress=lambda d, t: progress.update(f"writing study {d}/{t}"))
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
    p = sub.add_parser("synth", help="write synthetic DICOM studies (chest X-ray, or --city)")
    p.add_argument("out", help="output folder")
    p.add_argument("-n", type=int, default=100, help="number of studies (default 100)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lesion-rate", type=float, default=0.3)
    p.add_argument("--hospitals", type=int, default=5)
    p.add_argument("--fault", action="append", default=[], metavar="DEVICE=FAULT",
                   help="degrade one device's images (wrong_window or blur), e.g. "
                        "H001-D01=wrong_window; repeatable (drift demonstration)")
    city = p.add_argument_group("city mode (--city)")
    city.add_argument("--city", action="store_true",
                      help="simulate the city: every service, defects, not-applicable studies")
    city.add_argument("--service", action="append", default=[], metavar="ID",
                      help="only this catalog service (repeatable; default: all with a phantom)")
    city.add_argument("--defect-rate", type=float, default=0.05)
    city.add_argument("--not-applicable-rate", type=float, default=0.05)
    city.add_argument("--times-real", type=float, default=1.0,
                      help="load as a multiple of the real city's 80,000 studies/week")
    city.add_argument("--rate", type=float, default=None,
                      help="load in studies/s (overrides --times-real)")
    city.add_argument("--compress-day-s", type=float, default=None,
                      help="play the 24 h arrival curve in this many seconds")
    city.add_argument("--start-hour", type=float, default=0.0)
    p.set_defaults(func=run)
