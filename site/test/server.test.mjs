import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createSiteServer, headersFor, parseHeaderRules, parseOptions, NETLIFY_TOML } from "../server.mjs";
import { fakeLambda, listen, close, verifySigV4 } from "./helpers.mjs";

const RULES = parseHeaderRules(readFileSync(NETLIFY_TOML, "utf8"));

test("netlify.toml's header rules parse, and its CSP keeps the page on its own origin", () => {
  const headers = headersFor(RULES, "/index.html");
  const csp = headers["Content-Security-Policy"];
  assert.ok(csp, "netlify.toml must set a Content-Security-Policy for /*");
  const directives = Object.fromEntries(csp.split(";").map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
  assert.deepEqual(directives["default-src"], ["'self'"]);
  assert.deepEqual(directives["script-src"], ["'self'"]);
  assert.deepEqual(directives["connect-src"], ["'self'"]);  // the browser only calls /api/predict
  assert.deepEqual(directives["frame-ancestors"], ["'none'"]);
  assert.ok(!csp.includes("unsafe-inline") && !csp.includes("unsafe-eval"));
  assert.equal(headers["X-Content-Type-Options"], "nosniff");
});

test("parseHeaderRules reads Netlify's [[headers]] blocks and refuses what it cannot read", () => {
  const rules = parseHeaderRules(`[build]\n  publish = "x"\n[[headers]]\n  for = "/*"\n  [headers.values]\n    A = "1" # c\n` +
    `[[headers]]\n  for = "/app.js"\n  [headers.values]\n    B = "say \\"hi\\""\n[functions]\n  x = "y"\n`);
  assert.deepEqual(rules, [{ for: "/*", values: { A: "1" } }, { for: "/app.js", values: { B: 'say "hi"' } }]);
  assert.deepEqual(headersFor(rules, "/app.js"), { A: "1", B: 'say "hi"' });
  assert.deepEqual(headersFor(rules, "/style.css"), { A: "1" });
  assert.throws(() => parseHeaderRules(`[[headers]]\n  for = "/*"\n  [headers.values]\n    A = 1\n`), /line 4/);
});

test("parseOptions: flags over env vars, and precise errors", () => {
  assert.deepEqual(parseOptions([], { PREDICT_URL: "http://l/", PORT: "9" }), { host: "127.0.0.1", port: 9, predictUrl: "http://l/" });
  assert.deepEqual(parseOptions(["--port", "18201", "--predict-url=http://a/", "--host", "0.0.0.0"], { MLOPS_SITE_PORT: "1" }),
    { host: "0.0.0.0", port: 18201, predictUrl: "http://a/" });
  assert.equal(parseOptions([], {}).port, 8000);
  assert.throws(() => parseOptions(["--port", "http"], {}), /--port must be an integer/);
  assert.throws(() => parseOptions(["--port"], {}), /--port needs a value/);
  assert.throws(() => parseOptions(["--bogus"], {}), /unknown option --bogus/);
  assert.throws(() => parseOptions(["--predict-url", "lambda"], {}), /--predict-url \/ PREDICT_URL is not a URL/);
});

test("the dev server serves the page with netlify.toml's headers and refuses paths outside public/", async (t) => {
  const server = createSiteServer({ predictUrl: "http://127.0.0.1:9/", headerRules: RULES });
  const base = await listen(server);
  t.after(() => close(server));
  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /text\/html/);
  assert.equal(page.headers.get("content-security-policy"), headersFor(RULES, "/")["Content-Security-Policy"]);
  assert.match(await page.text(), /<label for="text">/);
  const script = await fetch(`${base}/app.js`);
  assert.match(script.headers.get("content-type"), /text\/javascript/);
  for (const bad of ["/nope.html", "/..%2f..%2fnetlify.toml", "/%2e%2e/server.mjs", "/%E0%A4%A"]) {
    assert.equal((await fetch(`${base}${bad}`)).status, 404, bad);
  }
  assert.equal((await fetch(`${base}/index.html`, { method: "DELETE" })).status, 405);
});

