import { test } from "node:test";
import assert from "node:assert/strict";
import { SignatureV4 } from "@smithy/signature-v4";
import { Sha256 } from "@aws-crypto/sha256-js";
import handler, {
  createHandler, predictTarget, predictTimeout, predictSigner, regionOfFunctionUrl, routeUrl, config, DEFAULT_TIMEOUT_MS, MAX_BODY_BYTES,
} from "../netlify/functions/predict.mjs";
import { config as feedbackConfig } from "../netlify/functions/feedback.mjs";
import { fakeLambda, verifySigV4 } from "./helpers.mjs";

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

// ---------------------------------------------------------------- IAM auth: SigV4-signed requests

// AWS's published SigV4 test suite, case "get-vanilla" (example credentials of the AWS documentation)
const VECTOR = {
  accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, " +
    "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
};
const KEYS = { PREDICT_ACCESS_KEY_ID: "AKIDNETLIFYINVOKER", PREDICT_SECRET_ACCESS_KEY: "s3cr3t/Key+for+the/netlify+function" };

test("the signing library reproduces AWS's SigV4 test vector, and so does the test's verifier", async () => {
  const signer = new SignatureV4({ service: "service", region: "us-east-1", sha256: Sha256, applyChecksum: false,
    credentials: { accessKeyId: VECTOR.accessKeyId, secretAccessKey: VECTOR.secretAccessKey } });
  const signed = await signer.sign({ method: "GET", protocol: "https:", hostname: "example.amazonaws.com", path: "/",
    query: {}, headers: { host: "example.amazonaws.com" } }, { signingDate: new Date("2015-08-30T12:36:00Z") });
  assert.equal(signed.headers.authorization, VECTOR.authorization);
  const verdict = verifySigV4({ method: "GET", url: "/", body: "", headers: {
    host: "example.amazonaws.com", "x-amz-date": "20150830T123600Z", authorization: VECTOR.authorization } },
  VECTOR.secretAccessKey);
  assert.ok(verdict.ok, verdict.why);
});

test("with PREDICT_* credentials the function signs for lambda, and the request verifies", async (t) => {
  const fake = await fakeLambda({ body: ANSWER });
  t.after(() => fake.close());
  const env = { PREDICT_URL: fake.url, PREDICT_REGION: "eu-west-1", ...KEYS };
  const res = await createHandler({ env })(post({ text: "héllo" }));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), ANSWER);
  const [seen] = fake.seen;
  const verdict = verifySigV4(seen, KEYS.PREDICT_SECRET_ACCESS_KEY);
  assert.ok(verdict.ok, verdict.why);
  assert.deepEqual([verdict.accessKeyId, verdict.region, verdict.service], ["AKIDNETLIFYINVOKER", "eu-west-1", "lambda"]);
  assert.ok(verdict.signedHeaders.includes("host") && verdict.signedHeaders.includes("content-type"));
  assert.deepEqual(JSON.parse(seen.body), { text: "héllo" });  // the body signed is the body sent
  // the verifier is not a rubber stamp: another body, or another key, fails
  assert.equal(verifySigV4({ ...seen, body: '{"text":"other"}' }, KEYS.PREDICT_SECRET_ACCESS_KEY).ok, false);
  assert.equal(verifySigV4(seen, "not-the-secret").ok, false);
});

test("the region comes from the Function URL; a session token is signed too", async () => {
  const calls = [];
  const fetchImpl = async (url, init) => { calls.push({ url, init }); return new Response(JSON.stringify(ANSWER)); };
  const url = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.ap-southeast-2.on.aws/";
  assert.equal(regionOfFunctionUrl(url), "ap-southeast-2");
  assert.equal(regionOfFunctionUrl("http://127.0.0.1:8090/"), null);
  const env = { PREDICT_URL: url, PREDICT_SESSION_TOKEN: "session-token", ...KEYS };
  assert.equal((await createHandler({ env, fetchImpl })(post({ text: "x" }))).status, 200);
  const { headers } = calls[0].init;
  assert.match(headers.authorization, /Credential=AKIDNETLIFYINVOKER\/\d{8}\/ap-southeast-2\/lambda\/aws4_request/);
  assert.equal(headers["x-amz-security-token"], "session-token");
  assert.match(headers.authorization, /SignedHeaders=[^,]*x-amz-security-token/);
  assert.equal(headers.host, undefined, "fetch sets Host from the URL");
});

