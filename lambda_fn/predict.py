"""The predict Lambda: POST text(s) -> SageMaker endpoint -> labels and probabilities.

Behind a Lambda Function URL or an API Gateway HTTP API (payload format 2.0, base64 bodies
too), or a REST API (payload 1.0); any other event is answered 400. Request: {"text": "..."} or
{"texts": ["...", ...]}. Response: {"predictions": [{"text_index",
"inferenceId", "labels", "scores", "thresholds"}], "requestId", "inferenceId", "model": {"version",
"variant"}, "latencyMs": {"endpoint"}, "feedbackToken"}. Every request goes to the endpoint with
InferenceId = the request id, so text i is captured as `<requestId>:<i>`: the id that ground truth
is keyed by. Errors: {"error": {"code", "message"}, "requestId"} with 400 bad input, 413 too large,
429 throttled, 502 model error, 503 endpoint missing / not in service, 504 timeout. CORS is set
here and only here (the Function URL has no CORS config of its own).

POST /feedback {"token", "inferenceId", "labels"}: a person's true labels for one text, stored as
SageMaker ground truth (lambda_fn/feedback.py); 200 {"stored": true, ...}, or 400/403/413/429/503.

Env: ENDPOINT_NAME, ALLOWED_ORIGINS (comma-separated; "*" allows any), MAX_TEXT_CHARS (5000),
MAX_TEXTS (32), MAX_BODY_BYTES (1 MiB), LOG_USER_TEXT (false), INVOKE_TIMEOUT_S (6),
INVOKE_ATTEMPTS (2), POWERTOOLS_METRICS_NAMESPACE, MODEL_VERSION_FROM_ENDPOINT (false: on AWS, read
the serving version from DescribeEndpoint, cached 60 s; locally the endpoint sends X-Mlops-Model-Version).
Feedback: FEEDBACK_SECRET or FEEDBACK_SECRET_ARN (Secrets Manager), GROUND_TRUTH_S3_URI or
GROUND_TRUTH_DIR, FEEDBACK_MAX_AGE_S (86400), FEEDBACK_RATE_PER_MINUTE (20), FEEDBACK_MAX_PER_TEXT (3);
without a secret and a destination there are no feedback tokens and /feedback answers 503.
The Lambda timeout must exceed `invoke_budget_s()` so a slow endpoint answers 504 instead of the
function timing out.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, LambdaFunctionUrlEvent
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

try:  # the repository: lambda_fn is a package
    from lambda_fn import feedback
except ImportError:  # the Lambda package: lambda_fn/ is the code root
    import feedback  # type: ignore[no-redef,import-not-found]

logger = Logger(service="predict")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BertMultilabel"), service="predict")


CONNECT_TIMEOUT_S = 2.0
MAX_RETRY_BACKOFF_S = 2.0  # botocore standard mode: first retry waits up to 2 s
MAX_NUMBER_CHARS = 32  # no field of a request needs a longer number (Python itself refuses ints over 4300 digits)


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None
    if value < minimum:
        raise ValueError(f"environment variable {name}={value} must be >= {minimum}")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be a number of seconds") from None
    if value <= 0:
        raise ValueError(f"environment variable {name}={value} must be > 0")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, str(default)).strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"environment variable {name}={raw!r} must be true or false")
    return raw in ("true", "1", "yes")


@dataclass(frozen=True)
class PredictSettings:
    """Read once per invocation from the environment; a bad value fails loudly with its name."""

    endpoint_name: str = field(default_factory=lambda: os.environ.get("ENDPOINT_NAME", "bert-multilabel"))
    allowed_origins: tuple = field(default_factory=lambda: tuple(
        o.strip().rstrip("/") for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()))
    max_text_chars: int = field(default_factory=lambda: _env_int("MAX_TEXT_CHARS", 5000))
    max_texts: int = field(default_factory=lambda: _env_int("MAX_TEXTS", 32))
    max_body_bytes: int = field(default_factory=lambda: _env_int("MAX_BODY_BYTES", 1024 * 1024))
    log_user_text: bool = field(default_factory=lambda: _env_bool("LOG_USER_TEXT", False))
    invoke_timeout_s: float = field(default_factory=lambda: _env_float("INVOKE_TIMEOUT_S", 6.0))
    invoke_attempts: int = field(default_factory=lambda: _env_int("INVOKE_ATTEMPTS", 2))
    version_from_endpoint: bool = field(default_factory=lambda: _env_bool("MODEL_VERSION_FROM_ENDPOINT", False))

    def __post_init__(self):
        if not self.endpoint_name:
            raise ValueError("environment variable ENDPOINT_NAME is empty: set the SageMaker endpoint name")

    def invoke_budget_s(self) -> float:
        """Worst-case seconds spent in InvokeEndpoint: every attempt times out, plus retry backoff."""
        return self.invoke_attempts * (CONNECT_TIMEOUT_S + self.invoke_timeout_s) + \
            (self.invoke_attempts - 1) * MAX_RETRY_BACKOFF_S


class PredictError(Exception):
    """A failure the caller is told about: HTTP status, stable code, human message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_client: tuple[tuple, Any] | None = None  # (what it was built from, the client)
