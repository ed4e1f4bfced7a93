"""Hostile input: one bad text never fails another client's request; every malformed input gets a 4xx JSON
answer; a huge chunked body is refused without being read (issue 13, cases 2, 5, 6 and the error shapes of 7).

As found: 16 concurrent clients, one request with a lone surrogate ("\\ud800") among 12 good ones; 5000-digit
integers and JSON nested 100,000 deep, to the model server and to the predict Lambda; 512 MB chunked.
"""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from lambda_fn import predict
from lambda_fn.local_adapter import LambdaContext, function_url_event
from tests.helpers.fake_runtime import FakeRuntime
from tests.helpers.servers import free_port, start_model_server, stop, wait_http

pytestmark = pytest.mark.timeout(300)
PORTS = (18800, 18900)
POISON = '{"inputs": "\\ud800"}'  # JSON's escape for a lone surrogate: valid JSON, not valid Unicode
HUGE_INT = "1" * 5000
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def server(onnx_model):
    port = free_port(*PORTS)
    proc = start_model_server(onnx_model, port, "--max-wait-ms", "5", env={"MLOPS_NUM_THREADS": "1"})
    wait_http(f"http://127.0.0.1:{port}/ping", proc=proc, timeout=120)
    yield {"url": f"http://127.0.0.1:{port}", "proc": proc}
    stop(proc)


def post(url: str, body: str | bytes, content_type: str | None = "application/json", path="/invocations"):
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(url + path, data=body, headers=headers, timeout=60)


def assert_json_error(answer: requests.Response, status: int, needle: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    error = answer.json()["error"]
    assert error["code"] and needle in error["message"], error


# ----------------------------------------------------------------------------- case 2: the poison round
def test_one_poison_request_among_good_ones_fails_no_good_request(server):
    bodies = []
    for i in range(120):  # one bad request among every 12 good ones
        bodies.append(json.dumps({"inputs": [f"good text {i}", "an apple and a cherry"]}))
        if i % 12 == 11:
            bodies.append(POISON)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda body: post(server["url"], body), bodies))
    good = [a for body, a in zip(bodies, answers) if body != POISON]
    bad = [a for body, a in zip(bodies, answers) if body == POISON]
    failed = [a.status_code for a in good if a.status_code != 200]
    assert not failed, f"{len(failed)} of {len(good)} good requests failed: {failed}"
    for answer in bad:
        assert_json_error(answer, 400, "inputs[0] is not valid Unicode")


def test_a_model_call_that_fails_for_one_request_is_retried_alone_for_the_others(onnx_model):
    """A batched model call that raises for one request's text (a tokenizer error the validation cannot foresee)
    fails that request only: the others of its batch are predicted again alone."""
    import uvicorn

    from inference.server import ServerConfig, create_app

    class RaisesOnPoison:  # the model's tokenizer rejecting one text: every batch holding it raises
        def __init__(self, predictor):
            self.predictor, self.label_names, self.thresholds = predictor, predictor.label_names, predictor.thresholds

        def predict_proba(self, texts, batch_size=32, progress=False):
            if "POISON" in texts:
                raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
            return self.predictor.predict_proba(texts, batch_size)

    port = free_port(*PORTS)
    app = create_app(ServerConfig(model_dir=str(onnx_model), port=port, max_wait_ms=20, num_threads=1))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=120)
        app.state.model.predictor = RaisesOnPoison(app.state.model.predictor)
        bodies = []
        for i in range(120):
            bodies.append(json.dumps({"inputs": f"good text {i}"}))
            if i % 12 == 11:
                bodies.append(json.dumps({"inputs": "POISON"}))
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda body: post(f"http://127.0.0.1:{port}", body), bodies))
        good = [a.status_code for body, a in zip(bodies, answers) if "POISON" not in body]
        bad = [a for body, a in zip(bodies, answers) if "POISON" in body]
        assert good.count(200) == len(good), f"{len(good) - good.count(200)} of {len(good)} good requests failed"
        assert all(a.status_code == 500 and a.json()["error"]["code"] == "internal_error" for a in bad)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "mlops_batch_retries_total" in metrics
    finally:
        server.should_exit = True
        thread.join(30)


# ----------------------------------------------------------------------------- case 5: 500 instead of 400
@pytest.mark.parametrize("body,content_type,needle", [
    ('{"inputs": "x", "parameters": {"top_k": %s}}' % HUGE_INT, "application/json", "5000 digits"),
    ('{"inputs": [%s]}' % HUGE_INT, "application/json", "5000 digits"),
    (DEEP, "application/json", "nested deeper than"),
    ('{"inputs": "x"}\n' + DEEP + "\n", "application/jsonlines", "nested deeper than"),
    ('{"inputs": "x", "parameters": {"threshold": NaN}}', "application/json", "NaN"),
])
def test_huge_numbers_and_deep_nesting_are_400_with_the_reason(server, body, content_type, needle):
    assert_json_error(post(server["url"], body, content_type), 400, needle)
    assert post(server["url"], '{"inputs": "still serving"}').status_code == 200


def test_wrong_methods_and_paths_answer_in_the_json_error_shape(server):
    assert_json_error(requests.get(server["url"] + "/invocations", timeout=10), 405, "POST")
    assert_json_error(requests.get(server["url"] + "/no-such-route", timeout=10), 404, "/no-such-route")


