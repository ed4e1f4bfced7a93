"""The Hugging Face inference toolkit's handler functions: model_fn, input_fn, predict_fn, output_fn.

The toolkit (`HuggingFaceHandlerService`, the handler of the huggingface-pytorch-inference images)
imports `code/inference.py` of the model artifact, which re-exports these. Its contract, read from
the toolkit's `handle()`: `input_fn(body, content_type)` gets the raw body (str for
application/json, bytes otherwise); `output_fn(prediction, accept)` returns **the encoded body
only** (the toolkit returns it to multi-model-server as is and sets the response content type to
Accept itself); any exception becomes a 400 with `str(exception)` as the message. Our own model
server (`inference/server.py`) calls the same functions.

Request:  {"inputs": "text" | ["text", ...], "parameters": {"threshold": 0.4, "top_k": 3}}
          (application/json), or one such object / one text per line (application/jsonlines)
Response: one result per text: {"labels": [names passing the thresholds, most probable first],
          "scores": {label: probability, ... every label}, "thresholds": {label: decision threshold}}
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

from mlcore.config import env_value

logger = logging.getLogger(__name__)

JSON, JSONLINES = "application/json", "application/jsonlines"
JSONLINES_ALIASES = (JSONLINES, "application/x-jsonlines", "application/jsonl")
MAX_REQUEST_TEXTS_ENV = "MLOPS_MAX_REQUEST_TEXTS"
DEFAULT_MAX_REQUEST_TEXTS = 256
PARAMETERS = ("threshold", "top_k")
# A request is {"inputs": [...], "parameters": {...}}: 3 levels deep, numbers no longer than a top_k or a
# threshold needs. Beyond these, json.loads would raise RecursionError or ValueError (Python's 4300-digit
# guard) and the request would fail as a server error instead of a 400.
MAX_JSON_DEPTH = 16
MAX_NUMBER_CHARS = 32


class RequestError(ValueError):
    """A client error with its HTTP status (400 bad input, 413 too large, 415 content type, 406 accept).

    Our server answers with `status`; through the HF toolkit every error is a 400 carrying str(self).
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def max_request_texts() -> int:
    return env_value(MAX_REQUEST_TEXTS_ENV, DEFAULT_MAX_REQUEST_TEXTS)