test("without PREDICT_* credentials nothing is signed (the local stack); half a configuration is refused", async (t) => {
  const fake = await fakeLambda({ body: ANSWER });
  t.after(() => fake.close());
  assert.equal((await createHandler({ env: { PREDICT_URL: fake.url } })(post({ text: "x" }))).status, 200);
  assert.equal(fake.seen[0].headers.authorization, undefined);
  assert.deepEqual(await predictSigner({}, fake.url), { signer: null });

  const calls = [];
  const fetchImpl = async (...args) => { calls.push(args); return new Response("{}"); };
  for (const env of [{ PREDICT_URL: fake.url, PREDICT_ACCESS_KEY_ID: "AKID" },
    { PREDICT_URL: fake.url, PREDICT_SECRET_ACCESS_KEY: "secret" },
    { PREDICT_URL: fake.url, ...KEYS }]) {  // a loopback URL names no region, and PREDICT_REGION is unset
    const res = await createHandler({ env, fetchImpl })(post({ text: "x" }));
    assert.equal(res.status, 500, JSON.stringify(Object.keys(env)));
    assert.equal((await res.json()).error.code, "not_configured");
  }
  assert.equal(calls.length, 0);
  assert.match((await predictSigner({ PREDICT_ACCESS_KEY_ID: "A" }, fake.url)).error, /set both PREDICT_ACCESS_KEY_ID and/);
  assert.match((await predictSigner(KEYS, fake.url)).error, /PREDICT_REGION is not set/);
});

test("the Function URL's own refusals keep the error shape: throttled is 429, forbidden a 502", async (t) => {
  const throttled = await fakeLambda({ status: 429, raw: JSON.stringify({ Message: "Rate Exceeded." }) });
  t.after(() => throttled.close());
  const busy = await createHandler({ env: { PREDICT_URL: throttled.url } })(post({ text: "x" }));
  assert.equal(busy.status, 429);
  assert.deepEqual((await busy.json()).error.code, "throttled");
  const forbidden = await fakeLambda({ status: 403, raw: JSON.stringify({ Message: "Forbidden" }) });
  t.after(() => forbidden.close());
  const refused = await createHandler({ env: { PREDICT_URL: forbidden.url } })(post({ text: "x" }));
  assert.equal(refused.status, 502);
  assert.equal((await refused.json()).error.code, "bad_gateway");
});

test("/api/feedback forwards to the Lambda's /feedback path, signed, with the browser's address", async (t) => {
  const stored = { stored: true, inferenceId: "r1:0", labels: ["a"], requestId: "r9" };
  const fake = await fakeLambda({ body: stored });
  t.after(() => fake.close());
  const env = { PREDICT_URL: fake.url, PREDICT_REGION: "eu-west-1", ...KEYS };
  const feedback = () => new Request("http://site/api/feedback", {
    method: "POST", body: JSON.stringify({ token: "t", inferenceId: "r1:0", labels: ["a"] }) });
  const res = await createHandler({ env, route: "feedback" })(feedback(), { ip: "192.0.2.7" });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), stored);
  const [seen] = fake.seen;
  assert.equal(seen.url, "/feedback");
  assert.equal(seen.headers["x-mlops-client-ip"], "192.0.2.7");
  const verdict = verifySigV4(seen, KEYS.PREDICT_SECRET_ACCESS_KEY);
  assert.ok(verdict.ok, verdict.why);
  assert.ok(verdict.signedHeaders.includes("x-mlops-client-ip"), "the client address is signed: the Lambda can trust it");
  // a predictions answer is not a feedback answer: anything but the Lambda's own shape is a 502
  const wrong = await fakeLambda({ body: ANSWER });
  t.after(() => wrong.close());
  const odd = await createHandler({ env: { PREDICT_URL: wrong.url }, route: "feedback" })(feedback());
  assert.equal(odd.status, 502);
});

test("routeUrl puts the route under PREDICT_URL, with or without its trailing slash", () => {
  assert.equal(routeUrl("https://abc.lambda-url.eu-west-1.on.aws/", "feedback"), "https://abc.lambda-url.eu-west-1.on.aws/feedback");
  assert.equal(routeUrl("http://127.0.0.1:8090", "feedback"), "http://127.0.0.1:8090/feedback");
  assert.equal(routeUrl("http://h/api", "feedback"), "http://h/api/feedback");
  assert.equal(routeUrl("http://h/api", "predict"), "http://h/api");
  assert.equal(feedbackConfig.path, "/api/feedback");
});
