// fleetbench dashboard. Builds every element with createElement and puts
// text in with textContent only: model names, answers and error messages
// come from servers and must never become markup.
"use strict";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function num(x, digits) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  const a = Math.abs(x);
  const d = digits !== undefined ? digits : a >= 1000 ? 0 : a >= 100 ? 1 : 2;
  return x.toFixed(d);
}

function figure(key, label, value) {
  const f = el("div", { class: "figure" });
  f.appendChild(el("div", { class: "v", "data-field": key }, value));
  f.appendChild(el("div", { class: "k" }, label));
  return f;
}

// Charts: inline SVG drawn here from the snapshot's series. Labels are set
// with textContent like everything else.
const SVG_NS = "http://www.w3.org/2000/svg";
const W = 320, H = 130, PAD_L = 44, PAD_R = 8, PAD_T = 18, PAD_B = 20;
const COLORS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7"];

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function finite(v) { return typeof v === "number" && Number.isFinite(v); }

function scaleOf(lo, hi, a, b) {
  const span = hi - lo || 1;
  return (v) => a + ((v - lo) / span) * (b - a);
}

// lines: [{label, points: [[x, y], ...]}]; opts: {key, title, xLabel, yMax, logX, marks, hollow}
function lineChart(lines, opts) {
  const svg = svgEl("svg", { class: "live-chart", viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "data-chart": opts.key });
  const pts = lines.flatMap((l) => l.points).filter((p) => finite(p[0]) && finite(p[1]));
  const extra = (opts.hollow || []).filter((p) => finite(p[0]) && finite(p[1]));
  svg.setAttribute("data-points", String(pts.length));
  svg.appendChild(svgEl("title", {}, opts.title));
  svg.appendChild(svgEl("text", { x: PAD_L, y: 12, class: "chart-title" }, opts.title));
  const all = pts.concat(extra);
  const fx = (x) => (opts.logX ? Math.log2(Math.max(x, 1e-9)) : x);
  let x0 = all.length ? Math.min(...all.map((p) => fx(p[0]))) : 0;
  let x1 = all.length ? Math.max(...all.map((p) => fx(p[0]))) : 1;
  if (x1 <= x0) x1 = x0 + 1;
  let y1 = opts.yMax !== undefined ? opts.yMax : Math.max(0, ...all.map((p) => p[1])) * 1.1;
  if (!(y1 > 0)) y1 = 1;
  const sx = scaleOf(x0, x1, PAD_L, W - PAD_R);
  const sy = scaleOf(0, y1, H - PAD_B, PAD_T);
  svg.appendChild(svgEl("line", { x1: PAD_L, y1: H - PAD_B, x2: W - PAD_R, y2: H - PAD_B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: PAD_L, y1: PAD_T, x2: PAD_L, y2: H - PAD_B, class: "axis" }));
  svg.appendChild(svgEl("text", { x: PAD_L - 4, y: PAD_T + 4, class: "tick", "text-anchor": "end" }, num(y1)));
  svg.appendChild(svgEl("text", { x: PAD_L - 4, y: H - PAD_B, class: "tick", "text-anchor": "end" }, "0"));
  const xl = (v) => (opts.logX ? num(Math.pow(2, v)) : num(v));
  svg.appendChild(svgEl("text", { x: PAD_L, y: H - 6, class: "tick" }, xl(x0)));
  svg.appendChild(svgEl("text", { x: W - PAD_R, y: H - 6, class: "tick", "text-anchor": "end" }, xl(x1) + " " + opts.xLabel));
  if (!pts.length && !extra.length) {
    svg.appendChild(svgEl("text", { x: (W + PAD_L) / 2, y: H / 2, class: "tick", "text-anchor": "middle" }, "no data yet"));
  }
  lines.forEach((l, i) => {
    const p = l.points.filter((q) => finite(q[0]) && finite(q[1]));
    const color = COLORS[i % COLORS.length];
    if (p.length) {
      const d = p.map((q, j) => (j ? "L" : "M") + sx(fx(q[0])).toFixed(1) + " " + sy(q[1]).toFixed(1)).join(" ");
      svg.appendChild(svgEl("path", { d: d, class: "series", stroke: color, "data-series": l.label }));
      if (opts.marks) {
        for (const q of p) svg.appendChild(svgEl("circle", { cx: sx(fx(q[0])).toFixed(1), cy: sy(q[1]).toFixed(1), r: 3, fill: color, class: "mark" }));
      }
    }
    if (lines.length > 1 || opts.legend) {
      svg.appendChild(svgEl("text", { x: W - PAD_R - 70 * (lines.length - i) + 10, y: 12, class: "legend", fill: color }, l.label));
    }
  });
  for (const q of extra) {
    svg.appendChild(svgEl("circle", { cx: sx(fx(q[0])).toFixed(1), cy: sy(q[1]).toFixed(1), r: 4, class: "mark hollow", "data-running": "1" }));
  }
  return svg;
}

