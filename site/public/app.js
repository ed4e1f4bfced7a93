// The page: reads the form, calls predict(), renders results or the error (logic in predict-client.js).
import { modelLine, predict, sendFeedback, splitTexts, MAX_CHARS, MAX_TEXTS } from "./predict-client.js";

const form = document.querySelector("#predict-form");
const input = document.querySelector("#text");
const multi = document.querySelector("#multi");
const button = document.querySelector("#submit");
const status = document.querySelector("#status");
const results = document.querySelector("#results");
const counter = document.querySelector("#counter");
const meta = document.querySelector("#meta");
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

const pct = (x) => `${(Math.round(x * 1000) / 10).toFixed(1)}%`;
const pctShort = (x) => `${Math.round(x * 1000) / 10}%`;  // thresholds: 50%, 35.5%

function setBusy(busy) {
  button.disabled = busy;
  button.textContent = busy ? "Classifying…" : "Classify";
  button.classList.toggle("busy", busy);
  results.setAttribute("aria-busy", String(busy));
  results.classList.toggle("stale", busy);
}

function showError(message, reference) {
  results.replaceChildren();
  meta.textContent = "";
  status.className = "status error";
  status.textContent = message;
  if (reference) {
    const ref = document.createElement("span");
    ref.className = "ref";
    ref.textContent = ` Reference: ${reference}`;
    status.append(ref);
  }
}

function labelList(rows) {
  const list = document.createElement("ol");
  list.className = "labels";
  for (const row of rows) {
    const item = document.createElement("li");
    item.className = row.predicted ? "label predicted" : "label";
    item.dataset.label = row.label;
    const name = document.createElement("span");
    name.className = "name";
    // a break opportunity after each "_" (technical_issue), never inside a word
    for (const [i, part] of row.label.split("_").entries()) {
      if (i) name.append("_", document.createElement("wbr"));
      name.append(part);
    }
    if (row.predicted) {
      const tick = document.createElement("span");
      tick.className = "tick";
      tick.textContent = " ✓";
      tick.setAttribute("aria-label", " (predicted)");
      name.append(tick);
    }
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", String(row.percent));
    bar.setAttribute("aria-label", `${row.label} probability`);
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${row.percent}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = pct(row.probability);
    if (row.threshold !== null) {
      const mark = document.createElement("span");
      mark.className = "threshold";
      mark.style.left = `${row.threshold * 100}%`;
      bar.append(mark);
      bar.setAttribute("aria-valuetext", `${pct(row.probability)}, threshold ${pctShort(row.threshold)}`);
      const threshold = document.createElement("span");
      threshold.className = "thr";
      threshold.textContent = `threshold ${pctShort(row.threshold)}`;
      value.append(threshold);
    }
    item.append(name, bar, value);
    list.append(item);
  }
  return list;
}

/** "Wrong labels? Correct them": one checkbox per label (the predicted ones ticked), sent as ground truth. */
function correctionForm(result, token) {
  const box = document.createElement("details");
  box.className = "correct";
  const summary = document.createElement("summary");
  summary.textContent = "Wrong labels? Correct them";
  const fields = document.createElement("fieldset");
  const legend = document.createElement("legend");
  legend.textContent = "The labels that really apply to this text";
  fields.append(legend);
  const boxes = result.rows.map((row) => {
    const label = document.createElement("label");
    label.className = "choice";
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = row.label;
    input.checked = row.predicted;
    label.append(input, row.label);
    fields.append(label);
    return input;
  });
  const send = document.createElement("button");
  send.type = "button";
  send.className = "send";
  send.textContent = "Send correction";
  const note = document.createElement("p");
  note.className = "fb-status";
  note.setAttribute("role", "status");
  send.addEventListener("click", async () => {
    send.disabled = true;
    note.className = "fb-status";
    note.textContent = "Sending…";
    const labels = boxes.filter((b) => b.checked).map((b) => b.value);
    const answer = await sendFeedback({ token, inferenceId: result.inferenceId, labels });
    if (answer.error) {
      send.disabled = false;
      note.className = "fb-status error";
      note.textContent = answer.error + (answer.reference ? ` Reference: ${answer.reference}` : "");
      return;
    }
    for (const b of boxes) b.disabled = true;
    note.className = "fb-status sent";
    note.textContent = `Thank you: recorded as the true labels (${answer.labels.join(", ") || "none"}). ` +
      "They measure the model's quality in production.";
  });
  fields.append(send, note);
  box.append(summary, fields);
  return box;
}

/** Bring the results into view when they start below the fold (a phone, a long text). */
function revealResults() {
  const top = document.querySelector(".output").getBoundingClientRect().top;
  if (top > window.innerHeight * 0.6) {
    document.querySelector(".output").scrollIntoView({ block: "start", behavior: reducedMotion.matches ? "auto" : "smooth" });
  }
}

function showResults(answer) {
  status.className = "status";
  const many = answer.results.length > 1;
  if (many) {
    status.textContent = `Classified ${answer.results.length} texts.`;
  } else {
    const { labels } = answer.results[0];
    status.textContent = labels.length ? `Predicted labels: ${labels.join(", ")}` : "No label reached its threshold.";
  }
  const cards = answer.results.map((result, i) => {
    const card = document.createElement("article");
    card.className = "result";
    card.dataset.index = String(i);
    if (many) {
      const title = document.createElement("h3");
      title.textContent = `Text ${i + 1}: ${result.labels.length ? result.labels.join(", ") : "no label"}`;
      const quote = document.createElement("p");
      quote.className = "quote";
      quote.textContent = result.text;
      card.append(title, quote);
    }
    card.dataset.inferenceId = result.inferenceId ?? "";
    card.append(labelList(result.rows));
    if (answer.feedbackToken && result.inferenceId) card.append(correctionForm(result, answer.feedbackToken));
    return card;
  });
  meta.textContent = modelLine(answer) ?? "";
  const legend = document.createElement("p");
  legend.className = "legend";
  legend.textContent = "Bars: probability. Tick: the label's decision threshold; a label is predicted (✓) when its bar reaches the tick.";
  results.replaceChildren(...cards, legend);
  revealResults();
}

function updateCounter() {
  if (multi.checked) {
    const n = splitTexts(input.value, { multi: true }).length;
    counter.textContent = `${n} / ${MAX_TEXTS} texts`;
    counter.classList.toggle("over", n > MAX_TEXTS);
  } else {
    counter.textContent = `${input.value.trim().length} / ${MAX_CHARS}`;
    counter.classList.toggle("over", input.value.trim().length > MAX_CHARS);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (button.disabled) return;
  setBusy(true);
  status.className = "status";
  status.textContent = "Classifying…";
  const answer = await predict(input.value, { multi: multi.checked });
  setBusy(false);
  if (answer.error) showError(answer.error, answer.reference);
  else showResults(answer);
});

// Ctrl/Cmd+Enter submits from the text area (Enter alone adds a line).
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
input.addEventListener("input", updateCounter);
multi.addEventListener("change", updateCounter);

for (const example of document.querySelectorAll("[data-example]")) {
  example.addEventListener("click", () => {
    const lines = example.dataset.example.split("|");
    multi.checked = lines.length > 1;
    input.value = lines.join("\n");
    updateCounter();
    input.focus();
  });
}
updateCounter();
