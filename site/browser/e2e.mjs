// Drives Debian's Chromium (playwright-core, no browser download) against a running site.
//   SITE_URL=http://127.0.0.1:8000 OUT_DIR=/tmp/shots node browser/e2e.mjs predict|error
// predict: types a text, submits, waits for labels; prints {"labels": [...], "rows": n} as JSON.
// error:   submits with the backend down; prints {"error": "<message shown>"}.
import { chromium } from "playwright-core";
import path from "node:path";

const mode = process.argv[2] ?? "predict";
const site = process.env.SITE_URL ?? "http://127.0.0.1:8000";
const out = process.env.OUT_DIR ?? ".";
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const text = process.env.TEXT ?? "I was charged twice this month and I want a refund!";

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  await page.goto(site);
  await page.getByLabel("Text to classify").fill(text);
  await page.keyboard.press("Tab");
  await page.getByRole("button", { name: "Classify" }).press("Enter");  // keyboard use
  if (mode === "predict") {
    await page.locator("#results li.label").first().waitFor({ timeout: 30000 });
    const labels = await page.locator("#results li.label.predicted").evaluateAll((els) => els.map((e) => e.dataset.label));
    const rows = await page.locator("#results li.label").count();
    const status = await page.locator("#status").textContent();
    await page.screenshot({ path: path.join(out, "site-result.png"), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(out, "site-result-phone.png"), fullPage: true });
    console.log(JSON.stringify({ labels, rows, status }));
  } else {
    await page.locator("#status.error").waitFor({ timeout: 30000 });
    const error = await page.locator("#status").textContent();
    await page.screenshot({ path: path.join(out, "site-error.png"), fullPage: true });
    console.log(JSON.stringify({ error }));
  }
} finally {
  await browser.close();
}
