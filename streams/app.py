"""The worker's entry module: `faust -A streams.app worker -l info` (or `radstream worker`).

Faust looks for a module attribute `app`; it is built here from the environment's settings
(streams/worker.py says what a worker is made of). Nothing else imports this module.
"""

from __future__ import annotations

from streams.settings import Settings
from streams.worker import build_app

app = build_app(Settings.from_env()).app
