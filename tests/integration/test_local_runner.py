"""The local pipeline end to end with the real step scripts and a tiny BERT: register, gate, cache, fail."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from mlops.cli import main as cli_main
from pipelines import spec
from pipelines.registry import LocalModelRegistry
from tests.helpers.data import keyword_rows

# Small and fast: one epoch over ~160 rows of a tiny BERT, no ONNX export.
FAST = ["--epochs", "1", "-p", "MaxLength=32", "--hp", "batch_size=16", "--hp", "export_onnx=false",
        "--hp", "threshold_grid=5", "--hp", "progress=true"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_base_model):
    """A home directory and a 200-row JSONL dataset of the steps' input format."""
    root = tmp_path_factory.mktemp("runner")
    data = root / "input" / "data.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps(row) + "\n" for row in keyword_rows(200, seed=3)))
    return {"home": root / "home", "input": data, "base": tiny_base_model}


@pytest.fixture
def mlops(world, monkeypatch, capsys):
    """Run the CLI in the module's home; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("MLOPS_HOME", str(world["home"]))
    monkeypatch.delenv("MLOPS_MODEL_PACKAGE_GROUP", raising=False)

    def run(*argv: str):
        status = cli_main(list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def _run_json(stdout: str) -> dict:
    path = next(line.split(": ", 1)[1] for line in stdout.splitlines() if line.startswith("run metadata: "))
    return json.loads(Path(path).read_text())


def _statuses(run: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in run["steps"]}


def _mlflow_run(home: Path, run_id: str):
    """The MLflow run of pipeline run `run_id`, read back with MLflow's own client from the embedded store."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(spec.PIPELINE_NAME)
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{run_id}'")
    return client, run


@pytest.mark.slow
def test_passing_gate_registers_then_rerun_is_cached_and_a_strict_gate_fails(world, mlops):
    base = ["run", "--input", str(world["input"]), "--base-model", str(world["base"]), *FAST]
    status, out, err = mlops(*base, "-p", "F1Threshold=0", "-p", "RocAucThreshold=0")
    assert status == 0, out[-3000:] + err[-2000:]
    run1 = _run_json(out)
    assert _statuses(run1) == {spec.PREPROCESS: "succeeded", spec.TRAIN: "succeeded", spec.EVALUATE: "succeeded",
                               spec.CHECK: "succeeded", spec.REGISTER: "succeeded", spec.FAIL: "skipped"}
    assert run1["status"] == "Succeeded" and run1["parameters"]["Epochs"] == 1.0
    assert "[TrainModel] " in out and "[EvaluateModel] " in out  # live, prefixed step output
    train_log = Path(next(s["log"] for s in run1["steps"] if s["name"] == spec.TRAIN)).read_text()
    assert "eval_f1_macro=" in train_log  # the metric line SageMaker's regex reads

    registry = LocalModelRegistry(world["home"] / "registry")
    packages = registry.list_packages(spec.MODEL_PACKAGE_GROUP)
    assert [p["ModelPackageVersion"] for p in packages] == [1]
    package = packages[0]
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["SourceRunId"] == run1["run_id"]
    evaluation = json.loads((registry.version_dir(spec.MODEL_PACKAGE_GROUP, 1) / "evaluation.json").read_text())
    f1 = evaluation["multilabel_classification_metrics"]["f1_macro"]["value"]
    assert package["Metrics"]["f1_macro"] == f1
    with tarfile.open(registry.model_path(spec.MODEL_PACKAGE_GROUP, 1)) as tar:
        names = set(tar.getnames())
    assert {"config.json", "thresholds.json", "code/inference.py"} <= names  # contents at the tar root
    events = [json.loads(l) for l in (world["home"] / "events.jsonl").read_text().splitlines()]
    assert events[-1]["detail"]["ModelPackageVersion"] == 1
    # MLflow: the run, with the evaluation's f1_macro, the parameters, each epoch, the plots, the registered version
    client, tracked = _mlflow_run(world["home"], run1["run_id"])
    assert tracked.info.status == "FINISHED" and tracked.data.metrics["f1_macro"] == f1
    assert tracked.data.params["Epochs"] == "1.0" and tracked.data.params["batch_size"] == "16"
    assert [m.step for m in client.get_metric_history(tracked.info.run_id, "eval_f1_macro")] == [1]
    assert tracked.data.tags["registered_version"] == "1"
    assert {"evaluation/evaluation.json", "evaluation/roc_curves.png"} <= \
        {a.path for a in client.list_artifacts(tracked.info.run_id, "evaluation")}
    assert (world["home"] / "mlartifacts").is_dir()

    # same data, code and hyperparameters, a gate no model meets: all three steps cached, FailStep
    status, out, err = mlops(*base, "-p", "F1Threshold=1", "-p", "RocAucThreshold=0")
    assert status == 1, out[-3000:]
    run2 = _run_json(out)
    assert _statuses(run2) == {spec.PREPROCESS: "cached", spec.TRAIN: "cached", spec.EVALUATE: "cached",
                               spec.CHECK: "succeeded", spec.REGISTER: "skipped", spec.FAIL: "failed"}
    assert f"f1_macro={f1:.4f} < F1Threshold=1.0" in run2["failure"]
    assert "roc_auc_macro=" in run2["failure"] and ">= RocAucThreshold=0.0" in run2["failure"]
    assert "Execution failed" in out and run2["failure"] in out
    assert [p["ModelPackageVersion"] for p in registry.list_packages(spec.MODEL_PACKAGE_GROUP)] == [1]
    assert Path(run2["run_dir"], spec.EVALUATE, "evaluation", "evaluation.json").exists()
    # cached steps did not run, so the runner logs what they produced: the run is as complete as a fresh one's
    client, tracked = _mlflow_run(world["home"], run2["run_id"])
    assert tracked.info.status == "FAILED" and tracked.data.metrics["f1_macro"] == f1
    assert [m.step for m in client.get_metric_history(tracked.info.run_id, "eval_f1_macro")] == [1]
    assert "registered_version" not in tracked.data.tags

    # --no-cache runs the steps again
    status, out, _ = mlops(*base, "--no-cache", "-p", "F1Threshold=1")
    assert status == 1 and _statuses(_run_json(out))[spec.PREPROCESS] == "succeeded"


