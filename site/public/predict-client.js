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
    const inferenceId = typeof prediction.inferenceId === "string" ? prediction.inferenceId : null;
    return { text: texts[i], labels: rows.filter((r) => r.predicted).map((r) => r.label), rows, inferenceId };
  });
}

/** "Model version 3 · 12 ms at the model" (what served the answer and how fast), or null when unknown. */
export function modelLine({ model = null, latencyMs = null } = {}) {
  const parts = [];
  if (model?.version !== null && model?.version !== undefined) parts.push(`Model version ${model.version}`);
  const ms = latencyMs?.endpoint;
  if (typeof ms === "number" && Number.isFinite(ms)) parts.push(`${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms at the model`);
  return parts.length ? parts.join(" · ") : null;
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

/** POST a JSON body: {status, ok, body (parsed or null), reference} or {kind: "timeout" | "network"}; never throws. */
async function postJson(url, body, { fetchImpl, timeoutMs }) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetchImpl(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body, signal: controller.signal,
    });
    let doc = null;
    try { doc = await response.json(); } catch { doc = null; }
    const reference = typeof doc?.requestId === "string" ? doc.requestId : null;  // for a support question
    return { status: response.status, ok: response.ok, body: doc, reference };
  } catch (err) {
    return { kind: err?.name === "AbortError" ? "timeout" : "network" };
  } finally {
    clearTimeout(timer);
  }
}

/** POST the form's text(s); resolves to {results, requestId, model, latencyMs, feedbackToken} or {error, reference?}.
 * fetchImpl is injectable for tests. */
export async function predict(value, { multi = false, fetchImpl = fetch, url = "/api/predict", timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const request = buildRequest(value, { multi });
  if (request.error) return { error: request.error };
  const answer = await postJson(url, request.body, { fetchImpl, timeoutMs });
  if (answer.kind) return { error: errorMessage({ kind: answer.kind }) };
  const { body, reference } = answer;
  if (!answer.ok) return { error: errorMessage({ status: answer.status, body }), reference };
  try {
    return {
      results: readPredictions(body, request.texts), requestId: body.requestId ?? null, model: body.model ?? null,
      latencyMs: body.latencyMs ?? null, feedbackToken: typeof body.feedbackToken === "string" ? body.feedbackToken : null,
    };
  } catch {
    return { error: errorMessage({ status: 502, body }), reference };
  }
}

/** A sentence for a correction that was not accepted. */
export function feedbackErrorMessage({ status = 0, body = null, kind = "http" } = {}) {
  const code = body?.error?.code;
  if (kind !== "http") return errorMessage({ kind });
  if (code === "token_expired") return "This result is too old to correct: classify the text again, then correct it.";
  if (code === "feedback_disabled") return "Corrections are not collected on this site.";
  if (status === 429) return `Not sent: ${body?.error?.message ?? "too many corrections"}. Please try again later.`;
  if (status === 400 || status === 403) return `Not sent: ${body?.error?.message ?? "the correction was not accepted"}.`;
  return errorMessage({ status, body });
}

/** Send a person's true labels for one classified text; resolves to {labels} or {error, reference?}. */
export async function sendFeedback({ token, inferenceId, labels }, { fetchImpl = fetch, url = "/api/feedback", timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  if (!token || !inferenceId) return { error: "This result cannot be corrected (no feedback token)." };
  const body = JSON.stringify({ token, inferenceId, labels: [...new Set(labels)].sort() });
  const answer = await postJson(url, body, { fetchImpl, timeoutMs });
  if (answer.kind) return { error: feedbackErrorMessage({ kind: answer.kind }) };
  if (!answer.ok || answer.body?.stored !== true) {
    return { error: feedbackErrorMessage({ status: answer.ok ? 502 : answer.status, body: answer.body }), reference: answer.reference };
  }
  return { labels: answer.body.labels };
}
