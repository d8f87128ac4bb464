// Opens a fleetbench report from file:// in headless Chromium and checks
// that every chart is visible and that hostile model text stays text.
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
  const pwned = await page.evaluate(() => window.__pwned === undefined ? null : window.__pwned);
  const scripts = await page.$$eval("script", (s) => s.length);
  const bodyText = await page.evaluate(() => document.body.innerText);
  const external = requests.filter((u) => !u.startsWith("file://") && !u.startsWith("data:"));
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  const result = {
    ok: true,
    charts,
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
  if (!result.hostileShownAsText) fail("hostile model name not shown as text", result);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
