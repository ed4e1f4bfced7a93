// Pure logic of the app (no DOM): building the request, reading the answer, wording errors.
// Shared by the page (app.js) and the unit tests (node --test).

export const MAX_CHARS = 5000;
export const DEFAULT_TIMEOUT_MS = 15000;

/** The body sent to /api/predict, or an error message when the text cannot be sent. */
export function buildRequest(text) {
  const trimmed = (text ?? "").trim();
  if (!trimmed) return { error: "Type or paste a text first." };
  if (trimmed.length > MAX_CHARS) {
    return { error: `The text has ${trimmed.length} characters; the limit is ${MAX_CHARS}.` };
  }
  return { body: JSON.stringify({ text: trimmed }) };
}

/** Rows for the results view: every label with its probability, sorted, and whether it passed. */
export function resultRows(prediction) {
  if (!prediction || typeof prediction.scores !== "object") {
    throw new Error("The answer has no scores.");
  }
  const passing = new Set(prediction.labels ?? []);
  return Object.entries(prediction.scores)
    .map(([label, probability]) => ({
      label,
      probability: Number(probability),
      percent: Math.round(Number(probability) * 1000) / 10,
      predicted: passing.has(label),
      threshold: prediction.thresholds?.[label] ?? null,
    }))
    .sort((a, b) => b.probability - a.probability);
}

/** A sentence a person can act on, for a failed request (status, parsed body or null, kind). */
export function errorMessage({ status = 0, body = null, kind = "http" } = {}) {
  if (kind === "timeout") return "The prediction service took too long to answer. Please try again.";
  if (kind === "network") return "The prediction service cannot be reached right now. Please try again later.";
  const detail = body?.error?.message;
  if (status === 400 || status === 413) return detail ? `The text was not accepted: ${detail}` : "The text was not accepted.";
  if (status === 429) return "The model is busy. Please try again in a moment.";
  if (status === 502 || status === 503) return "The model is not available right now. Please try again later.";
  if (status === 504) return "The model took too long to answer. Please try again.";
  return `Something went wrong (status ${status}). Please try again.`;
}

/** POST the text; resolves to {prediction} or {error}. fetchImpl is injectable for tests. */
export async function predict(text, { fetchImpl = fetch, url = "/api/predict", timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const request = buildRequest(text);
  if (request.error) return { error: request.error };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetchImpl(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: request.body, signal: controller.signal,
    });
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (!response.ok) return { error: errorMessage({ status: response.status, body }) };
    const prediction = body?.predictions?.[0];
    if (!prediction) return { error: errorMessage({ status: 502, body }) };
    return { prediction, requestId: body.requestId };
  } catch (err) {
    return { error: errorMessage({ kind: err?.name === "AbortError" ? "timeout" : "network" }) };
  } finally {
    clearTimeout(timer);
  }
}
