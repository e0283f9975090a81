// radstream analysts' dashboard: polls the worker's JSON APIs and draws SVG charts by hand.
// No libraries and no requests other than /stats, /stats/windows and /quality, so it works
// offline. Any endpoint may be missing (404) or empty: each panel then says "no data yet".
"use strict";

const REFRESH_MS = 5000;
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = { p50: "#12a594", p90: "#2f6fde", p99: "#7a5af8",
                 positive: "#2f6fde", defect: "#e3a008", bar: "#2f6fde", auc: "#14213d" };

// ---------------------------------------------------------------- helpers

async function getJSON(url) {
  try {
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) return null;
    return await resp.json();
  } catch (err) {
    return null;
  }
}

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");
const fmtPct = (x) => (x == null || !isFinite(x) ? "—" : (100 * x).toFixed(1) + "%");
const rate = (num, den) => (den > 0 ? num / den : null);

function fmtSeconds(x) {
  if (x == null || !isFinite(x)) return "—";
  if (x === 0) return "0";
  if (x < 1) return Math.round(x * 1000) + " ms";
  if (x < 120) return x.toFixed(x < 10 ? 2 : 1) + " s";
  if (x < 7200) return (x / 60).toFixed(1) + " min";
  if (x < 172800) return (x / 3600).toFixed(1) + " h";
  return (x / 86400).toFixed(0) + " d";
}

function replace(id, ...nodes) {
  const target = document.getElementById(id);
  target.replaceChildren(...nodes);
}

function empty(text) {
  return h("div", { class: "empty" }, text || "no data yet");
}

// Round a maximum up to a "nice" axis end (1, 2, 2.5, 5 × 10^k).
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function legend(items) {
  return h("div", { class: "legend" },
    ...items.map(([name, color]) => h("span", {}, h("i", { style: `background:${color}` }), name)));
}

// ---------------------------------------------------------------- charts

// Vertical bars, one per {label, value}.
function barChart(name, points, fmtY) {
  const W = 460, H = 250, L = 48, R = 10, T = 14, B = 30;
  const max = niceMax(Math.max(...points.map((p) => p.value)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, "data-chart": name,
                         "data-points": String(points.length), role: "img" });
  const y = (v) => T + (H - T - B) * (1 - v / max);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { class: "grid-line", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtY(v)));
  }
  const slot = (W - L - R) / points.length;
  const bw = Math.min(48, slot * 0.7);
  const every = Math.ceil(points.length / 6);
  points.forEach((p, i) => {
    const x = L + slot * i + (slot - bw) / 2;
    const bar = s("rect", { class: "bar", x, y: y(p.value), width: bw,
                            height: Math.max(0, H - B - y(p.value)), rx: 3, fill: COLORS.bar,
                            "data-value": String(p.value) });
    bar.append(s("title", {}, `${p.label}: ${fmtY(p.value)}`));
    svg.append(bar);
    if (points.length <= 8) {
      svg.append(s("text", { x: x + bw / 2, y: y(p.value) - 4, "text-anchor": "middle",
                             fill: "#1c2533" }, fmtY(p.value)));
    }
    if (i % every === 0) {
      svg.append(s("text", { x: x + bw / 2, y: H - B + 16, "text-anchor": "middle" }, p.label));
    }
  });
  return svg;
}

// Lines over time: series = [{name, color, points: [{t: Date, v}]}].
function lineChart(name, series, fmtY) {
  const W = 900, H = 260, L = 60, R = 14, T = 12, B = 30;
  const all = series.flatMap((se) => se.points);
  let t0 = Math.min(...all.map((p) => p.t.getTime()));
  let t1 = Math.max(...all.map((p) => p.t.getTime()));
  if (t1 === t0) { t0 -= 1800e3; t1 += 1800e3; }  // one hour of data: centre it
  const max = niceMax(Math.max(...all.map((p) => p.v)));
  const x = (t) => L + (W - L - R) * ((t.getTime() - t0) / (t1 - t0));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, "data-chart": name,
                         "data-points": String(all.length), role: "img" });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { class: "grid-line", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtY(v)));
  }
  const ticks = 4;
  for (let i = 0; i <= ticks; i++) {
    const t = new Date(t0 + ((t1 - t0) * i) / ticks);
    const label = t.toLocaleString("en-GB", { month: "short", day: "numeric",
                                              hour: "2-digit", minute: "2-digit" });
    svg.append(s("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" }, label));
  }
  for (const se of series) {
    const pts = se.points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { points: pts, fill: "none", stroke: se.color, "stroke-width": 2.2,
                               "stroke-linejoin": "round", "data-series": se.name }));
    for (const p of se.points) {
      const dot = s("circle", { cx: x(p.t), cy: y(p.v), r: se.points.length > 1 ? 3 : 5, fill: se.color });
      dot.append(s("title", {}, `${se.name} ${p.t.toISOString()}: ${fmtY(p.v)}`));
      svg.append(dot);
    }
  }
  return svg;
}

