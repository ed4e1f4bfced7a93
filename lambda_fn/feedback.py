"""User feedback -> ground truth: the labels a person says are right for a text we classified.

The predict route gives every answer a feedback token: HMAC-SHA256 (key: the feedback secret) over
the inference id it sent to the endpoint, the number of texts, the issue time and the model's label
names. The feedback route accepts `{"token", "inferenceId": "<id>:<i>", "labels": [...]}` only when
the token is ours and not older than `max_age_s`, the id is one of the texts it covers and every
label is one of the model's; so nothing needs to be stored to know that an id was issued by us.
Accepted feedback is written as one SageMaker ground-truth record (`groundTruthData` / `eventMetadata.
eventId` = the inference id / `eventVersion` "0") under `<prefix>/yyyy/mm/dd/hh/`, the layout
SageMaker Model Monitor and `monitoring/` read: an S3 prefix on AWS, a directory locally.
Rate limits are per Lambda container (containers share no memory): per client and per text; the
function's reserved concurrency caps the whole.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import tempfile
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

TOKEN_VERSION = "1"
MAX_LABEL_CHARS = 100


class FeedbackError(Exception):
    """Feedback refused: HTTP status, stable code, human message (and seconds to wait, for 429)."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after_s = status, code, message, retry_after_s


@dataclass(frozen=True)
class FeedbackSettings:
    """What the feedback route needs; built by the handler from its environment."""

    secret: bytes
    s3_uri: str = ""  # s3://bucket/prefix (AWS)
    directory: str = ""  # a local ground-truth store (the monitor's, under $MLOPS_HOME)
    max_age_s: int = 86400
    rate_per_minute: int = 20
    max_per_text: int = 3
    max_body_bytes: int = 16 * 1024

    @property
    def destination(self) -> str:
        return self.s3_uri or self.directory


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, f"{TOKEN_VERSION}.{payload}".encode(), hashlib.sha256).digest())


def issue_token(secret: bytes, inference_id: str, n_texts: int, labels: list[str], now: float | None = None) -> str:
    """A token for the texts `<inference_id>:0 .. :<n_texts-1>` scored over `labels`."""
    body = {"i": inference_id, "n": n_texts, "t": int(time.time() if now is None else now), "l": list(labels)}
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{TOKEN_VERSION}.{payload}.{_mac(secret, payload)}"


def verify_token(secret: bytes, token: object, max_age_s: int, now: float | None = None) -> dict:
    """The token's claims ({i, n, t, l}) when we issued it and it has not expired; FeedbackError otherwise."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise FeedbackError(400, "bad_request", '"token" must be the feedbackToken of a prediction answer')
    _, payload, mac = parts
    if not hmac.compare_digest(_mac(secret, payload), mac):
        raise FeedbackError(403, "invalid_token", "this feedback token was not issued by this service")
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, binascii.Error):  # a payload we signed always decodes
        raise FeedbackError(403, "invalid_token", "this feedback token was not issued by this service") from None
    age = (time.time() if now is None else now) - claims["t"]
    if age > max_age_s:
        raise FeedbackError(403, "token_expired", f"this prediction is {int(age // 3600)} h old; feedback is taken "
                                                  f"for {max_age_s // 3600} h after a prediction")
    return claims


def validate(doc: object, claims: dict) -> tuple[str, list[str]]:
    """(inference id, sorted labels) of a feedback body checked against its token's claims."""
    if not isinstance(doc, dict):
        raise FeedbackError(400, "bad_request", 'send {"token": "...", "inferenceId": "...", "labels": [...]}')
    inference_id, labels = doc.get("inferenceId"), doc.get("labels")
    prefix, _, index = str(inference_id).rpartition(":")
    if not isinstance(inference_id, str) or prefix != claims["i"] or not index.isdigit() or int(index) >= claims["n"]:
        raise FeedbackError(400, "bad_request", f'"inferenceId" must be one of the ids of this token\'s '
                                                f'{claims["n"]} prediction(s), e.g. "{claims["i"]}:0"')
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise FeedbackError(400, "bad_request", '"labels" must be a list of label names (empty: no label applies)')
    known = set(claims["l"])
    unknown = sorted({x for x in labels if x not in known})
    if unknown:
        shown = ", ".join(repr(x[:MAX_LABEL_CHARS]) for x in unknown[:5])
        raise FeedbackError(400, "unknown_label", f"not labels of this model: {shown}; known: {', '.join(claims['l'])}")
    return inference_id, sorted(set(labels))


