"""Shared fixtures: tiny BERT models (fast), GoEmotions when present; helpers live in tests/helpers/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.models import save_tiny_bert, train_tiny_classifier
from tests.helpers.paths import GOEMOTIONS_DIR

# Tests share 2 cores with each other; keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """A tiny random BERT base checkpoint (directory) for fast training tests."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny untrained packaged classifier over labels a, b, c (for contract tests)."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-clf"), labels=["a", "b", "c"])


@pytest.fixture(scope="session")
def goemotions_dir() -> Path:
    if not (GOEMOTIONS_DIR / "train.tsv").exists():
        pytest.skip(f"GoEmotions not found at {GOEMOTIONS_DIR} (it lives in ../shared beside the repo)")
    return GOEMOTIONS_DIR


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory, tiny_base_model) -> tuple[Path, Path]:
    """(complete model, serving artifact) of a tiny classifier over labels a, b, c that really learned."""
    return train_tiny_classifier(tmp_path_factory.mktemp("trained-tiny"), tiny_base_model)


@pytest.fixture(scope="session")
def trained_tiny_model(tiny_classifier) -> Path:
    """The complete model directory (torch weights and every ONNX export) of the tiny classifier."""
    return tiny_classifier[0]


@pytest.fixture(scope="session")
def packaged_tiny_model(tiny_classifier) -> Path:
    """The tiny classifier's serving artifact, as the training step leaves SM_MODEL_DIR (onnx-int8 + code/)."""
    return tiny_classifier[1]
