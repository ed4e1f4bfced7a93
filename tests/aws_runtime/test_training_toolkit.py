"""steps/train.py as the training container runs it, two ways, offline, under a temporary /opt/ml.

1. sagemaker-training's entry point (`train`, the console script of `sagemaker_training.cli.train`, which
   calls `trainer.train()`), as a script-mode image runs it: SAGEMAKER_BASE_DIR is the temp root (the
   toolkit's own switch for /opt/ml), the step source bundle sits in its `code/` with SAGEMAKER_PROGRAM=
   train.py and SAGEMAKER_SUBMIT_DIRECTORY pointing at it (as images set them; sagemaker-training 5.1.4
   takes the submit directory from the `sagemaker_submit_directory` hyperparameter or `code/`, never from
   that variable, so the bundle must be in `code/`), the hyperparameters the pipeline sends are JSON-
   encoded in input/config/hyperparameters.json as the SDK's estimators encode them. The toolkit really
   installs the bundle's requirements.txt: pip runs with no index, so it must find them satisfied.
   SM_STUDIO_LOCAL_MODE=true is the toolkit's switch to skip waiting for the host name `algo-1` to
   resolve (it resolves only on SageMaker's network); it changes nothing else.
2. What the pipeline really runs: `sagemaker.train.ModelTrainer` replaces the image's entry point with its
   own `sm_train.sh` and drivers, uploaded as the `sm_drivers` channel; its torchrun driver launches train.py
   (one process per GPU; also with two processes, as on a 2-GPU instance). The channels of the definition
   built against moto (code, sm_drivers, train, validation) are downloaded from moto S3 to
   <root>/input/data/<channel>, and `/bin/bash -c "... sm_train.sh"` (the definition's entry point and
   arguments) runs. Those scripts hard-code /opt/ml: rewriting it to the temp root in the sm_drivers
   files and in the arguments is the one change.
Both must leave the serving artifact in model/, the complete model in output/data/model/ and no failure;
a bad hyperparameter must fail with a failure file (SageMaker's FailureReason) that names the problem.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from mlcore.config import TrainingConfig
from pipelines import spec
from pipelines.source_bundle import step_source_bundle
from tests.helpers import sagemaker_jobs as jobs
from tests.helpers.data import keyword_rows, write_split_dir
from tests.helpers.servers import free_port

# Trains in seconds: a tiny BERT, few rows, two epochs, high learning rates.
TINY = TrainingConfig(batch_size=16, head_learning_rate=5e-3, warmup_ratio=0.0, weight_decay=0.0, threshold_grid=19)
PARAMETERS = {"Epochs": 2, "LearningRate": 5e-3, "MaxLength": 32}
TRAIN_ROWS, VALIDATION_ROWS = 96, 48
CHANNELS = ("train", "validation")
PROBE = ["an apple and a cherry", "banana bread", "nothing here at all", "coconut, apricot and blueberry"]
EPOCHS_ERROR = "argument --epochs: invalid float value: 'abc'"


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def aws():
    with jobs.moto_aws() as url:
        yield url


@pytest.fixture(scope="module")
def definition(aws, tmp_path_factory) -> dict:
    return jobs.build_definition(tmp_path_factory.mktemp("build"), training_config=TINY)


@pytest.fixture(scope="module")
def train_step(definition) -> dict:
    return jobs.steps_by_name(definition)[spec.TRAIN]["Arguments"]


@pytest.fixture(scope="module")
def preprocess_outputs(aws, tmp_path_factory) -> dict[str, str]:
    """The train/validation splits where the preprocess step's outputs would be in S3 (its Get expressions)."""
    local = tmp_path_factory.mktemp("splits")
    uris = {}
    for name, rows in (("train", keyword_rows(TRAIN_ROWS, seed=1)), ("validation", keyword_rows(VALIDATION_ROWS, seed=2))):
        uri = f"s3://{jobs.BUCKET}/test-execution/{name}/"
        jobs.upload(write_split_dir(local / name, rows), uri)
        uris[f"Steps.{spec.PREPROCESS}.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"] = uri
    return uris


@pytest.fixture(scope="module")
def known(definition, preprocess_outputs, tiny_base_model) -> dict[str, str]:
    """What one pipeline execution resolves: its parameter values and the preprocess step's outputs."""
    return {**jobs.parameter_values(definition, BaseModel=str(tiny_base_model), **PARAMETERS), **preprocess_outputs}


def hyperparameters(train_step: dict, known: dict, **overrides: str) -> dict[str, str]:
    """The HyperParameters of the training job an execution would create (strings, as CreateTrainingJob takes)."""
    hps = jobs.resolve(train_step["HyperParameters"], known)
    hps.update(overrides)
    assert all(isinstance(v, str) for v in hps.values()), hps
    return hps


