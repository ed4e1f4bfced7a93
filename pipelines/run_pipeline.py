"""Drive the SageMaker Pipeline: build, upsert, start, status (used by `run-pipeline` and `mlops pipeline`).

`run-pipeline` keeps the AWS MLOps template's interface (`--module-name --role-arn --tags --kwargs`):
it upserts the pipeline and starts an execution (CodeBuild runs it).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipelines import spec
from pipelines.aws_session import AwsSetupError, boto_session, resolve_region, upload_dir

DEFAULT_MODULE = "pipelines.bertmlc.pipeline"
INSTANCE_PARAMETERS = ("ProcessingInstanceType", "TrainingInstanceType")
COUNT_PARAMETERS = ("ProcessingInstanceCount", "TrainingInstanceCount")
TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")


class PipelineRunError(ValueError):
    """Bad user input for the AWS pipeline (parameters, kwargs, input data): the message says what to fix."""


# ----------------------------------------------------------------------------- input data
def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(path.parent if path.is_file() else path).as_posix().encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def check_input_data(value: str) -> Path | None:
    """Validate an InputData value for SageMaker: None for s3:// and 'demo', else the local path to upload."""
    value = str(value).strip()
    if value.startswith("s3://"):
        if len(value) <= len("s3://") or value[len("s3://"):].startswith("/"):
            raise PipelineRunError(f"InputData {value!r} is not a valid S3 URI (expected s3://bucket/prefix/)")
        return None
    if value.startswith("hf:"):
        raise PipelineRunError(f"InputData {value!r}: SageMaker processing reads S3 only; download the dataset "
                               "(e.g. `mlops run --input hf:...` locally) and pass its directory or an s3:// URI")
    if not value:
        raise PipelineRunError("InputData must not be empty: use 'demo', a local path or an s3:// URI")
    if value == "demo":
        return None
    local = Path(value).expanduser().resolve()
    if not local.exists():
        raise PipelineRunError(f"InputData path not found: {local} (use 'demo', a local path or an s3:// URI)")
    return local


def stage_input_data(value: str, session, bucket: str, prefix: str) -> str:
    """InputData as SageMaker needs it (an S3 prefix): s3:// kept; 'demo' and local paths uploaded.

    Uploads are content-addressed (`s3://bucket/prefix/input/<name>-<sha>/`), so re-staging the same
    data gives the same URI and step caching still hits.
    """
    value = str(value).strip()
    local = check_input_data(value)
    if value.startswith("s3://"):
        return value
    with tempfile.TemporaryDirectory(prefix="bertmlc-input-") as tmp:
        if local is None:  # 'demo'
            from mlcore.demo_data import write_demo

            local, name = write_demo(Path(tmp) / "demo" / "data.jsonl").parent, "demo"
        else:
            name = local.stem if local.is_file() else local.name
        uri = f"s3://{bucket}/{prefix.strip('/')}/input/{name}-{_digest(local)}/"
        return upload_dir(session, local, uri)


# ----------------------------------------------------------------------------- parameters
def check_parameters(overrides: Mapping[str, str]) -> dict[str, Any]:
    """Typed, checked overrides (only those given); errors name the parameter and the valid values."""
    from pipelines.local_runner import resolve_parameters

    try:
        values = resolve_parameters(dict(overrides))
    except ValueError as exc:
        raise PipelineRunError(str(exc)) from None
    problems = [f"{name} must be a SageMaker instance type like ml.m5.xlarge (got {values[name]!r})"
                for name in INSTANCE_PARAMETERS if name in overrides and not str(values[name]).startswith("ml.")]
    problems += [f"{name} must be >= 1 (got {values[name]})" for name in COUNT_PARAMETERS
                 if name in overrides and values[name] < 1]
    if problems:
        raise PipelineRunError("invalid pipeline parameters: " + "; ".join(problems))
    return {name: values[name] for name in overrides}


def parse_assignments(items: Sequence[str], flag: str = "--param") -> dict[str, str]:
    """`NAME=VALUE` strings as a dict; a malformed or repeated item is an error naming the flag."""
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise PipelineRunError(f"{flag} expects NAME=VALUE, got {item!r} (e.g. {flag} Epochs=1)")
        if name in out:
            raise PipelineRunError(f"{flag} {name} given twice")
        out[name] = value
    return out