# ----------------------------------------------------------------------------- case 6: chunked bodies
def _send_chunked(url: str, total_bytes: int, path="/invocations") -> tuple[int, bytes, int]:
    """POST `total_bytes` with Transfer-Encoding: chunked, stopping as soon as an answer arrives:
    (status, answer body, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    chunk = b"a" * (1024 * 1024)
    sent = 0
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        sock.sendall(b'%x\r\n{"inputs": "\r\n' % len(b'{"inputs": "'))
        try:
            while sent < total_bytes and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            if sent >= total_bytes:
                sock.sendall(b'2\r\n"}\r\n0\r\n\r\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, sent


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_a_512mb_chunked_body_is_refused_without_being_read(server):
    process = psutil.Process(server["proc"].pid)
    before = process.memory_info().rss
    started = time.time()
    status, body, sent = _send_chunked(server["url"], 512 * 1024 * 1024)
    grown = (process.memory_info().rss - before) / 1e6
    assert status == 413 and "byte limit" in json.loads(body)["error"]["message"], body[:300]
    assert sent < 64 * 1024 * 1024, f"the client could send {sent / 1e6:.0f} MB before the answer"
    assert grown < 100, f"the server grew by {grown:.0f} MB"
    print(f"413 after {sent / 1e6:.0f} MB sent, {time.time() - started:.1f}s; server RSS +{grown:.0f} MB")
    assert post(server["url"], '{"inputs": "still serving"}').status_code == 200


# ----------------------------------------------------------------------------- the front (SageMaker Runtime)
@pytest.fixture(scope="module")
def front(server):
    """mlops.runtime_front in front of the model server, over real HTTP (as `mlops up` runs it)."""
    import asyncio

    from aiohttp import web

    from mlops.runtime_front import Target, create_front_app

    port = free_port(*PORTS)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_front_app("tiny", lambda: Target(server["url"], 7)))

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    wait_http(f"http://127.0.0.1:{port}/ping")
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=15)
    loop.call_soon_threadsafe(loop.stop)


def test_the_front_forwards_a_missing_content_type_as_missing_so_the_container_reads_json(front):
    for path in ("/invocations", "/endpoints/tiny/invocations"):
        answer = post(front, '{"inputs": "an apple"}', content_type=None, path=path)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert set(answer.json()[0]["scores"]) == {"a", "b", "c"}


def test_the_front_checks_the_endpoint_name_and_answers_errors_as_json(front):
    other = post(front, '{"inputs": "x"}', path="/endpoints/other/invocations")
    assert other.status_code == 400 and other.headers["x-amzn-ErrorType"] == "ValidationError"
    assert "Endpoint other of account" in other.json()["message"]
    assert_json_error(requests.get(front + "/invocations", timeout=10), 405, "POST")
    assert_json_error(requests.get(front + "/nothing-here", timeout=10), 404, "/nothing-here")


def test_the_front_refuses_a_512mb_chunked_body_as_aws_does(front):
    status, body, sent = _send_chunked(front, 512 * 1024 * 1024, path="/endpoints/tiny/invocations")
    assert status == 413 and "exceeds" in json.loads(body)["message"], body[:300]
    assert sent < 64 * 1024 * 1024


# ----------------------------------------------------------------------------- the predict Lambda
@pytest.fixture
def runtime(monkeypatch):
    fake = FakeRuntime()
    for name, value in {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": fake.url, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "ENDPOINT_NAME": "my-endpoint", "POWERTOOLS_METRICS_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(predict, "_client", None)
    yield fake
    fake.server.shutdown()


def call(event: dict) -> tuple[int, dict]:
    result = predict.handler(event, LambdaContext())
    return result["statusCode"], json.loads(result["body"]) if result.get("body") else {}


def url_event(raw: str) -> dict:
    return function_url_event("POST", "/", {"Content-Type": "application/json"}, raw.encode(), "203.0.113.9")


@pytest.mark.parametrize("raw,needle", [
    ('{"text": %s}' % HUGE_INT, "5000 digits"),
    ('{"texts": %s}' % DEEP, "nested deeper than"),
    ('{"text": "\\ud800"}', "text 0 is not valid Unicode"),
    ('{"texts": ["fine", "\\udfff and more"]}', "text 1 is not valid Unicode"),
    ('{"text": "x", "extra": NaN}', "NaN"),
])
def test_the_lambda_answers_malformed_bodies_400_without_calling_the_endpoint(runtime, raw, needle):
    status, body = call(url_event(raw))
    assert status == 400 and needle in body["error"]["message"], body
    assert runtime.requests == [], "the endpoint must not be called for a bad body"


def test_the_lambda_answers_502_when_the_endpoint_answers_200_with_something_not_json(runtime):
    runtime.raw = b"<html>proxy error</html>"
    status, body = call(url_event('{"text": "an apple"}'))
    assert status == 502 and body["error"]["code"] == "model_error", body


def test_the_lambda_answers_events_that_are_not_function_url_events(runtime):
    event = url_event('{"text": "an apple"}')
    del event["requestContext"]
    status, body = call(event)
    assert status == 400 and "not an HTTP request event" in body["error"]["message"], body
    rest_v1 = {"resource": "/predict", "path": "/predict", "httpMethod": "POST", "headers": {},
               "multiValueHeaders": {}, "queryStringParameters": None, "pathParameters": None,
               "requestContext": {"resourcePath": "/predict", "httpMethod": "POST", "requestId": "r-1",
                                  "stage": "prod", "identity": {"sourceIp": "203.0.113.9"}},
               "body": '{"text": "an apple"}', "isBase64Encoded": False}
    status, body = call(rest_v1)
    assert status == 200 and body["predictions"][0]["labels"] == ["a"], body
    status, body = call({**rest_v1, "httpMethod": "GET", "body": None})
    assert status == 405 and body["error"]["code"] == "method_not_allowed", body