def write_config(ml: Path, train_step: dict, known: dict, hps: dict[str, str], channels) -> None:
    """input/config/*.json as SageMaker writes them for this job (one host, algo-1)."""
    config = ml / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    specs = {c["ChannelName"]: c for c in train_step["InputDataConfig"]}
    (config / "inputdataconfig.json").write_text(json.dumps({
        name: {"TrainingInputMode": specs[name]["InputMode"], "RecordWrapperType": "None",
               "S3DistributionType": specs[name]["DataSource"]["S3DataSource"]["S3DataDistributionType"]}
        for name in channels}))
    instance_type = jobs.resolve(train_step["ResourceConfig"]["InstanceType"], known)
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": "algo-1", "current_instance_type": instance_type, "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"], "network_interface_name": "eth0",
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": instance_type,
                             "hosts": ["algo-1"]}]}))
    # what SageMaker provides before the container starts
    for sub in ("model", "output/data"):
        (ml / sub).mkdir(parents=True, exist_ok=True)


def stage_channels(ml: Path, train_step: dict, known: dict, names) -> None:
    """Each channel's S3 data (moto) downloaded to <root>/input/data/<channel>, as File mode does."""
    for channel in train_step["InputDataConfig"]:
        if channel["ChannelName"] in names:
            uri = jobs.resolve(channel["DataSource"]["S3DataSource"]["S3Uri"], known)
            jobs.download_prefix(uri, ml / "input" / "data" / channel["ChannelName"])


class Job:
    """A finished training container: its root (standing for /opt/ml), exit status, log and duration."""

    def __init__(self, ml: Path, proc, seconds: float):
        self.ml, self.returncode, self.log, self.seconds = ml, proc.returncode, proc.stdout, seconds

    def tail(self, n: int = 4000) -> str:
        return self.log[-n:]


def run_toolkit(tmp: Path, train_step: dict, known: dict, **overrides: str) -> Job:
    """Path 1: sagemaker-training's `train` with the bundle in code/ and JSON-encoded hyperparameters."""
    ml = tmp / "opt" / "ml"
    step_source_bundle(ml / "code")
    hps = hyperparameters(train_step, known, **overrides)
    # the SDK's estimators JSON-encode every value; the toolkit json-decodes each one
    write_config(ml, train_step, known, {k: json.dumps(v) for k, v in hps.items()}, CHANNELS)
    stage_channels(ml, train_step, known, CHANNELS)
    env = jobs.container_env(tmp, {"SAGEMAKER_BASE_DIR": str(ml), "SAGEMAKER_PROGRAM": "train.py",
                                   "SAGEMAKER_SUBMIT_DIRECTORY": str(ml / "code"), "SM_STUDIO_LOCAL_MODE": "true",
                                   "TRAINING_JOB_NAME": "bert-multilabel-train-toolkit"})
    started = time.perf_counter()
    proc = jobs.run([str(jobs.VENV_BIN / "train")], env, cwd=tmp, log=tmp / "job.log")
    return Job(ml, proc, time.perf_counter() - started)


def run_sm_train(tmp: Path, train_step: dict, known: dict, processes: int = 0, **overrides: str) -> Job:
    """Path 2: the definition's entry point (sm_train.sh + drivers from the sm_drivers channel), /opt/ml rewritten.

    The drivers run train.py under torchrun, one process per GPU (none here: one process). `processes` sets
    Torchrun's process_count_per_node in the channel's distributed.json, as on an instance with that many GPUs.
    torchrun's rendezvous port comes from PET_MASTER_PORT (torchrun's environment form of --master-port): a
    free loopback port instead of its fixed default, 29500.
    """
    ml = tmp / "opt" / "ml"
    names = [c["ChannelName"] for c in train_step["InputDataConfig"]]
    assert set(names) == {*CHANNELS, "code", "sm_drivers"}, names
    write_config(ml, train_step, known, hyperparameters(train_step, known, **overrides), names)
    stage_channels(ml, train_step, known, names)
    drivers = ml / "input" / "data" / "sm_drivers"
    rewritten = [p for p in drivers.rglob("*") if p.is_file() and jobs.rewrite_file(p, jobs.OPT_ML, str(ml))]
    assert drivers / "sm_train.sh" in rewritten and drivers / "scripts" / "environment.py" in rewritten
    if processes:
        distributed = json.loads((drivers / "distributed.json").read_text())
        (drivers / "distributed.json").write_text(json.dumps({**distributed, "process_count_per_node": processes}))
    spec_ = train_step["AlgorithmSpecification"]
    argv = jobs.rewrite(spec_["ContainerEntrypoint"] + spec_["ContainerArguments"], jobs.OPT_ML, str(ml))
    env = jobs.container_env(tmp, {**train_step.get("Environment", {}),
                                   "TRAINING_JOB_NAME": "bert-multilabel-train-drivers",
                                   "PET_MASTER_PORT": str(free_port(18800, 18900)), "GLOO_SOCKET_IFNAME": "lo",
                                   **({"OMP_NUM_THREADS": "1"} if processes > 1 else {})})
    started = time.perf_counter()
    proc = jobs.run(argv, env, cwd=tmp, log=tmp / "job.log")
    return Job(ml, proc, time.perf_counter() - started)