# ----------------------------------------------------------------------------- build / upsert / start / status
def load_get_pipeline(module_name: str = DEFAULT_MODULE):
    """The `get_pipeline` function of a pipeline module (AWS template convention)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineRunError(f"cannot import pipeline module {module_name!r}: {exc}") from None
    if not callable(getattr(module, "get_pipeline", None)):
        raise PipelineRunError(f"{module_name} has no get_pipeline(...) function")
    return module.get_pipeline


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """The `--kwargs` JSON object (extra get_pipeline arguments)."""
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineRunError(f"--kwargs is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None
    if not isinstance(kwargs, dict):
        raise PipelineRunError(f"--kwargs must be a JSON object, got {type(kwargs).__name__}")
    return kwargs


def build_pipeline(region: str | None = None, role: str | None = None, default_bucket: str | None = None,
                   input_data: str | None = None, module_name: str = DEFAULT_MODULE, extra: dict | None = None):
    """Stage InputData (default: the spec's, 'demo') to S3, then build the pipeline with get_pipeline(**extra)."""
    import inspect

    from pipelines.aws_session import pipeline_session

    kwargs = dict(extra or {})
    region = resolve_region(region)
    if not role or not str(role).startswith("arn:"):
        raise PipelineRunError(f"an execution role ARN is needed (arn:aws:iam::<account>:role/<name>): pass "
                               f"--role-arn or set SAGEMAKER_PIPELINE_ROLE_ARN (got {role!r})")
    get_pipeline = load_get_pipeline(module_name)
    accepted = inspect.signature(get_pipeline).parameters
    reserved = sorted(set(kwargs) & {"region", "role", "default_bucket", "input_data_uri", "sagemaker_session"})
    if reserved:
        raise PipelineRunError(f"{reserved} cannot be passed in --kwargs: use the matching flag "
                               "(--region, --role-arn, --bucket, --input-data)")
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise PipelineRunError(f"unknown get_pipeline arguments {unknown}; accepted: {', '.join(accepted)}")
    session = pipeline_session(region, default_bucket)
    bucket = default_bucket or session.default_bucket()
    prefix = kwargs.get("base_job_prefix") or accepted["base_job_prefix"].default
    source = input_data if input_data is not None else spec.PARAMETERS_BY_NAME["InputData"].default
    input_uri = stage_input_data(source, session.boto_session, bucket, prefix)
    return get_pipeline(region=region, role=role, default_bucket=bucket, sagemaker_session=session,
                        input_data_uri=input_uri, **kwargs)


def upsert(pipeline, role_arn: str, description: str | None = None, tags: list[dict] | None = None) -> dict:
    """Create or update the pipeline in SageMaker; returns the service response."""
    if not role_arn or not role_arn.startswith("arn:"):
        raise PipelineRunError(f"--role-arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got {role_arn!r}")
    return pipeline.upsert(role_arn=role_arn, description=description, tags=tags)


def start(region: str | None, pipeline_name: str, overrides: Mapping[str, str], bucket: str | None = None,
          prefix: str = "bert-multilabel", display_name: str | None = None) -> str:
    """Start an execution of the upserted pipeline with checked overrides; returns the execution ARN."""
    values = check_parameters(overrides)
    session = boto_session(region)
    client = session.client("sagemaker")
    if "InputData" in values and not str(values["InputData"]).startswith("s3://"):
        check_input_data(values["InputData"])
        if not bucket:
            raise PipelineRunError("InputData other than an s3:// URI is uploaded first: pass --bucket "
                                   "(or set ARTIFACT_BUCKET)")
        values["InputData"] = stage_input_data(values["InputData"], session, bucket, prefix)
    request: dict[str, Any] = {
        "PipelineName": pipeline_name,
        "PipelineParameters": [{"Name": k, "Value": str(v)} for k, v in values.items()],
    }
    if display_name:
        request["PipelineExecutionDisplayName"] = display_name
    try:
        return client.start_pipeline_execution(**request)["PipelineExecutionArn"]
    except client.exceptions.ResourceNotFound:
        raise PipelineRunError(f"pipeline {pipeline_name!r} not found in {session.region_name}: "
                               "run `mlops pipeline upsert --role-arn ...` first") from None


def status(region: str | None, pipeline_name: str, execution_arn: str | None = None) -> dict:
    """The execution (latest when no ARN) with its parameters and, where the API answers, its steps."""
    from botocore.exceptions import ClientError

    client = boto_session(region).client("sagemaker")
    if not execution_arn:
        try:
            summaries = client.list_pipeline_executions(
                PipelineName=pipeline_name, SortBy="CreationTime", SortOrder="Descending", MaxResults=1,
            ).get("PipelineExecutionSummaries", [])
        except client.exceptions.ResourceNotFound:
            raise PipelineRunError(f"pipeline {pipeline_name!r} not found: run `mlops pipeline upsert` first") from None
        if not summaries:
            raise PipelineRunError(f"pipeline {pipeline_name!r} has no executions yet: run `mlops pipeline start`")
        latest = max(summaries, key=lambda s: s.get("StartTime") or s.get("CreationTime"))
        execution_arn = latest["PipelineExecutionArn"]
    try:
        execution = client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    except ClientError as exc:
        raise PipelineRunError(f"cannot describe execution {execution_arn}: {exc.response['Error']['Message']}") from None
    result = {
        "PipelineExecutionArn": execution_arn,
        "PipelineExecutionStatus": execution.get("PipelineExecutionStatus"),
        "FailureReason": execution.get("FailureReason"),
        "CreationTime": str(execution.get("CreationTime")),
        "LastModifiedTime": str(execution.get("LastModifiedTime")),
        "Parameters": {p["Name"]: p["Value"] for p in client.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=execution_arn).get("PipelineParameters", [])},
    }
    try:
        steps = client.list_pipeline_execution_steps(PipelineExecutionArn=execution_arn)["PipelineExecutionSteps"]
        result["Steps"] = [{"StepName": s["StepName"], "StepStatus": s.get("StepStatus"),
                            "FailureReason": s.get("FailureReason")} for s in steps]
    except ClientError as exc:  # e.g. an emulator without ListPipelineExecutionSteps
        error = exc.response.get("Error", {})
        result["Steps"] = None
        result["StepsError"] = f"{exc.operation_name}: {error.get('Code') or 'error'} " \
                               f"(HTTP {exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')})"
    return result