// Two horizontal bars per service: positive rate (of ok findings) and defect rate.
function serviceRateChart(rows) {
  const W = 460, rowH = 46, L = 96, R = 50, T = 8;
  const H = T + rows.length * rowH + 20;
  const max = niceMax(Math.max(0.05, ...rows.flatMap((r) => [r.positive ?? 0, r.defect ?? 0])));
  const x = (v) => L + (W - L - R) * (v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, "data-chart": "service-rates",
                         "data-points": String(rows.length), role: "img" });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { class: "grid-line", x1: x(v), x2: x(v), y1: T, y2: H - 18 }));
    svg.append(s("text", { x: x(v), y: H - 4, "text-anchor": "middle" }, fmtPct(v)));
  }
  rows.forEach((r, i) => {
    const top = T + i * rowH + 6;
    svg.append(s("text", { x: L - 10, y: top + 19, "text-anchor": "end", fill: "#1c2533",
                           "font-size": 13 }, r.service));
    [["positive", r.positive, COLORS.positive, 0], ["defect", r.defect, COLORS.defect, 17]]
      .forEach(([kind, v, color, dy]) => {
        const bar = s("rect", { class: "bar", x: L, y: top + dy, height: 14, rx: 3, fill: color,
                                width: Math.max(v ? 2 : 0, x(v ?? 0) - L),
                                "data-value": String(v ?? "") });
        bar.append(s("title", {}, `${r.service} ${kind}: ${fmtPct(v)}`));
        svg.append(bar);
        svg.append(s("text", { x: x(v ?? 0) + 6, y: top + dy + 11 }, fmtPct(v)));
      });
  });
  return svg;
}

// AUC point estimate with its confidence interval, per service (scale 0.5..1).
function aucChart(rows) {
  const W = 460, rowH = 34, L = 150, R = 44, T = 8;
  const H = T + rows.length * rowH + 22;
  const lo = 0.5;
  const x = (v) => L + (W - L - R) * ((Math.max(lo, Math.min(1, v)) - lo) / (1 - lo));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, "data-chart": "auc",
                         "data-points": String(rows.length), role: "img" });
  for (const v of [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]) {
    svg.append(s("line", { class: "grid-line", x1: x(v), x2: x(v), y1: T, y2: H - 18 }));
    svg.append(s("text", { x: x(v), y: H - 4, "text-anchor": "middle" }, v.toFixed(1)));
  }
  rows.forEach((r, i) => {
    const cy = T + i * rowH + rowH / 2;
    const label = r.finding ? `${r.service} · ${r.finding}` : r.service;
    svg.append(s("text", { x: L - 10, y: cy + 4, "text-anchor": "end", fill: "#1c2533",
                           "font-size": 12 }, label));
    if (Array.isArray(r.auc_ci) && r.auc_ci.length === 2) {
      const [a, b] = r.auc_ci;
      svg.append(s("line", { x1: x(a), x2: x(b), y1: cy, y2: cy, stroke: COLORS.auc, "stroke-width": 2 }));
      for (const e of [a, b]) {
        svg.append(s("line", { x1: x(e), x2: x(e), y1: cy - 6, y2: cy + 6, stroke: COLORS.auc, "stroke-width": 2 }));
      }
    }
    const dot = s("circle", { cx: x(r.auc), cy, r: 5.5, fill: COLORS.p90, "data-value": String(r.auc) });
    const ci = Array.isArray(r.auc_ci) ? ` (95% CI ${r.auc_ci.map((v) => v.toFixed(3)).join("–")})` : "";
    dot.append(s("title", {}, `${label}: AUC ${r.auc.toFixed(3)}${ci}, ${r.reviews ?? "?"} reviews`));
    svg.append(dot);
    svg.append(s("text", { x: W - R + 8, y: cy + 4, fill: "#1c2533" }, r.auc.toFixed(3)));
  });
  return svg;
}

