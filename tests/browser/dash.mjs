// Drives the live dashboard in headless Chromium: 401 without the token,
// a running run whose numbers change while we watch, hostile text shown as
// text, and a stored run's report opening under the page's CSP.
//   node dash.mjs http://127.0.0.1:PORT TOKEN SCREENSHOT_DIR
import { launch, fail } from "./common.mjs";

const [base, token, dir] = process.argv.slice(2);
if (!base || !token || !dir) fail("usage: node dash.mjs BASE_URL TOKEN SCREENSHOT_DIR");
const HOSTILE_MODEL = "qwen<script>window.__pwned=1</script>";

const browser = await launch();
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const dialogs = [];
  page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });

  const denied = await page.goto(base + "/", { waitUntil: "load" });
  const deniedStatus = denied ? denied.status() : 0;
  await page.screenshot({ path: dir + "/dash-401.png" });
  if (deniedStatus !== 401) fail("expected 401 without the token, got " + deniedStatus);

  const ok = await page.goto(base + "/?token=" + encodeURIComponent(token), { waitUntil: "load" });
  if (!ok || ok.status() !== 200) fail("with the token the page should load, got " + (ok && ok.status()));
  await page.waitForSelector("[data-live-id] [data-field=done]", { timeout: 15000 });
  const first = await page.textContent("[data-live-id] [data-field=done]");
  const firstTps = await page.textContent("[data-live-id] [data-field=output_tok_s]");
  await page.waitForFunction(
    (v) => { const e = document.querySelector("[data-live-id] [data-field=done]"); return e && e.textContent !== v; },
    first,
    { timeout: 15000 }
  );
  const second = await page.textContent("[data-live-id] [data-field=done]");
  const secondTps = await page.textContent("[data-live-id] [data-field=output_tok_s]");
  const model = await page.textContent("[data-live-id] [data-field=model]");
  const answer = await page.textContent("[data-live-id] [data-field=last_answer]");
  const scriptsInLive = await page.$$eval("#live script", (s) => s.length);
  const leaderboardHead = await page.$$eval("[data-live-id] table.leaderboard th", (h) => h.map((x) => x.textContent));
  const leaderboardRows = await page.$$eval("[data-live-id] table.leaderboard tbody tr", (r) => r.map((x) => [...x.children].map((c) => c.textContent).join(" ")));
  await page.waitForSelector("#runs tbody tr", { timeout: 15000 });
  const storedModel = await page.textContent("#runs tbody tr td.model");
  const pwned = await page.evaluate(() => window.__pwned === undefined ? null : window.__pwned);
  await page.screenshot({ path: dir + "/dash-live.png", fullPage: true });

  // Open the stored run's report from the list.
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("#runs tbody tr a")]);
  const charts = await page.$$eval("svg.chart", (svgs) => svgs.map((s) => { const r = s.getBoundingClientRect(); return r.width * r.height; }));
  await page.screenshot({ path: dir + "/dash-report.png", fullPage: true });
  const pwnedAfter = await page.evaluate(() => window.__pwned === undefined ? null : window.__pwned);

  const result = { ok: true, deniedStatus, first, second, firstTps, secondTps, model, answer, storedModel, scriptsInLive, leaderboardHead, leaderboardRows, pwned, pwnedAfter, dialogs, charts: charts.length, consoleErrors };
  if (first === second) fail("live numbers did not change", result);
  if (model !== HOSTILE_MODEL) fail("model name not shown as text", result);
  if (storedModel !== HOSTILE_MODEL) fail("stored model name not shown as text", result);
  if (!answer || !answer.includes("<script>")) fail("answer not shown as text", result);
  if (scriptsInLive !== 0 || pwned !== null || pwnedAfter !== null || dialogs.length) fail("hostile text executed", result);
  if (!(charts.length > 0 && charts.every((a) => a > 0))) fail("report charts not visible", result);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