function liveCharts(s) {
  const box = el("div", { class: "charts" });
  const series = s.series || [];
  const unit = s.time_scale ? "s (modelled)" : "s";
  const over = (f) => series.map((p) => [p.t, f(p)]);
  box.appendChild(lineChart([{ label: "tok/s", points: over((p) => p.output_tok_s) }], { key: "output_tok_s", title: "output tok/s (last 10 s)", xLabel: unit }));
  box.appendChild(lineChart([
    { label: "p50", points: over((p) => p.ttft_p50_ms) },
    { label: "p99", points: over((p) => p.ttft_p99_ms) },
  ], { key: "ttft", title: "TTFT ms", xLabel: unit }));
  box.appendChild(lineChart([{ label: "in flight", points: over((p) => p.in_flight) }], { key: "in_flight", title: "requests in flight", xLabel: unit }));
  box.appendChild(lineChart([{ label: "errors/s", points: over((p) => p.errors_per_s) }], { key: "errors_per_s", title: "errors per second", xLabel: unit }));
  const server = s.server || [];
  if (server.length) {
    const sv = (f) => server.map((p) => [p.t, f(p)]);
    box.appendChild(lineChart([
      { label: "running", points: sv((p) => p.running) },
      { label: "waiting", points: sv((p) => p.waiting) },
    ], { key: "server_queue", title: "server: running / waiting", xLabel: unit }));
    box.appendChild(lineChart([{ label: "KV %", points: sv((p) => p.kv_cache_pct) }], { key: "kv_cache", title: "server: KV cache %", xLabel: unit, yMax: 100 }));
  }
  if (s.sweep) {
    const done = (s.sweep.finished || []).map((p) => [p.level, p.output_tok_s]);
    const here = s.sweep.level;
    const running = s.state === "running" && !done.some((p) => p[0] === here);
    const levels = done.map((p) => p[0]).concat([here]).filter((v) => v > 0);
    const logX = levels.length > 1 && Math.max(...levels) / Math.min(...levels) >= 4;
    box.appendChild(lineChart([{ label: "tok/s", points: done }], {
      key: "sweep_curve", title: "sweep: aggregate tok/s by level", xLabel: String(s.sweep.unit || ""),
      marks: true, logX: logX, hollow: running ? [[here, s.output_tok_s]] : [],
    }));
  }
  return box;
}

