"""`radstream synth OUT`: write synthetic chest X-ray studies (real DICOM) and ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic chest X-ray DICOM studies")
    p.add_argument("out", help="output folder")
    p.add_argument("-n", type=int, default=100, help="number of studies (default 100)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lesion-rate", type=float, default=0.3)
    p.add_argument("--hospitals", type=int, default=5)
    p.add_argument("--fault", action="append", default=[], metavar="DEVICE=FAULT",
                   help="degrade one device's images (wrong_window or blur), e.g. "
                        "H001-D01=wrong_window; repeatable (drift demonstration)")
    p.set_defaults(func=run)
