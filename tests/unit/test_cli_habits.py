"""The CLI as `aws` and `sam` users expect it: --version, did-you-mean, lists as JSON or tables, the serving
marker, a closed pipe, exit codes, one flag per line in help, `mlops runs list`, and `mlops gc`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.cli import main
from mlops.settings import Settings
from pipelines import spec
from pipelines.registry import LocalModelRegistry
from tests.helpers.paths import REPO_ROOT

EVALUATION = {"multilabel_classification_metrics": {"f1_macro": {"value": 0.8}, "roc_auc_macro": {"value": 0.9}}}


def mlops_process(*argv: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlops", *argv], cwd=REPO_ROOT, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}, **kwargs)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    return Settings.from_env()


def register(settings: Settings, tmp_path: Path, n: int, run_ids=()) -> LocalModelRegistry:
    registry = LocalModelRegistry(settings.registry_dir)
    for i in range(n):
        tarball = tmp_path / f"model-{i}.tar.gz"
        tarball.write_bytes(os.urandom(2048))  # 2 KiB of model each
        registry.register(settings.model_package_group, tarball, EVALUATION,
                          source_run_id=run_ids[i] if i < len(run_ids) else None)
    return registry


def disk_usage(root: Path) -> int:
    """Bytes of the files under `root`, each file once however many links it has (as `du` counts)."""
    seen = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.lstat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def serve(settings: Settings, version: int) -> None:
    """The local endpoint's state as a deployment leaves it (this test process stands in for the server)."""
    state = settings.home / "endpoints" / spec.ENDPOINT_NAME / "state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"version": version, "url": "http://127.0.0.1:9", "pid": os.getpid()}))


def test_version_and_did_you_mean():
    shown = mlops_process("--version", capture_output=True)
    assert shown.returncode == 0 and shown.stdout.startswith("mlops 0.1.0")
    typo = mlops_process("registy", "list", capture_output=True)
    assert typo.returncode == 2 and "did you mean: registy -> registry?" in typo.stderr
    flag = mlops_process("run", "--no-cahce", capture_output=True)
    assert flag.returncode == 2 and "did you mean: --no-cahce -> --no-cache?" in flag.stderr


