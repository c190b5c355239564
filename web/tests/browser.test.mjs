// The web UI in a real Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// against a real `sluice serve` in front of the mock upstream (`sluice-mock`, whose
// `/_mock/stats` counts upstream requests and cancels). Run by scripts/test-browser.sh;
// SLUICE_BIN and SLUICE_MOCK name the binaries, SLUICE_SCREENSHOTS a folder for the
// README's screenshots (optional).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BIN = process.env.SLUICE_BIN ?? "../target/debug/sluice";
const MOCK = process.env.SLUICE_MOCK ?? "../target/debug/sluice-mock";
const SHOTS = process.env.SLUICE_SCREENSHOTS;
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];

const procs = [];
let mockPort, gwPort, base, mockProc;
const browsers = [];

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts a process and resolves once it printed `ready` (a regexp) on stdout or stderr. */
function start(cmd, args, ready, env = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
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

const startMock = () => start(MOCK, ["--listen", `127.0.0.1:${mockPort}`, "--tokens", "24", "--delay-ms", "25"], /listening/);
const stats = async () => (await fetch(`http://127.0.0.1:${mockPort}/_mock/stats`)).json();
const script = (n) => Array.from({ length: n }, (_, i) => `t${i}`).join(" ");

before(async () => {
  mockPort = await freePort();
  gwPort = await freePort();
  base = `http://127.0.0.1:${gwPort}`;
  mockProc = await startMock();
  const dir = mkdtempSync(join(tmpdir(), "sluice-browser-"));
  const config = join(dir, "sluice.toml");
  writeFileSync(
    config,
    `[server]\nlisten = "127.0.0.1:${gwPort}"\n[store]\nurl = "sqlite://${dir}/sluice.db"\n[engine]\ndefault_model = "off"\n` +
      `[[backends]]\nname = "mock"\nkind = "openai"\nurl = "http://127.0.0.1:${mockPort}/v1"\nmodels = ["mock-model", { name = "other", upstream = "mock-model" }]\n` +
      `breaker = { consecutive_failures = 1000, error_ratio = 1.0, min_requests = 1000 }\nhealth = { enabled = false }\n` +
      `[[models]]\nname = "mock-model"\nprice = { input_per_mtok = 1000, output_per_mtok = 2000 }\n`,
  );
  await start(BIN, ["serve", "--config", config], /listening|Listening|serving/);
});

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  for (const p of procs) p.kill("SIGTERM");
});

/** A browser with a fresh profile (its own --user-data-dir). */
async function browser(viewport = { width: 1280, height: 800 }) {
  const dir = mkdtempSync(join(tmpdir(), "sluice-chromium-"));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: "/usr/bin/chromium", headless: true, args: ARGS, viewport });
  browsers.push(ctx);
  return ctx;
}

