// Watches the live dashboard's charts while a real sweep runs: a running
// level's charts gain points between two instants, the sweep's curve gains
// a level, the server's queue and KV-cache charts are drawn, renders stay
// at four a second or fewer, and hostile model text stays text.
//   node dash-charts.mjs http://127.0.0.1:PORT SCREENSHOT_DIR
import { launch, fail } from "./common.mjs";

const [base, dir] = process.argv.slice(2);
if (!base || !dir) fail("usage: node dash-charts.mjs BASE_URL SCREENSHOT_DIR");

// What the page shows of each live card's charts.
function cards() {
  return [...document.querySelectorAll("article.live-run")].map((c) => {
    const points = {};
    for (const svg of c.querySelectorAll("svg.live-chart")) {
      const r = svg.getBoundingClientRect();
      points[svg.getAttribute("data-chart")] = r.width * r.height > 0 ? Number(svg.getAttribute("data-points")) : -1;
    }
    const state = c.querySelector("[data-field=state]");
    const level = c.querySelector("[data-field=level]");
    const inFlight = c.querySelector("[data-field=in_flight]");
    return {
      id: c.getAttribute("data-live-id"),
      level: level ? level.textContent : "",
      state: state ? state.textContent : "",
      inFlight: inFlight ? Number(inFlight.textContent) : null,
      points,
    };
  });
}

const browser = await launch();
try {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  const ok = await page.goto(base + "/", { waitUntil: "load" });
  if (!ok || ok.status() !== 200) fail("the page did not load: " + (ok && ok.status()));

  // A running level whose throughput chart has a couple of points.
  const firstHandle = await page.waitForFunction(
    () => [...document.querySelectorAll("article.live-run")].map((c) => {
      const state = c.querySelector("[data-field=state]");
      const svg = c.querySelector("svg[data-chart=output_tok_s]");
      return { id: c.getAttribute("data-live-id"), running: state && state.textContent === "running", n: svg ? Number(svg.getAttribute("data-points")) : 0 };
    }).find((c) => c.running && c.n >= 2),
    null,
    { timeout: 30000, polling: 50 }
  );
  const first = await firstHandle.jsonValue();
  // The same card later: more points.
  const secondHandle = await page.waitForFunction(
    (f) => {
      const c = document.querySelector("article.live-run[data-live-id='" + f.id + "']");
      const svg = c && c.querySelector("svg[data-chart=output_tok_s]");
      const n = svg ? Number(svg.getAttribute("data-points")) : 0;
      return n > f.n ? { id: f.id, n } : null;
    },
    first,
    { timeout: 30000, polling: 50 }
  );
  const second = await secondHandle.jsonValue();

  // The sweep's curve grows by a level.
  const curveNow = await page.evaluate(() => Math.max(0, ...[...document.querySelectorAll("svg[data-chart=sweep_curve]")].map((s) => Number(s.getAttribute("data-points")))));
  const curveLaterHandle = await page.waitForFunction(
    (c0) => {
      const n = Math.max(0, ...[...document.querySelectorAll("svg[data-chart=sweep_curve]")].map((s) => Number(s.getAttribute("data-points"))));
      return n > c0 ? n : null;
    },
    curveNow,
    { timeout: 30000, polling: 50 }
  );
  const curveLater = await curveLaterHandle.jsonValue();

  // Renders in two seconds (the page coalesces to at most four a second).
  const r0 = Number(await page.getAttribute("body", "data-live-updates"));
  await page.waitForTimeout(2000);
  const r1 = Number(await page.getAttribute("body", "data-live-updates"));
  const shown = await page.evaluate(cards);
  const model = await page.textContent("article.live-run [data-field=model]");
  const pwned = await page.evaluate(() => (window.__pwned === undefined ? null : window.__pwned));
  await page.screenshot({ path: dir + "/dash-charts.png", fullPage: true });
  const withServer = shown.filter((c) => c.points.server_queue > 0 && c.points.kv_cache > 0).length;
  const result = { ok: true, first, second, curveNow, curveLater, rendersIn2s: r1 - r0, cards: shown, withServer, model, pwned, consoleErrors };
  if (!(second.n > first.n)) fail("the throughput chart did not gain points", result);
  if (!(curveLater > curveNow)) fail("the sweep curve did not grow", result);
  if (!withServer) fail("no card drew the server's queue and KV-cache charts", result);
  if (r1 - r0 > 10) fail("more than four renders a second", result);
  if (pwned !== null) fail("hostile text executed", result);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