@pytest.fixture(scope="module")
def toolkit_job(tmp_path_factory, train_step, known) -> Job:
    job = run_toolkit(tmp_path_factory.mktemp("toolkit"), train_step, known)
    assert job.returncode == 0, job.tail()
    return job


@pytest.fixture(scope="module")
def drivers_job(tmp_path_factory, train_step, known) -> Job:
    job = run_sm_train(tmp_path_factory.mktemp("drivers"), train_step, known)
    assert job.returncode == 0, job.tail()
    return job


# ----------------------------------------------------------------------------- what a job must leave
def check_serving_artifact(model: Path, bundle_mlcore: Path) -> dict:
    """SM_MODEL_DIR: the chosen backend's weights only, the model files, code/ for the toolkit, no pip at start."""
    from mlcore.packaging import vendor_identity
    from mlcore.predictor import BACKEND_FILES

    doc = json.loads((model / "serving.json").read_text())
    backend = doc["backend"]
    assert sorted(p.name for p in model.iterdir() if p.is_file()) == doc["files"]
    assert {"config.json", "thresholds.json", "serving.json", "tokenizer.json"} <= set(doc["files"])
    for name, patterns in BACKEND_FILES.items():
        present = [p.name for pattern in patterns for p in model.glob(pattern)]
        if set(patterns) == set(BACKEND_FILES[backend]):
            assert present, f"no {backend} weights in {model}"
        else:
            assert not present, f"{name} weights {present} in a {backend} artifact"
    code = model / "code"
    assert sorted(p.name for p in code.iterdir()) == (["inference.py", "mlcore", "vendor"] if backend.startswith("onnx")
                                                      else ["inference.py", "mlcore"])
    assert not list(model.rglob("requirements.txt")), "nothing may be pip-installed when the endpoint starts"
    assert (code / "inference.py").read_bytes() == (bundle_mlcore / "toolkit_entry.py").read_bytes()
    shipped = {p.relative_to(code / "mlcore") for p in (code / "mlcore").rglob("*.py")}
    assert shipped == {p.relative_to(bundle_mlcore) for p in bundle_mlcore.rglob("*.py")}
    assert all((code / "mlcore" / p).read_bytes() == (bundle_mlcore / p).read_bytes() for p in shipped)
    if backend.startswith("onnx"):
        import onnxruntime

        assert (code / "vendor" / "onnxruntime" / "__init__.py").is_file()
        assert vendor_identity(model)["version"] == doc["vendored"]["version"] == onnxruntime.__version__
    return doc


def check_job(job: Job, bundle_mlcore: Path, definition_step: dict, epochs: int) -> None:
    from mlcore.predictor import load_predictor

    assert not (job.ml / "output" / "failure").exists(), (job.ml / "output" / "failure").read_text()
    doc = check_serving_artifact(job.ml / "model", bundle_mlcore)
    full = job.ml / "output" / "data" / "model"
    assert {"config.json", "model.safetensors", "thresholds.json", "tokenizer.json", "serving.json",
            "training_summary.json"} <= {p.name for p in full.iterdir()}
    if doc["backend"].startswith("onnx"):
        assert (full / "model.onnx").is_file()
    history = json.loads((job.ml / "output" / "data" / "history.json").read_text())
    assert len(history) == epochs
    # the artifact serves what the complete model gives with the same backend; torch (the reference) agrees on labels
    serving = load_predictor(job.ml / "model", backend=doc["backend"])
    probs = serving.predict_proba(PROBE)
    assert (probs == load_predictor(full, backend=doc["backend"]).predict_proba(PROBE)).all()
    reference = load_predictor(full, backend="torch")
    assert reference.label_names == serving.label_names == ["a", "b", "c"]
    assert abs(reference.predict_proba(PROBE) - probs).max() < 0.1
    # SageMaker's metric definitions find every epoch's metrics in the container's log
    for metric in definition_step["AlgorithmSpecification"]["MetricDefinitions"]:
        found = re.findall(metric["Regex"], job.log)
        assert len(found) >= epochs, (metric["Name"], job.tail())


def check_requirements_satisfied(job: Job, requirements_file: Path) -> None:
    """The requirements step ran, offline: pip found every requirement of the bundle installed."""
    from packaging.requirements import Requirement

    for line in requirements_file.read_text().split():
        requirement = Requirement(line)  # pip prints the specifier as packaging normalises it (">=5.0,<6" -> "<6,>=5.0")
        assert f"Requirement already satisfied: {requirement.name}{requirement.specifier} " in job.log, line


