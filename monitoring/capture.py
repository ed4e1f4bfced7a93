"""Read SageMaker data-capture JSONL (a local tree or files synced from S3) into one record per text.

Inference ids of texts: a request whose `inputs` is one string keeps its `inferenceId` (falling
back to `eventId`; the model server sets it from the X-Amzn-SageMaker-Inference-Id header or a
uuid); text i of a request with a list of inputs (or jsonlines) is `<inferenceId>:<i>`, counting
across all texts of the request in order.
Malformed lines are counted by reason with their file:line, never dropped silently.
"""
from __future__ import annotations

import base64
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from monitoring.config import parse_time

# <endpoint>/<yyyy>/<mm>/<dd>/<hh>/<file>.jsonl, as SageMaker lays capture out on S3.
_HOUR_PATH = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+$")
MAX_EXAMPLES = 20


class CaptureFormatError(ValueError):
    """One capture line that cannot be used; `reason` is a short category for counting."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class CapturedText:
    """One text the endpoint scored: its id, time, input and the returned probabilities."""

    inference_id: str
    event_id: str
    time: datetime
    text: str
    probabilities: dict[str, float]
    predicted: list[str] | None
    batch_size: int
    source: str


@dataclass
class CaptureStats:
    """What reading produced: files, lines, texts, and the malformed lines by reason (with examples)."""

    files: int = 0
    lines: int = 0
    requests: int = 0
    texts: int = 0
    outside_window: int = 0
    malformed: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def bad(self, reason: str, where: str, detail: str) -> None:
        self.malformed[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}: {detail}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "lines": self.lines, "requests": self.requests, "texts": self.texts,
            "outside_window": self.outside_window, "malformed_lines": sum(self.malformed.values()),
            "malformed_by_reason": dict(self.malformed), "malformed_examples": list(self.examples),
        }


def capture_files(root: str | Path) -> list[Path]:
    """Every *.jsonl under `root` (or `root` itself when it is a file), in path order (= time order)."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"capture location not found: {root} (point --capture-dir at the endpoint's capture directory)")
    return sorted(p for p in root.rglob("*.jsonl") if p.is_file())


def hour_of_path(path: Path) -> datetime | None:
    """The UTC hour a file's yyyy/mm/dd/hh directories name, or None when it is not in such a tree."""
    match = _HOUR_PATH.search(path.as_posix())
    if not match:
        return None
    try:
        return parse_time("{}-{}-{}T{}:00:00Z".format(*match.groups()))
    except ValueError:
        return None


def _is_jsonlines(section: dict) -> bool:
    return "jsonl" in str(section.get("observedContentType", "")).lower()


def _decode(section: Any, name: str) -> Any:
    """The JSON payload of endpointInput/endpointOutput (encoding JSON or BASE64; jsonlines -> a list)."""
    if not isinstance(section, dict) or "data" not in section:
        raise CaptureFormatError("missing_field", f"captureData.{name}.data is missing")
    data, encoding = section["data"], str(section.get("encoding", "JSON")).upper()
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise CaptureFormatError("bad_encoding", f"{name}.data is not valid base64 UTF-8") from None
    elif encoding != "JSON":
        raise CaptureFormatError("unsupported_encoding", f"{name}.encoding {encoding!r} (JSON or BASE64 expected)")
    if not isinstance(data, str):
        return data
    try:
        if _is_jsonlines(section):
            return [json.loads(line) for line in data.splitlines() if line.strip()]
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise CaptureFormatError("bad_payload", f"{name}.data is not JSON ({exc.msg})") from None


def _texts(body: Any, jsonlines: bool = False) -> tuple[list[str], bool]:
    """Texts of a request ({"inputs": str | [str, ...]}, or jsonlines of those / of strings); flag = batch."""
    if jsonlines:
        texts = []
        for record in body:
            texts.extend(_texts(record)[0])
        if not texts:
            raise CaptureFormatError("bad_input", "jsonlines request without texts")
        single = len(body) == 1 and (isinstance(body[0], str) or isinstance(body[0].get("inputs"), str))
        return texts, not single
    inputs = body.get("inputs") if isinstance(body, dict) else body
    if isinstance(inputs, str):
        return [inputs], False
    if isinstance(inputs, list) and inputs and all(isinstance(t, str) for t in inputs):
        return list(inputs), True
    raise CaptureFormatError("bad_input", "request body has no 'inputs' string or non-empty list of strings")


def _probabilities(item: Any) -> tuple[dict[str, float], list[str] | None]:
    """Label probabilities and predicted labels of one result (several response shapes accepted)."""
    if isinstance(item, list) and all(isinstance(x, dict) and "label" in x and "score" in x for x in item):
        return {str(x["label"]): float(x["score"]) for x in item}, None  # HF pipeline(top_k=None) shape
    if not isinstance(item, dict):
        raise CaptureFormatError("bad_output", "a result is neither an object nor a list of {label, score}")
    probs = next((item[k] for k in ("probabilities", "scores", "probs") if k in item), None)
    if isinstance(probs, list) and isinstance(item.get("label_names"), list):
        probs = dict(zip(item["label_names"], probs))
    if not isinstance(probs, dict) or not probs:
        raise CaptureFormatError("bad_output", "a result has no 'probabilities' mapping of label -> probability")
    try:
        probs = {str(k): float(v) for k, v in probs.items()}
    except (TypeError, ValueError):
        raise CaptureFormatError("bad_output", "a probability is not a number") from None
    predicted = next((item[k] for k in ("labels", "predicted_labels", "predictions") if k in item), None)
    if predicted is not None and not (isinstance(predicted, list) and all(isinstance(p, str) for p in predicted)):
        raise CaptureFormatError("bad_output", "predicted labels are not a list of names")
    return probs, predicted


def _results(body: Any) -> list[Any]:
    if isinstance(body, dict):
        for key in ("predictions", "outputs", "results"):
            if isinstance(body.get(key), list):
                return body[key]
        return [body]
    if isinstance(body, list):
        return body
    raise CaptureFormatError("bad_output", "response body is neither a list nor an object with 'predictions'")


def parse_capture_line(line: str, source: str = "") -> list[CapturedText]:
    """The texts of one capture line; CaptureFormatError (with a reason) when it is unusable."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CaptureFormatError("invalid_json", exc.msg) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("captureData"), dict):
        raise CaptureFormatError("missing_field", "no captureData object")
    meta = doc.get("eventMetadata") or {}
    event_id = meta.get("eventId")
    if not event_id or not meta.get("inferenceTime"):
        raise CaptureFormatError("missing_field", "eventMetadata.eventId or eventMetadata.inferenceTime is missing")
    try:
        when = parse_time(meta["inferenceTime"])
    except ValueError as exc:
        raise CaptureFormatError("bad_time", str(exc)) from None
    section = doc["captureData"].get("endpointInput")
    texts, batch = _texts(_decode(section, "endpointInput"), isinstance(section, dict) and _is_jsonlines(section))
    results = _results(_decode(doc["captureData"].get("endpointOutput"), "endpointOutput"))
    if len(results) != len(texts):
        raise CaptureFormatError("count_mismatch", f"{len(texts)} input text(s) but {len(results)} result(s)")
    base_id = str(meta.get("inferenceId") or event_id)
    out = []
    for i, (text, item) in enumerate(zip(texts, results)):
        probs, predicted = _probabilities(item)
        out.append(CapturedText(
            inference_id=f"{base_id}:{i}" if batch else base_id, event_id=str(event_id), time=when, text=text,
            probabilities=probs, predicted=predicted, batch_size=len(texts), source=source,
        ))
    return out


def read_capture(
    root: str | Path | Iterable[Path], since: datetime | None = None, until: datetime | None = None,
    progress: bool = False,
) -> tuple[list[CapturedText], CaptureStats, set[str]]:
    """Texts captured in [since, until), the reading stats, and the ids of texts outside the window."""
    files = list(root) if not isinstance(root, (str, Path)) else capture_files(root)
    stats, kept, outside = CaptureStats(), [], set()
    iterator: Iterable[Path] = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="capture", unit="file")
    for path in iterator:
        stats.files += 1
        for number, line in _lines(path):
            stats.lines += 1
            where = f"{path}:{number}"
            try:
                texts = parse_capture_line(line, where)
            except CaptureFormatError as exc:
                stats.bad(exc.reason, where, str(exc).split(": ", 1)[1])
                continue
            stats.requests += 1
            for item in texts:
                if (since and item.time < since) or (until and item.time >= until):
                    stats.outside_window += 1
                    outside.add(item.inference_id)
                    continue
                kept.append(item)
                stats.texts += 1
    kept.sort(key=lambda t: t.time)
    return kept, stats, outside


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                yield number, line
