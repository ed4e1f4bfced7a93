import { test } from "node:test";
import assert from "node:assert/strict";
import handler, { createHandler, predictTarget, predictTimeout, config, DEFAULT_TIMEOUT_MS, MAX_BODY_BYTES } from "../netlify/functions/predict.mjs";
import { fakeLambda } from "./helpers.mjs";

const post = (body) => new Request("http://site/api/predict", {
  method: "POST", body: typeof body === "string" ? body : JSON.stringify(body),
});
const ANSWER = { predictions: [{ text_index: 0, labels: ["a"], scores: { a: 0.9 }, thresholds: { a: 0.5 } }], requestId: "r1" };

test("the function forwards the body to PREDICT_URL and returns the Lambda's answer", async (t) => {
  const fake = await fakeLambda({ body: ANSWER });
  t.after(() => fake.close());
  const res = await createHandler({ env: { PREDICT_URL: fake.url } })(post({ text: "hello" }));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.deepEqual(await res.json(), ANSWER);
  assert.equal(fake.seen.length, 1);
  assert.equal(fake.seen[0].method, "POST");
  assert.deepEqual(JSON.parse(fake.seen[0].body), { text: "hello" });
  assert.equal(fake.seen[0].headers.origin, undefined);  // server to server: the Lambda needs no CORS
});

test("the Netlify entry point reads PREDICT_URL from the environment at call time", async (t) => {
  const fake = await fakeLambda({ body: ANSWER });
  t.after(() => fake.close());
  const before = process.env.PREDICT_URL;
  try {
    delete process.env.PREDICT_URL;
    assert.equal((await handler(post({ text: "x" }))).status, 500);
    process.env.PREDICT_URL = fake.url;  // no rebuild, no restart
    assert.equal((await handler(post({ text: "x" }))).status, 200);
  } finally {
    if (before === undefined) delete process.env.PREDICT_URL; else process.env.PREDICT_URL = before;
  }
  assert.equal(config.path, "/api/predict");
});

test("the Lambda's errors pass through with their status and message", async (t) => {
  const fake = await fakeLambda({ status: 400, body: { error: { code: "bad_request", message: "text 0 is empty" }, requestId: "r2" } });
  t.after(() => fake.close());
  const res = await createHandler({ env: { PREDICT_URL: fake.url } })(post({ text: "" }));
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { error: { code: "bad_request", message: "text 0 is empty" }, requestId: "r2" });
});

test("an answer that is not the Lambda's JSON becomes a 502 in the same error shape", async (t) => {
  for (const raw of ["<html>Bad Gateway</html>", JSON.stringify({ Message: "Internal Server Error" })]) {
    const fake = await fakeLambda({ status: 502, raw });
    t.after(() => fake.close());
    const res = await createHandler({ env: { PREDICT_URL: fake.url } })(post({ text: "x" }));
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.error.code, "bad_gateway");
    assert.match(body.error.message, /status 502/);
  }
});

test("missing or wrong configuration is a 500 not_configured, without calling anything", async (t) => {
  const calls = [];
  const fetchImpl = async (...args) => { calls.push(args); return new Response("{}"); };
  for (const env of [{}, { PREDICT_URL: "  " }, { PREDICT_URL: "not a url" }, { PREDICT_URL: "ftp://x/" },
    { PREDICT_URL: "http://127.0.0.1:9/", PREDICT_TIMEOUT_MS: "soon" }]) {
    const res = await createHandler({ env, fetchImpl })(post({ text: "x" }));
    assert.equal(res.status, 500, JSON.stringify(env));
    assert.equal((await res.json()).error.code, "not_configured");
  }
  assert.equal(calls.length, 0);
  assert.match(predictTarget({}).error, /not set/);
  assert.match(predictTarget({ PREDICT_URL: "ftp://x/" }).error, /http\(s\)/);
  assert.equal(predictTarget({ PREDICT_URL: " https://abc.lambda-url.eu-west-1.on.aws/ " }).url, "https://abc.lambda-url.eu-west-1.on.aws/");
  assert.equal(predictTimeout({}), DEFAULT_TIMEOUT_MS);
  assert.equal(predictTimeout({ PREDICT_TIMEOUT_MS: "250" }), 250);
  assert.throws(() => predictTimeout({ PREDICT_TIMEOUT_MS: "-1" }), /positive integer/);
});

test("unreachable backend is 502, a slow one 504, a wrong method 405, a huge body 413", async (t) => {
  const down = await createHandler({ env: { PREDICT_URL: "http://127.0.0.1:9/" } })(post({ text: "x" }));
  assert.equal(down.status, 502);
  assert.equal((await down.json()).error.code, "backend_unavailable");

  const slow = await fakeLambda({ body: ANSWER, delayMs: 1000 });
  t.after(() => slow.close());
  const started = Date.now();
  const late = await createHandler({ env: { PREDICT_URL: slow.url, PREDICT_TIMEOUT_MS: "50" } })(post({ text: "x" }));
  assert.equal(late.status, 504);
  assert.ok(Date.now() - started < 900, "the function must not wait for the slow Lambda");

  const calls = [];
  const fetchImpl = async (...args) => { calls.push(args); return new Response("{}"); };
  const get = await createHandler({ env: { PREDICT_URL: "http://x/" }, fetchImpl })(new Request("http://site/api/predict"));
  assert.equal(get.status, 405);
  const huge = await createHandler({ env: { PREDICT_URL: "http://x/" }, fetchImpl })(post("é".repeat(MAX_BODY_BYTES / 2 + 1)));
  assert.equal(huge.status, 413);  // counted in bytes, not characters
  assert.equal(calls.length, 0);
});