function liveCard(s) {
  const card = el("article", { class: "card live-run", "data-live-id": s.live_id });
  const h = el("h3");
  h.appendChild(el("span", { class: "title" }, s.title || (s.kind + " " + s.live_id)));
  h.appendChild(el("span", { class: "state " + s.state, "data-field": "state" }, s.state));
  card.appendChild(h);
  const meta = el("div", { class: "meta" });
  meta.appendChild(el("span", { "data-field": "model" }, s.model));
  meta.appendChild(document.createTextNode(" · "));
  meta.appendChild(el("span", { "data-field": "backend" }, s.backend));
  if (s.level) meta.appendChild(el("span", { "data-field": "level" }, " · level " + s.level));
  if (s.run_id !== null && s.run_id !== undefined) {
    meta.appendChild(document.createTextNode(" · "));
    const a = el("a", { href: "/runs/" + encodeURIComponent(String(Number(s.run_id))) + "/report" }, "report of run " + Number(s.run_id));
    meta.appendChild(a);
  }
  card.appendChild(meta);

  const total = s.total || 0;
  const done = s.done + s.failed;
  const bar = el("div", { class: "bar", title: total ? done + " of " + total : done + " done" });
  const fill = el("div");
  fill.style.width = total ? Math.min(100, (100 * done) / total).toFixed(1) + "%" : "0%";
  bar.appendChild(fill);
  card.appendChild(bar);

  const figs = el("div", { class: "figures" });
  figs.appendChild(figure("done", total ? "done of " + total : "done", String(s.done)));
  figs.appendChild(figure("failed", "failed", String(s.failed)));
  figs.appendChild(figure("output_tok_s", "output tok/s (last 10 s)", num(s.output_tok_s)));
  figs.appendChild(figure("per_request_tok_s", "per-request tok/s", num(s.per_request_tok_s)));
  figs.appendChild(figure("ttft_p50_ms", "TTFT p50 (ms)", num(s.ttft_p50_ms)));
  figs.appendChild(figure("ttft_p99_ms", "TTFT p99 (ms)", num(s.ttft_p99_ms)));
  figs.appendChild(figure("tpot_p50_ms", "TPOT p50 (ms)", num(s.tpot_p50_ms)));
  figs.appendChild(figure("in_flight", "in flight", String(s.in_flight)));
  figs.appendChild(figure("elapsed_s", "elapsed (s)", num(s.elapsed_s, 0)));
  card.appendChild(figs);
  if (s.time_scale) {
    card.appendChild(el("div", { class: "note", "data-field": "time_scale" }, "figures in modelled time: the server runs " + (Number.isInteger(s.time_scale) ? String(s.time_scale) : num(s.time_scale)) + "× faster than the hardware it models"));
  }
  card.appendChild(liveCharts(s));

  const kinds = Object.entries(s.errors || {});
  if (kinds.length) {
    card.appendChild(el("div", { class: "error-line", "data-field": "errors" }, "errors: " + kinds.map(([k, n]) => k + " " + n).join(", ")));
  }
  if (s.last_error) card.appendChild(el("div", { class: "error-line", "data-field": "last_error" }, "last error: " + s.last_error));

  if (s.leaderboard && s.leaderboard.length) {
    // Investigate mode: the rows carry further figures, and a floor row follows.
    const inv = s.leaderboard.some((r) => r.investigate);
    const t = el("table", { class: "leaderboard" });
    const hr = el("tr");
    const cols = ["rank", "backend", "score", "95% CI", "answered", inv ? "unanswered" : "failed"];
    if (inv) cols.push("single-fault", "beyond runbook", "false positives", "over-remediation", "TTD p50 (s)", "TTD p90 (s)", "tool calls p50", "tokens p50", "$ per incident", "$ per day");
    for (const c of cols) hr.appendChild(el("th", {}, c));
    t.appendChild(el("thead")).appendChild(hr);
    const tb = el("tbody");
    const pct = (x) => (x === null || x === undefined ? "–" : num(100 * x, 1) + "%");
    const money = (x) => (x === null || x === undefined ? "–" : num(x, 4));
    const addRow = (r, rank) => {
      const tr = el("tr");
      tr.appendChild(el("td", { class: "num" }, rank));
      tr.appendChild(el("td", { "data-field": "lb-backend" }, r.backend));
      tr.appendChild(el("td", { class: "num", "data-field": "lb-score" }, num(r.score)));
      tr.appendChild(el("td", { class: "num" }, r.ci_lo !== null && r.ci_lo !== undefined ? "[" + num(r.ci_lo) + ", " + num(r.ci_hi) + "]" : "–"));
      tr.appendChild(el("td", { class: "num" }, r.answered));
      tr.appendChild(el("td", { class: "num" }, r.failed));
      const f = r.investigate;
      if (inv && f) {
        for (const v of [num(f.single_fault_score), num(f.beyond_runbook_score), pct(f.false_positive_rate), pct(f.over_remediation_rate), num(f.ttd_p50_s), num(f.ttd_p90_s), num(f.tool_calls_p50, 0), num(f.tokens_p50, 0), money(f.usd_per_incident), money(f.usd_per_day)]) {
          tr.appendChild(el("td", { class: "num" }, v));
        }
      }
      tb.appendChild(tr);
    };
    s.leaderboard.forEach((r, i) => addRow(r, i + 1));
    if (s.floor) addRow(s.floor, "floor");
    t.appendChild(tb);
    card.appendChild(el("h4", {}, "Leaderboard"));
    card.appendChild(t);
  }
  if (s.scenarios && s.scenarios.length) {
    const backends = [...new Set(s.scenarios.flatMap((r) => Object.keys(r.scores)))].sort();
    const t = el("table", { class: "scenarios" });
    const hr = el("tr");
    hr.appendChild(el("th", {}, "scenario"));
    for (const b of backends) hr.appendChild(el("th", {}, b));
    t.appendChild(el("thead")).appendChild(hr);
    const tb = el("tbody");
    for (const r of s.scenarios) {
      const tr = el("tr");
      tr.appendChild(el("td", {}, r.scenario));
      for (const b of backends) tr.appendChild(el("td", { class: "num" }, num(r.scores[b])));
      tb.appendChild(tr);
    }
    t.appendChild(tb);
    card.appendChild(el("h4", {}, "Scenarios"));
    card.appendChild(t);
  }
  if (s.last_answer) {
    card.appendChild(el("h4", {}, "Latest answer"));
    card.appendChild(el("pre", { class: "answer", "data-field": "last_answer" }, s.last_answer));
  }
  return card;
}

