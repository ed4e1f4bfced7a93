"""The SageMaker Pipeline definition, built with no AWS account: S3 and SageMaker are moto server over HTTP.

Structure (steps, dependencies, parameters, quality gate), the uploaded code (= the repo's), the
official JSON schema, and the CLI (`mlops pipeline definition|upsert|start|status`, the console
scripts) against moto.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import boto3
import pytest
import requests

from mlops.cli import main as mlops_main
from pipelines import spec
from tests.helpers import sagemaker_jobs as jobs
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import moto_server

REGION, BUCKET = "us-east-1", "bertmlc-artifacts"
ROLE = "arn:aws:iam::123456789012:role/SageMakerPipelineRole"
PREFIX = "bert-multilabel"
SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "sagemaker-pipeline-definition.schema.json"
TYPES = {spec.PREPROCESS: "Processing", spec.TRAIN: "Training", spec.EVALUATE: "Processing",
         spec.CHECK: "Condition", spec.REGISTER: "RegisterModel", spec.FAIL: "Fail"}
# The log lines docs/architecture.md documents, as mlcore/training.py prints them (extra keys included).
LOG_LINES = ["epoch=2 train_loss=0.1234",
             "eval_loss=0.0812 eval_f1_macro_at_0.5=0.3100 eval_f1_macro=0.4312 eval_f1_micro=0.5521 "
             "eval_roc_auc_macro=0.8812"]
EXPECTED_METRICS = {"train_loss": 0.1234, "eval_loss": 0.0812, "eval_f1_macro": 0.4312, "eval_f1_micro": 0.5521,
                    "eval_roc_auc_macro": 0.8812}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def moto_url():
    with moto_server(18300, 18399) as url:
        yield url


@pytest.fixture(scope="module")
def aws(moto_url):
    """Fake credentials and every boto3 client pointed at moto server (real HTTP, no patching)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                            "AWS_ENDPOINT_URL": moto_url, "AWS_ENDPOINT_URL_S3": moto_url,
                            "AWS_EC2_METADATA_DISABLED": "true", "SAGEMAKER_VALIDATE_ROLE": "false"}.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "ARTIFACT_BUCKET", "SAGEMAKER_PIPELINE_ROLE_ARN"):
            mp.delenv(name, raising=False)
        requests.post(f"{moto_url}/moto-api/reset", timeout=10)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield moto_url


@pytest.fixture(scope="module")
def built(aws, tmp_path_factory):
    """(pipeline, parsed definition) as `mlops pipeline definition` builds it (InputData 'demo' staged)."""
    from pipelines.run_pipeline import build_pipeline

    pipeline = build_pipeline(REGION, ROLE, BUCKET, extra={"build_dir": tmp_path_factory.mktemp("build")})
    return pipeline, json.loads(pipeline.definition())


@pytest.fixture(scope="module")
def definition(built) -> dict:
    return built[1]


def steps_by_name(definition: dict) -> dict[str, dict]:
    out = {}
    for step in definition["Steps"]:
        out[step["Name"]] = step
        if step["Type"] == "Condition":
            for inner in step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", []):
                out[inner["Name"]] = inner
    return out


