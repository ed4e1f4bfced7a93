import { test } from "node:test";
import assert from "node:assert/strict";
import { buildRequest, errorMessage, predict, resultRows, MAX_CHARS } from "../public/predict-client.js";

test("buildRequest trims and wraps the text, refuses empty and too long texts", () => {
  assert.deepEqual(buildRequest("  hello  "), { body: JSON.stringify({ text: "hello" }) });
  assert.match(buildRequest("   ").error, /Type or paste/);
  assert.match(buildRequest("x".repeat(MAX_CHARS + 1)).error, /limit is 5000/);
});

test("resultRows sorts by probability and marks the labels that passed", () => {
  const rows = resultRows({
    labels: ["billing"], scores: { refund: 0.3, billing: 0.91, urgent: 0.05 }, thresholds: { billing: 0.5, refund: 0.35 },
  });
  assert.deepEqual(rows.map((r) => r.label), ["billing", "refund", "urgent"]);
  assert.deepEqual(rows.map((r) => r.predicted), [true, false, false]);
  assert.equal(rows[0].percent, 91);
  assert.equal(rows[1].threshold, 0.35);
  assert.equal(rows[2].threshold, null);
  assert.throws(() => resultRows({}), /no scores/);
});

test("errorMessage words every failure for a person", () => {
  assert.match(errorMessage({ status: 400, body: { error: { message: "text 0 is empty" } } }), /not accepted: text 0 is empty/);
  assert.match(errorMessage({ status: 429 }), /busy/);
  assert.match(errorMessage({ status: 503 }), /not available/);
  assert.match(errorMessage({ status: 504 }), /too long/);
  assert.match(errorMessage({ kind: "network" }), /cannot be reached/);
  assert.match(errorMessage({ kind: "timeout" }), /took too long/);
  assert.match(errorMessage({ status: 418 }), /status 418/);
});

const reply = (status, body) => async () => new Response(JSON.stringify(body), { status });

test("predict returns the first prediction or a readable error", async () => {
  const ok = await predict("hi", { fetchImpl: reply(200, { predictions: [{ labels: [], scores: { a: 0.1 } }], requestId: "r1" }) });
  assert.equal(ok.requestId, "r1");
  assert.deepEqual(ok.prediction.scores, { a: 0.1 });
  const bad = await predict("hi", { fetchImpl: reply(413, { error: { message: "too big" } }) });
  assert.match(bad.error, /too big/);
  const down = await predict("hi", { fetchImpl: async () => { throw new TypeError("fetch failed"); } });
  assert.match(down.error, /cannot be reached/);
  const empty = await predict(" ", { fetchImpl: () => assert.fail("must not call the backend") });
  assert.match(empty.error, /Type or paste/);
});

test("predict gives up after the timeout", async () => {
  const never = (url, { signal }) => new Promise((_, reject) => signal.addEventListener("abort", () => {
    const err = new Error("aborted"); err.name = "AbortError"; reject(err);
  }));
  const answer = await predict("hi", { fetchImpl: never, timeoutMs: 20 });
  assert.match(answer.error, /took too long/);
});