def bundle_mlcore_of(job: Job) -> Path:
    """The mlcore the container ran: code/ for the toolkit, the code channel for the drivers."""
    for where in (job.ml / "code" / "mlcore", job.ml / "input" / "data" / "code" / "mlcore"):
        if where.is_dir():
            return where
    raise AssertionError(f"no source bundle under {job.ml}")


# ----------------------------------------------------------------------------- path 1: sagemaker-training
def test_toolkit_runs_train_py_to_success(toolkit_job, train_step):
    job = toolkit_job
    assert (job.ml / "output" / "success").exists()
    assert "Reporting training SUCCESS" in job.log
    check_requirements_satisfied(job, job.ml / "code" / "requirements.txt")
    # the hyperparameters arrive as `--name value`, decoded from their JSON encoding
    assert re.search(r"train\.py .*--epochs 2\.0 .*--max-length 32 ", job.log), job.tail()
    check_job(job, bundle_mlcore_of(job), train_step, PARAMETERS["Epochs"])


def test_toolkit_bad_hyperparameter_fails_naming_it(tmp_path, train_step, known):
    job = run_toolkit(tmp_path, train_step, known, epochs="abc")
    assert job.returncode != 0, job.tail()
    failure = job.ml / "output" / "failure"
    assert failure.is_file() and not (job.ml / "output" / "success").exists()
    assert EPOCHS_ERROR in failure.read_text(), failure.read_text()
    assert "Reporting training FAILURE" in job.log
    assert not any((job.ml / "model").iterdir())


# ----------------------------------------------------------------------------- path 2: ModelTrainer's drivers
def test_sm_train_drivers_run_train_py_to_success(drivers_job, train_step):
    job = drivers_job
    assert "Training Container Execution Completed" in job.log
    check_requirements_satisfied(job, job.ml / "input" / "data" / "code" / "requirements.txt")
    # sourcecode.json names the entry script the driver ran, from the code channel
    source = json.loads((job.ml / "input" / "data" / "sm_drivers" / "sourcecode.json").read_text())
    assert source["entry_script"] == "train.py" and source["requirements"] == "requirements.txt"
    check_job(job, bundle_mlcore_of(job), train_step, PARAMETERS["Epochs"])


def test_sm_train_drivers_run_two_processes_per_instance(tmp_path, train_step, known, drivers_job):
    """Torchrun with two processes on the instance (as on a 2-GPU instance): each trains on half of every batch,
    process 0 alone writes the artifact, the complete model and the history."""
    job = run_sm_train(tmp_path, train_step, known, processes=2)
    assert job.returncode == 0, job.tail()
    assert "--nproc_per_node=2" in job.log and "Training Container Execution Completed" in job.log
    check_job(job, bundle_mlcore_of(job), train_step, PARAMETERS["Epochs"])
    for epoch in range(1, PARAMETERS["Epochs"] + 1):
        for rank in (0, 1):
            assert f"process {rank}/2: epoch {epoch} trained on {TRAIN_ROWS // 2} rows" in job.log, job.tail()
    assert len(re.findall(r"^serving artifact \(", job.log, re.M)) == 1  # packaged once, by process 0
    summary = json.loads((job.ml / "output" / "data" / "model" / "training_summary.json").read_text())
    single = json.loads((drivers_job.ml / "output" / "data" / "model" / "training_summary.json").read_text())
    assert (summary["processes"], single["processes"]) == (2, 1) and summary["steps"] == single["steps"]


def test_sm_train_drivers_bad_hyperparameter_fails_naming_it(tmp_path, train_step, known):
    job = run_sm_train(tmp_path, train_step, known, epochs="abc")
    assert job.returncode != 0, job.tail()  # torchrun's status (1) for train.py's 2; the failure file says why
    failure = job.ml / "output" / "failure"
    assert failure.is_file(), job.tail()
    assert EPOCHS_ERROR in failure.read_text(), failure.read_text()
    assert not any((job.ml / "model").iterdir())


def test_both_paths_train_the_same_model(toolkit_job, drivers_job):
    """Same code, data, hyperparameters and seed: the two runners leave the same model."""
    from safetensors.numpy import load_file

    a = load_file(toolkit_job.ml / "output" / "data" / "model" / "model.safetensors")
    b = load_file(drivers_job.ml / "output" / "data" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert (toolkit_job.ml / "model" / "thresholds.json").read_text() == \
        (drivers_job.ml / "model" / "thresholds.json").read_text()
    serving = [json.loads((job.ml / "model" / "serving.json").read_text()) for job in (toolkit_job, drivers_job)]
    assert [{k: v for k, v in doc.items() if k != "export_seconds"} for doc in serving] == [
        {k: v for k, v in serving[0].items() if k != "export_seconds"}] * 2