// ---------------------------------------------------------------- panels

function renderKpis(stats) {
  const c = (stats && stats.city) || {};
  const findings = c.findings || 0;
  const cards = [
    ["studies", "Studies", c.studies, ""],
    ["findings", "Findings", c.findings, ""],
    ["ok", "Read by AI", c.ok, fmtPct(rate(c.ok || 0, findings)) + " of findings"],
    ["positive", "Positive", c.positive, fmtPct(rate(c.positive || 0, c.ok || 0)) + " of read"],
    ["technical_defect", "Technical defects", c.technical_defect,
     fmtPct(rate(c.technical_defect || 0, findings)) + " of findings"],
    ["not_applicable", "Not applicable", c.not_applicable, ""],
  ];
  replace("kpis", ...cards.map(([key, label, value, extra]) =>
    h("div", { class: "kpi" },
      h("div", { class: "label" }, label),
      h("div", { class: "value", "data-kpi": key, "data-value": String(value ?? 0) },
        stats ? fmtInt(value) : "—"),
      h("div", { class: "extra" }, stats ? extra : "no data yet"))));
}

function renderWeekly(weekly) {
  const rows = (weekly && weekly.rows) || [];
  const points = rows
    .filter((r) => r.start)
    .sort((a, b) => a.start.localeCompare(b.start))
    .map((r) => ({ label: new Date(r.start).toLocaleDateString("en-GB", { day: "numeric", month: "short" }),
                   value: (r.counts && (r.counts.studies ?? r.counts.findings)) || 0 }));
  replace("chart-weekly", points.length ? barChart("weekly", points, fmtInt) : empty());
}

function renderServiceRates(stats) {
  const services = Object.entries((stats && stats.services) || {});
  const rows = services.map(([service, c]) => ({
    service,
    positive: rate(c.positive || 0, c.ok || 0),
    defect: rate(c.technical_defect || 0, c.findings || 0),
  }));
  if (!rows.length) return replace("chart-service-rates", empty());
  replace("chart-service-rates", serviceRateChart(rows),
          legend([["positive (of read studies)", COLORS.positive],
                  ["technical defect (of findings)", COLORS.defect]]));
}

