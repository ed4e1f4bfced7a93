// Netlify Function behind /api/predict: forwards the browser's POST to the predict Lambda, whose
// URL comes from the PREDICT_URL environment variable at run time. The browser talks only to
// its own origin (no CORS) and never sees the AWS URL. site/server.mjs mounts this same handler.
//
// The Lambda's Function URL requires IAM auth (AWS_IAM): with PREDICT_ACCESS_KEY_ID and
// PREDICT_SECRET_ACCESS_KEY set, each request is signed with SigV4 (AWS's own signer,
// @smithy/signature-v4) for service "lambda". Netlify reserves AWS_* names (its functions run on
// Lambda with credentials of their own), hence the PREDICT_ prefix; the default credential chain is
// never used. Without those two variables requests go unsigned (the local stack's Lambda adapter).
//
// The same handler serves /api/feedback (feedback.mjs): a person's labels for a text, forwarded to the
// Lambda's /feedback path. The browser's address goes along as X-Mlops-Client-Ip (signed with the rest of
// the request), so the Lambda's per-client rate limit sees people, not this function.

export const MAX_BODY_BYTES = 64 * 1024;
// Netlify stops a synchronous function after 10 s: answer a clean 504 before that.
export const DEFAULT_TIMEOUT_MS = 9000;

// Predictions are per request: never cached by a CDN or the browser.
const json = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", "Cache-Control": "no-store" } });
const fail = (status, code, message) => json(status, { error: { code, message } });

/** The Lambda URL from the environment, or an error message saying what to set. */
export function predictTarget(env) {
  const raw = (env.PREDICT_URL ?? "").trim();
  if (!raw) return { error: "PREDICT_URL is not set: set it to the predict Lambda's Function URL" };
  let url;
  try {
    url = new URL(raw);
  } catch {
    return { error: `PREDICT_URL is not a URL: ${JSON.stringify(raw)}` };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { error: `PREDICT_URL must be an http(s) URL, not ${url.protocol}` };
  }
  return { url: url.href };
}

/** The timeout in ms from PREDICT_TIMEOUT_MS (a positive integer), else the default. */
export function predictTimeout(env) {
  const raw = env.PREDICT_TIMEOUT_MS;
  if (raw === undefined || raw === "") return DEFAULT_TIMEOUT_MS;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms <= 0) throw new Error(`PREDICT_TIMEOUT_MS must be a positive integer, not ${JSON.stringify(raw)}`);
  return ms;
}

/** The region of a Lambda Function URL (https://<url-id>.lambda-url.<region>.on.aws/), or null. */
export function regionOfFunctionUrl(url) {
  return new URL(url).hostname.match(/^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$/)?.[1] ?? null;
}

let signingLibrary;  // loaded on the first signed request: unsigned (local) use needs no npm package
function loadSigningLibrary() {
  signingLibrary ??= Promise.all([import("@smithy/signature-v4"), import("@aws-crypto/sha256-js")])
    .then(([{ SignatureV4 }, { Sha256 }]) => ({ SignatureV4, Sha256 }));
  return signingLibrary;
}

/**
 * The SigV4 signer from the PREDICT_* credentials: {signer} (null: sign nothing), or {error} saying
 * what to set. Both key variables or neither; the region is PREDICT_REGION, else the Function URL's.
 */
export async function predictSigner(env, url) {
  const accessKeyId = (env.PREDICT_ACCESS_KEY_ID ?? "").trim();
  const secretAccessKey = (env.PREDICT_SECRET_ACCESS_KEY ?? "").trim();
  if (!accessKeyId && !secretAccessKey) return { signer: null };
  if (!accessKeyId || !secretAccessKey) {
    return { error: "set both PREDICT_ACCESS_KEY_ID and PREDICT_SECRET_ACCESS_KEY (or neither, for an unsigned local Lambda)" };
  }
  const region = (env.PREDICT_REGION ?? "").trim() || regionOfFunctionUrl(url);
  if (!region) return { error: "PREDICT_REGION is not set and PREDICT_URL is not a Lambda Function URL (<id>.lambda-url.<region>.on.aws)" };
  const sessionToken = (env.PREDICT_SESSION_TOKEN ?? "").trim() || undefined;
  const { SignatureV4, Sha256 } = await loadSigningLibrary();
  return {
    signer: new SignatureV4({ service: "lambda", region, sha256: Sha256, credentials: { accessKeyId, secretAccessKey, sessionToken } }),
  };
}