def test_a_failing_step_shows_its_last_lines_and_log_and_skips_the_rest(world, mlops):
    status, out, err = mlops("run", "--input", str(world["input"]), "--base-model", "no-such-org/no-such-model",
                             *FAST)
    assert status == 2, out[-3000:] + err[-2000:]  # the training step refused its input (exit status 2)
    run = _run_json(out)
    statuses = _statuses(run)
    assert statuses[spec.TRAIN] == "failed"
    assert {statuses[s] for s in (spec.EVALUATE, spec.CHECK, spec.REGISTER, spec.FAIL)} == {"skipped"}
    log = Path(run["run_dir"]) / spec.TRAIN / "step.log"
    assert f"Full log: {log}" in out and "TrainModel failed (exit status" in out
    assert "no-such-org/no-such-model" in log.read_text()


def test_bad_parameters_are_rejected_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))

    def mlops(*argv):
        status = cli_main(list(argv))
        return status, "", capsys.readouterr().err

    status, _, err = mlops("run", "-p", "Epoch=2")
    assert status == 2 and "unknown pipeline parameter 'Epoch'" in err and "Epochs" in err
    status, _, err = mlops("run", "--input", str(tmp_path / "missing.csv"))
    assert status == 2 and "InputData path not found" in err
    status, _, err = mlops("run", "-p", "ModelApprovalStatus=Maybe")
    assert status == 2 and "PendingManualApproval, Approved, Rejected" in err
    status, _, err = mlops("run", "--epochs", "2", "-p", "Epochs=3")
    assert status == 2 and "Epochs given twice" in err
    assert not (tmp_path / "home" / "runs").exists()


# ----------------------------------------------------------------------------------------------
# Runner mechanics with small stand-in step scripts that honour the same file contracts (no
# torch, ~1 s): which steps rerun after a change, and what a step that lies about success gives.
STANDIN_PREPROCESS = '''
import argparse, json, pathlib
p = argparse.ArgumentParser(); p.add_argument("--input"); p.add_argument("--output-dir"); p.add_argument("--data-version")
a = p.parse_args()
rows = pathlib.Path(a.input).read_text().splitlines()
for split in ("train", "validation", "test"):
    d = pathlib.Path(a.output_dir) / split; d.mkdir(parents=True, exist_ok=True)
    (d / "data.jsonl").write_text("\\n".join(rows) + "\\n")
    (d / "labels.json").write_text(json.dumps({"labels": ["a"]}))
print("rows", len(rows))
'''
STANDIN_TRAIN = '''
import os, pathlib, sys
for pct in (0, 50, 100):
    sys.stderr.write(f"\\rtrain {pct}%"); sys.stderr.flush()
sys.stderr.write("\\n")
model = pathlib.Path(os.environ["SM_MODEL_DIR"])
(model / "config.json").write_text(os.environ["SM_HPS"])
print("epochs", sys.argv[sys.argv.index("--epochs") + 1])
'''
STANDIN_EVALUATE = '''
import argparse, json, pathlib, tarfile
p = argparse.ArgumentParser()
for flag in ("--model-path", "--test-dir", "--output-dir"): p.add_argument(flag)
a = p.parse_args()
assert "config.json" in tarfile.open(a.model_path).getnames()
out = pathlib.Path(a.output_dir); out.mkdir(parents=True, exist_ok=True)
m = {"f1_macro": {"value": 0.5, "standard_deviation": 0.0}, "roc_auc_macro": {"value": 0.7, "standard_deviation": 0.0}}
(out / "evaluation.json").write_text(json.dumps({"multilabel_classification_metrics": m, "n_samples": 1, "labels": ["a"]}))
'''


