// CORS from a real browser: a page of another local origin calls the gateway with
// fetch (a preflighted POST with Authorization and a JSON body) and reads the streamed
// answer; a page of an origin outside `server.cors_origins` is refused by Chromium.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer as createHttp } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.SLUICE_BIN ?? "../target/debug/sluice";
const MOCK = process.env.SLUICE_MOCK ?? "../target/debug/sluice-mock";
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
const procs = [];
let ctx, gw, page, pagePort, pages;

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

function start(cmd, args, ready) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    procs.push(p);
    let seen = "";
    const on = (d) => {
      seen += d;
      if (ready.test(seen)) resolve(p);
    };
    p.stdout.on("data", on);
    p.stderr.on("data", on);
    p.on("exit", (code) => reject(new Error(`${cmd} exited (${code}): ${seen.slice(-2000)}`)));
  });
}

before(async () => {
  const [mockPort, gwPort] = [await freePort(), await freePort()];
  pagePort = await freePort();
  gw = `http://127.0.0.1:${gwPort}`;
  await start(MOCK, ["--listen", `127.0.0.1:${mockPort}`, "--tokens", "3"], /listening/);
  const dir = mkdtempSync(join(tmpdir(), "sluice-cors-"));
  const config = join(dir, "sluice.toml");
  writeFileSync(
    config,
    `[server]\nlisten = "127.0.0.1:${gwPort}"\ncors_origins = ["http://localhost:${pagePort}"]\n` +
      `[store]\nurl = "sqlite://${dir}/sluice.db"\n[engine]\ndefault_model = "off"\n` +
      `[[backends]]\nname = "mock"\nkind = "openai"\nurl = "http://127.0.0.1:${mockPort}/v1"\nmodels = ["mock-model"]\nhealth = { enabled = false }\n`,
  );
  await start(BIN, ["serve", "--config", config], /listening|Listening|serving/);
  // The other origin: a blank page, served as http://localhost:P and http://127.0.0.1:P.
  pages = createHttp((_, res) => res.end("<!doctype html><title>client</title>")).listen(pagePort, "127.0.0.1");
  ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "sluice-chromium-")), { executablePath: "/usr/bin/chromium", headless: true, args: ARGS });
  page = await ctx.newPage();
});

after(async () => {
  await ctx?.close().catch(() => {});
  pages?.close();
  for (const p of procs) p.kill("SIGTERM");
});

/** Runs a streamed chat from the page at `origin`; the text, or the error's name. */
async function chatFrom(origin) {
  await page.goto(`${origin}/`);
  return page.evaluate(async (gw) => {
    try {
      const r = await fetch(`${gw}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer sk-browser" },
        body: JSON.stringify({ model: "mock-model", stream: true, messages: [{ role: "user", content: "hi" }] }),
      });
      return { status: r.status, text: await r.text(), id: r.headers.get("x-request-id") };
    } catch (e) {
      return { error: e.name };
    }
  }, gw);
}

test("a page of an allowed origin reads a streamed answer; another origin is refused", async () => {
  const ok = await chatFrom(`http://localhost:${pagePort}`);
  assert.equal(ok.status, 200, JSON.stringify(ok));
  assert.match(ok.text, /t0 /);
  assert.match(ok.text, /\[DONE\]/);
  assert.ok(ok.id, "exposed headers are readable");
  const refused = await chatFrom(`http://127.0.0.1:${pagePort}`);
  assert.equal(refused.error, "TypeError", JSON.stringify(refused));
});
