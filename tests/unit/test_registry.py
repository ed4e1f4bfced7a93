"""The local model registry: persistence, numbering, status changes, the EventBridge event, locking."""
from __future__ import annotations

import json
import multiprocessing
import re
import tarfile
from datetime import datetime
from pathlib import Path

import pytest

from mlops.cli import main as cli_main
from pipelines.registry import LocalModelRegistry, RegistryError

GROUP = "bert-multilabel"
ARN = re.compile(r"^arn:aws:sagemaker:local:000000000000:model-package/bert-multilabel/(\d+)$")


def _evaluation(f1: float, auc: float | None) -> dict:
    return {
        "multilabel_classification_metrics": {
            "f1_macro": {"value": f1, "standard_deviation": 0.01},
            "roc_auc_macro": {"value": auc, "standard_deviation": 0.02},
            "per_label": {"a": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "roc_auc": None, "support": 1}},
        },
        "n_samples": 20,
        "labels": ["a"],
    }


def _tarball(tmp: Path, content: str = "weights") -> Path:
    src = tmp / f"src-{content}"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"content": content}))
    path = tmp / f"model-{content}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "config.json", arcname="config.json")
    return path


@pytest.fixture
def registry(tmp_path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry")


def test_versions_are_numbered_and_survive_a_new_instance(registry, tmp_path):
    first = registry.register(GROUP, _tarball(tmp_path, "one"), _evaluation(0.5, 0.9), source_run_id="run-1")
    second = registry.register(GROUP, _tarball(tmp_path, "two"), _evaluation(0.6, None), approval_status="Approved")
    assert (first["ModelPackageVersion"], second["ModelPackageVersion"]) == (1, 2)

    reopened = LocalModelRegistry(registry.root)
    packages = reopened.list_packages(GROUP)
    assert [p["ModelPackageVersion"] for p in packages] == [1, 2]
    assert [p["ModelApprovalStatus"] for p in packages] == ["PendingManualApproval", "Approved"]
    described = reopened.describe(GROUP, 1)
    assert ARN.match(described["ModelPackageArn"]).group(1) == "1"
    assert described["Metrics"] == {"f1_macro": 0.5, "roc_auc_macro": 0.9, "n_samples": 20}
    assert reopened.describe(GROUP, 2)["Metrics"]["roc_auc_macro"] is None  # undefined stays null
    assert described["SourceRunId"] == "run-1"
    assert described["MetadataProperties"]["GeneratedBy"].endswith("/execution/run-1")
    version_dir = registry.root / GROUP / "v1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["evaluation.json", "model.tar.gz", "package.json"]
    with tarfile.open(version_dir / "model.tar.gz") as tar:
        assert json.load(tar.extractfile("config.json")) == {"content": "one"}
    assert described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == (version_dir / "model.tar.gz").as_uri()
    assert reopened.latest(GROUP)["ModelPackageVersion"] == 2
    assert reopened.latest(GROUP, status="PendingManualApproval")["ModelPackageVersion"] == 1
    assert not [p for p in (registry.root / GROUP).iterdir() if p.name.startswith(".tmp")]


def test_approve_returns_the_sagemaker_event_and_records_history(registry, tmp_path):
    registry.register(GROUP, _tarball(tmp_path), _evaluation(0.5, 0.9))
    event = registry.update_status(GROUP, "1", "Approved", reason="good enough", by="alice")

    assert event["version"] == "0" and event["source"] == "aws.sagemaker"
    assert event["detail-type"] == "SageMaker Model Package State Change"
    assert event["account"] == "000000000000" and event["region"] == "local"
    assert re.fullmatch(r"[0-9a-f-]{36}", event["id"])
    datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")
    detail = event["detail"]
    assert event["resources"] == [detail["ModelPackageArn"]] and ARN.match(detail["ModelPackageArn"])
    assert detail["ModelPackageGroupName"] == GROUP and detail["ModelPackageVersion"] == 1
    assert detail["ModelApprovalStatus"] == "Approved" and detail["ModelPackageStatus"] == "Completed"
    assert detail["ApprovalDescription"] == "good enough"
    assert isinstance(detail["CreationTime"], int) and detail["LastModifiedTime"] >= detail["CreationTime"]
    model_url = detail["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert model_url.startswith("file://") and Path(model_url[len("file://"):]).is_file()
    assert detail["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith("/v1/evaluation.json")

    package = LocalModelRegistry(registry.root).describe(GROUP, 1)
    assert package["ModelApprovalStatus"] == "Approved"
    history = package["ApprovalHistory"]
    assert [(h["previous"], h["status"]) for h in history] == [(None, "PendingManualApproval"),
                                                               ("PendingManualApproval", "Approved")]
    assert history[-1]["by"] == "alice" and history[-1]["reason"] == "good enough"

    # an approved version may be rejected later, and re-approved; never set back to pending
    assert registry.update_status(GROUP, 1, "Rejected")["detail"]["ModelApprovalStatus"] == "Rejected"
    with pytest.raises(RegistryError, match="is Rejected: it can change to Approved, not PendingManualApproval"):
        registry.update_status(GROUP, 1, "PendingManualApproval")
    with pytest.raises(RegistryError, match="is Rejected: it can change to Approved, not Rejected"):
        registry.update_status(GROUP, 1, "Rejected")
    with pytest.raises(ValueError, match="invalid ModelApprovalStatus 'Deployed'"):
        registry.update_status(GROUP, 1, "Deployed")


def test_unknown_group_and_version_list_what_exists(registry, tmp_path):
    with pytest.raises(RegistryError, match="groups: none yet"):
        registry.list_packages(GROUP)
    registry.register(GROUP, _tarball(tmp_path), _evaluation(0.5, 0.9))
    with pytest.raises(RegistryError, match=r"no model package group 'other'.*groups: bert-multilabel"):
        registry.describe("other", 1)
    with pytest.raises(RegistryError, match="has no version 7; versions: 1"):
        registry.update_status(GROUP, 7, "Approved")
    with pytest.raises(ValueError, match="expected a number"):
        registry.describe(GROUP, "latest")
    with pytest.raises(ValueError, match="invalid model package group name"):
        registry.register("bad name!", _tarball(tmp_path, "x"), _evaluation(0.5, 0.9))
    with pytest.raises(FileNotFoundError, match="model artifact not found"):
        registry.register(GROUP, tmp_path / "missing.tar.gz", _evaluation(0.5, 0.9))


def _register_many(root: str, tarball: str, count: int, queue) -> None:
    registry = LocalModelRegistry(root)
    for _ in range(count):
        queue.put(registry.register(GROUP, tarball, _evaluation(0.5, 0.9))["ModelPackageVersion"])


def test_concurrent_processes_never_share_a_version_number(registry, tmp_path):
    tarball = _tarball(tmp_path)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(str(registry.root), str(tarball), 4, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    versions = sorted(queue.get(timeout=5) for _ in range(12))
    assert versions == list(range(1, 13))
    assert registry.versions(GROUP) == list(range(1, 13))


def test_cli_approve_publishes_the_event_and_lists_the_new_status(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))  # registry fixture lives at <home>/registry
    monkeypatch.delenv("MLOPS_MODEL_PACKAGE_GROUP", raising=False)
    registry.register(GROUP, _tarball(tmp_path), _evaluation(0.4567, 0.9))
    registry.register(GROUP, _tarball(tmp_path, "b"), _evaluation(0.3, 0.7))

    assert cli_main(["registry", "approve", "2", "--reason", "ship it", "--no-deploy", "--verbose"]) == 0
    printed = capsys.readouterr().out
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(events) == 1 and json.loads(printed) == events[0]
    assert events[0]["detail"]["ModelPackageVersion"] == 2 and events[0]["detail"]["ModelApprovalStatus"] == "Approved"

    assert cli_main(["registry", "list"]) == 0
    table = capsys.readouterr().out
    row1 = next(line for line in table.splitlines() if line.startswith("1 "))
    row2 = next(line for line in table.splitlines() if line.startswith("2 "))
    assert "PendingManualApproval" in row1 and "0.4567" in row1
    assert "Approved" in row2 and "0.3000" in row2

    assert cli_main(["registry", "describe", "2"]) == 0
    described = capsys.readouterr().out
    assert "ship it" in described and re.search(r"roc_auc_macro\s+0\.7000", described)

    assert cli_main(["registry", "reject", "9"]) == 2
    assert "has no version 9; versions: 1, 2" in capsys.readouterr().err
    assert cli_main(["registry", "approve", "2"]) == 2
    assert "is Approved: it can change to Rejected" in capsys.readouterr().err
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 1
