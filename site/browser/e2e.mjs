// Drives Debian's Chromium (playwright-core, no browser download) against a running site.
//   SITE_URL=http://127.0.0.1:8000 OUT_DIR=/tmp/shots node browser/e2e.mjs predict|error|feedback
// predict:  keyboard only: type a text, Ctrl+Enter, see the loading state then the labels; then
//           one text per line; then the same on a phone. Prints what it saw as one JSON line.
// error:    submits with the backend down; prints {"error": "<message shown>", "reference", ...}.
// feedback: classify TEXT, open "Wrong labels? Correct them", tick exactly the labels in LABELS
//           (comma-separated), send; prints {"inferenceId", "sent", "note", ...}.
// Screenshots: site-result.png, site-multi.png, site-result-phone.png, site-error.png, site-feedback.png.
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

/** WCAG contrast ratio of two CSS colours as the browser computed them ("rgb(r, g, b)"). */
function contrast(a, b) {
  const lum = (css) => {
    const [r, g, bl] = css.match(/[\d.]+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100;
}

/** The focus ring of the text area (keyboard focus) against the page behind it. */
async function focusRing(page) {
  await page.getByLabel("Text to classify").focus();
  const seen = await page.evaluate(() => {
    const style = getComputedStyle(document.activeElement);
    return { color: style.outlineColor, width: style.outlineWidth, page: getComputedStyle(document.body).backgroundColor };
  });
  return { ...seen, contrast: contrast(seen.color, seen.page) };
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

    const phoneContext = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const small = await openPage(phoneContext, problems);
    if (process.env.PHONE_ANSWER) {  // a canned answer with long label names: the phone layout is under test
      await small.route("**/api/predict", (route) => route.fulfill({ status: 200, contentType: "application/json",
        body: process.env.PHONE_ANSWER }));
    }
    await small.getByRole("button", { name: "Double charge" }).tap();
    await small.getByRole("button", { name: "Classify" }).tap();
    await small.locator("#results li.label").first().waitFor({ timeout });
    await small.waitForTimeout(800);  // a smooth scroll, if any, ends
    const phone = await small.evaluate(() => ({
      overflowPx: document.documentElement.scrollWidth - document.documentElement.clientWidth,
      // each label name on one line: an inline box breaks into one client rect per line
      brokenNames: [...document.querySelectorAll("#results .name")].filter((e) => {
        const range = document.createRange();
        range.selectNodeContents(e);
        return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size > 1;
      }).map((e) => e.textContent),
      // the first result is on screen without the person scrolling
      resultTop: document.querySelector("#results li.label").getBoundingClientRect().top,
      viewport: window.innerHeight,
    }));
    await small.screenshot({ path: path.join(out, "site-result-phone.png"), fullPage: false });
    const meta = await page.locator("#meta").textContent();
    console.log(JSON.stringify({ loading, single, status, meta, multi, multiStatus, phone, focus: await focusRing(page),
      problems }));
  } else if (mode === "feedback") {
    const wanted = (process.env.LABELS ?? "").split(",").filter(Boolean);
    await box.fill(text);
    await page.getByRole("button", { name: "Classify" }).click();
    const card = page.locator("#results article.result").first();
    await card.locator("li.label").first().waitFor({ timeout });
    const predictedLabels = await card.locator("li.label.predicted").evaluateAll((els) => els.map((e) => e.dataset.label));
    await card.getByText("Wrong labels? Correct them").click();
    for (const choice of await card.locator(".choice input").all()) {
      await choice.setChecked(wanted.includes(await choice.inputValue()));
    }
    await card.getByRole("button", { name: "Send correction" }).click();
    await card.locator(".fb-status.sent, .fb-status.error").waitFor({ timeout });
    const note = await card.locator(".fb-status").textContent();
    await page.screenshot({ path: path.join(out, "site-feedback.png"), fullPage: true });
    console.log(JSON.stringify({
      inferenceId: await card.getAttribute("data-inference-id"), predicted: predictedLabels, sent: wanted, note,
      meta: await page.locator("#meta").textContent(),
      locked: await card.locator(".choice input:disabled").count(), problems,
    }));
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
