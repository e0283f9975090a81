"""`radstream` command line: one entry point for hospitals, operators and the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _worker(args: argparse.Namespace) -> int:
    from streams.settings import Settings
    from streams.worker import build_app

    app = build_app(Settings.from_env()).app
    sys.argv = ["radstream", "worker", "-l", args.loglevel]
    app.main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from services.demo.cli import register as register_demo
    from services.demo.reviews import register as register_reviews
    from services.publisher.cli import register as register_publish
    from services.synth.cli import register as register_synth

    parser = argparse.ArgumentParser(prog="radstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    register_publish(sub)
    register_synth(sub)
    register_demo(sub)
    register_reviews(sub)
    worker = sub.add_parser("worker", help="run a stream worker (router, AI agents, stats)")
    worker.add_argument("-l", "--loglevel", default="info",
                        choices=["crit", "error", "warn", "info", "debug"])
    worker.set_defaults(func=_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