def references(node) -> set[str]:
    """Every `{"Get": ...}` expression in a definition fragment."""
    if isinstance(node, dict):
        found = {node["Get"]} if isinstance(node.get("Get"), str) else set()
        return found.union(*(references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(references(v) for v in node))
    return set()


def s3_get(uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()


def s3_keys(uri: str) -> list[str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    pages = boto3.client("s3", region_name=REGION).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


# ----------------------------------------------------------------------------- structure
def test_steps_names_types_and_dag(definition):
    steps = steps_by_name(definition)
    assert {name: step["Type"] for name, step in steps.items()} == TYPES
    assert [s["Name"] for s in definition["Steps"]] == [spec.PREPROCESS, spec.TRAIN, spec.EVALUATE, spec.CHECK]
    check = steps[spec.CHECK]["Arguments"]
    assert [s["Name"] for s in check["IfSteps"]] == [spec.REGISTER]
    assert [s["Name"] for s in check["ElseSteps"]] == [spec.FAIL]
    # Dependencies are data references: each step reads its upstream's outputs.
    train_refs = references(steps[spec.TRAIN]["Arguments"]["InputDataConfig"])
    assert {f"Steps.{spec.PREPROCESS}.ProcessingOutputConfig.Outputs['{s}'].S3Output.S3Uri"
            for s in ("train", "validation")} <= train_refs
    evaluate_inputs = {i["InputName"]: i["S3Input"] for i in steps[spec.EVALUATE]["Arguments"]["ProcessingInputs"]}
    assert evaluate_inputs["model"]["S3Uri"] == {"Get": f"Steps.{spec.TRAIN}.ModelArtifacts.S3ModelArtifacts"}
    assert evaluate_inputs["model"]["LocalPath"] == "/opt/ml/processing/model"
    assert evaluate_inputs["test"]["S3Uri"] == {
        "Get": f"Steps.{spec.PREPROCESS}.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}
    # the torch reference: the complete model in the training job's output.tar.gz (<S3OutputPath>/<job>/output/)
    assert evaluate_inputs["reference"]["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        {"Get": f"Steps.{spec.TRAIN}.OutputDataConfig.S3OutputPath"}, {"Get": f"Steps.{spec.TRAIN}.TrainingJobName"},
        "output", "output.tar.gz"]}}
    container = steps[spec.REGISTER]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == {"Get": f"Steps.{spec.TRAIN}.ModelArtifacts.S3ModelArtifacts"}
    assert not any(r.startswith("Steps.") for r in references(steps[spec.PREPROCESS]["Arguments"]))


def test_every_spec_parameter_with_type_and_default(definition, tmp_path):
    declared = {p["Name"]: p for p in definition["Parameters"]}
    assert list(declared) == [p.name for p in spec.PARAMETERS]
    for p in spec.PARAMETERS:
        assert declared[p.name]["Type"] == p.type, p.name
        if p.name != "InputData":
            assert declared[p.name]["DefaultValue"] == p.default, p.name
    # InputData's spec default 'demo' is staged to S3 (SageMaker reads S3): the demo data, byte for byte.
    staged = declared["InputData"]["DefaultValue"]
    assert re.fullmatch(rf"s3://{BUCKET}/{PREFIX}/input/demo-[0-9a-f]{{12}}/", staged)
    from mlcore.datasets.demo import write_demo

    local = write_demo(tmp_path / "demo" / "data.jsonl")
    assert s3_get(staged + "data.jsonl") == local.read_bytes()
    assert s3_get(staged + "labels.txt") == (local.parent / "labels.txt").read_bytes()


def test_parameters_feed_the_steps(definition):
    steps = steps_by_name(definition)
    for name in (spec.PREPROCESS, spec.EVALUATE):
        cluster = steps[name]["Arguments"]["ProcessingResources"]["ClusterConfig"]
        assert cluster["InstanceType"] == {"Get": "Parameters.ProcessingInstanceType"}
        assert cluster["InstanceCount"] == 1  # preprocessing splits the whole dataset: one instance, no copies
    assert {"Get": "Parameters.DataVersion"} in \
        steps[spec.PREPROCESS]["Arguments"]["AppSpecification"]["ContainerArguments"]
    preprocess_inputs = {i["InputName"]: i["S3Input"] for i in steps[spec.PREPROCESS]["Arguments"]["ProcessingInputs"]}
    assert preprocess_inputs["data"]["S3Uri"] == {"Get": "Parameters.InputData"}
    assert preprocess_inputs["data"]["LocalPath"] == "/opt/ml/processing/input/data"
    outputs = {o["OutputName"]: o["S3Output"]["LocalPath"]
               for o in steps[spec.PREPROCESS]["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    assert outputs == {s: f"/opt/ml/processing/output/{s}" for s in ("train", "validation", "test", "statistics")}
    train = steps[spec.TRAIN]["Arguments"]
    assert train["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert train["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    hps = train["HyperParameters"]
    for field, param in spec.HYPERPARAMETER_SOURCES.items():
        assert hps[field.replace("_", "-")] == {"Get": f"Parameters.{param}"}, field
    from dataclasses import fields

    from mlcore.config import TrainingConfig

    defaults = TrainingConfig()
    for f in fields(TrainingConfig):
        if f.name not in spec.HYPERPARAMETER_SOURCES and f.name != "progress":
            value = getattr(defaults, f.name)  # booleans as SageMaker passes them: true/false
            assert hps[f.name.replace("_", "-")] == (str(value).lower() if isinstance(value, bool) else str(value)), f.name
    assert steps[spec.REGISTER]["Arguments"]["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    # The training script accepts every hyperparameter name it will be given.
    from steps.train import parse_args

    argv = [x for k, v in hps.items() for x in (f"--{k}", v if isinstance(v, str) else "1")]
    parse_args(argv)


def test_processing_arguments_parse_with_the_step_scripts_and_match_the_channels(definition):
    """The container arguments are accepted by the real step scripts and point where the inputs/outputs land."""
    import steps.evaluate
    import steps.preprocess

    steps_ = steps_by_name(definition)

    def io_paths(step: dict) -> tuple[dict, dict]:
        args = step["Arguments"]
        inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in args["ProcessingInputs"]}
        outputs = {o["OutputName"]: o["S3Output"]["LocalPath"] for o in args["ProcessingOutputConfig"]["Outputs"]}
        return inputs, outputs

    defaults = {f"Parameters.{p['Name']}": str(p["DefaultValue"]) for p in definition["Parameters"]}
    pre = steps_[spec.PREPROCESS]
    args = steps.preprocess.parse_args(jobs.resolve(pre["Arguments"]["AppSpecification"]["ContainerArguments"], defaults))
    assert args.data_version == spec.PARAMETERS_BY_NAME["DataVersion"].default
    inputs, outputs = io_paths(pre)
    assert str(args.input_dir) == inputs["data"]
    assert {name: str(args.output_dir / name) for name in outputs} == outputs

    ev = steps_[spec.EVALUATE]
    args = steps.evaluate.parse_args(ev["Arguments"]["AppSpecification"]["ContainerArguments"])
    inputs, outputs = io_paths(ev)
    assert Path(args.model_path).parent == Path(inputs["model"]) and Path(args.model_path).name == "model.tar.gz"
    assert str(args.test_dir) == inputs["test"]
    assert str(args.output_dir) == outputs["evaluation"]
    assert str(args.reference_model_path) == inputs["reference"] and args.backend == "auto"


def test_training_spot_checkpoints_metrics_and_images(definition):
    train = steps_by_name(definition)[spec.TRAIN]
    args = train["Arguments"]
    assert "huggingface-pytorch-training" in args["AlgorithmSpecification"]["TrainingImage"]
    assert "-gpu-" in args["AlgorithmSpecification"]["TrainingImage"]
    declared = {p["Name"]: p for p in definition["Parameters"]}
    # a start-time TrainingInstanceType outside EnumValues is refused by SageMaker: it cannot leave the GPU image
    assert declared["TrainingInstanceType"]["EnumValues"] == list(spec.GPU_TRAINING_INSTANCE_TYPES)
    assert declared["ProcessingInstanceType"]["EnumValues"] == list(spec.PROCESSING_INSTANCE_TYPES)
    assert args["EnableManagedSpotTraining"] is True
    stop = args["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"] > 0
    checkpoint = args["CheckpointConfig"]
    assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"  # SM_CHECKPOINT_DIR, which steps/train.py resumes from
    assert {"Get": "Execution.PipelineExecutionId"} in checkpoint["S3Uri"]["Std:Join"]["Values"], \
        "checkpoints must be per execution: a later run must not resume an earlier run's model"
    channels = {c["ChannelName"] for c in args["InputDataConfig"]}
    assert {"train", "validation"} <= channels
    found = {}
    for metric in args["AlgorithmSpecification"]["MetricDefinitions"]:
        for line in LOG_LINES:
            match = re.search(metric["Regex"], line)
            if match:
                found[metric["Name"]] = float(match.group(1))
    assert found == EXPECTED_METRICS


def test_caching_on_processing_and_training(definition):
    steps = steps_by_name(definition)
    for name in (spec.PREPROCESS, spec.TRAIN, spec.EVALUATE):
        assert steps[name]["CacheConfig"]["Enabled"] is True, name
        assert re.fullmatch(r"P(\d+[YMWD])*(T(\d+[HMS])+)?", steps[name]["CacheConfig"]["ExpireAfter"])


def test_registration(definition):
    register = steps_by_name(definition)[spec.REGISTER]["Arguments"]
    assert register["ModelPackageGroupName"] == spec.MODEL_PACKAGE_GROUP
    inference = register["InferenceSpecification"]
    assert inference["SupportedContentTypes"] == ["application/json", "application/jsonlines"]
    assert "application/json" in inference["SupportedResponseMIMETypes"]
    container = inference["Containers"][0]
    assert "huggingface-pytorch-inference" in container["Image"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    stats = register["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert stats["ContentType"] == "application/json"
    assert stats["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        {"Get": f"Steps.{spec.EVALUATE}.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
        spec.EVALUATION_FILE]}}


# ----------------------------------------------------------------------------- quality gate
@pytest.fixture(scope="module")
def evaluation_json(tiny_model_dir, tmp_path_factory) -> dict:
    """evaluation.json written by the real steps/evaluate.py (tiny model, a small test split)."""
    from mlcore.datasets import LabeledTexts, write_split

    tmp = tmp_path_factory.mktemp("evaluate")
    texts = [f"message {i} about {'billing' if i % 2 else 'shipping'} and more" for i in range(24)]
    labels = [["a"] if i % 3 == 0 else ["b", "c"] if i % 3 == 1 else ["c"] for i in range(24)]
    write_split(LabeledTexts(texts, labels, ["a", "b", "c"]), tmp / "test")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "steps" / "evaluate.py"), "--model-path", str(tiny_model_dir),
         "--test-dir", str(tmp / "test"), "--output-dir", str(tmp / "evaluation"), "--bootstrap", "10",
         "--progress", "false"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((tmp / "evaluation" / spec.EVALUATION_FILE).read_text())


def test_quality_gate_uses_spec_paths_that_resolve_in_a_real_evaluation(definition, evaluation_json):
    steps = steps_by_name(definition)
    evaluate = steps[spec.EVALUATE]
    [property_file] = evaluate["PropertyFiles"]
    assert property_file == {"PropertyFileName": spec.EVALUATION_REPORT_NAME, "OutputName": "evaluation",
                             "FilePath": spec.EVALUATION_FILE}
    outputs = {o["OutputName"]: o for o in evaluate["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    assert outputs["evaluation"]["S3Output"]["LocalPath"] == "/opt/ml/processing/evaluation"
    conditions = steps[spec.CHECK]["Arguments"]["Conditions"]
    assert [c["Type"] for c in conditions] == ["GreaterThanOrEqualTo"] * len(spec.QUALITY_GATE)
    gate = [(c["LeftValue"]["Std:JsonGet"]["Path"], c["RightValue"]["Get"].removeprefix("Parameters."))
            for c in conditions]
    assert gate == list(spec.QUALITY_GATE)
    for c in conditions:
        assert c["LeftValue"]["Std:JsonGet"]["PropertyFile"] == {
            "Get": f"Steps.{spec.EVALUATE}.PropertyFiles.{spec.EVALUATION_REPORT_NAME}"}
    # The local runner's gate (spec.gate_checks) decides as SageMaker's GreaterThanOrEqualTo does, on this
    # real evaluation with the definition's default thresholds, and at the boundary (equal passes, above fails).
    defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    local = {c["path"]: c for c in spec.gate_checks(evaluation_json, defaults)}
    for path, threshold in gate:
        value = spec.json_path_get(evaluation_json, path)
        assert isinstance(value, float) and 0.0 <= value <= 1.0, (path, value)
        assert local[path]["passed"] == (value >= defaults[threshold]) and local[path]["value"] == value
        at, above = {**defaults, threshold: value}, {**defaults, threshold: math.nextafter(value, 2.0)}
        assert {c["path"]: c["passed"] for c in spec.gate_checks(evaluation_json, at)}[path] is True
        assert {c["path"]: c["passed"] for c in spec.gate_checks(evaluation_json, above)}[path] is False
    # The fail step reports the same metric values the gate compared.
    message = steps[spec.FAIL]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    reported = [v["Std:JsonGet"]["Path"] for v in message if isinstance(v, dict) and "Std:JsonGet" in v]
    assert reported == [path for path, _ in spec.QUALITY_GATE]
    assert {f"Parameters.{t}" for _, t in spec.QUALITY_GATE} <= references(message)


# ----------------------------------------------------------------------------- uploaded code
def _processing_code(step: dict) -> tuple[str, str]:
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in step["Arguments"]["ProcessingInputs"]}
    return inputs["code"], inputs["entrypoint"]


@pytest.mark.parametrize("step_name,script", [(spec.PREPROCESS, "preprocess.py"), (spec.EVALUATE, "evaluate.py")])
def test_processing_steps_run_the_repo_code(definition, step_name, script):
    code_uri, entrypoint_uri = _processing_code(steps_by_name(definition)[step_name])
    tar_bytes = s3_get(code_uri.rstrip("/") + "/sourcedir.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    for path in sorted((REPO_ROOT / "steps").glob("*.py")):
        if path.name != "__init__.py":
            assert members[path.name] == path.read_bytes(), path.name
    for path in sorted((REPO_ROOT / "mlcore").glob("*.py")):
        assert members[f"mlcore/{path.name}"] == path.read_bytes(), path.name
    assert not any(name.startswith("inference/") for name in members), "the steps need only mlcore"
    assert "requirements.txt" in members and not any("__pycache__" in name for name in members)
    runproc = s3_get(entrypoint_uri).decode()
    assert re.search(rf"python3\s+{re.escape(script)}\b", runproc), runproc
    assert "requirements.txt" in runproc


def test_training_step_runs_the_repo_code(definition):
    args = steps_by_name(definition)[spec.TRAIN]["Arguments"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in args["InputDataConfig"]}
    code_uri = channels["code"].rstrip("/")
    assert code_uri.startswith(f"s3://{BUCKET}/{PREFIX}/code/")
    for path in sorted((REPO_ROOT / "steps").glob("*.py")):
        if path.name != "__init__.py":
            assert s3_get(f"{code_uri}/{path.name}") == path.read_bytes(), path.name
    assert s3_get(f"{code_uri}/mlcore/training.py") == (REPO_ROOT / "mlcore" / "training.py").read_bytes()
    source_code = json.loads(s3_get(f"{channels['sm_drivers']}/sourcecode.json"))
    assert source_code["entry_script"] == "train.py" and source_code["requirements"] == "requirements.txt"
    # SageMaker's torchrun driver launches train.py: one process per GPU on every instance
    assert "distributed_drivers/torchrun_driver.py" in s3_get(f"{channels['sm_drivers']}/sm_train.sh").decode()


# ----------------------------------------------------------------------------- content-addressed code, images, MLflow
def _code_uris(definition: dict) -> dict[str, str]:
    steps = steps_by_name(definition)
    uris = {f"train/{c['ChannelName']}": c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in steps[spec.TRAIN]["Arguments"]["InputDataConfig"] if c["ChannelName"] in ("code", "sm_drivers")}
    for name in (spec.PREPROCESS, spec.EVALUATE):
        uris[f"{name}/code"] = _processing_code(steps[name])[0]
    return uris


def test_definitions_built_again_from_unchanged_code_are_byte_identical(aws, built, tmp_path, monkeypatch):
    """SageMaker's step cache keys on the code URIs: the same code must give the same definition, changed code
    new URIs (the SDK's keys carried a per-second timestamp and this machine's temporary path)."""
    import time

    from pipelines import source_bundle
    from pipelines.run_pipeline import build_pipeline

    time.sleep(1.1)
    again = build_pipeline(REGION, ROLE, BUCKET, extra={"build_dir": tmp_path / "again"}).definition()
    assert again == json.dumps(built[1])
    monkeypatch.setattr(source_bundle, "STEP_REQUIREMENTS", (*source_bundle.STEP_REQUIREMENTS, "filelock>=3"))
    changed = _code_uris(json.loads(build_pipeline(REGION, ROLE, BUCKET,
                                                   extra={"build_dir": tmp_path / "changed"}).definition()))
    before = _code_uris(built[1])
    # every code location moves (the drivers' sourcecode.json names the code channel's URI)
    assert all(before[k] != changed[k] for k in before), (before, changed)
    assert "filelock>=3" in s3_get(changed["train/code"] + "requirements.txt").decode().split()


def test_cpu_training_builds_with_the_pytorch_cpu_image(aws, tmp_path, capsys):
    from pipelines.run_pipeline import build_pipeline

    definition = json.loads(build_pipeline(REGION, ROLE, BUCKET, extra={
        "build_dir": tmp_path, "pipeline_name": "bertmlc-cpu", "training_instance_type": "ml.c6i.4xlarge"}).definition())
    image = steps_by_name(definition)[spec.TRAIN]["Arguments"]["AlgorithmSpecification"]["TrainingImage"]
    assert "/pytorch-training:" in image and "-cpu-" in image
    declared = {p["Name"]: p for p in definition["Parameters"]}
    assert declared["TrainingInstanceType"]["DefaultValue"] == "ml.c6i.4xlarge"
    assert declared["TrainingInstanceType"]["EnumValues"] == list(spec.CPU_INSTANCE_TYPES)
    # the PyTorch image has no transformers: the bundle's requirements bring it
    code = _code_uris(definition)["train/code"]
    assert any(r.startswith("transformers") for r in s3_get(code + "requirements.txt").decode().split())
    code, _, err = run_cli(capsys, "pipeline", "definition", "--role-arn", ROLE, "--bucket", BUCKET,
                           "--training-instance-type", "ml.inf2.xlarge")
    assert code == 2 and "training instance type 'ml.inf2.xlarge' is not supported" in err, err


def test_mlflow_tracking_server_in_the_definition_and_the_steps(aws, tmp_path, capsys):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/bertmlc"
    code, out, err = run_cli(capsys, "pipeline", "definition", "--role-arn", ROLE, "--bucket", BUCKET,
                             "--pipeline-name", "bertmlc-tracked", "--mlflow-tracking-server-arn", arn)
    assert code == 0, err
    definition = json.loads(out)
    assert definition["MlflowConfig"] == {"MlflowResourceArn": arn, "MlflowExperimentName": "bertmlc-tracked"}
    steps = steps_by_name(definition)
    tracking = {"MLFLOW_TRACKING_URI": arn, "MLFLOW_EXPERIMENT_NAME": "bertmlc-tracked"}
    assert tracking.items() <= steps[spec.TRAIN]["Arguments"]["Environment"].items()
    assert tracking.items() <= steps[spec.EVALUATE]["Arguments"]["Environment"].items()
    assert "MLFLOW_TRACKING_URI" not in steps[spec.PREPROCESS]["Arguments"].get("Environment", {})
    # the steps install the plugin that signs MLflow's calls to the server (only when there is one)
    code = _code_uris(definition)["train/code"]
    assert "sagemaker-mlflow>=0.1" in s3_get(code + "requirements.txt").decode().split()
    code, _, err = run_cli(capsys, "pipeline", "definition", "--role-arn", ROLE, "--bucket", BUCKET,
                           "--mlflow-tracking-server-arn", "http://localhost:5000")
    assert code == 2 and "is not a SageMaker MLflow ARN" in err, err


# ----------------------------------------------------------------------------- official schema
README_DEVIATIONS = {  # /work/shared/schemas/README.md, as (where, what)
    ("top-level", "PipelineExperimentConfig"), ("top-level", "MlflowConfig"),
    ("Processing", "PropertyFiles"), ("*", "S3DataSource.S3DataDistributionType"),
}
# Not in the README (whose list came from a processing-only pipeline): what the 2020-12-01 schema cannot express
# but the required steps need. Its value positions accept only a string or {"Get"}, so every Std:Join/Std:JsonGet
# is a deviation; each entry names why it is unavoidable. Each must occur (no stale entries).
SDK_DEVIATIONS = {
    # per-execution S3 prefixes (Join with Execution.PipelineExecutionId): a later run must not overwrite the
    # evaluation.json a registered version points at, nor resume another run's checkpoints
    ("Processing", "Std:Join@Arguments.ProcessingOutputConfig.Outputs.*.S3Output.S3Uri"),
    ("Training", "Std:Join@Arguments.CheckpointConfig.S3Uri"),
    # evaluation's torch reference is the training job's output.tar.gz: <S3OutputPath>/<TrainingJobName>/output/,
    # a path SageMaker builds, so the input joins the two properties
    ("Processing", "Std:Join@Arguments.ProcessingInputs.*.S3Input.S3Uri"),
    # sagemaker.train.ModelTrainer always runs its sm_drivers entrypoint and forces OutputDataConfig compression
    ("Training", "Arguments.AlgorithmSpecification.ContainerEntrypoint"),
    ("Training", "Arguments.AlgorithmSpecification.ContainerArguments"),
    ("Training", "Arguments.OutputDataConfig.CompressionType"),
    # the quality gate reads evaluation.json (JsonGet) and the fail message carries those values (Join)
    ("Condition", "Std:JsonGet@Arguments.Conditions.*.LeftValue"),
    ("Fail", "Std:Join@Arguments.ErrorMessage"),
    # model metrics = <evaluation output>/evaluation.json; approval status is a parameter; the SDK always
    # sends SkipModelValidation; the HF toolkit's handler entry (SAGEMAKER_PROGRAM) travels as container env
    ("RegisterModel", "Std:Join@Arguments.ModelMetrics.ModelQuality.Statistics.S3Uri"),
    ("RegisterModel", "Arguments.ModelApprovalStatus"),
    ("RegisterModel", "Arguments.SkipModelValidation"),
    ("RegisterModel", "Arguments.InferenceSpecification.Containers.*.Environment"),
    # the instance types each step's image runs on: the SDK's ParameterString(enum_values=...) emits EnumValues,
    # which the 2020-12-01 schema predates
    ("top-level", "Parameters.*.EnumValues"),
}
STEP_DEFINITIONS = {"Processing": "ProcessingStep", "Training": "TrainingStep", "Condition": "ConditionStep",
                    "RegisterModel": "RegisterModelStep", "Fail": "FailStep"}


def _pattern(path) -> str:
    return ".".join("*" if isinstance(p, int) else str(p) for p in path)


def _deviations(validator, instance, where: str) -> set[tuple[str, str]]:
    """Schema violations as (where, what): unexpected properties, and pipeline functions where a value was expected."""
    out: set[tuple[str, str]] = set()

    def visit(error):
        node = error.instance
        if error.validator in ("oneOf", "anyOf"):
            if isinstance(node, dict) and len(node) == 1 and next(iter(node)).startswith("Std:"):
                out.add((where, f"{next(iter(node))}@{_pattern(error.absolute_path)}"))
                return
            branches: dict = {}
            for sub in error.context:
                branches.setdefault(sub.relative_schema_path[0], []).append(sub)
            for sub in min(branches.values(), key=len):  # the branch the instance was meant to match
                visit(sub)
        elif error.validator == "additionalProperties":
            allowed = set(error.schema.get("properties", {}))
            for name in sorted(set(node) - allowed):
                if _pattern(error.absolute_path).endswith("S3DataSource"):
                    out.add(("*", f"S3DataSource.{name}"))
                else:
                    out.add((where, ".".join(filter(None, [_pattern(error.absolute_path), name]))))
        else:
            out.add((where, f"{error.validator}@{_pattern(error.absolute_path)}: {error.message[:80]}"))

    for error in validator.iter_errors(instance):
        visit(error)
    return out


def test_definition_matches_the_official_schema_but_for_known_deviations(definition):
    if not SCHEMA.is_file():
        pytest.skip(f"the official pipeline definition schema is not at {SCHEMA}")
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its $schema URI names no draft
        top = jsonschema.Draft202012Validator({**schema, "properties": {**schema["properties"], "Steps": {}}})
    found = {("top-level", name) for where, name in _deviations(top, definition, "top-level")}
    for step in steps_by_name(definition).values():
        body = dict(step)
        if step["Type"] == "Condition":  # its inner steps are checked on their own
            body["Arguments"] = {**step["Arguments"], "IfSteps": [], "ElseSteps": []}
        step_schema = {"definitions": schema["definitions"], **schema["definitions"][STEP_DEFINITIONS[step["Type"]]]}
        found |= _deviations(jsonschema.Draft202012Validator(step_schema), body, step["Type"])
    unexpected = found - README_DEVIATIONS - SDK_DEVIATIONS
    assert not unexpected, f"schema violations beyond the known deviations: {sorted(unexpected)}"
    stale = SDK_DEVIATIONS - found
    assert not stale, f"listed deviations that no longer occur (remove them): {sorted(stale)}"


def test_schema_check_catches_a_broken_definition(definition):
    """The deviation filter is not a blanket pass: a misspelt field is reported."""
    if not SCHEMA.is_file():
        pytest.skip(f"the official pipeline definition schema is not at {SCHEMA}")
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    broken = json.loads(json.dumps(steps_by_name(definition)[spec.PREPROCESS]))
    broken["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceKind"] = "ml.m5.xlarge"
    step_schema = {"definitions": schema["definitions"], **schema["definitions"]["ProcessingStep"]}
    found = _deviations(jsonschema.Draft202012Validator(step_schema), broken, "Processing")
    assert ("Processing", "Arguments.ProcessingResources.ClusterConfig.InstanceKind") in found - README_DEVIATIONS - SDK_DEVIATIONS


# ----------------------------------------------------------------------------- CLI against moto
def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = mlops_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mlops_pipeline_definition_prints_the_definition(aws, capsys):
    code, out, err = run_cli(capsys, "pipeline", "definition", "--role-arn", ROLE, "--bucket", BUCKET,
                             "--pipeline-name", "bertmlc-cli", "--no-spot", "--no-cache")
    assert code == 0, err
    printed = json.loads(out)
    steps = steps_by_name(printed)
    assert {name: step["Type"] for name, step in steps.items()} == TYPES
    assert steps[spec.TRAIN]["Arguments"].get("EnableManagedSpotTraining") in (None, False)
    assert "MaxWaitTimeInSeconds" not in steps[spec.TRAIN]["Arguments"]["StoppingCondition"]
    assert all(steps[n]["CacheConfig"]["Enabled"] is False for n in (spec.PREPROCESS, spec.TRAIN, spec.EVALUATE))
    code, _, err = run_cli(capsys, "pipeline", "definition", "--role-arn", ROLE, "--bucket", BUCKET,
                           "--input-data", "hf:go_emotions")
    assert code == 2 and "SageMaker processing reads S3 only" in err


def test_upsert_start_status(aws, capsys):
    sm = boto3.client("sagemaker", region_name=REGION)
    code, out, err = run_cli(capsys, "pipeline", "upsert", "--role-arn", ROLE, "--bucket", BUCKET)
    assert code == 0, err
    stored = sm.describe_pipeline(PipelineName=spec.PIPELINE_NAME)
    assert stored["RoleArn"] == ROLE
    stored_definition = json.loads(stored["PipelineDefinition"])
    assert set(steps_by_name(stored_definition)) == set(TYPES)
    # upsert again = update, not a name clash
    code, _, err = run_cli(capsys, "pipeline", "upsert", "--role-arn", ROLE, "--bucket", BUCKET)
    assert code == 0, err

    code, out, err = run_cli(capsys, "pipeline", "start", "--bucket", BUCKET, "--param", "Epochs=1",
                             "--param", "InputData=demo", "--param", "ModelApprovalStatus=Approved")
    assert code == 0, err
    arn = out.strip().splitlines()[-1]
    assert re.fullmatch(rf"arn:aws:sagemaker:{REGION}:\d{{12}}:pipeline/{spec.PIPELINE_NAME}/execution/\w+", arn)
    sent = {p["Name"]: p["Value"] for p in sm.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=arn)["PipelineParameters"]}
    assert sent["Epochs"] == "1.0" and sent["ModelApprovalStatus"] == "Approved"
    assert sent["InputData"] == stored_definition["Parameters"][0]["DefaultValue"], \
        "the same demo data must stage to the same (content-addressed) S3 prefix"

    code, out, err = run_cli(capsys, "pipeline", "status", "--execution-arn", arn, "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["PipelineExecutionArn"] == arn
    assert status["PipelineExecutionStatus"] == sm.describe_pipeline_execution(
        PipelineExecutionArn=arn)["PipelineExecutionStatus"]
    assert status["Parameters"] == sent
    code, out, err = run_cli(capsys, "pipeline", "status")  # latest execution
    assert code == 0, err
    assert arn in out and f"status: {status['PipelineExecutionStatus']}" in out


@pytest.mark.parametrize("argv,message", [
    (["--param", "Epochs=three"], "Epochs is Float"),
    (["--param", "Nope=1"], "unknown pipeline parameter 'Nope'"),
    (["--param", "Epochs"], "expects NAME=VALUE"),
    (["--param", "ModelApprovalStatus=Yes"], "ModelApprovalStatus must be one of"),
    (["--param", "TrainingInstanceType=g5.xlarge"], "TrainingInstanceType must be a SageMaker instance type"),
    (["--param", "InputData=hf:go_emotions"], "SageMaker processing reads S3 only"),
    (["--param", "InputData=/no/such/dir"], "InputData path not found"),
    (["--param", "InputData=demo"], "pass --bucket"),
    (["--param", "Epochs=0"], "Epochs must be > 0"),
    (["--param", "F1Threshold=1.5"], "F1Threshold must be between 0 and 1"),
    (["--param", "TrainingInstanceCount=0"], "TrainingInstanceCount must be >= 1"),
])
def test_start_rejects_bad_input(aws, capsys, argv, message):
    code, _out, err = run_cli(capsys, "pipeline", "start", *argv)
    assert code == 2 and message in err, err


def test_start_refuses_an_instance_type_the_image_does_not_run_on(aws, definition, capsys):
    """The pipeline was built for GPU training (Hugging Face's training image has no CPU build): a CPU
    TrainingInstanceType at start is refused, as SageMaker refuses a value outside EnumValues, saying what to do."""
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_pipeline(PipelineName="bertmlc-gpu", PipelineDefinition=json.dumps(definition), RoleArn=ROLE)
    code, _, err = run_cli(capsys, "pipeline", "start", "--pipeline-name", "bertmlc-gpu",
                           "--param", "TrainingInstanceType=ml.c6i.xlarge")
    assert code == 2 and "TrainingInstanceType=ml.c6i.xlarge is not one this pipeline's image runs on" in err, err
    assert "--training-instance-type" in err
    assert not sm.list_pipeline_executions(PipelineName="bertmlc-gpu")["PipelineExecutionSummaries"]
    code, _out, err = run_cli(capsys, "pipeline", "start", "--pipeline-name", "bertmlc-gpu",
                             "--param", "TrainingInstanceType=ml.g6.12xlarge", "--param", "TrainingInstanceCount=2")
    assert code == 0, err


def test_start_uploads_a_local_input_dir_content_addressed(aws, definition, capsys, tmp_path):
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_pipeline(PipelineName="bertmlc-local-input", PipelineDefinition=json.dumps(definition), RoleArn=ROLE)
    data = tmp_path / "tickets"
    data.mkdir()
    (data / "data.jsonl").write_text('{"text": "refund please", "labels": ["billing"]}\n')
    uris = []
    for _ in range(2):
        code, out, err = run_cli(capsys, "pipeline", "start", "--pipeline-name", "bertmlc-local-input",
                                 "--bucket", BUCKET, "--param", f"InputData={data}")
        assert code == 0, err
        sent = {p["Name"]: p["Value"] for p in sm.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=out.strip().splitlines()[-1])["PipelineParameters"]}
        uris.append(sent["InputData"])
    assert uris[0] == uris[1] and re.fullmatch(rf"s3://{BUCKET}/{PREFIX}/input/tickets-[0-9a-f]{{12}}/", uris[0])
    assert s3_get(uris[0] + "data.jsonl") == (data / "data.jsonl").read_bytes()
    (data / "data.jsonl").write_text('{"text": "where is my parcel", "labels": ["shipping"]}\n')
    code, out, err = run_cli(capsys, "pipeline", "start", "--pipeline-name", "bertmlc-local-input",
                             "--bucket", BUCKET, "--param", f"InputData={data}")
    assert code == 0, err
    sent = {p["Name"]: p["Value"] for p in sm.list_pipeline_parameters_for_execution(
        PipelineExecutionArn=out.strip().splitlines()[-1])["PipelineParameters"]}
    assert sent["InputData"] != uris[0], "changed data must stage to a new prefix (no stale cache hits)"


def test_missing_pipeline_and_executions_are_clear(aws, capsys):
    code, _, err = run_cli(capsys, "pipeline", "start", "--pipeline-name", "no-such-pipeline")
    assert code != 0 and "no-such-pipeline" in err
    code, _, err = run_cli(capsys, "pipeline", "upsert", "--bucket", BUCKET)
    assert code == 2 and "role ARN" in err


def test_no_region_or_credentials_exit_2(aws, capsys, monkeypatch, tmp_path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    code, _, err = run_cli(capsys, "pipeline", "status")
    assert code == 2 and "no AWS region" in err
    monkeypatch.setenv("AWS_REGION", REGION)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    code, _, err = run_cli(capsys, "pipeline", "status")
    assert code == 2 and "no AWS credentials" in err


def test_console_scripts(aws, capsys, tmp_path):
    from pipelines import get_pipeline_definition, run_pipeline

    out_file = tmp_path / "definition.json"
    assert get_pipeline_definition.main(["--role-arn", ROLE, "--bucket", BUCKET, "--file-name", str(out_file),
                                         "--kwargs", json.dumps({"pipeline_name": "bertmlc-ci"})]) == 0
    written = json.loads(out_file.read_text())
    assert set(steps_by_name(written)) == set(TYPES)
    assert get_pipeline_definition.main(["--role-arn", ROLE, "--kwargs", "[1]"]) == 2
    assert get_pipeline_definition.main(["--role-arn", ROLE, "--kwargs", '{"role": "x"}']) == 2
    capsys.readouterr()
    # as the AWS template calls it: region, role and default_bucket in --kwargs (the definition above took the flags)
    template = {"region": REGION, "role": ROLE, "default_bucket": BUCKET, "pipeline_name": "bertmlc-ci"}
    assert run_pipeline.main(["--kwargs", json.dumps(template), "--param", "MaxLength=64"]) == 0
    out = capsys.readouterr().out
    arn = re.search(r"started (\S+)", out).group(1)
    sm = boto3.client("sagemaker", region_name=REGION)
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineArn"].endswith("/bertmlc-ci")
    assert run_pipeline.main(["--role-arn", ROLE, "--param", "MaxLength=sixty"]) == 2


def test_run_pipeline_template_kwargs_cannot_contradict_the_flags(aws, capsys):
    """--kwargs region/role/default_bucket stand for the flags (test_console_scripts runs that); both at odds is an
    error, and what the script builds itself (the input URI, the session) cannot come through --kwargs."""
    from pipelines import run_pipeline

    kwargs = {"region": REGION, "role": ROLE, "default_bucket": BUCKET}
    assert run_pipeline.main(["--role-arn", ROLE, "--kwargs", json.dumps({**kwargs, "role": ROLE + "Other"})]) == 2
    assert "contradicts --role-arn" in capsys.readouterr().err
    assert run_pipeline.main(["--kwargs", json.dumps({**kwargs, "input_data_uri": "s3://b/x"})]) == 2
    assert "use --input-data" in capsys.readouterr().err


# ----------------------------------------------------------------------------- scheduled retraining template
def _schedule_template() -> dict:
    from cfnlint.decode import decode

    doc, errors = decode(str(REPO_ROOT / "infra" / "pipeline.yaml"))
    assert not errors, errors
    return doc


def test_schedule_template_is_lint_clean_and_least_privilege():
    template = REPO_ROOT / "infra" / "pipeline.yaml"
    proc = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(template)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = _schedule_template()
    params, resources = doc["Parameters"], doc["Resources"]
    assert params["PipelineName"]["Default"] == spec.PIPELINE_NAME
    cron = re.fullmatch(r"cron\((.+)\)", params["ScheduleExpression"]["Default"])
    assert cron and len(cron.group(1).split()) == 6, "EventBridge cron expressions have 6 fields"
    [schedule] = [r for r in resources.values() if r["Type"] == "AWS::Scheduler::Schedule"]
    [role] = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    assert schedule["Properties"]["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    # a universal target: Scheduler fills its context attributes into Input (a templated target has no Input)
    assert schedule["Properties"]["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:sagemaker:startPipelineExecution"
    pipeline_arn = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:pipeline/${PipelineName}"
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"]["Service"] for s in trust] == ["scheduler.amazonaws.com"]
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [{"Effect": "Allow", "Action": "sagemaker:StartPipelineExecution",
                           "Resource": {"Fn::Sub": pipeline_arn}}]


def _scheduled_request(doc: dict, input_data: str, pipeline_name: str, scheduled_time: str) -> dict:
    """The StartPipelineExecution request one schedule invocation sends: CloudFormation's Fn::If/Fn::Sub resolved
    for these stack parameters, then Scheduler's context attribute replaced, as its documentation describes."""
    [schedule] = [r for r in doc["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]
    condition, with_data, without_data = schedule["Properties"]["Target"]["Input"]["Fn::If"]
    assert condition == "HasInputData"
    body = (with_data if input_data else without_data)["Fn::Sub"]
    for name, value in {"PipelineName": pipeline_name, "InputDataUri": input_data}.items():
        body = body.replace("${" + name + "}", value)
    assert "${" not in body, body
    return json.loads(body.replace("<aws.scheduler.scheduled-time>", scheduled_time))


def test_each_scheduled_execution_reads_input_data_again(aws, definition):
    """Two schedule invocations, a week apart: each execution's DataVersion is its scheduled time, and that value
    is in PreprocessData's container arguments, which SageMaker's cache key includes: no stale cache hit."""
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_pipeline(PipelineName="bertmlc-scheduled", PipelineDefinition=json.dumps(definition), RoleArn=ROLE)
    doc, data = _schedule_template(), f"s3://{BUCKET}/datasets/tickets/"
    arguments = []
    for when in ("2026-11-23T03:00:00Z", "2026-11-30T03:00:00Z"):
        request = _scheduled_request(doc, data, "bertmlc-scheduled", when)
        arn = sm.start_pipeline_execution(**request)["PipelineExecutionArn"]
        sent = {p["Name"]: p["Value"] for p in sm.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=arn)["PipelineParameters"]}
        assert sent["DataVersion"] == when and sent["InputData"] == data
        known = {**jobs.parameter_values(definition), **{f"Parameters.{k}": v for k, v in sent.items()}}
        preprocess = steps_by_name(definition)[spec.PREPROCESS]["Arguments"]
        arguments.append(jobs.resolve(preprocess["AppSpecification"]["ContainerArguments"], known))
    assert arguments[0] != arguments[1] and [a[a.index("--data-version") + 1] for a in arguments] == \
        ["2026-11-23T03:00:00Z", "2026-11-30T03:00:00Z"]
    without = _scheduled_request(doc, "", "bertmlc-scheduled", "2026-12-07T03:00:00Z")
    assert [p["Name"] for p in without["PipelineParameters"]] == ["DataVersion"]  # the pipeline's InputData default
