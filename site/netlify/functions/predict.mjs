// Netlify Function behind /api/predict: forwards the browser's POST to the predict Lambda, whose
// URL comes from the PREDICT_URL environment variable at run time. The browser talks only to
// its own origin (no CORS) and never sees the AWS URL.
const MAX_BODY = 64 * 1024;
const json = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

export default async function handler(request, { env = process.env, fetchImpl = fetch, timeoutMs = 15000 } = {}) {
  if (request.method !== "POST") return json(405, { error: { code: "method_not_allowed", message: "use POST" } });
  const target = env.PREDICT_URL;
  if (!target) {
    return json(500, { error: { code: "not_configured", message: "PREDICT_URL is not set for this site" } });
  }
  const body = await request.text();
  if (body.length > MAX_BODY) return json(413, { error: { code: "payload_too_large", message: "text too long" } });
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const upstream = await fetchImpl(target, {
      method: "POST", headers: { "Content-Type": "application/json" }, body, signal: controller.signal,
    });
    return new Response(await upstream.text(), {
      status: upstream.status, headers: { "Content-Type": "application/json" },
    });
  } catch (err) {
    return err?.name === "AbortError"
      ? json(504, { error: { code: "timeout", message: "the prediction service timed out" } })
      : json(502, { error: { code: "backend_unavailable", message: "the prediction service is not reachable" } });
  } finally {
    clearTimeout(timer);
  }
}

export const config = { path: "/api/predict" };
