"""Building a worker (streams/worker.py) declares its agents, tables and pages and starts
nothing: no process, no channel, no server. Two workers built in one process share no state."""

from __future__ import annotations

import multiprocessing
import threading

from streams.contract import catalog
from streams.settings import Settings
from streams.worker import build_app


def test_a_worker_runs_every_agent_of_its_settings_and_starts_nothing() -> None:
    threads = set(threading.enumerate())
    ctx = build_app(Settings(app_id="radstream-build-a"))
    infer = {f"infer-{s.id}" for s in catalog.catalog()} | {
        f"infer-{s.id}-priority" for s in catalog.catalog() if s.priority_lane}
    assert set(ctx.app.agents) == {"router", "aggregate", "aggregate-latency",
                                   "aggregate-deadletters", "quality-findings",
                                   "quality-reviews"} | infer
    assert multiprocessing.active_children() == []
    assert set(threading.enumerate()) == threads


def test_services_and_intake_hospitals_choose_the_agents() -> None:
    ctx = build_app(Settings(app_id="radstream-build-b", services=("chest-xray",),
                             intake_hospitals=("H001",)))
    agents = set(ctx.app.agents)
    assert {a for a in agents if a.startswith("infer-")} == {"infer-chest-xray",
                                                             "infer-chest-xray-priority"}
    assert "intake-gate" in agents
    other = build_app(Settings(app_id="radstream-build-c"))
    assert "intake-gate" not in other.app.agents
    assert other.app.agents is not ctx.app.agents
    assert other.registry is not ctx.registry


def test_the_web_server_listens_on_the_bind_host() -> None:
    ctx = build_app(Settings(app_id="radstream-build-d", bind_host="127.0.0.1", web_port=6099))
    assert (ctx.app.conf.web_bind, ctx.app.conf.web_port) == ("127.0.0.1", 6099)