def wait(region: str | None, execution_arn: str, pipeline_name: str, poll_seconds: float = 60,
         timeout_seconds: float = 4 * 3600) -> dict:
    """Poll `status` until the execution ends (or the timeout passes); returns the last status."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        current = status(region, pipeline_name, execution_arn)
        print(f"{time.strftime('%H:%M:%S')} {current['PipelineExecutionStatus']}", flush=True)
        if current["PipelineExecutionStatus"] in TERMINAL_STATUSES or time.monotonic() > deadline:
            return current
        time.sleep(poll_seconds)


# ----------------------------------------------------------------------------- console script
def main(argv: Sequence[str] | None = None) -> int:
    """`run-pipeline`: upsert the pipeline and start an execution (the AWS MLOps template interface)."""
    parser = argparse.ArgumentParser(prog="run-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--module-name", default=DEFAULT_MODULE, help="module with get_pipeline(...)")
    parser.add_argument("--role-arn", default=os.environ.get("SAGEMAKER_PIPELINE_ROLE_ARN"),
                        help="execution role of the pipeline and its jobs (default: $SAGEMAKER_PIPELINE_ROLE_ARN)")
    parser.add_argument("--region", default=None, help="default: AWS_REGION / the profile's")
    parser.add_argument("--bucket", default=os.environ.get("ARTIFACT_BUCKET"),
                        help="artifact bucket (default: $ARTIFACT_BUCKET, else sagemaker-<region>-<account>)")
    parser.add_argument("--input-data", default=None, help="InputData default: 'demo', a local path or s3:// URI")
    parser.add_argument("--description", default=None)
    parser.add_argument("--tags", default=None, help='JSON list of {"Key": ..., "Value": ...}')
    parser.add_argument("-kwargs", "--kwargs", default=None, help="JSON object of extra get_pipeline arguments")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a pipeline parameter for this execution (repeatable)")
    parser.add_argument("--wait", action="store_true", help="wait for the execution to finish (exit 1 unless it succeeds)")
    args = parser.parse_args(argv)
    try:
        kwargs = parse_kwargs(args.kwargs)
        tags = json.loads(args.tags) if args.tags else None
        if tags is not None and not (isinstance(tags, list) and all(isinstance(t, dict) and {"Key", "Value"} <= set(t)
                                                                    for t in tags)):
            raise PipelineRunError('--tags must be a JSON list of {"Key": ..., "Value": ...} objects')
        overrides = parse_assignments(args.param)
        check_parameters(overrides)
        pipeline = build_pipeline(args.region, args.role_arn, args.bucket, args.input_data, args.module_name, kwargs)
        response = upsert(pipeline, args.role_arn, args.description, tags)
        print(f"upserted {response.get('PipelineArn')}")
        arn = start(args.region, pipeline.name, overrides, args.bucket or pipeline.sagemaker_session.default_bucket(),
                    kwargs.get("base_job_prefix", "bert-multilabel"))
        print(f"started {arn}")
        if args.wait:
            final = wait(args.region, arn, pipeline.name)
            print(json.dumps(final, indent=2, default=str))
            return 0 if final["PipelineExecutionStatus"] == "Succeeded" else 1
    except json.JSONDecodeError as exc:
        print(f"error: --tags is not valid JSON ({exc.msg})", file=sys.stderr)
        return 2
    except (PipelineRunError, AwsSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
