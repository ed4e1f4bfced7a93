// Drives Debian's Chromium (playwright-core, no browser download) against a running site.
//   SITE_URL=http://127.0.0.1:8000 OUT_DIR=/tmp/shots node browser/e2e.mjs predict|error
// predict: keyboard only: type a text, Ctrl+Enter, see the loading state then the labels; then
//          one text per line; then the same on a phone. Prints what it saw as one JSON line.
// error:   submits with the backend down; prints {"error": "<message shown>", "reference", ...}.
// Screenshots: site-result.png, site-multi.png, site-result-phone.png, site-error.png in OUT_DIR.
import { chromium } from "playwright-core";
import path from "node:path";

const mode = process.argv[2] ?? "predict";
const site = process.env.SITE_URL ?? "http://127.0.0.1:8000";
const out = process.env.OUT_DIR ?? ".";
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const text = process.env.TEXT ?? "I was charged twice this month and I want a refund!";
const lines = (process.env.TEXTS ?? "first text\nsecond text\nthird text").split("\n");
const timeout = Number(process.env.WAIT_MS ?? 30000);

/** A page that records console errors, uncaught exceptions and CSP violations. */
async function openPage(context, problems) {
  const page = await context.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") problems.push(`console: ${msg.text()}`); });
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  await page.addInitScript(() => document.addEventListener("securitypolicyviolation",
    (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`)));
  await page.goto(site);
  return page;
}

async function readResults(page) {
  return page.locator("#results article.result").evaluateAll((cards) => cards.map((card) => ({
    predicted: [...card.querySelectorAll("li.label.predicted")].map((e) => e.dataset.label),
    rows: [...card.querySelectorAll("li.label")].map((e) => ({
      label: e.dataset.label,
      percent: Number(e.querySelector("[role=meter]").getAttribute("aria-valuenow")),
      threshold: e.querySelector(".thr")?.textContent ?? null,
      tickVisible: Boolean(e.querySelector(".threshold")?.getBoundingClientRect().height),
    })),
  })));
}

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
const problems = [];
try {
  const desktop = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const page = await openPage(desktop, problems);
  const box = page.getByLabel("Text to classify");
  if (mode === "predict") {
    // Hold the request a moment so the loading state can be seen.
    await page.route("**/api/predict", async (route) => { await new Promise((r) => setTimeout(r, 400)); await route.continue(); });
    await box.focus();
    await page.keyboard.type(text);
    await page.keyboard.press("Control+Enter");
    const button = page.locator("#submit");
    const loading = { disabled: await button.isDisabled(), label: await button.textContent(),
      busy: await page.locator("#results").getAttribute("aria-busy") };
    await page.locator("#results li.label").first().waitFor({ timeout });
    const single = await readResults(page);
    const status = await page.locator("#status").textContent();
    await page.screenshot({ path: path.join(out, "site-result.png"), fullPage: true });

    await page.getByLabel(/One text per line/).check();
    await box.fill(lines.join("\n"));
    await page.getByRole("button", { name: "Classify" }).press("Enter");
    await page.locator(`#results article.result >> nth=${lines.length - 1}`).waitFor({ timeout });
    const multi = await readResults(page);
    const multiStatus = await page.locator("#status").textContent();
    await page.screenshot({ path: path.join(out, "site-multi.png"), fullPage: true });

    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const small = await openPage(phone, problems);
    await small.getByRole("button", { name: "Double charge" }).tap();
    await small.getByRole("button", { name: "Classify" }).tap();
    await small.locator("#results li.label").first().waitFor({ timeout });
    const overflow = await small.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    await small.screenshot({ path: path.join(out, "site-result-phone.png"), fullPage: true });
    console.log(JSON.stringify({ loading, single, status, multi, multiStatus, phoneOverflowPx: overflow, problems }));
  } else {
    await box.fill(text);
    await page.getByRole("button", { name: "Classify" }).click();
    await page.locator("#status.error").waitFor({ timeout });
    const error = await page.locator("#status").evaluate((el) => el.firstChild.textContent);
    const reference = await page.locator("#status .ref").textContent().catch(() => null);
    const rows = await page.locator("#results li.label").count();
    await page.screenshot({ path: path.join(out, "site-error.png"), fullPage: true });
    // Network failures (the page's own server gone) show up as console errors; keep only the others.
    console.log(JSON.stringify({ error, reference, rows, problems: problems.filter((p) => !p.includes("Failed to load resource")) }));
  }
} finally {
  await browser.close();
}