@pytest.fixture
def standin(tmp_path):
    steps = tmp_path / "steps"
    steps.mkdir()
    for name, text in (("preprocess.py", STANDIN_PREPROCESS), ("train.py", STANDIN_TRAIN),
                       ("evaluate.py", STANDIN_EVALUATE)):
        (steps / name).write_text(text)
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "apple", "labels": ["a"]}\n')
    from mlops.settings import Settings

    return {"steps": steps, "data": data, "settings": Settings(home=tmp_path / "home")}


def _standin_run(standin, **params):
    import io

    from pipelines.local_runner import run_pipeline

    out = io.StringIO()
    result = run_pipeline({"InputData": str(standin["data"]), "RocAucThreshold": 0, **params},
                          standin["settings"], steps_dir=standin["steps"], out=out)
    return result, out.getvalue()


def test_runner_reruns_exactly_the_steps_whose_code_arguments_or_inputs_changed(standin):
    first, out = _standin_run(standin)
    assert first.status == "Succeeded" and first.model_package["ModelPackageVersion"] == 1
    assert "[TrainModel] train 0%" in out and "[TrainModel] epochs 3.0" in out
    assert "train 100%" in Path(first.step(spec.TRAIN).log).read_text()

    second, _ = _standin_run(standin, Epochs="2")  # a training argument changed
    assert [second.step(s).status for s in (spec.PREPROCESS, spec.TRAIN, spec.EVALUATE)] == \
        ["cached", "succeeded", "succeeded"]

    (standin["steps"] / "evaluate.py").write_text(STANDIN_EVALUATE + "\nprint('v2')\n")  # code changed
    third, _ = _standin_run(standin, Epochs="2")
    assert [third.step(s).status for s in (spec.PREPROCESS, spec.TRAIN, spec.EVALUATE)] == \
        ["cached", "cached", "succeeded"]

    standin["data"].write_text('{"text": "banana", "labels": ["a"]}\n')  # input content changed
    fourth, _ = _standin_run(standin, Epochs="2", F1Threshold="0.6")
    assert [fourth.step(s).status for s in (spec.PREPROCESS, spec.TRAIN, spec.EVALUATE)] == \
        ["succeeded", "succeeded", "succeeded"]
    assert fourth.status == "Failed" and "f1_macro=0.5000 < F1Threshold=0.6" in fourth.failure
    # the third run's model is byte-identical to the second's (training was cached): not registered again
    assert third.status == "Succeeded" and third.model_package_reused
    assert third.model_package["ModelPackageVersion"] == 2 and "identical to bert-multilabel v2" in \
        third.step(spec.REGISTER).summary
    assert [p["ModelPackageVersion"] for p in LocalModelRegistry(standin["settings"].registry_dir)
            .list_packages(spec.MODEL_PACKAGE_GROUP)] == [1, 2]
    saved = json.loads((fourth.run_dir / "run.json").read_text())
    assert saved["status"] == "Failed" and saved["parameters"]["F1Threshold"] == 0.6

    # a new DataVersion reads InputData again (as a scheduled run does); the same rows then reuse the rest
    fifth, _ = _standin_run(standin, Epochs="2", F1Threshold="0.6", DataVersion="2026-11-30T03:00:00Z")
    assert [fifth.step(s).status for s in (spec.PREPROCESS, spec.TRAIN, spec.EVALUATE)] == \
        ["succeeded", "cached", "cached"]