# ValidationException messages of InvokeEndpoint when the endpoint is missing or not InService
UNAVAILABLE_MESSAGES = ("not found", "not in service", "inservice", "is not ready", "is being updated")


def runtime_client(settings: PredictSettings):
    """One sagemaker-runtime client per container, explicit timeouts and retries.

    AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME (honoured by boto3) points it at the local endpoint. The
    client is rebuilt only when what it was built from changes (never, inside one Lambda container;
    in a local process that restarts its stack on other ports, it must follow).
    """
    global _client
    key = (os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"), os.environ.get("AWS_ENDPOINT_URL"),
           os.environ.get("AWS_DEFAULT_REGION"), settings.invoke_timeout_s, settings.invoke_attempts)
    if _client is None or _client[0] != key:
        _client = (key, boto3.client("sagemaker-runtime", config=Config(
            connect_timeout=CONNECT_TIMEOUT_S, read_timeout=settings.invoke_timeout_s,
            retries={"total_max_attempts": settings.invoke_attempts, "mode": "standard"})))
    return _client[1]


def cors_headers(origin: str | None, settings: PredictSettings) -> dict:
    """The CORS headers for a request's Origin (none when it is not allowed)."""
    if not origin:
        return {}
    if "*" in settings.allowed_origins or origin in settings.allowed_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "600"}
    return {}


HttpEvent = LambdaFunctionUrlEvent | APIGatewayProxyEvent


def request_path(request: HttpEvent) -> str:
    """The request's path: rawPath (payload 2.0) or path (payload 1.0)."""
    path = request.raw_path if isinstance(request, LambdaFunctionUrlEvent) else request.path
    return path or "/"


def source_ip(request: HttpEvent) -> str | None:
    """The caller's address as API Gateway / the Function URL saw it."""
    if isinstance(request, LambdaFunctionUrlEvent):
        return request.request_context.http.source_ip
    return request.request_context.identity.source_ip


