"""The predict Lambda with real event shapes, against a fake SageMaker runtime over real HTTP."""
from __future__ import annotations

import base64
import io
import json

import pytest

from lambda_fn import predict
from lambda_fn.local_adapter import LambdaContext, function_url_event
from tests.helpers.fake_runtime import FakeRuntime

ORIGIN = "https://site.example"


@pytest.fixture
def runtime(monkeypatch):
    fake = FakeRuntime()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", fake.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("ENDPOINT_NAME", "my-endpoint")
    monkeypatch.setenv("ALLOWED_ORIGINS", f"{ORIGIN},http://localhost:8000")
    monkeypatch.setenv("INVOKE_TIMEOUT_S", "0.5")
    monkeypatch.setenv("MAX_TEXTS", "4")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for name in ("FEEDBACK_SECRET", "FEEDBACK_SECRET_ARN", "GROUND_TRUTH_DIR", "GROUND_TRUTH_S3_URI",
                 "MODEL_VERSION_FROM_ENDPOINT"):  # feedback is off unless a test turns it on
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(predict, "_client", None)
    yield fake
    fake.server.shutdown()


def call(body=None, method="POST", origin=ORIGIN, raw: bytes | None = None, b64=False):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    headers = {"Content-Type": "application/json", **({"Origin": origin} if origin else {})}
    event = function_url_event(method, "/", headers, data, "203.0.113.9")
    if b64:
        event["body"], event["isBase64Encoded"] = base64.b64encode(data).decode(), True
    result = predict.handler(event, LambdaContext())
    return result["statusCode"], result["headers"], json.loads(result["body"]) if result["body"] else None


def test_one_text_is_forwarded_and_answered(runtime):
    runtime.version = "7"
    status, headers, body = call({"text": "hello"})
    assert status == 200, body
    assert runtime.requests == [{"path": "/endpoints/my-endpoint/invocations", "body": {"inputs": ["hello"]}}]
    request_id = body["requestId"]
    # the request id is the endpoint's InferenceId: the capture keys text i as <id>:<i>, as the answer does
    assert runtime.headers[0]["x-amzn-sagemaker-inference-id"] == request_id == body["inferenceId"]
    assert body["predictions"] == [{"text_index": 0, "inferenceId": f"{request_id}:0", "labels": ["a"],
                                    "scores": {"a": 0.9, "b": 0.1}}]
    assert body["model"] == {"version": "7", "variant": "AllTraffic"} and body["latencyMs"]["endpoint"] > 0
    assert "feedbackToken" not in body  # no feedback secret configured
    assert headers["Access-Control-Allow-Origin"] == ORIGIN and headers["Vary"] == "Origin"


def test_several_texts_and_a_base64_body(runtime):
    status, _, body = call({"texts": ["x", "y"]}, b64=True)
    assert status == 200 and [p["text_index"] for p in body["predictions"]] == [0, 1]
    assert [p["inferenceId"] for p in body["predictions"]] == [f"{body['requestId']}:0", f"{body['requestId']}:1"]
    assert body["model"]["version"] is None  # no version header, and DescribeEndpoint is not asked by default


def test_preflight_is_answered_for_allowed_origins_only(runtime):
    status, headers, _ = call(method="OPTIONS")
    assert status == 204 and headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    status, headers, _ = call(method="OPTIONS", origin="https://evil.example")
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, body = call({"text": "x"}, origin="https://evil.example")
    assert status == 403 and body["error"]["code"] == "origin_not_allowed" and not runtime.requests


@pytest.mark.parametrize("body,raw,status,needle", [
    (None, b"{oops", 400, "not valid JSON"),
    (None, b"", 400, "the body is empty"),
    ({"text": ""}, None, 400, "text 0 is empty"),
    ({"texts": []}, None, 400, "non-empty list"),
    ({"text": "a", "texts": ["b"]}, None, 400, "exactly one of"),
    ({"texts": ["a", 5]}, None, 400, "text 1 is empty or not a string"),
    ({"texts": ["a"] * 5}, None, 413, "at most 4"),
    ({"text": "a" * 5001}, None, 413, "at most 5000"),
])
def test_bad_input_is_rejected_before_the_endpoint(runtime, body, raw, status, needle):
    got, _, answer = call(body, raw=raw)
    assert got == status and needle in answer["error"]["message"] and answer["requestId"]
    assert not runtime.requests


@pytest.mark.parametrize("http_status,error_type,message,status,code", [
    (429, "ThrottlingException", "Rate exceeded", 429, "throttled"),
    (424, "ModelError", "Received server error (500) from primary", 502, "model_error"),
    (400, "ValidationException", "Endpoint my-endpoint of account 123 not found.", 503, "endpoint_unavailable"),
    (503, "ServiceUnavailable", "not ready", 503, "endpoint_unavailable"),
])
def test_endpoint_failures_map_to_clear_statuses(runtime, http_status, error_type, message, status, code):
    runtime.status, runtime.error = http_status, (error_type, message)
    got, headers, body = call({"text": "x"})
    assert got == status and body["error"]["code"] == code
    assert message not in json.dumps(body)  # no AWS internals leak to the browser
    assert headers["Access-Control-Allow-Origin"] == ORIGIN  # CORS on errors too