def ground_truth_record(inference_id: str, labels: list[str]) -> dict:
    """SageMaker Model Monitor's ground-truth record for one inference id."""
    return {"groundTruthData": {"data": json.dumps({"labels": labels}), "encoding": "JSON"},
            "eventMetadata": {"eventId": inference_id}, "eventVersion": "0"}


def object_key(prefix: str, when: datetime) -> str:
    """`<prefix>/yyyy/mm/dd/hh/feedback-<uuid>.jsonl`: the hour path Model Monitor reads ground truth by."""
    hour = when.astimezone(timezone.utc).strftime("%Y/%m/%d/%H")
    return "/".join(p for p in (prefix.strip("/"), hour, f"feedback-{uuid.uuid4().hex}.jsonl") if p)


def store(record: dict, settings: FeedbackSettings, when: datetime, s3_client=None) -> str:
    """Write one record (one JSON line); returns where it went."""
    line = json.dumps(record, separators=(",", ":")) + "\n"
    if settings.s3_uri:
        bucket, _, prefix = settings.s3_uri.removeprefix("s3://").partition("/")
        key = object_key(prefix, when)
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        s3_client.put_object(Bucket=bucket, Key=key, Body=line.encode(), ContentType="application/jsonlines")
        return f"s3://{bucket}/{key}"
    target = Path(settings.directory) / object_key("", when)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".feedback-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(line)
    os.replace(tmp, target)  # the monitor reads only *.jsonl: never half a record
    return str(target)


class RateLimiter:
    """At most `limit` events per key in any `window_s` seconds; remembers at most `max_keys` keys (LRU)."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 10_000):
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self.events: OrderedDict[str, deque] = OrderedDict()

    def wait_s(self, key: str, now: float) -> float:
        """0 when one more event is allowed now (and counts it), else seconds until it would be."""
        times = self.events.pop(key, None) or deque()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        self.events[key] = times
        if len(self.events) > self.max_keys:
            self.events.popitem(last=False)
        if len(times) >= self.limit:
            return self.window_s - (now - times[0])
        times.append(now)
        return 0.0


class FeedbackRoute:
    """The feedback route's state in one container: its rate limiters."""

    def __init__(self) -> None:
        self.limits: dict[tuple, tuple[RateLimiter, RateLimiter]] = {}

    def _limiters(self, settings: FeedbackSettings) -> tuple[RateLimiter, RateLimiter]:
        key = (settings.rate_per_minute, settings.max_per_text, settings.max_age_s)
        if key not in self.limits:
            self.limits = {key: (RateLimiter(settings.rate_per_minute, 60.0),
                                 RateLimiter(settings.max_per_text, float(settings.max_age_s)))}
        return self.limits[key]

    def accept(self, doc: object, client: str, settings: FeedbackSettings, now: float | None = None,
               s3_client=None) -> dict:
        """Validate, rate-limit and store one feedback body; returns the answer's body."""
        now = time.time() if now is None else now
        token = doc.get("token") if isinstance(doc, dict) else None
        claims = verify_token(settings.secret, token, settings.max_age_s, now)
        inference_id, labels = validate(doc, claims)
        per_client, per_text = self._limiters(settings)
        wait = per_client.wait_s(client, now)
        if wait:
            raise FeedbackError(429, "throttled", f"too much feedback from you: at most {settings.rate_per_minute} "
                                                  "a minute", retry_after_s=max(1, round(wait)))
        if per_text.wait_s(inference_id, now):
            raise FeedbackError(429, "throttled", f"this text already has {settings.max_per_text} corrections",
                                retry_after_s=int(settings.max_age_s))
        when = datetime.fromtimestamp(now, timezone.utc)
        location = store(ground_truth_record(inference_id, labels), settings, when, s3_client)
        return {"stored": True, "inferenceId": inference_id, "labels": labels, "receivedAt": when.isoformat(),
                "location": location.rsplit("/", 1)[-1]}
