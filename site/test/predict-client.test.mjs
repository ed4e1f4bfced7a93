import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  buildRequest, errorMessage, modelLine, predict, readPredictions, resultRows, sendFeedback, splitTexts,
  MAX_CHARS, MAX_REQUEST_BYTES, MAX_TEXTS,
} from "../public/predict-client.js";
import { MAX_BODY_BYTES } from "../netlify/functions/predict.mjs";

test("buildRequest sends one trimmed text as {text}", () => {
  assert.deepEqual(buildRequest("  hello  "), { body: JSON.stringify({ text: "hello" }), texts: ["hello"] });
  assert.deepEqual(JSON.parse(buildRequest("line one\nline two").body), { text: "line one\nline two" });
  assert.match(buildRequest("   ").error, /Type or paste/);
  assert.match(buildRequest(null).error, /Type or paste/);
  assert.match(buildRequest("x".repeat(MAX_CHARS + 1)).error, /The text has 5001 characters; the limit is 5000/);
  assert.ok(buildRequest("x".repeat(MAX_CHARS)).body);
});

test("buildRequest in multi mode sends the non-empty lines as {texts}", () => {
  const request = buildRequest(" first \n\n second\r\nthird \n", { multi: true });
  assert.deepEqual(JSON.parse(request.body), { texts: ["first", "second", "third"] });
  assert.deepEqual(request.texts, ["first", "second", "third"]);
  assert.match(buildRequest("\n \n", { multi: true }).error, /at least one text/);
  const tooMany = Array.from({ length: MAX_TEXTS + 1 }, (_, i) => `text ${i}`).join("\n");
  assert.match(buildRequest(tooMany, { multi: true }).error, /33 texts; at most 32/);
  assert.match(buildRequest(`ok\n${"y".repeat(MAX_CHARS + 2)}`, { multi: true }).error, /Line 2 has 5002 characters/);
  const heavy = Array.from({ length: 20 }, () => "z".repeat(4000)).join("\n");  // 80 kB: over the function's limit
  assert.match(buildRequest(heavy, { multi: true }).error, /too much text for one request/);
});

test("splitTexts keeps the single text whole and splits lines only in multi mode", () => {
  assert.deepEqual(splitTexts("a\nb"), ["a\nb"]);
  assert.deepEqual(splitTexts("a\nb", { multi: true }), ["a", "b"]);
  assert.deepEqual(splitTexts(""), []);
});