@pytest.mark.parametrize("original_status,original_message,status,needle", [
    (400, json.dumps({"code": 400, "type": "InternalServerException", "message": "body: inputs[0] is not valid Unicode"}),
     400, "the model rejected the input: body: inputs[0] is not valid Unicode"),  # the HF toolkit's error body
    (400, json.dumps({"error": {"code": "bad_request", "message": "inputs[0] is empty"}}), 400, "inputs[0] is empty"),
    (413, "payload too large", 400, "the model rejected the input: payload too large"),
    (500, json.dumps({"message": "CUDA out of memory at /opt/ml/model/code"}), 502, "could not process"),
])
def test_a_model_error_says_why_when_the_model_rejected_the_input(runtime, original_status, original_message,
                                                                  status, needle):
    """SageMaker answers any container error as 424 ModelError with the container's status and body."""
    runtime.status, runtime.error = 424, ("ModelError", f"Received client error ({original_status}) from primary")
    runtime.members = {"OriginalStatusCode": original_status, "OriginalMessage": original_message}
    got, _, body = call({"text": "x"})
    assert got == status and needle in body["error"]["message"]
    assert "/opt/ml" not in json.dumps(body)


def test_timeout_is_504_after_the_configured_attempts(runtime):
    runtime.delay = 1.5
    got, _, body = call({"text": "slow"})
    assert got == 504 and body["error"]["code"] == "timeout"
    assert len(runtime.requests) == 2  # INVOKE_ATTEMPTS (default 2) counts the first call


@pytest.mark.parametrize("answer", [
    {"labels": ["a"]},  # one object instead of a list with one entry per text
    ["[{\"labels\": []}, {\"labels\": []}]", "application/json"],  # a (body, content type) tuple, JSON-encoded
    [{"labels": ["a"]}, None],
])
def test_an_answer_of_the_wrong_shape_is_502(runtime, answer):
    runtime.body = answer
    got, _, body = call({"texts": ["x", "y"]})
    assert got == 502 and "unexpected shape" in body["error"]["message"]


def test_an_oversized_body_is_413_before_parsing(runtime, monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "100")
    got, _, body = call({"text": "x" * 200})
    assert got == 413 and "over 100 bytes" in body["error"]["message"] and not runtime.requests


@pytest.mark.parametrize("name,value,needle", [
    ("MAX_TEXTS", "many", "MAX_TEXTS='many' must be an integer"),
    ("MAX_TEXT_CHARS", "0", "MAX_TEXT_CHARS=0 must be >= 1"),
    ("INVOKE_TIMEOUT_S", "-1", "INVOKE_TIMEOUT_S=-1.0 must be > 0"),
    ("LOG_USER_TEXT", "maybe", "LOG_USER_TEXT='maybe' must be true or false"),
])
def test_a_misconfigured_function_fails_with_the_variable_named(runtime, monkeypatch, name, value, needle):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=needle):
        call({"text": "x"})


def test_emf_metrics_carry_latency_and_error_counts(runtime, monkeypatch, capsys):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    runtime.status, runtime.error = 424, ("ModelError", "boom")
    call({"text": "x"})
    call({"text": ""})
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert len(blobs) == 2, "one EMF blob per invocation"
    names = {m["Name"] for m in blobs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"LatencyMs", "ServerErrors", "ClientErrors"} <= names
    assert blobs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "BertMultilabel"
    def total(value):  # EMF values are a number or a list of numbers
        return sum(value) if isinstance(value, list) else value

    assert (total(blobs[0]["ServerErrors"]), total(blobs[0]["ClientErrors"])) == (1, 0)
    assert (total(blobs[1]["ServerErrors"]), total(blobs[1]["ClientErrors"])) == (0, 1)
    assert blobs[0]["service"] == "predict" and total(blobs[0]["LatencyMs"]) > 0


def test_unreachable_endpoint_is_503(runtime, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:9")
    monkeypatch.setattr(predict, "_client", None)
    got, _, body = call({"text": "x"})
    assert got == 503 and body["error"]["code"] == "endpoint_unavailable"


def test_user_text_is_not_logged_unless_enabled(runtime, monkeypatch):
    stream = io.StringIO()  # the Logger's handler holds the stdout of import time: read its lines here
    monkeypatch.setattr(predict.logger.registered_handler, "stream", stream)
    call({"text": "secret diary entry"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [record] = [r for r in lines if r["message"] == "predict"]
    assert record["texts"] == 1 and record["chars"] == 18 and record["function_request_id"]
    assert "secret diary entry" not in stream.getvalue()
    monkeypatch.setenv("LOG_USER_TEXT", "true")
    call({"text": "secret diary entry"})
    assert "secret diary entry" in stream.getvalue()
