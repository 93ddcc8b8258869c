// The built-in chat page end to end in headless Chromium: `qwrun serve` on the tiny model
// (CPU, auth on), type a message, watch the reply stream, stop it, switch JSON mode and get
// valid JSON; a screenshot goes to the build dir.
// Usage: node chat_page_test.mjs QWRUN ARTIFACT CHROMIUM SCREENSHOT.png
import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const [qwrun, artifact, chromiumPath, screenshot] = process.argv.slice(2);
const key = "web-test-key";
const server = spawn(qwrun, ["serve", artifact, "--device", "cpu", "--port", "0", "--api-key", key],
                     { stdio: ["ignore", "ignore", "pipe"] });
let log = "";
const port = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("server did not start:\n" + log)), 60000);
  server.stderr.on("data", (d) => {
    log += d.toString();
    const m = log.match(/on http:\/\/[^:]+:(\d+)/);
    if (m) { clearTimeout(timer); resolve(Number(m[1])); }
  });
  server.on("exit", (code) => reject(new Error(`server exited ${code}:\n${log}`)));
});
const base = `http://127.0.0.1:${port}`;

async function kvBlocksUsed() {
  const text = await (await fetch(base + "/metrics")).text();
  const m = text.match(/qwrun:kv_cache_blocks_used\{[^}]*\} ([0-9.e+]+)/);
  return Number(m[1]);
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qwrun-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: chromiumPath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1200, height: 800 },
});
try {
  const page = context.pages()[0] ?? await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(base + "/");
  assert.equal(await page.title(), "qwrun chat");

  // Auth is on: the page names the model only once the key is entered.
  await page.fill("#apiKey", key);
  await page.dispatchEvent("#apiKey", "change");
  await page.waitForFunction(() => document.getElementById("model").textContent.includes("tiny"));

  // A long reply: it streams, then the stop button ends it.
  await page.fill("#temperature", "1");
  await page.fill("#maxTokens", "1500");
  await page.fill("#system", "You are a storyteller.");
  await page.fill("#input", "Tell me a long story");
  await page.click("#send");
  const reply = page.locator(".msg.assistant .body").first();
  await page.waitForFunction(
    () => (document.querySelector(".msg.assistant .body")?.textContent.length ?? 0) > 40,
    null, { timeout: 60000 });
  assert.match(await page.textContent("#status"), /tokens\/s/);
  const streamedBeforeStop = (await reply.textContent()).length;
  await page.click("#stop");
  await page.waitForSelector('.msg.assistant[data-state="stopped"]', { timeout: 30000 });
  const atStop = (await reply.textContent()).length;
  assert.ok(atStop >= streamedBeforeStop);
  await page.waitForTimeout(500);
  assert.equal((await reply.textContent()).length, atStop, "text grew after stop");
  assert.equal(await page.isDisabled("#stop"), true);
  // The server cancels the abandoned sequence and frees its KV blocks.
  let used = -1;
  // Generous: CI runs this beside other tests on two cores.
  for (let i = 0; i < 600 && used !== 0; ++i) {
    used = await kvBlocksUsed();
    if (used !== 0) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(used, 0, "KV blocks still held after stop");

  // JSON mode: the reply parses as a JSON object.
  await page.click("#clear");
  await page.check("#jsonMode");
  await page.fill("#maxTokens", "80");
  await page.fill("#input", "Describe a cat as JSON");
  await page.press("#input", "Enter");
  await page.waitForSelector('.msg.assistant[data-state="done"]', { timeout: 60000 });
  const jsonText = await page.textContent(".msg.assistant .body");
  const value = JSON.parse(jsonText);
  assert.equal(typeof value, "object");
  assert.ok(value !== null && !Array.isArray(value));
  assert.equal(await page.getAttribute(".msg.assistant", "data-json"), "valid");
  assert.match(await page.textContent(".msg.assistant .meta"), /valid JSON/);
  assert.deepEqual(pageErrors, []);

  fs.mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`chat page ok: stopped after ${atStop} chars; JSON reply ${jsonText.length} chars; ` +
              `screenshot ${screenshot}`);
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  server.kill("SIGTERM");
}
const code = await new Promise((resolve) => server.on("exit", resolve));
assert.equal(code, 0, "qwrun serve did not exit 0 on SIGTERM:\n" + log);
