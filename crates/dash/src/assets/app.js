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
  figs.appendChild(figure("elapsed_s", "elapsed (s)", num(s.elapsed_s, 0)));
  card.appendChild(figs);

  const kinds = Object.entries(s.errors || {});
  if (kinds.length) {
    card.appendChild(el("div", { class: "error-line", "data-field": "errors" }, "errors: " + kinds.map(([k, n]) => k + " " + n).join(", ")));
  }
  if (s.last_error) card.appendChild(el("div", { class: "error-line", "data-field": "last_error" }, "last error: " + s.last_error));

  if (s.leaderboard && s.leaderboard.length) {
    const t = el("table", { class: "leaderboard" });
    const hr = el("tr");
    for (const c of ["rank", "backend", "score", "95% CI", "answered", "failed"]) hr.appendChild(el("th", {}, c));
    t.appendChild(el("thead")).appendChild(hr);
    const tb = el("tbody");
    s.leaderboard.forEach((r, i) => {
      const tr = el("tr");
      tr.appendChild(el("td", { class: "num" }, i + 1));
      tr.appendChild(el("td", { "data-field": "lb-backend" }, r.backend));
      tr.appendChild(el("td", { class: "num", "data-field": "lb-score" }, num(r.score)));
      tr.appendChild(el("td", { class: "num" }, r.ci_lo !== null && r.ci_lo !== undefined ? "[" + num(r.ci_lo) + ", " + num(r.ci_hi) + "]" : "–"));
      tr.appendChild(el("td", { class: "num" }, r.answered));
      tr.appendChild(el("td", { class: "num" }, r.failed));
      tb.appendChild(tr);
    });
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

function renderLive(snaps) {
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

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/api/live/events");
  es.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn ok"; });
  es.addEventListener("live", (ev) => {
    try { renderLive(JSON.parse(ev.data)); } catch (e) { /* skip a bad frame */ }
  });
  es.addEventListener("error", () => { conn.textContent = "reconnecting…"; conn.className = "conn bad"; });
}

document.addEventListener("DOMContentLoaded", () => {
  connect();
  loadRuns();
  setInterval(loadRuns, 10000);
});