function renderLive(all) {
  const snaps = (all || []).filter((s) => s && typeof s === "object");
  const box = document.getElementById("live");
  box.replaceChildren(...snaps.map(liveCard));
  document.getElementById("live-empty").hidden = snaps.length > 0;
  document.body.setAttribute("data-live-updates", String(Number(document.body.getAttribute("data-live-updates") || 0) + 1));
}

async function loadRuns() {
  try {
    const r = await fetch("/api/runs", { credentials: "same-origin" });
    if (!r.ok) return;
    const body = await r.json();
    const tb = document.querySelector("#runs tbody");
    tb.replaceChildren();
    for (const run of body.runs || []) {
      const id = Number(run.id);
      const tr = el("tr", { "data-run-id": id });
      tr.appendChild(el("td", { class: "num" }, id));
      tr.appendChild(el("td", { class: "model" }, run.model));
      tr.appendChild(el("td", {}, run.backend_url + " (" + run.api + ")"));
      tr.appendChild(el("td", {}, run.schedule));
      tr.appendChild(el("td", {}, run.status));
      tr.appendChild(el("td", {}, run.started_at));
      tr.appendChild(el("td", { class: "num" }, run.requests));
      tr.appendChild(el("td", { class: "num" }, num(run.output_throughput)));
      const td = el("td");
      td.appendChild(el("a", { href: "/runs/" + id + "/report" }, "open"));
      tr.appendChild(td);
      tb.appendChild(tr);
    }
    document.getElementById("runs-empty").hidden = (body.runs || []).length > 0;
  } catch (e) {
    /* the list refreshes on the next tick */
  }
}

// At most four renders a second, whatever the server sends: the latest
// frame wins.
const MIN_RENDER_MS = 250;
let pending = null, timer = null, lastRender = 0;
function schedule(snaps) {
  pending = snaps;
  if (timer !== null) return;
  const wait = Math.max(0, lastRender + MIN_RENDER_MS - Date.now());
  timer = setTimeout(() => {
    timer = null;
    lastRender = Date.now();
    const s = pending;
    pending = null;
    if (s) renderLive(s);
  }, wait);
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/api/live/events");
  es.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn ok"; });
  es.addEventListener("live", (ev) => {
    try { schedule(JSON.parse(ev.data)); } catch (e) { /* skip a bad frame */ }
  });
  es.addEventListener("error", () => { conn.textContent = "reconnecting…"; conn.className = "conn bad"; });
}

document.addEventListener("DOMContentLoaded", () => {
  connect();
  loadRuns();
  setInterval(loadRuns, 10000);
});
