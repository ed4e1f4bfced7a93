"""AWS sessions for the SageMaker pipeline tools, with clear errors instead of SDK tracebacks.

Region and credentials come from the standard chain (flags, AWS_REGION / AWS_DEFAULT_REGION,
profiles); AWS_ENDPOINT_URL(_S3) point boto3 at an emulator such as moto server.
"""
from __future__ import annotations

import os
from pathlib import Path

import boto3

# The SDK validates the execution role with an IAM call on import paths we use; not needed here.
os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")


class AwsSetupError(Exception):
    """Missing region or credentials: the message says what to set."""


def resolve_region(region: str | None = None) -> str:
    """The region from the argument, AWS_REGION/AWS_DEFAULT_REGION or the profile; error if none."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") \
        or boto3.session.Session().region_name
    if not region:
        raise AwsSetupError("no AWS region: pass --region or set AWS_REGION (e.g. export AWS_REGION=us-east-1)")
    return region


def boto_session(region: str | None = None, require_credentials: bool = True) -> boto3.session.Session:
    """A boto3 session in the resolved region; with `require_credentials`, fail early when none are found."""
    session = boto3.session.Session(region_name=resolve_region(region))
    if require_credentials and session.get_credentials() is None:
        raise AwsSetupError("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                            "or run on a machine with an IAM role (CodeBuild, SageMaker)")
    return session


def pipeline_session(region: str | None = None, default_bucket: str | None = None):
    """A SageMaker PipelineSession (step arguments are recorded, nothing runs) on `boto_session`."""
    os.environ.setdefault("AWS_DEFAULT_REGION", resolve_region(region))
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    return PipelineSession(boto_session=boto_session(region), default_bucket=default_bucket)


def upload_dir(session: boto3.session.Session, local: Path, s3_uri: str) -> str:
    """Upload the files under `local` (or one file) below the `s3_uri` prefix; returns the prefix."""
    bucket, _, prefix = s3_uri.removeprefix("s3://").partition("/")
    s3 = session.client("s3")
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{local} holds no files to upload")
    base = local.parent if local.is_file() else local
    for path in files:
        key = "/".join(part for part in (prefix.rstrip("/"), path.relative_to(base).as_posix()) if part)
        s3.upload_file(str(path), bucket, key)
    return s3_uri.rstrip("/") + "/"
