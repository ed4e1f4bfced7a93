"""The predict Lambda with real event shapes, against a fake SageMaker runtime over real HTTP."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lambda_fn import predict
from lambda_fn.local_adapter import LambdaContext, function_url_event

ORIGIN = "https://site.example"


class FakeRuntime:
    """Answers InvokeEndpoint like SageMaker runtime would: a status, AWS error headers, a body."""

    def __init__(self):
        self.status, self.error, self.body, self.delay = 200, None, None, 0.0
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "body": body})
                time.sleep(fake.delay)
                if fake.error:
                    payload = json.dumps({"message": fake.error[1]}).encode()
                    self.send_response(fake.status)
                    self.send_header("x-amzn-ErrorType", fake.error[0])
                else:
                    results = [{"labels": ["a"], "scores": {"a": 0.9, "b": 0.1}} for _ in body["inputs"]]
                    payload = json.dumps(fake.body if fake.body is not None else results).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


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
    status, headers, body = call({"text": "hello"})
    assert status == 200, body
    assert runtime.requests == [{"path": "/endpoints/my-endpoint/invocations", "body": {"inputs": ["hello"]}}]
    assert body["predictions"] == [{"text_index": 0, "labels": ["a"], "scores": {"a": 0.9, "b": 0.1}}]
    assert body["requestId"]
    assert headers["Access-Control-Allow-Origin"] == ORIGIN and headers["Vary"] == "Origin"


def test_several_texts_and_a_base64_body(runtime):
    status, _, body = call({"texts": ["x", "y"]}, b64=True)
    assert status == 200 and [p["text_index"] for p in body["predictions"]] == [0, 1]


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


def test_timeout_is_504(runtime):
    runtime.delay = 1.5
    got, _, body = call({"text": "slow"})
    assert got == 504 and body["error"]["code"] == "timeout"


def test_unreachable_endpoint_is_503(runtime, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:9")
    monkeypatch.setattr(predict, "_client", None)
    got, _, body = call({"text": "x"})
    assert got == 503 and body["error"]["code"] == "endpoint_unavailable"


def test_user_text_is_not_logged_unless_enabled(runtime, capsys):
    call({"text": "secret diary entry"})
    assert "secret diary entry" not in capsys.readouterr().out
