// Netlify Function behind /api/predict: forwards the browser's POST to the predict Lambda, whose
// URL comes from the PREDICT_URL environment variable at run time. The browser talks only to
// its own origin (no CORS) and never sees the AWS URL. site/server.mjs mounts this same handler.

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

/** A handler bound to an environment and a fetch (both injectable for tests and the local server). */
export function createHandler({ env = process.env, fetchImpl = fetch } = {}) {
  return async function predict(request) {
    if (request.method !== "POST") return fail(405, "method_not_allowed", "use POST with a JSON body");
    const target = predictTarget(env);
    let timeoutMs;
    try {
      timeoutMs = predictTimeout(env);
    } catch (err) {
      target.error ??= err.message;
    }
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
      upstream = await fetchImpl(target.url, {
        method: "POST", headers: { "Content-Type": "application/json" }, body, signal: controller.signal,
      });
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
    const known = doc && typeof doc === "object" && (Array.isArray(doc.predictions) || typeof doc.error === "object");
    if (!known) {
      console.error(`predict function: unexpected answer from PREDICT_URL (status ${upstream.status})`);
      return fail(502, "bad_gateway", `the prediction service answered with an unexpected response (status ${upstream.status})`);
    }
    return json(upstream.status, doc);
  };
}

/** Netlify entry point: reads PREDICT_URL on every call, so a changed env var needs no rebuild. */
export default function handler(request) {
  return createHandler()(request);
}

export const config = { path: "/api/predict" };
