// Pure logic of the app (no DOM): building the request, reading the answer, wording errors.
// Shared by the page (app.js) and the unit tests (node --test). Limits mirror the predict Lambda's.

export const MAX_CHARS = 5000; // per text (the Lambda's MAX_TEXT_CHARS)
export const MAX_TEXTS = 32; // per request (the Lambda's MAX_TEXTS)
export const MAX_REQUEST_BYTES = 64 * 1024; // what the /api/predict function accepts
export const DEFAULT_TIMEOUT_MS = 15000; // above the function's own 9 s, so its 504 arrives first

/** The texts of the form: the whole text, or (multi) one text per non-empty line. */
export function splitTexts(value, { multi = false } = {}) {
  const source = value ?? "";
  if (!multi) return source.trim() ? [source.trim()] : [];
  return source.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
}

/** {body, texts} to POST to /api/predict, or {error} saying what to change before sending. */
export function buildRequest(value, { multi = false } = {}) {
  const texts = splitTexts(value, { multi });
  if (texts.length === 0) return { error: multi ? "Type at least one text, one per line." : "Type or paste a text first." };
  if (texts.length > MAX_TEXTS) return { error: `You entered ${texts.length} texts; at most ${MAX_TEXTS} can be classified at once.` };
  for (const [i, text] of texts.entries()) {
    if (text.length > MAX_CHARS) {
      const which = multi ? `Line ${i + 1}` : "The text";
      return { error: `${which} has ${text.length} characters; the limit is ${MAX_CHARS}.` };
    }
  }
  const body = JSON.stringify(multi ? { texts } : { text: texts[0] });
  if (new TextEncoder().encode(body).length > MAX_REQUEST_BYTES) {
    return { error: `That is too much text for one request (over ${MAX_REQUEST_BYTES / 1024} KiB): send fewer lines.` };
  }
  return { body, texts };
}

/** Rows for one text's result: every label with its probability, sorted, whether it passed, its threshold. */
export function resultRows(prediction) {
  if (!prediction || typeof prediction.scores !== "object" || prediction.scores === null) {
    throw new Error("The answer has no scores.");
  }
  const passing = new Set(prediction.labels ?? []);
  return Object.entries(prediction.scores)
    .map(([label, probability]) => {
      const threshold = prediction.thresholds?.[label];
      return {
        label,
        probability: Number(probability),
        percent: Math.round(Number(probability) * 1000) / 10,
        predicted: passing.has(label),
        threshold: typeof threshold === "number" ? threshold : null,
      };
    })
    .sort((a, b) => b.probability - a.probability || a.label.localeCompare(b.label));
}

/** One {text, labels, rows} per text sent, in the order sent; throws when the answer does not fit the request. */
export function readPredictions(body, texts) {
  const predictions = body?.predictions;
  if (!Array.isArray(predictions) || predictions.length !== texts.length) {
    throw new Error(`expected ${texts.length} prediction(s), got ${Array.isArray(predictions) ? predictions.length : "none"}`);
  }
  const ordered = [...predictions].sort((a, b) => (a.text_index ?? 0) - (b.text_index ?? 0));
  return ordered.map((prediction, i) => {
    const rows = resultRows(prediction);
    return { text: texts[i], labels: rows.filter((r) => r.predicted).map((r) => r.label), rows };
  });
}

/** A sentence a person can act on, for a failed request (status, parsed body or null, kind). */
export function errorMessage({ status = 0, body = null, kind = "http" } = {}) {
  if (kind === "timeout") return "The prediction service took too long to answer. Please try again.";
  if (kind === "network") return "The site cannot be reached. Check your connection and try again.";
  const detail = body?.error?.message;
  const code = body?.error?.code;
  if (status === 400 || status === 413) return (detail ? `The text was not accepted: ${detail}.` : "The text was not accepted.");
  if (status === 429) return "The model is busy. Please try again in a moment.";
  if (status === 500 && code === "not_configured") return "The site is not connected to the model yet. Please try again later.";
  if (status === 502 && code === "backend_unavailable") return "The prediction service cannot be reached right now. Please try again later.";
  if (status === 502 || status === 503) return "The model is not available right now. Please try again later.";
  if (status === 504) return "The model took too long to answer. Please try again.";
  return `Something went wrong (status ${status}). Please try again.`;
}

/** POST the form's text(s); resolves to {results, requestId} or {error, reference?}. fetchImpl is injectable for tests. */
export async function predict(value, { multi = false, fetchImpl = fetch, url = "/api/predict", timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const request = buildRequest(value, { multi });
  if (request.error) return { error: request.error };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetchImpl(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: request.body, signal: controller.signal,
    });
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    const reference = typeof body?.requestId === "string" ? body.requestId : null;  // for a support question
    if (!response.ok) return { error: errorMessage({ status: response.status, body }), reference };
    try {
      return { results: readPredictions(body, request.texts), requestId: body.requestId ?? null };
    } catch {
      return { error: errorMessage({ status: 502, body }), reference };
    }
  } catch (err) {
    return { error: errorMessage({ kind: err?.name === "AbortError" ? "timeout" : "network" }) };
  } finally {
    clearTimeout(timer);
  }
}
