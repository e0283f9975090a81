"""`radstream demo`: run the simulated city against a running pipeline (see `make demo`)."""

from __future__ import annotations

import argparse
import os

from streams.config import Settings


def run(args: argparse.Namespace) -> int:
    from services.demo.city import CityConfig, run_city
    from services.publisher.pseudonym import load_key_from_env

    settings = Settings.from_env()
    cfg = CityConfig(duration_s=args.duration, rate_per_s=args.rate, hospitals=args.hospitals,
                     seed=args.seed)
    summary = run_city(cfg, dicom_root=settings.dicom_roots[0], bootstrap=settings.kafka,
                       stats_url=f"http://127.0.0.1:{settings.web_port}/stats",
                       key=load_key_from_env())
    return 0 if summary["resolved"] == summary["published"] else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulate hospitals publishing studies to a running pipeline")
    p.add_argument("--duration", type=float, default=float(os.environ.get("DEMO_SECONDS", 60)),
                   help="seconds of publishing (default 60)")
    p.add_argument("--rate", type=float, default=4.0, help="studies per second (default 4)")
    p.add_argument("--hospitals", type=int, default=8)
    p.add_argument("--seed", type=int, default=2026)
    p.set_defaults(func=run)