test("the dev server's /api/predict is the Netlify function, configured by predictUrl", async (t) => {
  const fake = await fakeLambda({ body: { predictions: [{ text_index: 0, labels: [], scores: { a: 0.2 } }], requestId: "r" } });
  t.after(() => fake.close());
  const server = createSiteServer({ predictUrl: fake.url, headerRules: RULES });
  const base = await listen(server);
  t.after(() => close(server));
  const res = await fetch(`${base}/api/predict`, { method: "POST", body: JSON.stringify({ texts: ["a", "b"] }) });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).requestId, "r");
  assert.deepEqual(JSON.parse(fake.seen[0].body), { texts: ["a", "b"] });
  assert.equal((await fetch(`${base}/api/predict`)).status, 405);
  const huge = await fetch(`${base}/api/predict`, { method: "POST", body: "x".repeat(200 * 1024) });
  assert.equal(huge.status, 413);
  assert.equal(fake.seen.length, 1);
  const unconfigured = createSiteServer({ predictUrl: "" });
  const base2 = await listen(unconfigured);
  t.after(() => close(unconfigured));
  const missing = await fetch(`${base2}/api/predict`, { method: "POST", body: "{}" });
  assert.equal(missing.status, 500);
  assert.equal((await missing.json()).error.code, "not_configured");
});

test("the dev server signs like Netlify when given the PREDICT_* credentials, and not otherwise", async (t) => {
  const fake = await fakeLambda({ body: { predictions: [], requestId: "r" } });
  t.after(() => fake.close());
  const keys = { PREDICT_ACCESS_KEY_ID: "AKIDLOCAL", PREDICT_SECRET_ACCESS_KEY: "local-secret", PREDICT_REGION: "us-east-1" };
  for (const env of [keys, {}]) {
    const server = createSiteServer({ predictUrl: fake.url, env });
    const base = await listen(server);
    t.after(() => close(server));
    assert.equal((await fetch(`${base}/api/predict`, { method: "POST", body: '{"text":"a"}' })).status, 200);
  }
  assert.ok(verifySigV4(fake.seen[0], "local-secret").ok);
  assert.equal(fake.seen[1].headers.authorization, undefined);
});

test("node server.mjs starts from the command line and exits 2 on a bad option", async (t) => {
  const script = fileURLToPath(new URL("../server.mjs", import.meta.url));
  const bad = spawn(process.execPath, [script, "--port", "x"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  bad.stderr.on("data", (c) => (stderr += c));
  assert.equal(await new Promise((r) => bad.on("exit", r)), 2);
  assert.match(stderr, /error: --port must be an integer/);

  const env = { ...process.env, PREDICT_URL: "" };
  delete env.PREDICT_ACCESS_KEY_ID;
  const good = spawn(process.execPath, [script, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"], env });
  t.after(() => good.kill("SIGKILL"));
  let out = "";
  let err = "";
  good.stderr.on("data", (c) => (err += c));
  const url = await new Promise((resolve, reject) => {
    good.stdout.on("data", (c) => { out += c; const m = out.match(/site on (http:\/\/\S+?)\/ /); if (m) resolve(m[1]); });
    good.on("exit", (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  assert.match(err, /warning: PREDICT_URL is not set/);
  assert.match(out, /unsigned\)/);
  assert.equal((await fetch(`${url}/`)).status, 200);
  good.kill("SIGTERM");
  assert.equal(await new Promise((r) => good.on("exit", r)), 0);
});

test("the dev server mounts /api/feedback like Netlify: to the Lambda's /feedback, with the client's address", async (t) => {
  const fake = await fakeLambda({ body: { stored: true, inferenceId: "r:0", labels: [] } });
  t.after(() => fake.close());
  const server = createSiteServer({ predictUrl: fake.url, headerRules: RULES, env: {} });
  const base = await listen(server);
  t.after(() => close(server));
  const res = await fetch(`${base}/api/feedback`, { method: "POST", body: JSON.stringify({ token: "t", inferenceId: "r:0", labels: [] }) });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).stored, true);
  assert.equal(fake.seen[0].url, "/feedback");
  assert.match(fake.seen[0].headers["x-mlops-client-ip"], /127\.0\.0\.1/);
});
