"""The preprocess and evaluate steps as their processing containers run them, offline, against the local runner.

The pipeline definition is built against moto server; each processing step is then run as SageMaker
runs it: every ProcessingInput of the definition (the data, and the very `sourcedir.tar.gz` +
install_requirements.py and `runproc.sh` the SDK uploaded) is downloaded from moto S3 to where its
LocalPath says, and the step's ContainerEntrypoint (`/bin/bash .../runproc.sh`) runs with its
ContainerArguments and Environment. runproc.sh unpacks the bundle, installs requirements.txt (pip has
no index: they must be found satisfied) and runs `python3 <step>.py "$@"`. The one change is the root:
/opt/ml/processing is rewritten to a temporary directory in runproc.sh and in the arguments.
Inputs that come from other steps (the splits, the training job's model.tar.gz and output.tar.gz) are
put in moto S3 where those Get expressions point for this test execution.

The outputs must equal what the local runner (`pipelines.local_runner`) gets from the same scripts on
the same data: identical split files and statistics, identical evaluation.json (backend, reference).
"""
from __future__ import annotations

import importlib.metadata
import io
import json
import shutil
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from mlops.settings import Settings
from pipelines import spec
from pipelines.local_runner import LocalPipelineRunner
from pipelines.tarball import make_model_tarball
from tests.helpers import sagemaker_jobs as jobs
from tests.helpers.data import keyword_rows, write_split_dir

SPLITS = ("train", "validation", "test")
TEST_ROWS = 60
TRAINING_OUTPUT = f"s3://{jobs.BUCKET}/test-execution/models"  # the training job's S3OutputPath
TRAINING_JOB = "bert-multilabel-train-test"


@pytest.fixture(scope="module", autouse=True)
def pip_uninstall_typing_is_harmless():
    """runproc.sh runs `pip uninstall --yes typing` with this venv's pip: only a no-op is acceptable here."""
    try:
        version = importlib.metadata.version("typing")
    except importlib.metadata.PackageNotFoundError:
        return
    pytest.fail(f"the PyPI package `typing` {version} is installed in {jobs.VENV_BIN.parent}: runproc.sh would "
                "uninstall it from this venv; run this test in a venv without it")


@pytest.fixture(scope="module")
def aws():
    with jobs.moto_aws() as url:
        yield url


