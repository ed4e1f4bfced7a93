"""Drive the SageMaker Pipeline: build, upsert, start, status (used by `run-pipeline` and `mlops pipeline`).

`run-pipeline` keeps the AWS MLOps template's interface (`--module-name --role-arn --tags --kwargs`):
it upserts the pipeline and starts an execution (CodeBuild runs it).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Any, Mapping, Sequence

from pipelines import spec
from pipelines.aws_session import AwsSetupError, boto_session, resolve_region
from pipelines.input_data import PipelineRunError, check_input_data, stage_input_data
from pipelines.parameters import PipelineError, parse_assignments, resolve_parameters

DEFAULT_MODULE = "pipelines.bertmlc.pipeline"
# Keys the AWS MLOps template's `run-pipeline --kwargs` carries for get_pipeline, and the flag each one stands for.
TEMPLATE_KWARGS = {"region": "--region", "role": "--role-arn", "default_bucket": "--bucket"}
INSTANCE_PARAMETERS = ("ProcessingInstanceType", "TrainingInstanceType")
COUNT_PARAMETERS = ("TrainingInstanceCount",)
TERMINAL_STATUSES = ("Succeeded", "Failed", "Stopped")


# ----------------------------------------------------------------------------- parameters
def check_parameters(overrides: Mapping[str, str]) -> dict[str, Any]:
    """Typed, checked overrides (only those given); errors name the parameter and the valid values."""
    try:
        values = resolve_parameters(dict(overrides))
    except PipelineError as exc:
        raise PipelineRunError(str(exc)) from None
    problems = [f"{name} must be a SageMaker instance type like ml.m5.xlarge (got {values[name]!r})"
                for name in INSTANCE_PARAMETERS if name in overrides and not str(values[name]).startswith("ml.")]
    problems += [f"{name} must be >= 1 (got {values[name]})" for name in COUNT_PARAMETERS
                 if name in overrides and values[name] < 1]
    if problems:
        raise PipelineRunError("invalid pipeline parameters: " + "; ".join(problems))
    return {name: values[name] for name in overrides}


def parse_overrides(items: Sequence[str], flag: str = "--param") -> dict[str, str]:
    """`NAME=VALUE` overrides (`pipelines.parameters.parse_assignments`) with this module's error."""
    try:
        return parse_assignments(items, flag)
    except PipelineError as exc:
        raise PipelineRunError(str(exc)) from None


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


