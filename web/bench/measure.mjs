// Measures the web UI in Chromium for docs/benchmarks.md (not a test: numbers, no
// pass/fail): bundle size, first-load navigation timing, opening a 500-message
// conversation, long tasks and frame times while 1,000 tokens stream in at 100/s.
// Run by scripts/bench-web.sh, which starts `sluice serve` and `sluice-mock`.

import { readdirSync, readFileSync, statSync, mkdtempSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { chromium } from "playwright-core";

const base = process.env.SLUICE_URL;
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];

const assets = new URL("../dist/assets/", import.meta.url).pathname;
let gz = 0;
for (const f of readdirSync(assets)) if (/\.(js|css)$/.test(f)) gz += gzipSync(readFileSync(join(assets, f)), { level: 9 }).length;
console.log(`bundle: JS + CSS ${(gz / 1024).toFixed(1)} KB gzip`);

const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "sluice-bench-")), {
  executablePath: "/usr/bin/chromium", headless: true, args: ARGS, viewport: { width: 1280, height: 800 },
});
const page = await ctx.newPage();
await page.goto(base + "/");
if (await page.getByRole("heading", { name: "Welcome to Sluice" }).count()) {
  await page.getByLabel("Name").fill("bench");
  await page.getByLabel("Password", { exact: true }).fill("password1");
  await page.getByLabel("Password again").fill("password1");
  await page.getByRole("button", { name: "Create admin account" }).click();
}
await page.getByLabel("Message", { exact: true }).waitFor();

// First load: navigation timing and the message box accepting input, 7 loads.
const dcl = [], ready = [];
for (let i = 0; i < 7; i++) {
  await page.goto(base + "/");
  await page.getByLabel("Message", { exact: true }).waitFor();
  const t = await page.evaluate(() => {
    const n = performance.getEntriesByType("navigation")[0];
    return { dcl: n.domContentLoadedEventEnd, ready: performance.now() };
  });
  dcl.push(t.dcl);
  ready.push(t.ready);
}
console.log(`first load: domContentLoadedEventEnd p50 ${median(dcl).toFixed(1)} ms; message box ready p50 ${median(ready).toFixed(1)} ms (upper bound: measured after Playwright saw it)`);

// A 500-message conversation.
const id = await page.evaluate(async () => {
  const me = await (await fetch("/auth/me")).json();
  const post = async (path, body) =>
    (await fetch(path, { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": me.csrf_token ?? "" }, body: JSON.stringify(body) })).json();
  const c = await post("/v1/conversations", { title: "500" });
  let parent = null;
  for (let i = 0; i < 500; i++) {
    const content = i % 2 ? `Answer ${i}\n\n\`\`\`rust\nfn f() -> u32 { ${i} }\n\`\`\`\n\nSome **markdown** with a [link](https://example.com).` : `Question ${i}`;
    parent = (await post(`/v1/conversations/${c.id}/messages`, { role: i % 2 ? "assistant" : "user", content, parent_id: parent })).id;
  }
  return c.id;
});
const open = [];
for (let i = 0; i < 7; i++) {
  await page.goto(base + "/");
  await page.getByLabel("Message", { exact: true }).waitFor();
  const t0 = await page.evaluate(() => performance.now());
  await page.evaluate((id) => {
    history.pushState(null, "", `/c/${id}`);
    window.dispatchEvent(new Event("sluice:navigate"));
  }, id);
  await page.getByText("Answer 499", { exact: true }).waitFor();
  const t1 = await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(performance.now()))));
  open.push(t1 - t0);
}
console.log(`500-message conversation: open (click to painted) p50 ${median(open).toFixed(0)} ms, max ${Math.max(...open).toFixed(0)} ms`);

// 1,000 tokens at 100 tokens/s streaming into it: long tasks and frame times.
await page.evaluate(() => {
  window.__long = [];
  new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__long.push(e.duration))).observe({ type: "longtask", buffered: false });
  window.__frames = [];
  let last = performance.now();
  const tick = (t) => {
    window.__frames.push(t - last);
    last = t;
    if (!window.__stopFrames) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
});
await page.getByLabel("Message", { exact: true }).fill("Stream [mock tokens=1000 delay_ms=10]");
await page.keyboard.press("Enter");
await page.locator("article.live").waitFor();
await page.locator("article.live").waitFor({ state: "detached", timeout: 60000 });
const { long, frames } = await page.evaluate(() => {
  window.__stopFrames = true;
  return { long: window.__long, frames: window.__frames.slice(1) };
});
console.log(`streaming 1,000 tokens at 100/s into it: long tasks over 50 ms: ${long.length}${long.length ? ` (max ${Math.max(...long).toFixed(0)} ms)` : ""}; frame time p50 ${pct(frames, 50).toFixed(1)} ms, p95 ${pct(frames, 95).toFixed(1)} ms over ${frames.length} frames`);
await ctx.close();