@pytest.fixture(scope="module")
def definition(aws, tmp_path_factory) -> dict:
    return jobs.build_definition(tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def steps(definition) -> dict[str, dict]:
    return jobs.steps_by_name(definition)


@pytest.fixture(scope="module")
def definition_parameters(definition) -> dict[str, str]:
    """The parameter values of an execution started with the defaults (InputData: the staged demo data)."""
    return jobs.parameter_values(definition)


class Container:
    """A finished processing container: its root (standing for /opt/ml/processing), status and log."""

    def __init__(self, root: Path, proc, seconds: float):
        self.root, self.returncode, self.log, self.seconds = root, proc.returncode, proc.stdout, seconds

    def local(self, container_path: str) -> Path:
        return Path(jobs.rewrite(container_path, jobs.PROCESSING, str(self.root)))


def run_processing(step: dict, tmp: Path, known: dict[str, str]) -> Container:
    """Stage the step's inputs from moto S3 and run its container entry point under tmp/processing."""
    root = tmp / "processing"
    args = step["Arguments"]
    for item in args["ProcessingInputs"]:
        s3_input = item["S3Input"]
        assert (s3_input["S3DataType"], s3_input["S3InputMode"]) == ("S3Prefix", "File"), item
        local = Path(jobs.rewrite(s3_input["LocalPath"], jobs.PROCESSING, str(root)))
        jobs.download_prefix(jobs.resolve(s3_input["S3Uri"], known), local)
    for output in args["ProcessingOutputConfig"]["Outputs"]:  # SageMaker creates each output's LocalPath
        Path(jobs.rewrite(output["S3Output"]["LocalPath"], jobs.PROCESSING, str(root))).mkdir(parents=True, exist_ok=True)
    app = args["AppSpecification"]
    entrypoint = jobs.rewrite(app["ContainerEntrypoint"], jobs.PROCESSING, str(root))
    assert entrypoint[0] == "/bin/bash" and entrypoint[1].endswith("/runproc.sh"), entrypoint
    assert jobs.rewrite_file(Path(entrypoint[1]), jobs.PROCESSING, str(root))
    arguments = jobs.resolve(app.get("ContainerArguments", []), known)  # e.g. --data-version <DataVersion>
    argv = entrypoint + jobs.rewrite(arguments, jobs.PROCESSING, str(root))
    env = jobs.container_env(tmp, args.get("Environment", {}))
    started = time.perf_counter()
    proc = jobs.run(argv, env, cwd=tmp, log=tmp / "container.log")
    return Container(root, proc, time.perf_counter() - started)


def local_runner(tmp: Path, input_data: str = "demo") -> LocalPipelineRunner:
    return LocalPipelineRunner({"InputData": input_data}, Settings(home=tmp / "home"), cache=False, out=io.StringIO(),
                               run_id="local")


def check_ran_the_uploaded_code(container: Container, step: dict, script: str) -> None:
    """runproc.sh unpacked the uploaded bundle, found its requirements installed and ran the step script."""
    assert container.returncode == 0, container.log[-4000:]
    code = container.root / "input" / "code"
    assert (code / "sourcedir.tar.gz").is_file() and (code / script).is_file() and (code / "mlcore").is_dir()
    for requirement in (code / "requirements.txt").read_text().split():  # pip prints specifiers its own way
        name = Requirement(requirement).name
        assert f"Requirement already satisfied: {name}" in container.log, requirement


# ----------------------------------------------------------------------------- preprocess
@pytest.fixture(scope="module")
def preprocessed(steps, definition_parameters, tmp_path_factory):
    """(container root, local runner output dir, the InputData the container got)."""
    step = steps[spec.PREPROCESS]
    tmp = tmp_path_factory.mktemp("preprocess")
    container = run_processing(step, tmp / "container", definition_parameters)
    check_ran_the_uploaded_code(container, step, "preprocess.py")
    # the local runner on the same files: InputData is a local directory there
    data = tmp / "input"
    jobs.download_prefix(definition_parameters["Parameters.InputData"], data)
    runner = local_runner(tmp / "local", str(data))
    runner.preprocess()
    assert runner.result.step(spec.PREPROCESS).status == "succeeded"
    return container, runner._dir(spec.PREPROCESS) / "output", data


def test_preprocess_container_reads_the_staged_input_data(preprocessed, steps):
    container, _, data = preprocessed
    [data_input] = [i for i in steps[spec.PREPROCESS]["Arguments"]["ProcessingInputs"] if i["InputName"] == "data"]
    staged = container.local(data_input["S3Input"]["LocalPath"])
    assert sorted(p.name for p in staged.iterdir()) == ["data.jsonl", "labels.txt"]
    assert (staged / "data.jsonl").read_bytes() == (data / "data.jsonl").read_bytes()
    assert f"loading {staged}" in container.log


def test_preprocess_container_writes_the_splits_the_local_runner_writes(preprocessed, steps):
    container, local, data = preprocessed
    outputs = {o["OutputName"]: container.local(o["S3Output"]["LocalPath"])
               for o in steps[spec.PREPROCESS]["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    assert set(outputs) == {*SPLITS, "statistics"}
    for split in SPLITS:
        assert sorted(p.name for p in outputs[split].iterdir()) == ["data.jsonl", "labels.json"]
        for name in ("data.jsonl", "labels.json"):
            assert (outputs[split] / name).read_bytes() == (local / split / name).read_bytes(), (split, name)
    rows = {split: len((outputs[split] / "data.jsonl").read_text().splitlines()) for split in SPLITS}
    assert rows["train"] > rows["validation"] > 0 and rows["test"] > 0
    from mlcore.datasets.demo import LABELS

    assert json.loads((outputs["train"] / "labels.json").read_text())["labels"] == LABELS

    ours = json.loads((outputs["statistics"] / "statistics.json").read_text())
    theirs = json.loads((local / "statistics" / "statistics.json").read_text())
    # the one difference is where the data was read from: the source and the files it holds
    staged = outputs["statistics"].parent.parent / "input" / "data"
    assert ours.pop("source") == str(staged) and Path(theirs.pop("source")) == data
    assert list(ours["load_report"]["files"]) == [str(staged / "data.jsonl")]
    assert list(theirs["load_report"]["files"]) == [str(data / "data.jsonl")]
    for doc in (ours, theirs):
        doc["load_report"]["files"] = {Path(k).name: v for k, v in doc["load_report"]["files"].items()}
    assert ours == theirs
    assert {split: ours["splits"][split]["rows"] for split in SPLITS} == rows


# ----------------------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def evaluated(steps, definition_parameters, tiny_classifier, tmp_path_factory):
    """(container, local runner evaluation dir, the artifact's serving.json) on the same model and test split."""
    full, artifact = tiny_classifier
    tmp = tmp_path_factory.mktemp("evaluate")
    test = write_split_dir(tmp / "test", keyword_rows(TEST_ROWS, seed=3))
    # what the training job leaves in S3: model.tar.gz (SM_MODEL_DIR) and output.tar.gz (SM_OUTPUT_DATA_DIR: model/)
    job_output = f"{TRAINING_OUTPUT}/{TRAINING_JOB}/output"
    model_tar = make_model_tarball(artifact, tmp / "s3" / "model.tar.gz")
    shutil.copytree(full, tmp / "output-data" / "model")
    output_tar = make_model_tarball(tmp / "output-data", tmp / "s3" / "output.tar.gz")
    jobs.upload(model_tar, f"{job_output}/model.tar.gz")
    jobs.upload(output_tar, f"{job_output}/output.tar.gz")
    jobs.upload(test, f"s3://{jobs.BUCKET}/test-execution/test/")
    known = {**definition_parameters,
             f"Steps.{spec.TRAIN}.ModelArtifacts.S3ModelArtifacts": f"{job_output}/model.tar.gz",
             f"Steps.{spec.TRAIN}.OutputDataConfig.S3OutputPath": TRAINING_OUTPUT,
             f"Steps.{spec.TRAIN}.TrainingJobName": TRAINING_JOB,
             f"Steps.{spec.PREPROCESS}.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri":
                 f"s3://{jobs.BUCKET}/test-execution/test/"}
    container = run_processing(steps[spec.EVALUATE], tmp / "container", known)
    check_ran_the_uploaded_code(container, steps[spec.EVALUATE], "evaluate.py")

    # the local runner's evaluate step on the same files, laid out where its earlier steps leave them
    runner = local_runner(tmp / "local")
    make_model_tarball(artifact, runner._dir(spec.TRAIN) / "output" / "model.tar.gz")
    shutil.copytree(full, runner._dir(spec.TRAIN) / "output" / "data" / "model")
    shutil.copytree(test, runner._dir(spec.PREPROCESS) / "output" / "test")
    runner.evaluate()
    assert runner.result.step(spec.EVALUATE).status == "succeeded"
    serving = json.loads((artifact / "serving.json").read_text())
    return container, runner._dir(spec.EVALUATE) / "evaluation", serving


def test_evaluate_container_inputs_land_where_the_arguments_point(evaluated, steps):
    container, _, _ = evaluated
    inputs = {i["InputName"]: container.local(i["S3Input"]["LocalPath"])
              for i in steps[spec.EVALUATE]["Arguments"]["ProcessingInputs"]}
    assert sorted(p.name for p in inputs["model"].iterdir()) == ["model.tar.gz"]
    assert sorted(p.name for p in inputs["reference"].iterdir()) == ["output.tar.gz"]
    assert sorted(p.name for p in inputs["test"].iterdir()) == ["data.jsonl", "labels.json"]


def test_evaluate_container_scores_the_serving_backend_with_the_torch_reference(evaluated, steps):
    container, local, serving = evaluated
    [output] = steps[spec.EVALUATE]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    out = container.local(output["S3Output"]["LocalPath"])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in local.iterdir()) == [
        "confusion_matrices.png", "evaluation.json", "label_confusion.png", "roc_curves.png"]
    ours = json.loads((out / spec.EVALUATION_FILE).read_text())
    theirs = json.loads((local / spec.EVALUATION_FILE).read_text())
    assert ours["backend"] == serving["backend"] and ours["reference"]["backend"] == "torch"
    assert ours["n_samples"] == TEST_ROWS and ours["labels"] == ["a", "b", "c"]
    assert ours["reference"]["decisions"] == TEST_ROWS * 3
    # the quality gate's paths resolve to numbers in what the container wrote
    for path, _ in spec.QUALITY_GATE:
        assert isinstance(spec.json_path_get(ours, path), float), path
    assert ours["multilabel_classification_metrics"]["f1_macro"]["value"] > 0.7  # the tiny model learned
    assert ours == theirs