async function axe(page, name) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = r.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`), [], `axe on ${name}`);
}

/** JSON API calls from inside the page (its cookie, its CSRF token). */
function call(page, method, path, body) {
  return page.evaluate(
    async ([method, path, body]) => {
      const me = await (await fetch("/auth/me")).json();
      const r = await fetch(path, {
        method,
        headers: { "content-type": "application/json", "x-csrf-token": me.csrf_token ?? "" },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: r.status, body: await r.json().catch(() => null) };
    },
    [method, path, body],
  );
}

async function send(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.keyboard.press("Enter");
}

const lastAnswer = (page) => page.locator("article.assistant").last();

/** Waits for an answer to start streaming and then to end. */
async function answered(page) {
  await page.locator("article.live").waitFor({ timeout: 20000 });
  await page.locator("article.live").waitFor({ state: "detached", timeout: 30000 });
}

let admin; // the admin's page, shared by the tests below (they run in order)

test("first run: create the admin, then sign in again after logout", async () => {
  const ctx = await browser();
  admin = await ctx.newPage();
  const errors = [];
  admin.on("pageerror", (e) => errors.push(e.message));
  admin.on("console", (m) => m.type() === "error" && !/Failed to load resource/.test(m.text()) && errors.push(m.text()));
  await admin.goto(base + "/");
  await admin.getByRole("heading", { name: "Welcome to Sluice" }).waitFor();
  await axe(admin, "setup");
  await admin.getByLabel("Name").fill("root");
  await admin.getByLabel("Password", { exact: true }).fill("password1");
  await admin.getByLabel("Password again").fill("password1");
  await admin.getByRole("button", { name: "Create admin account" }).click();
  await admin.getByLabel("Message", { exact: true }).waitFor();
  await admin.getByRole("button", { name: "Log out" }).click();
  await admin.getByRole("heading", { name: "Sign in to Sluice" }).waitFor();
  await axe(admin, "login");
  await admin.getByLabel("Name").fill("root");
  await admin.getByLabel("Password").fill("password1");
  await admin.getByRole("button", { name: "Sign in" }).click();
  await admin.getByLabel("Message", { exact: true }).waitFor();
  await axe(admin, "empty chat");
  assert.deepEqual(errors, []);
});

test("a reply appears token by token and ends equal to the mock's script", async () => {
  const before = await stats();
  // Count distinct texts of the answer being generated, as the DOM changes.
  await admin.evaluate(() => {
    window.__seen = new Set();
    new MutationObserver(() => {
      const live = document.querySelector("article.live .md");
      if (live) window.__seen.add(live.textContent);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await send(admin, "Hello [mock tokens=24 delay_ms=40]");
  await admin.waitForURL(/\/c\//);
  await admin.locator("article.assistant:not(.live)").last().waitFor();
  // The page navigated to /c/ID once the conversation existed: watch again there.
  const text = await lastAnswer(admin).locator(".md").textContent();
  assert.equal(text.trim(), script(24));
  assert.equal((await stats()).requests - before.requests, 1);
});

test("token by token: several DOM updates before the answer is done", async () => {
  await admin.evaluate(() => {
    window.__seen = new Set();
    new MutationObserver(() => {
      const live = document.querySelector("article.live .md");
      if (live) window.__seen.add(live.textContent);
    }).observe(document.querySelector(".messages"), { subtree: true, childList: true, characterData: true });
  });
  await send(admin, "More [mock tokens=30 delay_ms=40]");
  await answered(admin);
  const seen = await admin.evaluate(() => window.__seen.size);
  assert.ok(seen >= 5, `the answer grew in ${seen} steps`);
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(30));
  await axe(admin, "chat with answers");
});

test("stop cancels the upstream generation", async () => {
  const before = await stats();
  await send(admin, "Long [mock tokens=100000 delay_ms=20]");
  await admin.locator("article.live .md").waitFor();
  await admin.getByRole("button", { name: "Stop generating" }).click();
  await admin.getByText("Stopped.").waitFor();
  for (let i = 0; i < 50 && (await stats()).streams_cancelled === before.streams_cancelled; i++) await admin.waitForTimeout(100);
  assert.equal((await stats()).streams_cancelled - before.streams_cancelled, 1, "the mock saw the cancel");
});

test("reload mid-answer re-attaches; one upstream request; text byte-equal", async () => {
  const before = await stats();
  await send(admin, "Reload me [mock tokens=60 delay_ms=50]");
  await admin.locator("article.live .md").waitFor();
  await admin.reload();
  await answered(admin);
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(60));
  assert.equal((await stats()).requests - before.requests, 1, "exactly one upstream request");
});

test("closing the tab mid-answer leaves it running; reopening re-attaches", async () => {
  const before = await stats();
  await send(admin, "Close me [mock tokens=60 delay_ms=50]");
  await admin.locator("article.live .md").waitFor();
  const url = admin.url();
  const ctx = admin.context();
  await admin.close();
  const s = await stats();
  assert.equal(s.in_flight, 1, "one upstream request still open");
  admin = await ctx.newPage();
  await admin.goto(url);
  await answered(admin);
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(60));
  assert.equal((await stats()).requests - before.requests, 1);
});

test("switching chats and back re-attaches to the running answer", async () => {
  const before = await stats();
  await send(admin, "Switch away [mock tokens=60 delay_ms=50]");
  await admin.locator("article.live .md").waitFor();
  const url = admin.url();
  await admin.getByRole("button", { name: "+ New chat" }).click();
  await admin.getByText("What can I help with?").waitFor();
  await admin.getByRole("link", { name: "Hello [mock tokens=24" }).first().click();
  await admin.waitForFunction((u) => location.href === u, url);
  await answered(admin);
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(60));
  assert.equal((await stats()).requests - before.requests, 1);
});

test("offline: a banner, then the answer resumes by itself", async () => {
  const before = await stats();
  await send(admin, "Offline [mock tokens=60 delay_ms=50]");
  await admin.locator("article.live .md").waitFor();
  await admin.context().setOffline(true);
  await admin.getByText("You are offline").waitFor();
  await admin.waitForTimeout(500);
  await admin.context().setOffline(false);
  await admin.getByText("You are offline").waitFor({ state: "detached" });
  await admin.locator("article.live").waitFor({ state: "detached", timeout: 30000 });
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(60));
  assert.equal((await stats()).requests - before.requests, 1);
});

test("edit and resend makes a branch; arrows move between versions; Ctrl+K finds it", async () => {
  await send(admin, "Original question [mock tokens=3]");
  await answered(admin);
  const mine = admin.locator("article.user").last();
  await mine.getByRole("button", { name: "Edit" }).click();
  await admin.getByLabel("Edit message").fill("Edited zeppelin question [mock tokens=5]");
  await admin.getByRole("button", { name: "Send as new branch" }).click();
  await answered(admin);
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(5));
  const edited = admin.locator("article.user").last();
  await edited.getByText("2/2").waitFor();
  await edited.getByRole("button", { name: "Previous version" }).click();
  await admin.locator("article.user").last().getByText("1/2").waitFor();
  assert.match(await admin.locator("article.user").last().textContent(), /Original question/);
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(3));
  await admin.keyboard.press("Control+k");
  await admin.keyboard.type("zeppelin");
  await admin.getByRole("list", { name: "Search results" }).getByText("Edited zeppelin question", { exact: false }).waitFor();
  await admin.getByLabel("Search conversations").fill("");
});

test("a failing backend shows the error with retry, and retry works", async () => {
  mockProc.kill("SIGTERM");
  await new Promise((r) => mockProc.once("exit", r));
  await send(admin, "Is anyone there?");
  const failure = admin.locator(".failure").last();
  await failure.waitFor({ timeout: 20000 });
  assert.match(await failure.textContent(), /upstream|backend|connect|unavailable/i);
  mockProc = await startMock();
  await failure.getByRole("button", { name: "Retry" }).click();
  await answered(admin);
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(24));
});

test("an XSS payload in a model answer stays inert", async () => {
  const conv = await call(admin, "POST", "/v1/conversations", { title: "xss" });
  const id = conv.body.id;
  const u = await call(admin, "POST", `/v1/conversations/${id}/messages`, { role: "user", content: "attack" });
  const payload =
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> [link](javascript:window.__pwned=3) ' +
    '<a href="javascript:window.__pwned=4">a</a> <svg onload="window.__pwned=5"></svg>';
  await call(admin, "POST", `/v1/conversations/${id}/messages`, { role: "assistant", content: payload, parent_id: u.body.id });
  await admin.goto(`${base}/c/${id}`);
  await lastAnswer(admin).waitFor();
  await admin.locator("article.assistant a").first().click().catch(() => {});
  assert.equal(await admin.evaluate(() => window.__pwned), undefined);
  const md = lastAnswer(admin).locator(".md");
  assert.equal(await md.locator("img, script, svg, iframe, [onerror], [onload]").count(), 0, await md.innerHTML());
  const hrefs = await md.locator("a").evaluateAll((links) => links.map((a) => a.getAttribute("href") ?? ""));
  assert.ok(hrefs.every((h) => !/^\s*javascript:/i.test(h)), hrefs.join(" "));
  assert.match(await lastAnswer(admin).textContent(), /<script>/, "the markup shows as text");
});

test("another user's conversation URL shows not found", async () => {
  const conv = await call(admin, "POST", "/v1/conversations", { title: "private" });
  const created = await call(admin, "POST", "/admin/users", { name: "eve", password: "password1", role: "user" });
  assert.equal(created.status, 201);
  const ctx = await browser();
  const eve = await ctx.newPage();
  await eve.goto(base + "/login");
  await eve.getByLabel("Name").fill("eve");
  await eve.getByLabel("Password").fill("password1");
  await eve.getByRole("button", { name: "Sign in" }).click();
  await eve.getByLabel("Message", { exact: true }).waitFor();
  await eve.goto(`${base}/c/${conv.body.id}`);
  await eve.getByRole("heading", { name: "Conversation not found" }).waitFor();
  await axe(eve, "not found");
});

test("side by side: one prompt, two models streaming in columns", async () => {
  const before = await stats();
  await admin.getByLabel("Compare with").selectOption("other");
  await send(admin, "Compare [mock tokens=40 delay_ms=40]");
  const columns = admin.locator(".compare article.live");
  await admin.waitForFunction(() => document.querySelectorAll(".compare article.live .md").length === 2);
  assert.deepEqual(await columns.locator(".column-head").allTextContents(), ["mock-model", "other"]);
  await admin.locator("article.live").first().waitFor({ state: "detached", timeout: 30000 });
  await admin.locator("article.live").waitFor({ state: "detached", timeout: 30000 });
  assert.equal((await stats()).requests - before.requests, 2);
  // Both answers are kept, as two versions of the answer to that message.
  await admin.getByText("2/2").waitFor();
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(40));
  await admin.getByRole("button", { name: "Previous version" }).last().click();
  await admin.getByText("1/2").waitFor();
  assert.equal((await lastAnswer(admin).locator(".md").textContent()).trim(), script(40));
  // The second model stays chosen in a new chat, until it is cleared.
  await admin.getByRole("button", { name: "+ New chat" }).click();
  await admin.getByRole("heading", { name: "New chat" }).waitFor();
  // The new chat's picker lists the models once it has read them: wait for that.
  await admin.waitForFunction(() => document.querySelector("select[aria-label='Compare with']")?.value === "other", null, { timeout: 10000 });
  await admin.getByLabel("Compare with").selectOption("");
});

/** Waits until the usage writer has stored every record (its pending gauge is 0). */
async function usageSettled(page) {
  await page.waitForFunction(async () => /\nsluice_usage_records_pending 0\n/.test(await (await fetch("/metrics")).text()), null, { polling: 100, timeout: 10000 });
}

test("admin usage: tokens and spend per day, split by model or by user", async () => {
  await usageSettled(admin);
  const totals = (await call(admin, "GET", "/v1/usage?group_by=model&all=true")).body.data;
  const tokens = totals.reduce((a, r) => a + r.prompt_tokens + r.completion_tokens, 0);
  const spend = totals.reduce((a, r) => a + r.spend, 0);
  assert.ok(tokens > 0 && spend > 0, JSON.stringify(totals));
  await admin.goto(base + "/admin?tab=usage");
  const byModel = admin.getByRole("figure", { name: "Tokens per day by model" });
  await byModel.locator("svg rect").first().waitFor();
  const caption = await byModel.locator("figcaption").textContent();
  const shown = Number(caption.match(/— ([\d,]+) in all/)[1].replaceAll(",", ""));
  assert.equal(shown, tokens, caption);
  const legend = await byModel.locator(".legend li").allTextContents();
  assert.ok(legend.some((l) => l.startsWith("mock-model")) && legend.some((l) => l.startsWith("other")), legend.join(" | "));
  const spendChart = admin.getByRole("figure", { name: "Spend per day by model" });
  await spendChart.locator("svg rect").first().waitFor();
  const spent = Number((await spendChart.locator("figcaption").textContent()).match(/\$([\d.,]+) in all/)[1].replaceAll(",", ""));
  assert.ok(Math.abs(spent - spend) < 0.01, `${spent} vs ${spend}`);
  // Split by user: the admin's name, not its id.
  await admin.getByLabel("Split by").selectOption("user");
  const byUser = admin.getByRole("figure", { name: "Tokens per day by user" });
  await byUser.locator(".legend li").first().waitFor();
  assert.ok((await byUser.locator(".legend li").allTextContents()).some((l) => l.startsWith("root")));
  await axe(admin, "admin usage charts");
});

test("admin backends: live tokens/s while an answer streams", async () => {
  await admin.goto(base + "/");
  // One answer, whatever an earlier test left in the compare picker.
  await admin.getByLabel("Compare with").selectOption("");
  await send(admin, "A long one [mock tokens=400 delay_ms=25]");
  await admin.locator("article.live").waitFor({ timeout: 20000 });
  const page = await admin.context().newPage();
  await page.goto(base + "/admin?tab=backends");
  // The rate needs two reads of the token counter, three seconds apart.
  await page.waitForFunction(() => Number(document.querySelector("[data-testid=rate]")?.textContent) > 0, null, { timeout: 15000 });
  const row = await page.locator("tbody tr").first().locator("td").allTextContents();
  assert.equal(row[0], "mock");
  assert.equal(row[5], "—", "an HTTP upstream's queue is not visible");
  await page.close();
  await admin.getByRole("button", { name: "Stop generating" }).click();
  await admin.locator("article.live").waitFor({ state: "detached", timeout: 30000 });
});

test("a 500-message conversation opens and scrolls back to its start", async () => {
  const id = await admin.evaluate(async () => {
    const me = await (await fetch("/auth/me")).json();
    const post = async (path, body) =>
      (await fetch(path, { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": me.csrf_token }, body: JSON.stringify(body) })).json();
    const c = await post("/v1/conversations", { title: "Five hundred" });
    let parent = null;
    for (let i = 0; i < 500; i++) {
      const role = i % 2 ? "assistant" : "user";
      const content = i % 2 ? `Answer ${i}: some **bold** text and \`code\`.\n\n- a\n- b` : `Question ${i}`;
      parent = (await post(`/v1/conversations/${c.id}/messages`, { role, content, parent_id: parent })).id;
    }
    return c.id;
  });
  await admin.goto(`${base}/c/${id}`);
  await admin.getByText("Answer 499:").waitFor();
  const shown = await admin.locator("article.msg").count();
  assert.ok(shown < 500, `only the newest messages are rendered at first (${shown})`);
  // Scrolling up brings the earlier ones, down to the first.
  for (let i = 0; i < 20 && !(await admin.getByText("Question 0", { exact: true }).count()); i++) {
    await admin.locator(".messages").evaluate((el) => (el.scrollTop = 0));
    await admin.waitForTimeout(100);
  }
  await admin.getByText("Question 0", { exact: true }).waitFor();
});

