import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import handler from "../netlify/functions/predict.mjs";

function lambda(status, body, delayMs = 0) {
  return new Promise((resolve) => {
    const seen = [];
    const server = http.createServer((req, res) => {
      let data = "";
      req.on("data", (c) => (data += c));
      req.on("end", () => {
        seen.push(JSON.parse(data));
        setTimeout(() => { res.writeHead(status, { "Content-Type": "application/json" }); res.end(JSON.stringify(body)); }, delayMs);
      });
    });
    server.listen(0, "127.0.0.1", () => resolve({ server, seen, url: `http://127.0.0.1:${server.address().port}/` }));
  });
}

const post = (body) => new Request("http://site/api/predict", { method: "POST", body: JSON.stringify(body) });

test("the function forwards the body to PREDICT_URL and returns the Lambda's answer", async () => {
  const fake = await lambda(200, { predictions: [{ labels: ["a"], scores: { a: 0.9 } }] });
  const res = await handler(post({ text: "hello" }), { env: { PREDICT_URL: fake.url } });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { predictions: [{ labels: ["a"], scores: { a: 0.9 } }] });
  assert.deepEqual(fake.seen, [{ text: "hello" }]);
  fake.server.close();
});

test("Lambda errors pass through with their status", async () => {
  const fake = await lambda(400, { error: { code: "bad_request", message: "text 0 is empty" } });
  const res = await handler(post({ text: "" }), { env: { PREDICT_URL: fake.url } });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.message, "text 0 is empty");
  fake.server.close();
});

test("missing configuration, unreachable backend, timeout and wrong method are clear errors", async () => {
  assert.equal((await handler(post({ text: "x" }), { env: {} })).status, 500);
  assert.equal((await handler(post({ text: "x" }), { env: { PREDICT_URL: "http://127.0.0.1:9/" } })).status, 502);
  const slow = await lambda(200, {}, 500);
  const res = await handler(post({ text: "x" }), { env: { PREDICT_URL: slow.url }, timeoutMs: 50 });
  assert.equal(res.status, 504);
  slow.server.close();
  assert.equal((await handler(new Request("http://site/api/predict"), { env: {} })).status, 405);
});
