"""SageMaker's failure file (the training job's FailureReason), written by steps/train.py in a container only."""
from __future__ import annotations

import pytest

from mlcore.config import write_failure_reason


@pytest.fixture
def container(monkeypatch, tmp_path):
    for name in ("SM_OUTPUT_FAILURE", "SM_OUTPUT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_outside_a_container_nothing_is_written(container):
    assert write_failure_reason("train.py: error: bad") is None
    assert not list(container.iterdir())


def test_sagemaker_trainings_output_dir(container, monkeypatch):
    monkeypatch.setenv("SM_OUTPUT_DIR", str(container))
    assert write_failure_reason("train.py: error: argument --epochs: invalid float value: 'abc'\n") == container / "failure"
    assert (container / "failure").read_text() == "train.py: error: argument --epochs: invalid float value: 'abc'\n"


def test_the_sdk_drivers_failure_file_wins_and_a_present_file_is_kept(container, monkeypatch):
    monkeypatch.setenv("SM_OUTPUT_DIR", str(container / "elsewhere"))
    monkeypatch.setenv("SM_OUTPUT_FAILURE", str(container / "failure"))
    assert write_failure_reason("first") == container / "failure"
    assert write_failure_reason("second") is None
    assert (container / "failure").read_text() == "first\n"