test("settings and admin pages pass axe; screenshots", async () => {
  await admin.goto(base + "/settings");
  await admin.getByRole("heading", { name: "API keys" }).waitFor();
  await admin.getByLabel("Key name").fill("laptop");
  await admin.getByRole("button", { name: "Create key" }).click();
  await admin.getByText("copy it now").waitFor();
  await axe(admin, "settings");
  for (const tab of ["Users", "Usage", "Backends & agents", "Agent tokens"]) {
    await admin.goto(base + "/admin");
    await admin.getByRole("tab", { name: tab }).click();
    await admin.waitForTimeout(200);
    await axe(admin, `admin ${tab}`);
  }
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await admin.goto(base + "/admin?tab=usage");
  await admin.getByRole("figure", { name: "Spend per day by model" }).locator("svg rect").first().waitFor();
  await admin.screenshot({ path: join(SHOTS, "admin-usage.png"), fullPage: true });
  const conv = await call(admin, "POST", "/v1/conversations", { title: "Reverse a string in Rust" });
  const id = conv.body.id;
  const u = await call(admin, "POST", `/v1/conversations/${id}/messages`, { role: "user", content: "How do I reverse a string in Rust, by characters?" });
  const answer =
    "Iterate over its `char`s backwards and collect them:\n\n```rust\nfn reverse(s: &str) -> String {\n    s.chars().rev().collect()\n}\n\nfn main() {\n    assert_eq!(reverse(\"sluice\"), \"eciuls\");\n}\n```\n\n" +
    "| input | output |\n|---|---|\n| `abc` | `cba` |\n| `héllo` | `olléh` |\n\n- `chars()` yields Unicode scalar values, so accents survive;\n- for grapheme clusters (emoji with modifiers) use the `unicode-segmentation` crate.";
  await call(admin, "POST", `/v1/conversations/${id}/messages`, { role: "assistant", content: answer, parent_id: u.body.id, model: "mock-model" });
  await admin.goto(`${base}/c/${id}`);
  await lastAnswer(admin).locator("pre").waitFor();
  await admin.screenshot({ path: join(SHOTS, "chat-desktop.png") });
  const phone = await (await browser({ width: 390, height: 844 })).newPage();
  const cookies = await admin.context().cookies();
  await phone.context().addCookies(cookies);
  await phone.goto(`${base}/c/${id}`);
  await phone.locator("article.assistant pre").waitFor();
  await phone.screenshot({ path: join(SHOTS, "chat-phone.png") });
  await axe(phone, "phone chat");
});
