import { predict, resultRows, MAX_CHARS } from "./predict-client.js";

const form = document.querySelector("#predict-form");
const input = document.querySelector("#text");
const button = document.querySelector("#submit");
const status = document.querySelector("#status");
const results = document.querySelector("#results");
const counter = document.querySelector("#counter");

function setBusy(busy) {
  button.disabled = busy;
  button.textContent = busy ? "Classifying…" : "Classify";
  form.setAttribute("aria-busy", String(busy));
}

function showError(message) {
  results.replaceChildren();
  status.className = "status error";
  status.textContent = message;
}

function showPrediction(prediction) {
  status.className = "status";
  const rows = resultRows(prediction);
  const predicted = rows.filter((r) => r.predicted).map((r) => r.label);
  status.textContent = predicted.length ? `Predicted labels: ${predicted.join(", ")}` : "No label passed its threshold.";
  const list = document.createElement("ol");
  list.className = "labels";
  for (const row of rows) {
    const item = document.createElement("li");
    item.className = row.predicted ? "label predicted" : "label";
    item.dataset.label = row.label;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = row.label + (row.predicted ? " ✓" : "");
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
    if (row.threshold !== null) {
      const mark = document.createElement("span");
      mark.className = "threshold";
      mark.style.left = `${row.threshold * 100}%`;
      mark.title = `decision threshold ${row.threshold}`;
      bar.append(mark);
    }
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${row.percent.toFixed(1)}%`;
    item.append(name, bar, value);
    list.append(item);
  }
  results.replaceChildren(list);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  setBusy(true);
  status.className = "status";
  status.textContent = "Classifying…";
  const answer = await predict(input.value);
  setBusy(false);
  if (answer.error) showError(answer.error);
  else showPrediction(answer.prediction);
});

input.addEventListener("input", () => {
  counter.textContent = `${input.value.length} / ${MAX_CHARS}`;
});

for (const example of document.querySelectorAll("[data-example]")) {
  example.addEventListener("click", () => {
    input.value = example.dataset.example;
    input.dispatchEvent(new Event("input"));
    input.focus();
  });
}