test("the page's limits match the function's and the predict Lambda's", () => {
  assert.equal(MAX_REQUEST_BYTES, MAX_BODY_BYTES);
  const lambda = readFileSync(new URL("../../lambda_fn/predict.py", import.meta.url), "utf8");
  assert.equal(Number(lambda.match(/"MAX_TEXT_CHARS", "?(\d+)/)[1]), MAX_CHARS);
  assert.equal(Number(lambda.match(/"MAX_TEXTS", "?(\d+)/)[1]), MAX_TEXTS);
});

test("resultRows sorts by probability, marks the labels that passed and keeps each threshold", () => {
  const rows = resultRows({
    labels: ["billing"], scores: { refund: 0.3, billing: 0.91, urgent: 0.05 }, thresholds: { billing: 0.5, refund: 0.35 },
  });
  assert.deepEqual(rows.map((r) => r.label), ["billing", "refund", "urgent"]);
  assert.deepEqual(rows.map((r) => r.predicted), [true, false, false]);
  assert.equal(rows[0].percent, 91);
  assert.equal(rows[1].threshold, 0.35);
  assert.equal(rows[2].threshold, null);
  assert.throws(() => resultRows({}), /no scores/);
  assert.throws(() => resultRows({ scores: null }), /no scores/);
});

test("readPredictions pairs each text with its result by text_index", () => {
  const body = { predictions: [
    { text_index: 1, labels: [], scores: { a: 0.2 }, thresholds: { a: 0.5 } },
    { text_index: 0, labels: ["a"], scores: { a: 0.8 }, thresholds: { a: 0.5 } },
  ] };
  const results = readPredictions(body, ["apple", "pear"]);
  assert.deepEqual(results.map((r) => [r.text, r.labels]), [["apple", ["a"]], ["pear", []]]);
  assert.equal(results[1].rows[0].percent, 20);
  assert.throws(() => readPredictions(body, ["only one"]), /expected 1 prediction\(s\), got 2/);
  assert.throws(() => readPredictions({}, ["x"]), /got none/);
});

test("errorMessage words every failure for a person", () => {
  const bad = errorMessage({ status: 400, body: { error: { code: "bad_request", message: "text 0 is empty" }, requestId: "r9" } });
  assert.equal(bad, "The text was not accepted: text 0 is empty.");
  assert.match(errorMessage({ status: 413 }), /not accepted/);
  assert.match(errorMessage({ status: 429 }), /busy/);
  assert.match(errorMessage({ status: 500, body: { error: { code: "not_configured" } } }), /not connected to the model/);
  assert.match(errorMessage({ status: 502, body: { error: { code: "backend_unavailable" } } }), /cannot be reached/);
  assert.match(errorMessage({ status: 503, body: { error: { code: "endpoint_unavailable" } } }), /not available/);
  assert.match(errorMessage({ status: 504 }), /took too long/);
  assert.match(errorMessage({ kind: "network" }), /site cannot be reached/);
  assert.match(errorMessage({ kind: "timeout" }), /took too long/);
  assert.match(errorMessage({ status: 418 }), /status 418/);
});

const reply = (status, body, seen = []) => async (url, init) => {
  seen.push({ url, init });
  return new Response(typeof body === "string" ? body : JSON.stringify(body), { status });
};

test("predict posts to /api/predict and returns one result per text", async () => {
  const seen = [];
  const ok = await predict("hi", {
    fetchImpl: reply(200, { predictions: [{ text_index: 0, labels: [], scores: { a: 0.1 } }], requestId: "r1" }, seen),
  });
  assert.equal(ok.requestId, "r1");
  assert.deepEqual(ok.results[0].rows.map((r) => r.label), ["a"]);
  assert.equal(seen[0].url, "/api/predict");
  assert.equal(seen[0].init.method, "POST");
  assert.deepEqual(JSON.parse(seen[0].init.body), { text: "hi" });
  const two = await predict("x\ny", { multi: true, fetchImpl: reply(200, { predictions: [
    { text_index: 0, labels: ["a"], scores: { a: 0.9 } }, { text_index: 1, labels: [], scores: { a: 0.1 } }] }) });
  assert.deepEqual(two.results.map((r) => r.labels), [["a"], []]);
});

test("predict maps every failure to a readable error and never throws", async () => {
  assert.deepEqual(await predict("hi", { fetchImpl: reply(413, { error: { message: "too big" }, requestId: "r7" }) }),
    { error: "The text was not accepted: too big.", reference: "r7" });
  assert.match((await predict("hi", { fetchImpl: reply(503, "<html>oops</html>") })).error, /not available/);
  assert.match((await predict("hi", { fetchImpl: reply(200, { predictions: [] }) })).error, /not available/);
  assert.match((await predict("hi", { fetchImpl: reply(200, "not json") })).error, /not available/);
  const down = await predict("hi", { fetchImpl: async () => { throw new TypeError("fetch failed"); } });
  assert.match(down.error, /cannot be reached/);
  const empty = await predict(" ", { fetchImpl: () => assert.fail("must not call the backend") });
  assert.match(empty.error, /Type or paste/);
});

test("predict gives up after the timeout (AbortController)", async () => {
  let signal;
  const never = (url, init) => new Promise((_, reject) => {
    signal = init.signal;
    signal.addEventListener("abort", () => reject(Object.assign(new Error("aborted"), { name: "AbortError" })));
  });
  const started = Date.now();
  const answer = await predict("hi", { fetchImpl: never, timeoutMs: 30 });
  assert.match(answer.error, /took too long/);
  assert.equal(signal.aborted, true);
  assert.ok(Date.now() - started < 2000);
});

test("predict passes on the model version, the latency, each text's inference id and the feedback token", async () => {
  const ok = await predict("hi", { fetchImpl: reply(200, {
    predictions: [{ text_index: 0, inferenceId: "r1:0", labels: [], scores: { a: 0.1 } }], requestId: "r1",
    model: { version: "4", variant: "AllTraffic" }, latencyMs: { endpoint: 12.34 }, feedbackToken: "1.p.m" }) });
  assert.equal(ok.results[0].inferenceId, "r1:0");
  assert.equal(ok.feedbackToken, "1.p.m");
  assert.equal(modelLine(ok), "Model version 4 · 12 ms at the model");
  assert.equal(modelLine({ model: { version: null }, latencyMs: { endpoint: 3.21 } }), "3.2 ms at the model");
  assert.equal(modelLine({}), null);
  const old = await predict("hi", { fetchImpl: reply(200, { predictions: [{ text_index: 0, labels: [], scores: { a: 0.1 } }] }) });
  assert.equal(old.results[0].inferenceId, null);  // an older Lambda: no correction offered
  assert.equal(old.feedbackToken, null);
});

test("sendFeedback posts the ticked labels once each, sorted; refusals read as sentences", async () => {
  const seen = [];
  const ok = await sendFeedback({ token: "1.p.m", inferenceId: "r1:0", labels: ["b", "a", "b"] },
    { fetchImpl: reply(200, { stored: true, labels: ["a", "b"], inferenceId: "r1:0" }, seen) });
  assert.deepEqual(ok, { labels: ["a", "b"] });
  assert.equal(seen[0].url, "/api/feedback");
  assert.deepEqual(JSON.parse(seen[0].init.body), { token: "1.p.m", inferenceId: "r1:0", labels: ["a", "b"] });
  const expired = await sendFeedback({ token: "t", inferenceId: "i:0", labels: [] },
    { fetchImpl: reply(403, { error: { code: "token_expired", message: "old" }, requestId: "r2" }) });
  assert.match(expired.error, /too old to correct: classify the text again/);
  assert.equal(expired.reference, "r2");
  const busy = await sendFeedback({ token: "t", inferenceId: "i:0", labels: [] },
    { fetchImpl: reply(429, { error: { code: "throttled", message: "this text already has 3 corrections" } }) });
  assert.match(busy.error, /Not sent: this text already has 3 corrections/);
  const off = await sendFeedback({ token: "t", inferenceId: "i:0", labels: [] },
    { fetchImpl: reply(503, { error: { code: "feedback_disabled", message: "x" } }) });
  assert.match(off.error, /not collected on this site/);
  assert.match((await sendFeedback({ token: "t", inferenceId: "i:0", labels: [] }, { fetchImpl: reply(200, { predictions: [] }) })).error,
    /not available/);
  assert.match((await sendFeedback({ token: null, inferenceId: "i:0", labels: [] })).error, /cannot be corrected/);
});
