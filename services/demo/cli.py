"""`radstream demo`: run the simulated city against a running pipeline (see `make demo`)."""

from __future__ import annotations

import argparse
import os

from streams.settings import Settings


def run(args: argparse.Namespace) -> int:
    from services.demo.city import CityConfig, run_city
    from services.publisher.pseudonym import load_key_from_env

    settings = Settings.from_env()
    cfg = CityConfig(studies=args.studies, rate_per_s=None if args.times_real else args.rate,
                     times_real=args.times_real, hospitals=args.hospitals, devices=args.devices,
                     defect_rate=args.defect_rate, not_applicable_rate=args.not_applicable_rate,
                     seed=args.seed, services=tuple(args.service) or None)
    summary = run_city(cfg, dicom_root=settings.dicom_roots[0], bootstrap=settings.kafka,
                       stats_url=f"http://127.0.0.1:{settings.web_port}/stats",
                       key=load_key_from_env())
    acc = summary["accounting"]
    return 0 if acc.lost == 0 and not acc.wrong else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulate hospitals publishing studies to a running pipeline")
    p.add_argument("--studies", type=int, default=int(os.environ.get("DEMO_STUDIES", 600)),
                   help="studies to simulate (default 600)")
    p.add_argument("--rate", type=float, default=10.0, help="studies per second (default 10)")
    p.add_argument("--times-real", type=float, default=None,
                   help="instead of --rate: N x the city's real rate (80,000 studies a week)")
    p.add_argument("--hospitals", type=int, default=150)
    p.add_argument("--devices", type=int, default=1200)
    p.add_argument("--defect-rate", type=float, default=0.05)
    p.add_argument("--not-applicable-rate", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--service", action="append", default=[],
                   help="simulate only this catalog service's studies (repeatable; default all)")
    p.set_defaults(func=run)