/** The headers of a SigV4-signed POST of `body` to `url` (Host is signed; fetch sends the same one). */
export async function signedHeaders(signer, url, body, headers) {
  const target = new URL(url);
  const query = {};
  for (const [key, value] of target.searchParams) query[key] = key in query ? [].concat(query[key], value) : value;
  const signed = await signer.sign({
    method: "POST", protocol: target.protocol, hostname: target.hostname, port: target.port ? Number(target.port) : undefined,
    path: target.pathname, query, headers: { ...headers, host: target.host }, body,
  });
  const { host, ...rest } = signed.headers;  // fetch derives Host from the URL: the value signed above
  return rest;
}

// The routes of the predict Lambda this function forwards to: its path under PREDICT_URL, and the
// answers that are the Lambda's own (anything else becomes a 502).
export const ROUTES = {
  predict: { path: "", known: (doc) => Array.isArray(doc.predictions) },
  feedback: { path: "feedback", known: (doc) => doc.stored === true },
};

/** The URL of a route: PREDICT_URL itself, or a path under it (https://<id>.lambda-url.<region>.on.aws/feedback). */
export function routeUrl(base, route) {
  const url = new URL(base);
  if (!ROUTES[route].path) return url.href;
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return new URL(ROUTES[route].path, url).href;
}

/** A handler bound to an environment and a fetch (both injectable for tests and the local server). */
export function createHandler({ env = process.env, fetchImpl = fetch, route = "predict" } = {}) {
  return async function predict(request, context) {
    if (request.method !== "POST") return fail(405, "method_not_allowed", "use POST with a JSON body");
    const target = predictTarget(env);
    if (!target.error) target.url = routeUrl(target.url, route);
    let timeoutMs;
    try {
      timeoutMs = predictTimeout(env);
    } catch (err) {
      target.error ??= err.message;
    }
    let signer = null;
    if (!target.error) ({ signer, error: target.error } = await predictSigner(env, target.url));
    if (target.error) {
      console.error(`predict function: ${target.error}`);
      return fail(500, "not_configured", "the site is not connected to the model correctly (see the function log)");
    }
    const body = await request.text();
    if (new TextEncoder().encode(body).length > MAX_BODY_BYTES) {
      return fail(413, "payload_too_large", `the request is over ${MAX_BODY_BYTES / 1024} KiB`);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let upstream;
    let text;
    try {
      let headers = { "content-type": "application/json" };
      if (context?.ip) headers["x-mlops-client-ip"] = String(context.ip);
      if (signer) headers = await signedHeaders(signer, target.url, body, headers);
      upstream = await fetchImpl(target.url, { method: "POST", headers, body, signal: controller.signal });
      text = await upstream.text();
    } catch (err) {
      return err?.name === "AbortError"
        ? fail(504, "timeout", "the prediction service did not answer in time")
        : fail(502, "backend_unavailable", "the prediction service is not reachable");
    } finally {
      clearTimeout(timer);
    }
    let doc;
    try {
      doc = JSON.parse(text);
    } catch {
      doc = null;
    }
    // Only the Lambda's own JSON shapes reach the browser; anything else (a gateway's HTML page,
    // a Function URL's {"Message": ...}) becomes a 502 in the same error shape.
    const known = doc && typeof doc === "object" && (ROUTES[route].known(doc) || typeof doc.error === "object");
    if (!known && upstream.status === 429) {  // the Function URL's throttle (reserved concurrency reached)
      return fail(429, "throttled", "the model is busy: retry in a moment");
    }
    if (!known && upstream.status === 403) {
      console.error("predict function: PREDICT_URL refused the request (403): check PREDICT_ACCESS_KEY_ID / " +
        "PREDICT_SECRET_ACCESS_KEY / PREDICT_REGION and the invoker's lambda:InvokeFunctionUrl permission");
    }
    if (!known) {
      console.error(`predict function: unexpected answer from PREDICT_URL (status ${upstream.status})`);
      return fail(502, "bad_gateway", `the prediction service answered with an unexpected response (status ${upstream.status})`);
    }
    return json(upstream.status, doc);
  };
}

/** Netlify entry point: reads PREDICT_URL on every call, so a changed env var needs no rebuild. */
export default function handler(request, context) {
  return createHandler()(request, context);
}

export const config = { path: "/api/predict" };
