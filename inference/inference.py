"""Hugging Face DLC handler functions: model_fn, input_fn, predict_fn, output_fn.

This file travels into the model artifact as `code/inference.py` (beside a copy of `mlcore/`),
so it imports only `mlcore`, the standard library and installed packages. The same functions
back our own model server (`inference/server.py`).

Request:  {"inputs": "text" | ["text", ...], "parameters": {"threshold": 0.4, "top_k": 3}}
          (application/json), or one such object / one text per line (application/jsonlines)
Response: one result per text: {"labels": [names passing the thresholds, most probable first],
          "scores": {label: probability, ... every label}, "thresholds": {label: decision threshold}}
"""
from __future__ import annotations

import json
import os
from typing import Any

MAX_BATCH = int(os.environ.get("MLOPS_MAX_REQUEST_TEXTS", "256"))
JSON, JSONLINES = "application/json", "application/jsonlines"


class RequestError(ValueError):
    """A client error with its HTTP status (400 bad input, 413 too large, 415 content type, 406 accept)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def model_fn(model_dir: str, context: Any = None):
    """Load the model directory with the backend chosen at packaging time (serving.json)."""
    from mlcore.predictor import load_predictor

    return load_predictor(model_dir, backend=os.environ.get("MLOPS_BACKEND", "auto"))


def _base_type(content_type: str | None) -> str:
    return (content_type or JSON).split(";")[0].strip().lower()


def _validate(doc: Any, where: str = "body") -> dict:
    if isinstance(doc, str):
        doc = {"inputs": doc}
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise RequestError(f"{where}: expected a JSON object with \"inputs\": a text or a list of texts")
    inputs = doc["inputs"]
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not texts:
        raise RequestError(f"{where}: \"inputs\" must be a non-empty text or a non-empty list of texts")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(f"{where}: inputs[{i}] is {type(text).__name__}, expected a string")
        if not text.strip():
            raise RequestError(f"{where}: inputs[{i}] is empty")
    params = doc.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise RequestError(f"{where}: \"parameters\" must be an object")
    unknown = sorted(set(params) - {"threshold", "top_k"})
    if unknown:
        raise RequestError(f"{where}: unknown parameters {unknown}; supported: threshold, top_k")
    threshold = params.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0.0 <= threshold <= 1.0):
        raise RequestError(f"{where}: parameters.threshold must be a number between 0 and 1")
    top_k = params.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(f"{where}: parameters.top_k must be a positive integer")
    return {"texts": texts, "threshold": threshold, "top_k": top_k, "single": isinstance(inputs, str)}


def input_fn(body: bytes | str, content_type: str | None = JSON) -> list[dict]:
    """Parse and validate a request body into a list of {texts, threshold, top_k} requests."""
    kind = _base_type(content_type)
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("the body is not valid UTF-8") from None
    if kind == JSON:
        try:
            doc = json.loads(body)
        except json.JSONDecodeError as exc:
            raise RequestError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        requests = [_validate(doc)]
    elif kind in (JSONLINES, "application/x-jsonlines", "application/jsonl"):
        requests = []
        for n, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                requests.append(_validate(json.loads(line), where=f"line {n}"))
            except json.JSONDecodeError as exc:
                raise RequestError(f"line {n}: invalid JSON: {exc.msg}") from None
        if not requests:
            raise RequestError("the jsonlines body has no records")
    else:
        raise RequestError(f"unsupported content type {content_type!r}: use {JSON} or {JSONLINES}", status=415)
    total = sum(len(r["texts"]) for r in requests)
    if total > MAX_BATCH:
        raise RequestError(f"{total} texts in one request; the limit is {MAX_BATCH}: split the request", status=413)
    return requests


def format_results(probabilities, label_names, thresholds, threshold=None, top_k=None) -> list[dict]:
    """One result per row of probabilities: passing labels (most probable first) and every score."""
    results = []
    for row in probabilities:
        order = sorted(range(len(label_names)), key=lambda j: -float(row[j]))
        passing = [label_names[j] for j in order
                   if float(row[j]) >= (threshold if threshold is not None else float(thresholds[j]))]
        if top_k is not None:
            passing = passing[:top_k]
        results.append({"labels": passing, "scores": {label_names[j]: round(float(row[j]), 6) for j in order},
                        "thresholds": {label_names[j]: round(float(threshold if threshold is not None
                                                                  else thresholds[j]), 4) for j in order}})
    return results


def split_results(requests: list[dict], probabilities, model) -> list[dict]:
    """Cut one probability matrix (all texts of `requests`, in order) back into per-request results."""
    out, start = [], 0
    for r in requests:
        rows = probabilities[start : start + len(r["texts"])]
        start += len(r["texts"])
        out.append({"results": format_results(rows, model.label_names, model.thresholds, r["threshold"], r["top_k"]),
                    "single": r["single"]})
    return out


def predict_fn(requests: list[dict], model) -> list[dict]:
    """Run every text of the requests through the model in one call; results per request."""
    return split_results(requests, model.predict_proba([t for r in requests for t in r["texts"]]), model)


def check_accept(accept: str | None) -> str:
    """The response content type for an Accept header; 406 when we cannot produce it."""
    if not accept or "*/*" in accept or "application/*" in accept:
        return JSON
    for part in accept.split(","):
        kind = _base_type(part)
        if kind == JSON:
            return JSON
        if kind in (JSONLINES, "application/x-jsonlines", "application/jsonl"):
            return JSONLINES
    raise RequestError(f"cannot answer in {accept!r}: accept {JSON} or {JSONLINES}", status=406)


def output_fn(predictions: list[dict], accept: str | None = JSON) -> tuple[str, str]:
    """Serialise to JSON (a list of results; jsonlines: one result per line). Returns (body, content type)."""
    kind = check_accept(accept)
    results = [res for p in predictions for res in p["results"]]
    if kind == JSON:
        return json.dumps(results), JSON
    return "".join(json.dumps(r) + "\n" for r in results), JSONLINES
