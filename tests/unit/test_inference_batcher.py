"""The server's batcher: where model calls run (event loop or model thread) and whose request a failure fails."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from inference.batching import Batcher
from inference.metrics import ServerMetrics


class RecordingModel:
    """A model edge that records each call's texts and thread; a text "boom" raises, "slow" takes 50 ms."""

    def __init__(self):
        self.calls: list[tuple[list[str], str]] = []

    def predict_proba(self, texts, batch_size=32, progress=False):
        self.calls.append((list(texts), threading.current_thread().name))
        if "boom" in texts:
            raise ValueError("boom")
        if "slow" in texts:
            threading.Event().wait(0.05)
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)


async def serve(model, inline_texts, requests, max_batch_size=32):
    batcher = Batcher(model, max_batch_size, max_wait_ms=0, metrics=ServerMetrics(), inline_texts=inline_texts)
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.predict(texts) for texts in requests), return_exceptions=True)
    finally:
        batcher.task.cancel()
        batcher.executor.shutdown(wait=True)


def test_a_lone_short_request_runs_on_the_event_loop_and_a_queue_goes_to_the_model_thread():
    model = RecordingModel()
    loop_thread = threading.current_thread().name

    async def scenario():
        alone = await serve(model, 1, [["hello"]])
        burst = await serve(model, 1, [["slow"], *([f"text {i}"] for i in range(8))])
        two_texts = await serve(model, 1, [["one", "two"]])
        one_at_a_time = await serve(model, 1, [["first"], ["second"]], max_batch_size=1)
        return alone, burst, two_texts, one_at_a_time

    alone, burst, two_texts, one_at_a_time = asyncio.run(scenario())
    assert alone[0].tolist() == [[5.0]] and two_texts[0].tolist() == [[3.0], [3.0]]
    assert [r.tolist() for r in burst[1:]] == [[[6.0]]] * 8  # each request gets its own row back
    assert [r.tolist() for r in one_at_a_time] == [[[5.0]], [[6.0]]]
    texts, threads = [c[0] for c in model.calls], [c[1] for c in model.calls]
    assert texts[0] == ["hello"] and threads[0] == loop_thread  # alone, one text: no hand-off
    assert len(texts[1]) == 9 and threads[1].startswith("model")  # nine queued texts in one call, off the loop
    assert texts[2] == ["one", "two"] and threads[2].startswith("model")  # over inline_texts=1
    # one text but another request queued behind it: the model thread (the loop stays free to read requests)
    assert texts[3:] == [["first"], ["second"]]
    assert threads[3].startswith("model") and threads[4] == loop_thread


def test_inline_off_runs_everything_on_the_model_thread():
    model = RecordingModel()
    asyncio.run(serve(model, 0, [["hello"]]))
    assert model.calls[0][1].startswith("model")


@pytest.mark.parametrize("inline_texts", [0, 1])
def test_a_failing_request_fails_alone_inline_or_not(inline_texts):
    model = RecordingModel()
    results = asyncio.run(serve(model, inline_texts, [["slow"], ["boom"], ["fine"]]))
    assert results[0].tolist() == [[4.0]] and results[2].tolist() == [[4.0]]
    assert isinstance(results[1], ValueError) and str(results[1]) == "boom"


@pytest.mark.parametrize("env, value, message", [
    ("MLOPS_INLINE_TEXTS", "-1", "inline_texts (MLOPS_INLINE_TEXTS) must be >= 0, got -1"),
    ("MLOPS_CALL_COST_TOKENS", "-5", "call_cost_tokens (MLOPS_CALL_COST_TOKENS) must be >= 0, got -5.0"),
    ("MLOPS_MAX_BATCH_SIZE", "0", "max_batch_size (MLOPS_MAX_BATCH_SIZE) must be >= 1, got 0"),
    ("MLOPS_INLINE_TEXTS", "one", "MLOPS_INLINE_TEXTS='one' is not an integer"),
])
def test_the_server_refuses_a_bad_setting_by_name_with_exit_2(monkeypatch, capsys, env, value, message):
    from inference.server import main

    monkeypatch.setenv(env, value)
    assert main(["--model-dir", "/nonexistent"]) == 2
    assert message in capsys.readouterr().err


def test_server_settings_come_from_env_vars_and_overrides(monkeypatch):
    from inference.server import ServerConfig

    monkeypatch.setenv("MLOPS_INLINE_TEXTS", "4")
    config = ServerConfig.from_env(call_cost_tokens=64.0)
    assert (config.inline_texts, config.call_cost_tokens) == (4, 64.0)
