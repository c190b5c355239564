// The web UI against the embedded engine: `sluice serve` with nothing configured
// serves the default model (SmolLM2-135M, fetched by scripts/setup.sh) in-process; a
// question gets a streamed answer from it.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.SLUICE_BIN ?? "../target/debug/sluice";
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
let server, ctx, base;

before(async () => {
  const port = await new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
  base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), "sluice-engine-"));
  writeFileSync(join(dir, "sluice.toml"), `[server]\nlisten = "127.0.0.1:${port}"\n[store]\nurl = "sqlite://${dir}/sluice.db"\n[engine]\nthreads = 1\n`);
  await new Promise((resolve, reject) => {
    server = spawn(BIN, ["serve", "--config", join(dir, "sluice.toml")], { stdio: ["ignore", "pipe", "pipe"] });
    let seen = "";
    const on = (d) => {
      seen += d;
      if (/listening/.test(seen)) resolve();
    };
    server.stdout.on("data", on);
    server.stderr.on("data", on);
    server.on("exit", (code) => reject(new Error(`sluice serve exited (${code}): ${seen.slice(-2000)}`)));
  });
  ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "sluice-chromium-")), { executablePath: "/usr/bin/chromium", headless: true, args: ARGS });
});

after(async () => {
  await ctx?.close().catch(() => {});
  server?.kill("SIGTERM");
});

test("the embedded SmolLM2 answers in the browser, streamed", async () => {
  const page = await ctx.newPage();
  await page.goto(base + "/");
  await page.getByLabel("Name").fill("root");
  await page.getByLabel("Password", { exact: true }).fill("password1");
  await page.getByLabel("Password again").fill("password1");
  await page.getByRole("button", { name: "Create admin account" }).click();
  await page.getByRole("button", { name: "Parameters" }).click();
  await page.getByLabel("Max tokens").fill("24");
  await page.getByLabel("Temperature").fill("0");
  await page.getByLabel("Message", { exact: true }).fill("What is the capital of France?");
  await page.keyboard.press("Enter");
  await page.locator("article.live").waitFor({ timeout: 30000 });
  await page.locator("article.live").waitFor({ state: "detached", timeout: 60000 });
  const answer = page.locator("article.assistant").last();
  assert.equal(await answer.locator(".failure").count(), 0, await answer.textContent());
  assert.ok((await answer.locator(".md").textContent()).trim().length > 0, "a non-empty answer");
  assert.match(await answer.locator(".meta").textContent(), /smollm2/i);
  // The picker says where the model runs and that it is in memory.
  const picked = await page.locator(".picker select").first().evaluate((s) => s.selectedOptions[0]?.textContent ?? "");
  assert.match(picked, /engine: healthy, loaded/);
});