def template_kwargs(kwargs: Mapping[str, Any], **flags: str | None) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Split the AWS template's keys (`region`, `role`, `default_bucket`) off `--kwargs`.

    Returns (the flag values, each filled from --kwargs where the flag was not given; the other
    kwargs). A key given both ways with different values is an error naming both.
    """
    rest = dict(kwargs)
    values = dict(flags)
    for key, flag in TEMPLATE_KWARGS.items():
        if key not in rest:
            continue
        value = rest.pop(key)
        if values[key] not in (None, "", value):
            raise PipelineRunError(f"--kwargs {key}={value!r} contradicts {flag} {values[key]!r}: give it once")
        values[key] = value
    return values, rest


def build_pipeline(region: str | None = None, role: str | None = None, default_bucket: str | None = None,
                   input_data: str | None = None, module_name: str = DEFAULT_MODULE, extra: dict | None = None):
    """Stage InputData (default: the spec's, 'demo') to S3, then build the pipeline with get_pipeline(**extra).

    `extra` may carry the AWS template's `region`, `role` and `default_bucket` (see `template_kwargs`).
    """
    import inspect

    from pipelines.aws_session import pipeline_session

    flags, kwargs = template_kwargs(extra or {}, region=region, role=role, default_bucket=default_bucket)
    region, role, default_bucket = resolve_region(flags["region"]), flags["role"], flags["default_bucket"]
    if not role or not str(role).startswith("arn:"):
        raise PipelineRunError(f"an execution role ARN is needed (arn:aws:iam::<account>:role/<name>): pass "
                               f"--role-arn or set SAGEMAKER_PIPELINE_ROLE_ARN (got {role!r})")
    get_pipeline = load_get_pipeline(module_name)
    accepted = inspect.signature(get_pipeline).parameters
    reserved = sorted(set(kwargs) & {"input_data_uri", "sagemaker_session"})
    if reserved:
        raise PipelineRunError(f"{reserved} cannot be passed in --kwargs: use --input-data (the session is built here)")
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise PipelineRunError(f"unknown get_pipeline arguments {unknown}; accepted: {', '.join(accepted)}")
    session = pipeline_session(region, default_bucket)
    bucket = default_bucket or session.default_bucket()
    prefix = kwargs.get("base_job_prefix") or accepted["base_job_prefix"].default
    source = input_data if input_data is not None else spec.PARAMETERS_BY_NAME["InputData"].default
    input_uri = stage_input_data(source, session.boto_session, bucket, prefix)
    try:
        return get_pipeline(region=region, role=role, default_bucket=bucket, sagemaker_session=session,
                            input_data_uri=input_uri, **kwargs)
    except ValueError as exc:  # an argument get_pipeline refuses (instance type, MLflow ARN): the user's to fix
        raise PipelineRunError(str(exc)) from None


def upsert(pipeline, role_arn: str, description: str | None = None, tags: list[dict] | None = None) -> dict:
    """Create or update the pipeline in SageMaker; returns the service response."""
    if not role_arn or not role_arn.startswith("arn:"):
        raise PipelineRunError(f"--role-arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got {role_arn!r}")
    return pipeline.upsert(role_arn=role_arn, description=description, tags=tags)


def check_enum_values(client, pipeline_name: str, values: Mapping[str, Any]) -> None:
    """Each override of a parameter with EnumValues (the instance types its step's image runs on) is one of them.

    SageMaker refuses such a value at StartPipelineExecution as well; here the message says what to do.
    """
    try:
        definition = json.loads(client.describe_pipeline(PipelineName=pipeline_name)["PipelineDefinition"])
    except client.exceptions.ResourceNotFound:
        raise PipelineRunError(f"pipeline {pipeline_name!r} not found: run `mlops pipeline upsert --role-arn ...` "
                               "first") from None
    for parameter in definition.get("Parameters", []):
        allowed = parameter.get("EnumValues")
        if allowed and parameter["Name"] in values and str(values[parameter["Name"]]) not in allowed:
            raise PipelineRunError(
                f"{parameter['Name']}={values[parameter['Name']]} is not one this pipeline's image runs on: "
                f"{', '.join(allowed)}. For the other kind (GPU/CPU) build the pipeline again with "
                f"--training-instance-type (mlops pipeline upsert) and start that")


def start(region: str | None, pipeline_name: str, overrides: Mapping[str, str], bucket: str | None = None,
          prefix: str = spec.BASE_JOB_PREFIX, display_name: str | None = None) -> str:
    """Start an execution of the upserted pipeline with checked overrides; returns the execution ARN."""
    values = check_parameters(overrides)
    session = boto_session(region)
    client = session.client("sagemaker")
    upload = "InputData" in values and not str(values["InputData"]).startswith("s3://")
    if upload:
        check_input_data(values["InputData"])
        if not bucket:
            raise PipelineRunError("InputData other than an s3:// URI is uploaded first: pass --bucket "
                                   "(or set ARTIFACT_BUCKET)")
    check_enum_values(client, pipeline_name, values)
    if upload and bucket:
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


# ----------------------------------------------------------------------------- console scripts
def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that build the pipeline, shared by `run-pipeline` and `get-pipeline-definition`."""
    parser.add_argument("-n", "--module-name", default=DEFAULT_MODULE, help="module with get_pipeline(...)")
    parser.add_argument("--role-arn", default=os.environ.get("SAGEMAKER_PIPELINE_ROLE_ARN"),
                        help="execution role of the pipeline and its jobs (default: $SAGEMAKER_PIPELINE_ROLE_ARN)")
    parser.add_argument("--region", default=None, help="default: AWS_REGION / the profile's")
    parser.add_argument("--bucket", default=os.environ.get("ARTIFACT_BUCKET"),
                        help="artifact bucket (default: $ARTIFACT_BUCKET, else sagemaker-<region>-<account>)")
    parser.add_argument("--input-data", default=None, help="InputData default: 'demo', a local path or s3:// URI")
    parser.add_argument("-kwargs", "--kwargs", default=None,
                        help="JSON object of extra get_pipeline arguments; the AWS template's region, role and "
                             "default_bucket stand for --region, --role-arn and --bucket")


def parse_tags(text: str | None) -> list[dict] | None:
    """The `--tags` JSON list of {"Key": ..., "Value": ...} objects."""
    if not text:
        return None
    try:
        tags = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineRunError(f"--tags is not valid JSON ({exc.msg})") from None
    if not (isinstance(tags, list) and all(isinstance(t, dict) and {"Key", "Value"} <= set(t) for t in tags)):
        raise PipelineRunError('--tags must be a JSON list of {"Key": ..., "Value": ...} objects')
    return tags


def _run(args: argparse.Namespace) -> int:
    flags, kwargs = template_kwargs(parse_kwargs(args.kwargs), region=args.region, role=args.role_arn,
                                    default_bucket=args.bucket)
    region, role, bucket = flags["region"], flags["role"], flags["default_bucket"]
    tags = parse_tags(args.tags)
    overrides = parse_overrides(args.param)
    check_parameters(overrides)
    pipeline = build_pipeline(region, role, bucket, args.input_data, args.module_name, kwargs)
    response = upsert(pipeline, role or "", args.description, tags)
    print(f"upserted {response.get('PipelineArn')}")
    arn = start(region, pipeline.name, overrides, bucket or pipeline.sagemaker_session.default_bucket(),
                kwargs.get("base_job_prefix", spec.BASE_JOB_PREFIX))
    print(f"started {arn}")
    if args.wait:
        final = wait(region, arn, pipeline.name)
        print(json.dumps(final, indent=2, default=str))
        return 0 if final["PipelineExecutionStatus"] == "Succeeded" else 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`run-pipeline`: upsert the pipeline and start an execution (the AWS MLOps template interface)."""
    parser = argparse.ArgumentParser(prog="run-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_arguments(parser)
    parser.add_argument("--description", default=None)
    parser.add_argument("--tags", default=None, help='JSON list of {"Key": ..., "Value": ...}')
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a pipeline parameter for this execution (repeatable)")
    parser.add_argument("--wait", action="store_true", help="wait for the execution to finish (exit 1 unless it succeeds)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (PipelineRunError, AwsSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