def http_request(event: Any) -> tuple[HttpEvent, str]:
    """The event as powertools' data class, and its HTTP method: payload 2.0 (Function URL, HTTP API) or 1.0
    (REST API); anything else is a 400, never a KeyError."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    http = context.get("http") if isinstance(context, dict) else None
    if isinstance(http, dict) and isinstance(http.get("method"), str):
        return LambdaFunctionUrlEvent(event), http["method"].upper()
    if isinstance(event, dict) and isinstance(event.get("httpMethod"), str):
        return APIGatewayProxyEvent(event), event["httpMethod"].upper()
    raise PredictError(400, "bad_request", "not an HTTP request event (Function URL, HTTP API or REST API payload)")


def parse_texts(event: HttpEvent, settings: PredictSettings) -> list[str]:
    """Validate the body: {"text": str} or {"texts": [str, ...]}, within the limits."""
    doc = _json_body(event, settings)
    if not isinstance(doc, dict) or ("text" in doc) == ("texts" in doc):
        raise PredictError(400, "bad_request", 'send exactly one of {"text": "..."} or {"texts": ["...", ...]}')
    texts = [doc["text"]] if "text" in doc else doc["texts"]
    if not isinstance(texts, list) or not texts:
        raise PredictError(400, "bad_request", '"texts" must be a non-empty list of strings')
    if len(texts) > settings.max_texts:
        raise PredictError(413, "payload_too_large", f"{len(texts)} texts; at most {settings.max_texts} per request")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise PredictError(400, "bad_request", f"text {i} is empty or not a string")
        if len(text) > settings.max_text_chars:
            raise PredictError(413, "payload_too_large",
                               f"text {i} has {len(text)} characters; at most {settings.max_text_chars}")
        if not text.isascii() and not _valid_unicode(text):  # JSON allows "\ud800"; the tokenizer does not
            raise PredictError(400, "bad_request", f"text {i} is not valid Unicode (an unpaired surrogate)")
    return texts


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number with {len(digits)} digits (at most {MAX_NUMBER_CHARS})")
    return int(digits)


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")


def _json_body(event: HttpEvent, settings: PredictSettings):
    """The body (base64 decoded when flagged), within the size limit, parsed as JSON."""
    raw = event.body or ""
    if event.is_base64_encoded:
        try:
            raw = base64.b64decode(raw).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise PredictError(400, "bad_request", "the base64 body could not be decoded as UTF-8") from None
    if len(raw.encode("utf-8")) > settings.max_body_bytes:
        raise PredictError(413, "payload_too_large", f"the body is over {settings.max_body_bytes} bytes")
    if not raw.strip():
        raise PredictError(400, "bad_request", 'the body is empty: send {"text": "..."} or {"texts": [...]}')
    try:
        return json.loads(raw, parse_int=_bounded_int, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise PredictError(400, "bad_request", f"the body is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # a hook's refusal
        raise PredictError(400, "bad_request", f"the body is not valid here: {exc}") from None
    except RecursionError:
        raise PredictError(400, "bad_request", "the body is nested deeper than the parser allows: send "
                                               '{"text": "..."} or {"texts": [...]}') from None


def model_message(original: str | None, limit: int = 300) -> str:
    """The reason a model container gave for rejecting a request (its JSON error's message, else its text)."""
    text = original or ""
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        doc = None
    if isinstance(doc, dict):  # the HF toolkit: {"code", "type", "message"}; our server: {"error": {"message"}}
        inner = doc["error"] if isinstance(doc.get("error"), dict) else doc
        text = str(inner.get("message") or text)
    text = " ".join(text.split())[:limit]
    return f"the model rejected the input: {text}" if text else "the model rejected the input"


@dataclass
class Invocation:
    """What InvokeEndpoint answered: the results, the model that served them, and how long it took."""

    results: Any
    version: str | None = None
    variant: str | None = None
    endpoint_ms: float = 0.0


def invoke(texts: list[str], settings: PredictSettings, inference_id: str) -> Invocation:
    """Call the endpoint with an InferenceId (text i is captured as `<inference_id>:<i>`); map its failures
    onto the API's status codes."""
    started = time.perf_counter()
    try:
        response = runtime_client(settings).invoke_endpoint(
            EndpointName=settings.endpoint_name, ContentType="application/json", Accept="application/json",
            Body=json.dumps({"inputs": texts}), InferenceId=inference_id)
        results = json.loads(response["Body"].read())
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return Invocation(results, headers.get(VERSION_HEADER), response.get("InvokedProductionVariant"),
                          round((time.perf_counter() - started) * 1000, 1))
    except ValueError:  # a 200 whose body is not JSON (or not UTF-8): the endpoint misbehaved
        logger.error("endpoint answered 200 with a body that is not JSON")
        raise PredictError(502, "model_error", "the model endpoint answered with something that is not JSON") from None
    except ClientError as exc:
        raise endpoint_error(exc, settings) from None
    except (ReadTimeoutError, ConnectTimeoutError):
        raise PredictError(504, "timeout", "the model endpoint did not answer in time") from None
    except EndpointConnectionError:
        raise PredictError(503, "endpoint_unavailable", "the model endpoint cannot be reached") from None


def endpoint_error(exc: ClientError, settings: PredictSettings) -> PredictError:
    """The API's error for an InvokeEndpoint failure (logged with AWS's code, status and message)."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    logger.warning("endpoint error", extra={"aws_code": code, "aws_status": status, "aws_message": message[:300]})
    if code in ("ThrottlingException", "TooManyRequestsException") or status == 429:
        return PredictError(429, "throttled", "the model is busy: retry in a moment")
    if code == "ModelError" or status == 424:
        return _model_error(exc.response)
    lowered = message.lower()
    if code == "ValidationException" and any(s in lowered for s in UNAVAILABLE_MESSAGES):
        return PredictError(503, "endpoint_unavailable", f"the model endpoint {settings.endpoint_name!r} is not available")
    if code == "ValidationException" and ("too large" in lowered or "payload size" in lowered):
        return PredictError(413, "payload_too_large", "the request is too large for the model endpoint")
    if code in ("ModelNotReadyException", "ServiceUnavailable") or status == 503:
        return PredictError(503, "endpoint_unavailable", "the model endpoint is not in service yet")
    if status == 413:
        return PredictError(413, "payload_too_large", "the request is too large for the model endpoint")
    return PredictError(502, "model_error", "the model endpoint answered with an error")


def _model_error(response: dict) -> PredictError:
    """ModelError (424): the container's own 4xx means it rejected the input (say why), anything else is a 502."""
    original = response.get("OriginalStatusCode")
    if isinstance(original, int) and 400 <= original < 500:
        return PredictError(400, "bad_request", model_message(response.get("OriginalMessage")))
    return PredictError(502, "model_error", "the model could not process this text")


_serving: dict[str, Any] = {"at": 0.0, "version": None}  # DescribeEndpoint's answer, cached per container
VERSION_HEADER = "x-mlops-model-version"  # the local endpoint's header (botocore lower-cases header names)
VERSION_TTL_S = 60.0


def endpoint_version(settings: PredictSettings) -> str | None:
    """The version the endpoint serves, from DescribeEndpoint (the deploy Lambda names its endpoint config
    `<endpoint>-v<version>`); cached VERSION_TTL_S, None when it cannot be read. During a blue/green update
    it names the config being replaced until the update completes."""
    now = time.monotonic()
    if _serving["at"] and now - _serving["at"] < VERSION_TTL_S:
        return _serving["version"]
    try:
        config = boto3.client("sagemaker", config=Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=2.0)) \
            .describe_endpoint(EndpointName=settings.endpoint_name)["EndpointConfigName"]
        match = re.fullmatch(re.escape(settings.endpoint_name) + r"-v(\d+)", config)
        version = match.group(1) if match else None
    except (ClientError, BotoCoreError) as exc:
        logger.warning("cannot read the serving version", extra={"error": str(exc)[:200]})
        version = None
    _serving.update(at=now, version=version)
    return version


