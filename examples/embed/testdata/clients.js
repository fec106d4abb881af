// Real clients for examples/embed's test: Node's ws package, and the page
// in headless Chromium (playwright-core), both from
// examples/chat/testdata/browser's node_modules (NODE_PATH).
//
//   node clients.js ws       URL NAME   # ws(s)://host/ws?name=NAME: sends, waits for its own line
//   node clients.js chromium CHROMIUM PAGEURL NAME
//
// Prints "OK <step>" per step that holds, "FAIL <step>: <why>" and exits 1
// on the first that does not, within STEP_MS each.
"use strict";
const STEP_MS = 20000;
const [mode, ...args] = process.argv.slice(2);

async function step(name, fn) {
  try {
    await fn();
    console.log("OK " + name);
  } catch (e) {
    console.log("FAIL " + name + ": " + String(e && e.message || e).split("\n")[0]);
    process.exit(1);
  }
}

function withTimeout(p, what) {
  return Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error("timeout: " + what)), STEP_MS))]);
}

async function nodeClient(url, name) {
  const WebSocket = require("ws");
  const ws = new WebSocket(url + "?name=" + encodeURIComponent(name), { rejectUnauthorized: false });
  const lines = [];
  const waiters = [];
  ws.on("message", (data, isBinary) => {
    lines.push({ text: data.toString(), isBinary });
    waiters.splice(0).forEach((w) => w());
  });
  const has = (s) => withTimeout(new Promise((resolve) => {
    const check = () => (lines.some((l) => l.text === s && !l.isBinary) ? resolve() : waiters.push(check));
    check();
  }), s);
  await step("node ws connects", () => withTimeout(new Promise((resolve, reject) => { ws.on("open", resolve); ws.on("error", reject); }), "open"));
  await step("node ws sees its join", () => has("* " + name + " joined"));
  await step("node ws message relayed", async () => { ws.send("hello from node"); await has(name + ": hello from node"); });
  await step("node ws closes cleanly", () => withTimeout(new Promise((resolve, reject) => {
    ws.on("close", (code) => (code === 1000 ? resolve() : reject(new Error("close " + code))));
    ws.close(1000, "bye");
  }), "close"));
}

async function browser(chromiumPath, pageURL, name) {
  const { chromium } = require("playwright-core");
  const fs = require("fs");
  const os = require("os");
  const path = require("path");
  const https = pageURL.startsWith("https:");
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wsloop-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"].concat(https ? ["--ignore-certificate-errors"] : []),
    ignoreHTTPSErrors: https,
  });
  try {
    const page = await ctx.newPage();
    const sockets = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    await step("chromium page connects", async () => {
      await page.goto(pageURL + "?name=" + encodeURIComponent(name));
      await page.waitForFunction(() => document.getElementById("state").className === "open", null, { timeout: STEP_MS });
      const want = https ? "wss:" : "ws:";
      if (!sockets.length || !sockets.every((s) => s.startsWith(want))) throw new Error("sockets " + JSON.stringify(sockets));
    });
    await step("chromium message relayed", async () => {
      await page.fill("#text", "hello from chromium");
      await page.click("#send");
      await page.waitForFunction((s) => [...document.querySelectorAll("#log li")].some((li) => li.textContent === s),
        name + ": hello from chromium", { timeout: STEP_MS });
    });
    console.log("READY"); // the test posts through the HTTP API now
    await step("chromium sees the HTTP API's post", () => page.waitForFunction(
      (s) => [...document.querySelectorAll("#log li")].some((li) => li.textContent === s),
      "api (http): posted over http", { timeout: STEP_MS }));
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

(async () => {
  if (mode === "ws") await nodeClient(args[0], args[1]);
  else if (mode === "chromium") await browser(args[0], args[1], args[2]);
  else throw new Error("mode: ws or chromium");
})().catch((e) => { console.log("FAIL: " + (e && e.message || e)); process.exit(1); });
