"""Fuzzing budget: small by default so `make test` stays quick; RADSTREAM_FUZZ_EXAMPLES=N
(e.g. 20000) runs each target longer."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "radstream-fuzz",
    max_examples=int(os.environ.get("RADSTREAM_FUZZ_EXAMPLES", "150")),
    deadline=None,  # no timed assertions; hangs are caught by the per-example alarm instead
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("RADSTREAM_FUZZ_RANDOM", "") == "",
)
