// Opens a fleetbench report from file:// in headless Chromium and checks
// that every chart is visible and that hostile model text stays text; it
// reports each chart's lines (vertices per series), knee markers, and any
// text that lies outside its SVG's box, and whether the headline table
// comes before the first chart.
//   node report.mjs file:///path/index.html SCREENSHOT.png
import { launch, fail } from "./common.mjs";

const [url, shot] = process.argv.slice(2);
if (!url || !url.startsWith("file://")) fail("usage: node report.mjs file:///.../index.html screenshot.png");

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  const dialogs = [];
  page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
  const resp = await page.goto(url, { waitUntil: "load" });
  if (resp && !resp.ok()) fail("report did not load: " + resp.status());
  const charts = await page.$$eval("svg.chart", (svgs) =>
    svgs.map((s) => {
      const r = s.getBoundingClientRect();
      const style = getComputedStyle(s);
      return { id: s.id, w: r.width, h: r.height, visible: style.visibility !== "hidden" && style.display !== "none" };
    })
  );
  const shapes = await page.$$eval("svg.chart", (svgs) =>
    svgs.map((s) => {
      const box = s.getBoundingClientRect();
      const outside = [];
      for (const t of s.querySelectorAll("text")) {
        const r = t.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;
        if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1) {
          outside.push({ text: t.textContent.slice(0, 60), left: r.left - box.left, right: r.right - box.left, top: r.top - box.top, bottom: r.bottom - box.top, w: box.width, h: box.height });
        }
      }
      const lines = [...s.querySelectorAll("polyline.line")].map((l) => ({
        series: l.dataset.series,
        vertices: l.points.numberOfItems,
      }));
      const knees = [...s.querySelectorAll("g.knee")].map((k) => ({ series: k.dataset.series, x: Number(k.dataset.x) }));
      return { id: s.id, outside, lines, knees };
    })
  );
  const order = await page.evaluate(() => {
    const head = document.querySelector("#headline table");
    const chart = document.querySelector("svg.chart");
    if (!head || !chart) return null;
    return {
      headlineTop: head.getBoundingClientRect().top + window.scrollY,
      firstChartTop: chart.getBoundingClientRect().top + window.scrollY,
      before: !!(head.compareDocumentPosition(chart) & Node.DOCUMENT_POSITION_FOLLOWING),
    };
  });
  const pwned = await page.evaluate(() => window.__pwned === undefined ? null : window.__pwned);
  const scripts = await page.$$eval("script", (s) => s.length);
  const bodyText = await page.evaluate(() => document.body.innerText);
  const external = requests.filter((u) => !u.startsWith("file://") && !u.startsWith("data:"));
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  const result = {
    ok: true,
    charts,
    shapes,
    order,
    pwned,
    scripts,
    dialogs,
    external,
    hostileShownAsText: bodyText.includes("<script>window.__pwned=1</script>"),
  };
  const bad = charts.filter((c) => !(c.w > 0 && c.h > 0 && c.visible));
  if (charts.length === 0) fail("no charts", result);
  if (bad.length) fail("invisible charts: " + bad.map((c) => c.id).join(", "), result);
  if (pwned !== null || scripts !== 0 || dialogs.length) fail("a script ran or exists", result);
  if (external.length) fail("external requests: " + external.join(", "), result);
  if (process.env.EXPECT_HOSTILE !== "0" && !result.hostileShownAsText) fail("hostile model name not shown as text", result);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