def feedback_settings() -> feedback.FeedbackSettings | None:
    """The feedback route's settings, or None when it is off (no secret or no ground-truth destination)."""
    s3_uri, directory = os.environ.get("GROUND_TRUTH_S3_URI", ""), os.environ.get("GROUND_TRUTH_DIR", "")
    secret = os.environ.get("FEEDBACK_SECRET", "")
    if not secret and os.environ.get("FEEDBACK_SECRET_ARN"):
        from aws_lambda_powertools.utilities import parameters

        secret = str(parameters.get_secret(os.environ["FEEDBACK_SECRET_ARN"], max_age=300))
    if not secret or not (s3_uri or directory):
        return None
    if s3_uri and not s3_uri.startswith("s3://"):
        raise ValueError(f"environment variable GROUND_TRUTH_S3_URI={s3_uri!r} must be an s3:// URI")
    return feedback.FeedbackSettings(
        secret=secret.encode(), s3_uri=s3_uri, directory=directory,
        max_age_s=_env_int("FEEDBACK_MAX_AGE_S", 86400), rate_per_minute=_env_int("FEEDBACK_RATE_PER_MINUTE", 20),
        max_per_text=_env_int("FEEDBACK_MAX_PER_TEXT", 3))


def predict_answer(url_event: HttpEvent, settings: PredictSettings, request_id: str) -> dict:
    """The body of a successful prediction: per-text results and ids, the model, timing, a feedback token."""
    texts = parse_texts(url_event, settings)
    log_extra: dict[str, Any] = {"texts": len(texts), "chars": sum(map(len, texts)), "inference_id": request_id}
    if settings.log_user_text:
        log_extra["user_text"] = texts
    logger.info("predict", extra=log_extra)
    answer = invoke(texts, settings, request_id)
    results = answer.results
    if not isinstance(results, list) or len(results) != len(texts) or not all(
            isinstance(r, dict) and isinstance(r.get("labels"), list) for r in results):
        logger.error("endpoint answer does not match the request",
                     extra={"texts": len(texts), "answer_type": type(results).__name__})
        raise PredictError(502, "model_error", "the model endpoint answered with an unexpected shape")
    if answer.version is None and settings.version_from_endpoint:
        answer.version = endpoint_version(settings)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(texts))
    body = {"predictions": [{"text_index": i, "inferenceId": f"{request_id}:{i}", **r} for i, r in enumerate(results)],
            "requestId": request_id, "inferenceId": request_id,
            "model": {"version": answer.version, "variant": answer.variant},
            "latencyMs": {"endpoint": answer.endpoint_ms}}
    labels = sorted({name for r in results if isinstance(r.get("scores"), dict) for name in r["scores"]})
    fb = feedback_settings()
    if fb is not None and labels:
        body["feedbackToken"] = feedback.issue_token(fb.secret, request_id, len(texts), labels)
    return body


