"""The analysts' dashboard in a real browser: studies go through the real pipeline, headless
Chromium loads GET /dashboard from the real worker, runs its JavaScript, and the rendered page
shows the stats API's numbers and charts drawn from them. A screenshot is kept in artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.settings import REPO_ROOT

from .conftest import Worker, publish_and_wait

pytestmark = pytest.mark.integration

N_STUDIES = 12
SCREENSHOT = REPO_ROOT / "artifacts" / "dashboard.png"


def chromium_or_skip() -> str:
    """CI installs Chromium (.ci/run), so there a missing browser is a failure, not a skip."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI must install the Debian package)")
        pytest.skip("chromium is not installed")
    return path


def run_chromium(binary: str, url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory(prefix="radstream-chromium-") as profile:
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                # Virtual time: timers and fetches run until the page has refreshed at least once.
                "--virtual-time-budget=8000", *extra, url]
        done = subprocess.run(args, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode()


@dataclass(eq=False)  # identity: "inside this element" means this very element
class Element:
    tag: str
    attrs: dict[str, str]
    ancestors: list[Element]
    text: str = ""


@dataclass
class DomIndex(HTMLParser):
    """Elements of a dumped DOM with their attributes and direct text."""

    elements: list[Element] = field(default_factory=list)
    _open: list[Element] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = Element(tag, {k: v or "" for k, v in attrs}, list(self._open))
        self.elements.append(el)
        if tag not in {"meta", "link", "br", "img", "input"}:
            self._open.append(el)

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [e for e in self.elements if (tag is None or e.tag == tag)
                and all(e.attrs.get(k) == v for k, v in want.items())]


def fetch_stats(worker: Worker) -> dict[str, Any]:
    with urllib.request.urlopen(worker.stats_url, timeout=5) as resp:
        return dict(orjson.loads(resp.read()))


def dashboard_url(worker: Worker) -> str:
    return worker.stats_url.rsplit("/", 1)[0] + "/dashboard"


def test_dashboard_serves_its_page_and_assets(worker: Worker) -> None:
    with urllib.request.urlopen(dashboard_url(worker), timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/html")
        page = resp.read().decode()
    for asset, kind in [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")]:
        assert f"/dashboard/static/{asset}" in page
        with urllib.request.urlopen(dashboard_url(worker) + f"/static/{asset}", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith(kind)
            body = resp.read().decode()
        # Offline by construction: nothing is loaded from another origin.
        assert "http://" not in body.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in body


def test_dashboard_renders_live_statistics(worker: Worker, bootstrap: str) -> None:
    chromium = chromium_or_skip()
    published = publish_and_wait(worker, bootstrap, N_STUDIES, seed=4242)

    # Compare with /stats as it was both before and after the render (a broker shared with
    # other sessions may still move the city totals; then render again).
    for _ in range(5):
        stats = fetch_stats(worker)
        dom = DomIndex()
        dom.feed(run_chromium(chromium, dashboard_url(worker), "--dump-dom"))
        if fetch_stats(worker) == stats:
            break
    else:
        pytest.fail("the stats API never held still for one render")

    # City totals: the numbers the stats API gives, formatted for people.
    for key in ("studies", "findings", "ok", "positive", "technical_defect", "not_applicable"):
        [kpi] = dom.find("div", data_kpi=key)
        assert kpi.attrs["data-value"] == str(stats["city"][key]), key
        assert kpi.text == f"{stats['city'][key]:,}", key
    assert stats["city"]["studies"] >= N_STUDIES

    # The hospital that just published has its row with its study count.
    [row] = dom.find("tr", data_hospital=published.hospital_id)
    [cell] = [e for e in dom.find("td", data_col="studies") if row in e.ancestors]
    assert cell.text == str(N_STUDIES)

    # The per-service chart is drawn with one bar pair per service the stats API reports.
    [chart] = dom.find("svg", data_chart="service-rates")
    assert int(chart.attrs["data-points"]) == len(stats["services"]) >= 1
    ok = stats["services"]["chest-xray"]
    drawn = [float(e.attrs["data-value"]) for e in dom.find("rect", **{"class": "bar"})
             if chart in e.ancestors and e.attrs["data-value"]]
    assert any(abs(v - ok["positive"] / ok["ok"]) < 1e-9 for v in drawn), drawn

    # The page refreshed itself and says when.
    [stamp] = dom.find("time", id="last-refresh")
    assert stamp.attrs.get("datetime") and stamp.text != "—"

    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    run_chromium(chromium, dashboard_url(worker), f"--screenshot={SCREENSHOT}",
                 "--window-size=1400,1000", "--hide-scrollbars")
    assert Path(SCREENSHOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
