"""MLflow tracking degrades to a warning: a tracking server that cannot be reached never fails a step."""
from __future__ import annotations

import logging

from mlcore import tracking


def test_unreachable_tracking_server_is_a_warning_not_a_failure(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens
    with caplog.at_level(logging.WARNING, logger="mlcore.tracking"):
        assert tracking.Run.start(unreachable, "x", "run") is None
        monkeypatch.setenv("MLFLOW_TRACKING_URI", unreachable)
        assert tracking.Run.open(run_name="job") is None  # a step: logs nothing, goes on
    ours = [r for r in caplog.records if r.name == "mlcore.tracking"]  # MLflow may warn on its own too
    assert [r.getMessage().split(":")[0] for r in ours] == ["MLflow tracking off"] * 2
    assert all(unreachable in r.getMessage() for r in ours)


def test_steps_do_not_track_without_a_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.Run.open() is None
    tracking.log_epoch(None, {"epoch": 1, "train_loss": 0.5})  # no run: nothing to do, no error