def base_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json` (lower case); None -> JSON."""
    return (content_type or JSON).split(";")[0].strip().lower()


# ----------------------------------------------------------------------------- model
def serving_threads(cores: int | None = None) -> int:
    """Intra-op threads per model worker: cores / workers, so workers x threads = cores.

    multi-model-server starts SAGEMAKER_MODEL_SERVER_WORKERS workers (default: one per vCPU);
    MLOPS_NUM_THREADS overrides.
    """
    from mlcore.modeling import available_cores

    explicit = env_value("MLOPS_NUM_THREADS", None, int)
    if explicit is not None:
        return max(1, explicit)
    cores = cores or available_cores()
    workers = env_value("SAGEMAKER_MODEL_SERVER_WORKERS", cores)
    return max(1, cores // max(1, workers))


def model_fn(model_dir: str, context: Any = None):
    """Load the model directory with the backend chosen at packaging time (serving.json)."""
    from mlcore.predictor import load_predictor

    threads = serving_threads()
    predictor = load_predictor(model_dir, backend=os.environ.get("MLOPS_BACKEND", "auto"), num_threads=threads)
    logger.info("loaded %s from %s with %d intra-op threads", type(predictor).__name__, model_dir, threads)
    return predictor


# ----------------------------------------------------------------------------- decoding
def _validate(doc: Any, where: str = "body") -> dict:
    """One request ({"inputs": text | [texts], "parameters": {...}} or a bare text) as {texts, threshold, top_k, single}."""
    if isinstance(doc, str):
        doc = {"inputs": doc}
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise RequestError(f"{where}: expected a JSON object with \"inputs\": a text or a list of texts")
    inputs = doc["inputs"]
    return {"texts": _texts(inputs, where), **_parameters(doc.get("parameters"), where),
            "single": isinstance(inputs, str)}


def _texts(inputs: Any, where: str) -> list[str]:
    """The request's texts: a non-empty list of non-empty, valid Unicode strings."""
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not texts:
        raise RequestError(f"{where}: \"inputs\" must be a non-empty text or a non-empty list of texts")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(f"{where}: inputs[{i}] is {type(text).__name__}, expected a string")
        if not text.strip():
            raise RequestError(f"{where}: inputs[{i}] is empty")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800") that JSON allows and the tokenizer does not
            raise RequestError(f"{where}: inputs[{i}] is not valid Unicode (unpaired surrogate at character "
                               f"{exc.start})") from None
    return texts


def _parameters(params: Any, where: str) -> dict:
    """{"threshold", "top_k"} from the request's "parameters" (None when absent); unknown ones are an error."""
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise RequestError(f"{where}: \"parameters\" must be an object")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise RequestError(f"{where}: unknown parameters {unknown}; supported: {', '.join(PARAMETERS)}")
    threshold = params.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0.0 <= threshold <= 1.0):
        raise RequestError(f"{where}: parameters.threshold must be a number between 0 and 1")
    top_k = params.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(f"{where}: parameters.top_k must be a positive integer")
    return {"threshold": threshold, "top_k": top_k}


def _number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A json.loads number hook that refuses numbers longer than MAX_NUMBER_CHARS and non-finite floats."""
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise RequestError(f"a number with {len(text)} digits (at most {MAX_NUMBER_CHARS} characters)")
        value = kind(text)
        if value in (float("inf"), float("-inf")):
            raise RequestError(f"the number {text} is out of range")
        return value
    return parse


def _not_json(name: str) -> Any:
    raise RequestError(f"{name} is not valid JSON (use a number or null)")


def _too_deep(doc: Any) -> bool:
    """True when `doc` nests lists/objects deeper than MAX_JSON_DEPTH (iterative: no recursion of our own)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False


def strict_json(text: str, where: str) -> Any:
    """json.loads for request bodies: standard JSON only (no NaN/Infinity), numbers of at most MAX_NUMBER_CHARS
    characters, at most MAX_JSON_DEPTH levels of nesting; anything else is a RequestError (400) saying why."""
    deep = RequestError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(text, parse_int=_number(int), parse_float=_number(float), parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise RequestError(f"{where}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RequestError as exc:
        raise RequestError(f"{where}: {exc}") from None
    except RecursionError:
        raise deep from None
    if isinstance(doc, (list, dict)) and _too_deep(doc):
        raise deep
    return doc


def decode_json(text: str) -> list[dict]:
    return [_validate(strict_json(text, "body"))]


def decode_jsonlines(text: str) -> list[dict]:
    requests = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        requests.append(_validate(strict_json(line, f"line {n}"), where=f"line {n}"))
    if not requests:
        raise RequestError("the jsonlines body has no records")
    return requests


# content type -> decoder of the body text into a list of {texts, threshold, top_k, single} requests
DECODERS: dict[str, Callable[[str], list[dict]]] = {
    JSON: decode_json, **{alias: decode_jsonlines for alias in JSONLINES_ALIASES}}


def input_fn(body: bytes | str, content_type: str | None = JSON) -> list[dict]:
    """Parse and validate a request body into a list of {texts, threshold, top_k, single} requests."""
    decoder = DECODERS.get(base_type(content_type))
    if decoder is None:
        raise RequestError(f"unsupported content type {content_type!r}: use {JSON} or {JSONLINES}", status=415)
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("the body is not valid UTF-8") from None
    requests = decoder(body)
    total = sum(len(r["texts"]) for r in requests)
    limit = max_request_texts()
    if total > limit:
        raise RequestError(f"{total} texts in one request; the limit is {limit}: split the request", status=413)
    return requests


# ----------------------------------------------------------------------------- prediction
def format_results(probabilities, label_names, thresholds, threshold=None, top_k=None) -> list[dict]:
    """One result per row of probabilities: passing labels (most probable first) and every score."""
    results = []
    for row in probabilities:
        order = sorted(range(len(label_names)), key=lambda j: -float(row[j]))
        cut = [float(threshold if threshold is not None else thresholds[j]) for j in range(len(label_names))]
        passing = [label_names[j] for j in order if float(row[j]) >= cut[j]]
        if top_k is not None:
            passing = passing[:top_k]
        results.append({"labels": passing, "scores": {label_names[j]: round(float(row[j]), 6) for j in order},
                        "thresholds": {label_names[j]: round(cut[j], 4) for j in order}})
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


# ----------------------------------------------------------------------------- encoding
def encode_json(results: list[dict]) -> str:
    return json.dumps(results)


def encode_jsonlines(results: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in results)


# response content type -> encoder of the list of results
ENCODERS: dict[str, Callable[[list[dict]], str]] = {JSON: encode_json, JSONLINES: encode_jsonlines}


def response_type(accept: str | None) -> str:
    """The content type we answer in for an Accept header (406 when we can produce none of it)."""
    if not accept or "*/*" in accept or "application/*" in accept:
        return JSON
    for part in accept.split(","):
        kind = base_type(part)
        if kind == JSON:
            return JSON
        if kind in JSONLINES_ALIASES:
            return JSONLINES
    raise RequestError(f"cannot answer in {accept!r}: accept {JSON} or {JSONLINES}", status=406)


def output_fn(predictions: list[dict], accept: str | None = JSON) -> str:
    """The response body only: a JSON list of results, or one result per line for JSON Lines.

    The HF toolkit hands this value to multi-model-server unchanged and sets the content type from
    Accept; anything but str/bytes would be JSON-encoded again by the server.
    """
    results = [res for p in predictions for res in p["results"]]
    return ENCODERS[response_type(accept)](results)
