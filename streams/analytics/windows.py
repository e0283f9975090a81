"""Tumbling time windows (hour, day, ISO week) and the all-time window, in UTC (pure).

Events are assigned by their own time (a Finding's or Latency event's `produced_at`), not by
when the aggregator reads them, so a replay after a crash lands in the same window.

Window labels, used in table and topic keys (documented in schemas/stats-api.openapi.yaml):
    hour   2024-05-14T09     the hour starting 2024-05-14T09:00:00Z
    day    2024-05-14
    week   2024-W20          ISO 8601 week per `date.isocalendar()`, starting Monday 00:00Z
    total  total             everything; its start is null
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args

Window = Literal["hour", "day", "week", "total"]
WINDOWS: tuple[Window, ...] = get_args(Window)


def label(window: Window, at: datetime) -> str:
    """The label of the window of kind `window` that contains the aware time `at`."""
    t = at.astimezone(UTC)
    if window == "hour":
        return t.strftime("%Y-%m-%dT%H")
    if window == "day":
        return t.strftime("%Y-%m-%d")
    if window == "week":
        year, week, _ = t.date().isocalendar()
        return f"{year:04d}-W{week:02d}"
    if window == "total":
        return "total"
    raise ValueError(f"unknown window {window!r}")


def labels(at: datetime) -> list[tuple[Window, str]]:
    """Every window containing `at`, one per kind."""
    return [(w, label(w, at)) for w in WINDOWS]


def start(window: Window, window_label: str) -> datetime | None:
    """The window's first instant (UTC), or None for the all-time window."""
    if window == "hour":
        return datetime.strptime(window_label, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    if window == "day":
        return datetime.strptime(window_label, "%Y-%m-%d").replace(tzinfo=UTC)
    if window == "week":
        year, week = window_label.split("-W")
        monday = date.fromisocalendar(int(year), int(week), 1)
        return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    if window == "total":
        return None
    raise ValueError(f"unknown window {window!r}")


def length(window: Window) -> timedelta | None:
    return {"hour": timedelta(hours=1), "day": timedelta(days=1),
            "week": timedelta(weeks=1)}.get(window)


def rfc3339(at: datetime | None) -> str | None:
    """`2024-05-14T09:00:00Z` for window starts (whole seconds, UTC); None stays None."""
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
