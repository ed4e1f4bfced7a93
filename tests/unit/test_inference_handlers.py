"""The HF toolkit handler functions, loaded as the toolkit loads code/inference.py; capture; config.

These check our side of the contract in-process; tests/aws_runtime/ checks it through the toolkit itself.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from mlcore import handler as mlcore_handler
from mlcore.packaging import write_model_code


@pytest.fixture(scope="module")
def handler(tiny_model_dir, tmp_path_factory):
    """code/inference.py of a packaged model, imported from its file path like the toolkit does."""
    model = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("artifact") / "model")
    code = write_model_code(model)
    spec = importlib.util.spec_from_file_location("inference_user_module", code / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, model


def test_entry_module_exports_exactly_the_toolkit_handlers(handler):
    module, _ = handler
    exported = {name for name in ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn") if hasattr(module, name)}
    assert exported == {"model_fn", "input_fn", "predict_fn", "output_fn"}  # transform_fn would forbid the other three


def test_toolkit_style_load_and_full_round_trip(handler):
    module, model = handler
    loaded = module.model_fn(str(model))
    requests = module.input_fn(json.dumps({"inputs": ["apple", "word " * 5000]}), "application/json")
    body = module.output_fn(module.predict_fn(requests, loaded), "application/json")
    assert isinstance(body, str), "output_fn must return the encoded body only (the toolkit sends it as is)"
    results = json.loads(body)
    assert len(results) == 2
    for result in results:
        assert set(result["scores"]) == {"a", "b", "c"} and set(result["thresholds"]) == {"a", "b", "c"}
        assert result["labels"] == [l for l in sorted(result["scores"], key=result["scores"].get, reverse=True)
                                    if result["scores"][l] >= 0.5]


def test_format_results_applies_threshold_override_and_top_k():
    module = mlcore_handler
    probs = np.array([[0.9, 0.2, 0.6]])
    [default] = module.format_results(probs, ["a", "b", "c"], [0.5, 0.5, 0.5])
    assert default["labels"] == ["a", "c"] and default["scores"] == {"a": 0.9, "c": 0.6, "b": 0.2}
    [low] = module.format_results(probs, ["a", "b", "c"], [0.5, 0.5, 0.5], threshold=0.1)
    assert low["labels"] == ["a", "c", "b"] and low["thresholds"]["b"] == 0.1
    [top] = module.format_results(probs, ["a", "b", "c"], [0.5, 0.5, 0.5], threshold=0.1, top_k=1)
    assert top["labels"] == ["a"]


def test_jsonlines_input_and_output():
    module = mlcore_handler
    requests = module.input_fn(b'{"inputs": "x"}\n\n"plain text line"\n{"inputs": ["y", "z"]}\n',
                               "application/jsonlines; charset=utf-8")
    assert [r["texts"] for r in requests] == [["x"], ["plain text line"], ["y", "z"]]
    predictions = [{"results": [{"labels": []}], "single": True}, {"results": [{"labels": ["a"]}] * 2}]
    body = module.output_fn(predictions, "application/jsonlines")
    assert [json.loads(l) for l in body.splitlines()] == [
        {"labels": []}, {"labels": ["a"]}, {"labels": ["a"]}]


@pytest.mark.parametrize("body,content_type,status,needle", [
    ("{", "application/json", 400, "invalid JSON"),
    (b"\xff\xfe", "application/json", 400, "UTF-8"),
    ('{"inputs": []}', "application/json", 400, "non-empty"),
    ('{"inputs": "  "}', "application/json", 400, "inputs[0] is empty"),
    ('{"inputs": [null]}', "application/json", 400, "inputs[0] is NoneType"),
    ('[1, 2]', "application/json", 400, "expected a JSON object"),
    ('{"inputs": "x", "parameters": []}', "application/json", 400, "must be an object"),
    ('{"inputs": "x", "parameters": {"top_k": 0}}', "application/json", 400, "positive integer"),
    ('{"inputs": "x", "parameters": {"top_k": true}}', "application/json", 400, "positive integer"),
    ('{"inputs": "x", "parameters": {"threshold": "0.3"}}', "application/json", 400, "between 0 and 1"),
    ('{"inputs": "x"}\n{oops', "application/jsonlines", 400, "line 2: invalid JSON"),
    ("\n\n", "application/jsonlines", 400, "no records"),
    ("x", "text/csv", 415, "unsupported content type"),
    (json.dumps({"inputs": ["t"] * 257}), "application/json", 413, "limit is 256"),
])
def test_input_errors_carry_status_and_precise_message(body, content_type, status, needle):
    module = mlcore_handler
    with pytest.raises(module.RequestError) as info:
        module.input_fn(body, content_type)
    assert info.value.status == status and needle in str(info.value)


@pytest.mark.parametrize("accept,expected", [
    (None, "application/json"), ("*/*", "application/json"), ("application/jsonlines", "application/jsonlines"),
    ("text/html, application/json;q=0.9", "application/json"), ("text/csv", 406)])
def test_accept_negotiation(accept, expected):
    module = mlcore_handler
    if expected == 406:
        with pytest.raises(module.RequestError) as info:
            module.output_fn([{"results": [{"labels": []}]}], accept)
        assert info.value.status == 406
    else:
        assert module.response_type(accept) == expected


def test_capture_writes_sagemaker_layout_and_rotates(tmp_path):
    from inference.capture import CaptureConfig, CaptureWriter, capture_record

    when = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=timezone.utc)
    record = capture_record("id-1", '{"inputs": "x"}', "application/json", "[]", "application/json", when)
    assert record["eventMetadata"]["inferenceTime"] == "2026-03-04T05:06:07.890Z"
    assert record["captureData"]["endpointInput"] == {"observedContentType": "application/json", "mode": "INPUT",
                                                      "data": '{"inputs": "x"}', "encoding": "JSON"}
    writer = CaptureWriter(CaptureConfig(tmp_path, "ep", max_file_bytes=1))  # every record rotates the file
    for i in range(3):
        writer.submit(capture_record(f"id-{i}", "{}", "application/json", "[]", "application/json"))
        time.sleep(0.05)
    writer.close()
    files = sorted(tmp_path.glob("ep/*/*/*/*/*.jsonl"))
    hour = datetime.now(timezone.utc).strftime("%Y/%m/%d/%H")
    assert len(files) == 3 and all(hour in f.as_posix() for f in files) and writer.written == 3
    ids = sorted(json.loads(f.read_text())["eventMetadata"]["inferenceId"] for f in files)
    assert ids == ["id-0", "id-1", "id-2"]


def test_capture_full_queue_drops_and_counts_without_blocking(tmp_path):
    from inference.capture import CaptureConfig, CaptureWriter

    writer = CaptureWriter(CaptureConfig(tmp_path, "ep", queue_size=1))
    writer._thread.join(0)  # the writer may take one record; the rest must not block
    started = time.perf_counter()
    accepted = [writer.submit({"n": i}) for i in range(200)]
    assert time.perf_counter() - started < 0.5
    assert writer.dropped == accepted.count(False) > 0
    writer.close()


def test_capture_sampling(tmp_path):
    from inference.capture import CaptureConfig, CaptureWriter

    none, some = CaptureWriter(CaptureConfig(tmp_path, sample_percent=0)), CaptureWriter(
        CaptureConfig(tmp_path, sample_percent=50))
    assert not any(none.sampled() for _ in range(500))
    assert 150 < sum(some.sampled() for _ in range(500)) < 350
    none.close(), some.close()


def test_server_config_reads_sagemaker_env_and_cli_overrides(monkeypatch):
    from inference.server import ServerConfig, parse_args

    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "18077")
    monkeypatch.setenv("MLOPS_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("MLOPS_MAX_WAIT_MS", "2.5")
    monkeypatch.setenv("MLOPS_CAPTURE_SAMPLE_PERCENT", "10")
    config = ServerConfig.from_env()
    assert (config.port, config.max_batch_size, config.max_wait_ms, config.capture_sample_percent) == (18077, 8, 2.5, 10.0)
    assert parse_args(["--model-dir", "/m", "--port", "18078"]).port == 18078


def test_a_failing_model_is_a_500_without_a_stack_trace(tmp_path):
    import asyncio

    from inference.server import ServerConfig, create_app

    class Broken:
        label_names, thresholds = ["a"], np.array([0.5])

        def predict_proba(self, texts, batch_size=32):
            raise RuntimeError("secret internal detail")

    app = create_app(ServerConfig(model_dir=str(tmp_path / "none")))
    app.state.model.predictor = Broken()
    app.state.model.ready.set()
    body, sent = json.dumps({"inputs": "x"}).encode(), []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/invocations", "raw_path": b"/invocations", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"x-amzn-sagemaker-inference-id", b"req-9")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080)}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
    assert start["status"] == 500 and (b"x-amzn-sagemaker-inference-id", b"req-9") in start["headers"]
    assert json.loads(text)["error"]["code"] == "internal_error" and "req-9" in text
    assert "secret" not in text and "Traceback" not in text


@pytest.mark.parametrize("env,cores,threads", [
    ({}, 4, 1),  # multi-model-server's default: one worker per vCPU, each on one core
    ({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, 4, 4),
    ({"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}, 4, 2),
    ({"SAGEMAKER_MODEL_SERVER_WORKERS": "8"}, 4, 1),
    ({"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MLOPS_NUM_THREADS": "3"}, 4, 3),
])
def test_workers_times_threads_is_the_core_count(monkeypatch, env, cores, threads):
    for name in ("SAGEMAKER_MODEL_SERVER_WORKERS", "MLOPS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert mlcore_handler.serving_threads(cores) == threads