def test_registry_list_as_json_marks_the_serving_version(home, tmp_path, capsys):
    assert main(["registry", "list", "--output", "json"]) == 0 and json.loads(capsys.readouterr().out) == []
    registry = register(home, tmp_path, 3)
    registry.update_status(home.model_package_group, 2, "Approved")
    serve(home, 2)
    assert main(["registry", "list", "--output", "json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [(i["Version"], i["Status"], i["Serving"]) for i in items] == [
        (1, "PendingManualApproval", False), (2, "Approved", True), (3, "PendingManualApproval", False)]
    assert items[0]["f1_macro"] == 0.8 and len(items[0]["ModelSha256"]) == 64
    assert main(["registry", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:2] == ["VERSION", "SERVING"]
    assert [line.split()[:2] for line in table[3:]] == [["1", "PendingManualApproval"], ["2", "*"],
                                                        ["3", "PendingManualApproval"]]  # the serving one, marked


def test_a_closed_pipe_ends_quietly_with_141(home, tmp_path):
    register(home, tmp_path, 1)
    read, write = os.pipe()
    os.close(read)  # `| head` that has already gone
    proc = mlops_process("registry", "describe", "1", "--json", env={"MLOPS_HOME": str(home.home)}, stdout=write,
                         stderr=subprocess.PIPE)
    os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""  # no BrokenPipeError traceback


def test_monitor_help_lists_each_flag_once_and_booleans_are_switches(capsys):
    with pytest.raises(SystemExit):
        main(["monitor", "run", "--help"])
    text = capsys.readouterr().out
    assert text.count("--min-labelled-samples") == 2  # usage line + its description, nothing more
    assert "--min_labelled_samples" not in text
    assert "--include-late-labels | --no-include-late-labels" in " ".join(text.split())
    with pytest.raises(SystemExit) as exit_info:
        main(["monitor", "run", "--include-late-labels", "true"])  # a switch takes no value
    assert exit_info.value.code == 2


def test_runs_list_shows_each_run_and_what_it_registered(home, capsys):
    for run_id, status, started, version in (("20240101-000000-aaaaaa", "Succeeded", "2024-01-01T00:00:00+00:00", 1),
                                              ("20240102-000000-bbbbbb", "Failed", "2024-01-02T00:00:00+00:00", None)):
        run_dir = home.runs_dir / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps({
            "run_id": run_id, "run_dir": str(run_dir), "status": status, "started": started,
            "finished": started.replace("00:00:00+", "00:01:30+"), "parameters": {"InputData": "demo"},
            "steps": [{"name": spec.TRAIN, "status": "cached", "duration_s": 0.1}],
            "model_package": {"ModelPackageVersion": version} if version else None,
            "failure": None if version else "the model did not pass the quality gate"}))
    assert main(["runs", "list", "--output", "json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [(i["RunId"][-6:], i["Status"], i["ModelPackageVersion"], i["DurationSeconds"], i["Cached"])
            for i in items] == [("bbbbbb", "Failed", None, 90.0, 1), ("aaaaaa", "Succeeded", 1, 90.0, 1)]
    assert main(["runs", "list", "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert "bbbbbb" in out and "aaaaaa" not in out and "quality gate" in out


def test_gc_keeps_the_newest_the_approved_and_the_serving_version_and_what_they_need(home, tmp_path, capsys):
    runs = [f"2024010{i}-000000-run{i:03d}" for i in range(1, 7)]
    for i, run_id in enumerate(runs):  # six runs, oldest first; each with a cache entry of its own
        run_dir = home.runs_dir / run_id
        (run_dir / spec.TRAIN).mkdir(parents=True)
        (run_dir / spec.TRAIN / "weights.bin").write_bytes(os.urandom(4096))
        entry = home.cache_dir / spec.TRAIN / f"key{i}"
        entry.mkdir(parents=True)
        os.link(run_dir / spec.TRAIN / "weights.bin", entry / "weights.bin")  # cache entries share run files
        (run_dir / "run.json").write_text(json.dumps({"run_id": run_id, "status": "Succeeded",
                                                      "started": f"2024-01-0{i + 1}T00:00:00+00:00",
                                                      "steps": [{"name": spec.TRAIN, "cache_key": f"key{i}"}]}))
    registry = register(home, tmp_path, 6, run_ids=runs)
    registry.update_status(home.model_package_group, 1, "Approved")  # the oldest is Approved
    serve(home, 2)  # and the next one serves
    for v in (2, 3):
        (home.home / "endpoints" / spec.ENDPOINT_NAME / f"v{v}" / "model").mkdir(parents=True)

    assert main(["gc", "--keep-runs", "2", "--keep-versions", "2", "--dry-run", "--output", "json"]) == 0
    planned = {(i["Kind"], i["Name"]) for i in json.loads(capsys.readouterr().out)}
    assert planned == {("model version", "v3"), ("model version", "v4"), ("run", runs[2]), ("run", runs[3]),
                       ("cache entry", f"{spec.TRAIN}/key2"), ("cache entry", f"{spec.TRAIN}/key3"),
                       ("extracted model", "endpoint v3")}
    assert [p["ModelPackageVersion"] for p in registry.list_packages(home.model_package_group)] == [1, 2, 3, 4, 5, 6]

    before = disk_usage(home.home)
    assert main(["gc", "--keep-runs", "2", "--keep-versions", "2"]) == 0
    out = capsys.readouterr().out
    assert [p["ModelPackageVersion"] for p in registry.list_packages(home.model_package_group)] == [1, 2, 5, 6]
    assert sorted(p.name for p in home.runs_dir.iterdir()) == [runs[0], runs[1], runs[4], runs[5]]
    assert sorted(p.name for p in (home.cache_dir / spec.TRAIN).iterdir()) == ["key0", "key1", "key4", "key5"]
    assert not (home.home / "endpoints" / spec.ENDPOINT_NAME / "v3" / "model").exists()
    assert (home.home / "endpoints" / spec.ENDPOINT_NAME / "v2" / "model").exists()
    # what it says it freed is what the disk lost (files shared by a run and its cache entry counted once)
    freed = int(out.strip().splitlines()[-1].split()[1])
    assert freed == before - disk_usage(home.home) and freed > 2 * 4096 + 2 * 2048, out
    assert main(["gc", "--keep-runs", "2", "--keep-versions", "2"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert main(["gc", "--keep-versions", "0"]) == 2
