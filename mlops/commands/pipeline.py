"""`mlops pipeline`: the SageMaker Pipeline on AWS: definition, upsert, start, status."""
from __future__ import annotations

import argparse
import json
import os

from mlops.cli import CliError
from pipelines import spec

ORDER = 70



def _common(parser: argparse.ArgumentParser, role: bool = False, build: bool = False) -> None:
    parser.add_argument("--region", default=None, help="AWS region (default: AWS_REGION / the profile's)")
    parser.add_argument("--pipeline-name", default=spec.PIPELINE_NAME, help=f"default: {spec.PIPELINE_NAME}")
    parser.add_argument("--bucket", default=os.environ.get("ARTIFACT_BUCKET"),
                        help="artifact bucket (default: $ARTIFACT_BUCKET, else sagemaker-<region>-<account>)")
    parser.add_argument("--prefix", default=spec.BASE_JOB_PREFIX, help="S3 key prefix and job name prefix")
    if role:
        parser.add_argument("--role-arn", default=os.environ.get("SAGEMAKER_PIPELINE_ROLE_ARN"),
                            help="execution role of the pipeline and its jobs (default: $SAGEMAKER_PIPELINE_ROLE_ARN)")
    if build:
        parser.add_argument("--input-data", default=None,
                            help="InputData default: 'demo' (uploaded), a local path (uploaded) or an s3:// URI")
        parser.add_argument("--model-package-group", default=spec.MODEL_PACKAGE_GROUP)
        parser.add_argument("--no-spot", action="store_true", help="train on on-demand instead of spot instances")
        parser.add_argument("--no-cache", action="store_true", help="turn step caching off")
        parser.add_argument("--training-instance-type", default=spec.PARAMETERS_BY_NAME["TrainingInstanceType"].default,
                            help="TrainingInstanceType's default; its kind (GPU or CPU) picks the training image, and "
                                 "a start-time value must be of that kind (default: %(default)s)")
        parser.add_argument("--mlflow-tracking-server-arn", default=os.environ.get("MLFLOW_TRACKING_SERVER_ARN"),
                            help="SageMaker managed MLflow tracking server the steps log to (default: "
                                 "$MLFLOW_TRACKING_SERVER_ARN; none: no tracking)")
        parser.add_argument("--mlflow-experiment", default=None, help="MLflow experiment (default: the pipeline name)")


def _build_kwargs(args: argparse.Namespace) -> dict:
    return {"pipeline_name": args.pipeline_name, "base_job_prefix": args.prefix,
            "model_package_group_name": args.model_package_group, "use_spot_instances": not args.no_spot,
            "enable_caching": not args.no_cache, "training_instance_type": args.training_instance_type,
            "mlflow_tracking_server_arn": args.mlflow_tracking_server_arn,
            "mlflow_experiment_name": args.mlflow_experiment}


def _guard(func):
    """Run `func(args)`, turning input and AWS setup errors into CliError (exit 2)."""
    def wrapper(args: argparse.Namespace) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        from pipelines.aws_session import AwsSetupError
        from pipelines.run_pipeline import PipelineRunError

        try:
            return func(args)
        except (PipelineRunError, AwsSetupError) as exc:
            raise CliError(str(exc)) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CliError(f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}", 1) from None
        except BotoCoreError as exc:
            raise CliError(f"AWS call failed: {exc}", 1) from None
    return wrapper


@_guard
def cmd_definition(args: argparse.Namespace) -> int:
    from pipelines.get_pipeline_definition import definition_json

    text = definition_json(args.region, args.role_arn, args.bucket, args.input_data, extra=_build_kwargs(args))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


@_guard
def cmd_upsert(args: argparse.Namespace) -> int:
    from pipelines.run_pipeline import build_pipeline, upsert

    pipeline = build_pipeline(args.region, args.role_arn, args.bucket, args.input_data, extra=_build_kwargs(args))
    response = upsert(pipeline, args.role_arn, args.description)
    print(f"upserted {response.get('PipelineArn')}")
    return 0


@_guard
def cmd_start(args: argparse.Namespace) -> int:
    from pipelines.run_pipeline import parse_overrides, start, wait

    overrides = parse_overrides(args.param, "--param")
    arn = start(args.region, args.pipeline_name, overrides, args.bucket, args.prefix, args.display_name)
    print(arn)
    if args.wait:
        final = wait(args.region, arn, args.pipeline_name, poll_seconds=args.poll_seconds)
        print(json.dumps(final, indent=2, default=str))
        return 0 if final["PipelineExecutionStatus"] == "Succeeded" else 1
    return 0


@_guard
def cmd_status(args: argparse.Namespace) -> int:
    from pipelines.run_pipeline import status

    result = status(args.region, args.pipeline_name, args.execution_arn)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"{result['PipelineExecutionArn']}\nstatus: {result['PipelineExecutionStatus']}")
    if result.get("FailureReason"):
        print(f"failure: {result['FailureReason']}")
    for name, value in result["Parameters"].items():
        print(f"  {name} = {value}")
    for step in result.get("Steps") or []:
        print(f"  step {step['StepName']:<20} {step['StepStatus']}"
              + (f"  ({step['FailureReason']})" if step.get("FailureReason") else ""))
    if result.get("Steps") is None:
        print(f"  steps: unavailable ({result.get('StepsError')})")
    return 0


def _parameters_epilog() -> str:
    lines = ["pipeline parameters (--param NAME=VALUE):"]
    lines += [f"  {p.name:<24} {p.type:<8} {p.help} (default: {p.default})" for p in spec.PARAMETERS]
    lines.append("InputData other than an s3:// URI ('demo', a local path) is uploaded to --bucket first.")
    return "\n".join(lines)


def register(subparsers) -> None:
    parser = subparsers.add_parser("pipeline", help="the SageMaker Pipeline on AWS: definition, upsert, start, status",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="pipeline_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = sub.add_parser("definition", help="print the pipeline definition JSON (uploads the step code to S3)")
    _common(p, role=True, build=True)
    p.add_argument("--output", "-o", default=None, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_definition)

    p = sub.add_parser("upsert", help="create or update the pipeline in SageMaker")
    _common(p, role=True, build=True)
    p.add_argument("--description", default="BERT multi-label text classification: preprocess, train, evaluate, "
                                            "quality gate, register")
    p.set_defaults(func=cmd_upsert)

    p = sub.add_parser("start", help="start an execution of the upserted pipeline", epilog=_parameters_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                   help="override a pipeline parameter (repeatable)")
    p.add_argument("--display-name", default=None)
    p.add_argument("--wait", action="store_true", help="wait until it ends; exit 1 unless it succeeded")
    p.add_argument("--poll-seconds", type=float, default=60.0)
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("status", help="status of an execution (default: the latest)")
    _common(p)
    p.add_argument("--execution-arn", default=None, help="default: the pipeline's latest execution")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)