function renderLatency(hourly, total) {
  const rows = ((hourly && hourly.rows) || [])
    .filter((r) => r.start && r.latency && r.latency.end_to_end_s && r.latency.end_to_end_s.count)
    .sort((a, b) => a.start.localeCompare(b.start));
  const series = ["p50", "p90", "p99"].map((q) => ({
    name: q, color: COLORS[q],
    points: rows.filter((r) => r.latency.end_to_end_s[q] != null)
      .map((r) => ({ t: new Date(r.start), v: r.latency.end_to_end_s[q] })),
  })).filter((se) => se.points.length);
  if (series.length) {
    replace("chart-latency", lineChart("latency", series, fmtSeconds),
            legend(series.map((se) => [se.name, se.color])));
  } else {
    replace("chart-latency", empty());
  }
  // Time to result by priority over the whole history (the "total" window).
  const byPriority = (((total && total.rows) || [])[0]?.latency?.time_to_result_by_priority) || {};
  const order = ["emergency", "urgent", "routine"];
  const prios = Object.keys(byPriority)
    .sort((a, b) => (order.indexOf(a) + 99) % 99 - (order.indexOf(b) + 99) % 99);
  if (!prios.length) return replace("priority-latency");
  const table = h("table", {},
    h("thead", {}, h("tr", {}, ...["Time to result", "studies", "p50", "p90", "p99"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...prios.map((p) => {
      const q = byPriority[p] || {};
      return h("tr", {}, h("td", {}, p), h("td", {}, fmtInt(q.count)),
               h("td", {}, fmtSeconds(q.p50)), h("td", {}, fmtSeconds(q.p90)), h("td", {}, fmtSeconds(q.p99)));
    })));
  replace("priority-latency", table);
}

function renderHospitals(stats) {
  const rows = Object.entries((stats && stats.hospitals) || {})
    .sort((a, b) => (b[1].studies || 0) - (a[1].studies || 0) || a[0].localeCompare(b[0]));
  if (!rows.length) return replace("hospitals", empty());
  const head = ["Hospital", "Studies", "Findings", "Read", "Positive", "Positive rate",
                "Defects", "Defect rate", "Not applicable"];
  const bar = (v, cls) => h("span", { class: "rate-bar " + cls,
                                      style: `width:${Math.round(60 * (v || 0))}px` });
  const table = h("table", { "data-table": "hospitals" },
    h("thead", {}, h("tr", {}, ...head.map((t) => h("th", {}, t)))),
    h("tbody", {}, ...rows.map(([id, c]) => {
      const pos = rate(c.positive || 0, c.ok || 0);
      const def = rate(c.technical_defect || 0, c.findings || 0);
      return h("tr", { "data-hospital": id },
        h("td", {}, id),
        h("td", { "data-col": "studies" }, fmtInt(c.studies)),
        h("td", {}, fmtInt(c.findings)), h("td", {}, fmtInt(c.ok)), h("td", {}, fmtInt(c.positive)),
        h("td", {}, fmtPct(pos), bar(pos, "")),
        h("td", {}, fmtInt(c.technical_defect)),
        h("td", {}, fmtPct(def), bar(def, "defect")),
        h("td", {}, fmtInt(c.not_applicable)));
    })));
  replace("hospitals", table);
}

function renderQuality(quality) {
  const services = ((quality && quality.services) || [])
    .filter((r) => r.auc != null && isFinite(r.auc));
  replace("chart-auc", services.length ? aucChart(services) : empty());
  if (!quality) return replace("alerts", empty());
  const alerts = quality.alerts || [];
  if (!alerts.length) {
    return replace("alerts", h("div", { class: "all-clear" }, "No active quality alerts."));
  }
  const fmtVal = (v) => (typeof v === "number" ? (Math.abs(v) < 1 ? v.toFixed(3) : v.toFixed(1)) : String(v ?? "—"));
  replace("alerts", h("ul", { class: "alerts" }, ...alerts.map((a) => h("li", { "data-alert": a.kind || "" },
    h("div", { class: "what" },
      `${a.kind || "alert"} — ${a.service || "?"}${a.device_id ? " · device " + a.device_id : ""}`),
    h("div", {}, `value ${fmtVal(a.value)} vs threshold ${fmtVal(a.threshold)}${a.window ? " · window " + a.window : ""}`),
    h("div", { class: "when" }, a.raised_at ? "raised " + new Date(a.raised_at).toLocaleString("en-GB") : "")))));
}

function renderSources(found) {
  replace("sources", ...Object.entries(found).flatMap(([name, ok], i) => [
    i ? " · " : "", h("span", { class: ok ? "ok" : "missing", title: ok ? "available" : "not available yet" }, name)]));
}

// ---------------------------------------------------------------- refresh loop

async function refresh() {
  const [stats, weekly, hourly, total, quality] = await Promise.all([
    getJSON("/stats"),
    getJSON("/stats/windows?window=week&dimension=city"),
    getJSON("/stats/windows?window=hour&dimension=city"),
    getJSON("/stats/windows?window=total&dimension=city"),
    getJSON("/quality"),
  ]);
  const panels = [
    () => renderKpis(stats), () => renderWeekly(weekly), () => renderServiceRates(stats),
    () => renderLatency(hourly, total), () => renderHospitals(stats), () => renderQuality(quality),
  ];
  for (const draw of panels) {
    try { draw(); } catch (err) { console.error("dashboard panel failed", err); }
  }
  renderSources({ "/stats": !!stats, "/stats/windows": !!(weekly || hourly), "/quality": !!quality });
  document.getElementById("status-dot").className = "dot " + (stats ? "ok" : "err");
  const now = new Date();
  const stamp = document.getElementById("last-refresh");
  stamp.textContent = now.toLocaleTimeString("en-GB");
  stamp.setAttribute("datetime", now.toISOString());
}

async function loop() {
  await refresh();
  setTimeout(loop, REFRESH_MS);
}

loop();