def test_null_metric_fails_the_gate_and_a_silent_step_is_a_failure(standin):
    # an undefined (null) metric never reaches a threshold, even 0
    (standin["steps"] / "evaluate.py").write_text(STANDIN_EVALUATE.replace('"value": 0.7', '"value": None'))
    gated, _ = _standin_run(standin, RocAucThreshold="0", F1Threshold="0")
    assert gated.status == "Failed" and "roc_auc_macro=null < RocAucThreshold=0.0" in gated.failure

    (standin["steps"] / "evaluate.py").write_text("print('did nothing')\n")
    broken, _out = _standin_run(standin)
    assert broken.step(spec.EVALUATE).status == "failed"
    assert "exited 0 but wrote no evaluation.json" in broken.failure
    assert broken.step(spec.CHECK).status == "skipped" and broken.model_package is None


def test_a_rerun_with_everything_cached_adds_no_version_and_emits_no_event(standin):
    events = []
    from pipelines.local_runner import run_pipeline

    def run():
        return run_pipeline({"InputData": str(standin["data"]), "RocAucThreshold": 0}, standin["settings"],
                            steps_dir=standin["steps"], out=__import__("io").StringIO(), on_event=events.append)

    first, second = run(), run()
    assert [second.step(s).status for s in (spec.PREPROCESS, spec.TRAIN, spec.EVALUATE)] == ["cached"] * 3
    assert second.status == "Succeeded" and second.model_package_reused
    assert second.model_package["ModelPackageArn"] == first.model_package["ModelPackageArn"]
    registry = LocalModelRegistry(standin["settings"].registry_dir)
    assert [p["ModelPackageVersion"] for p in registry.list_packages(spec.MODEL_PACKAGE_GROUP)] == [1]
    assert len(events) == 1  # only the first registration changed anything
    assert len(list((registry.version_dir(spec.MODEL_PACKAGE_GROUP, 1)).glob("*.tar.gz"))) == 1
    # the cached run's outputs are the cache entry's files (hard links), not copies
    tarball = second.run_dir / spec.TRAIN / "output" / "model.tar.gz"
    assert tarball.stat().st_nlink >= 2


def test_quiet_runs_keep_library_output_in_the_step_log(standin):
    (standin["steps"] / "train.py").write_text(STANDIN_TRAIN + """
sys.stderr.write("/x/torch/onnx/utils.py:9: TracerWarning: Converting a tensor to a Python boolean\\n")
sys.stderr.write("[transformers] BertForSequenceClassification LOAD REPORT from: /base\\n")
sys.stderr.write("train: 100%|##########| 3/3 [00:01<00:00]\\n")
print("eval_f1_macro=0.5")
""")
    import io

    from pipelines.local_runner import run_pipeline

    out = io.StringIO()
    result = run_pipeline({"InputData": str(standin["data"]), "RocAucThreshold": 0}, standin["settings"],
                          steps_dir=standin["steps"], out=out, verbose=False)
    shown = out.getvalue()
    assert result.status == "Succeeded", shown
    assert "[TrainModel] eval_f1_macro=0.5" in shown and "train: 100%" in shown  # metrics and progress
    assert "TracerWarning" not in shown and "LOAD REPORT" not in shown
    log = Path(result.step(spec.TRAIN).log)
    # the bar's last state, the TracerWarning and the LOAD REPORT: in the log, counted on the console
    assert f"(3 line(s) of library output in {log}; --verbose shows them here)" in shown
    assert "TracerWarning" in log.read_text() and "LOAD REPORT" in log.read_text()
    verbose = io.StringIO()
    run_pipeline({"InputData": str(standin["data"]), "RocAucThreshold": 0}, standin["settings"], cache=False,
                 steps_dir=standin["steps"], out=verbose, verbose=True)
    assert "TracerWarning" in verbose.getvalue()


def test_a_dataset_the_step_refuses_exits_2_and_the_hinted_flags_exist(tmp_path, monkeypatch, capsys):
    """`mlops run` on a CSV whose columns are not found: the preprocessing step says which flag to pass, that
    flag exists on `mlops run`, and the exit status is 2 (bad input), as its help says."""
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    data = tmp_path / "tickets.csv"
    data.write_text("ticket,queue\n" + "".join(f"message number {i},{'x' if i % 2 else 'y'}\n" for i in range(40)))
    status = cli_main(["run", "--input", str(data)])
    out = capsys.readouterr().out
    assert status == 2, out[-2000:]
    assert "--text-column" in out
    status = cli_main(["run", "--input", str(data), "--text-column", "ticket", "--label-column", "queue",
                       "--base-model", "no-such-org/no-such-model"])
    out = capsys.readouterr().out
    run = _run_json(out)
    assert _statuses(run)[spec.PREPROCESS] == "succeeded", out[-2000:]  # the flags reached the step
    assert status == 2 and _statuses(run)[spec.TRAIN] == "failed"  # the unknown base model: bad input too