_feedback_route = feedback.FeedbackRoute()


def feedback_answer(url_event: HttpEvent, settings: PredictSettings) -> dict:
    """Store one person's labels for one text as ground truth (see lambda_fn/feedback.py)."""
    fb = feedback_settings()
    if fb is None:
        raise PredictError(503, "feedback_disabled", "feedback is not configured on this service")
    doc = _json_body(url_event, dataclasses.replace(settings, max_body_bytes=fb.max_body_bytes))
    # the site's function forwards the browser's address (signed with the rest of the request)
    client = url_event.get_header_value("x-mlops-client-ip", case_sensitive=False) or source_ip(url_event)
    answer = _feedback_route.accept(doc, client or "unknown", fb)
    logger.info("feedback stored", extra={"inference_id": answer["inferenceId"], "labels": len(answer["labels"])})
    metrics.add_metric(name="Feedback", unit=MetricUnit.Count, value=1)
    return answer


def response(status: int, body: dict, headers: dict) -> dict:
    """A Function URL / HTTP API v2 response with a JSON body."""
    return {"statusCode": status, "headers": {"Content-Type": "application/json", **headers},
            "body": json.dumps(body)}


def _settings() -> PredictSettings:
    try:
        return PredictSettings()
    except ValueError:  # a misconfigured function fails loudly (Lambda Errors) and counts as a 5xx
        logger.exception("bad function configuration")
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        raise


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    """Lambda entry point (Function URL / HTTP API payload 2.0, REST API payload 1.0)."""
    started = time.perf_counter()
    # powertools keeps metrics in memory when POWERTOOLS_METRICS_DISABLED (local runs): drop them
    # so a long-running local adapter does not grow; on Lambda the previous flush already cleared them
    metrics.clear_metrics()
    context_of_event = event.get("requestContext") if isinstance(event, dict) else None
    request_id = getattr(context, "aws_request_id", None) or (
        context_of_event.get("requestId") if isinstance(context_of_event, dict) else None) or str(uuid.uuid4())
    settings = _settings()
    status, cors = 500, {}
    try:
        request, method = http_request(event)
        origin = request.get_header_value("origin", case_sensitive=False)
        cors = cors_headers(origin, settings)
        if method == "OPTIONS":
            metrics.add_metric(name="Preflights", unit=MetricUnit.Count, value=1)
            return {"statusCode": 204 if cors else 403, "headers": cors, "body": ""}
        if origin and not cors:
            raise PredictError(403, "origin_not_allowed", f"origin {origin!r} is not allowed")
        if method != "POST":
            raise PredictError(405, "method_not_allowed", "use POST with a JSON body")
        if request_path(request).rstrip("/") == "/feedback":
            status, body = 200, {**feedback_answer(request, settings), "requestId": request_id}
        else:
            status, body = 200, predict_answer(request, settings, request_id)
    except (PredictError, feedback.FeedbackError) as exc:
        status, body = exc.status, {"error": {"code": exc.code, "message": exc.message}, "requestId": request_id}
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after:
            cors = {**cors, "Retry-After": str(retry_after)}
        logger.info("request failed", extra={"status": exc.status, "code": exc.code})
    except Exception:
        logger.exception("unexpected failure")
        body = {"error": {"code": "internal_error", "message": "internal error"}, "requestId": request_id}
    metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=int(400 <= status < 500))
    metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=int(status >= 500))
    metrics.add_metric(name="LatencyMs", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000)
    return response(status, body, cors)
