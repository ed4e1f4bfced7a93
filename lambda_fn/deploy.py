"""Deploy on approval: the EventBridge handler for "SageMaker Model Package State Change".

Approved -> the version is deployed (a model from the package, an endpoint config with data
capture, then the endpoint created or updated blue/green with auto-rollback). Rejected or
approval revoked for the version being served -> roll back to the newest version still
Approved. The same event twice makes one deployment. The decision logic is one function over a
small backend interface: `SageMakerBackend` on AWS, `mlops.local_deploy.LocalBackend` for the local
twin (it lives with the CLI: the Lambda package carries only this directory).

EventBridge may deliver late, twice or out of order, so the handler acts on the package's
current status (DescribeModelPackage), not on the one the event carries, and treats a version
being rolled out (an endpoint update in progress) as the one serving.

Env (AWS): ENDPOINT_NAME, MODEL_EXECUTION_ROLE_ARN, INSTANCE_TYPE (ml.m5.xlarge),
INSTANCE_COUNT (1), DATA_CAPTURE_S3_URI, CAPTURE_SAMPLE_PERCENT (100), ROLLBACK_ALARM_NAMES.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from aws_lambda_powertools import Logger

logger = Logger(service="deploy")

DETAIL_TYPE = "SageMaker Model Package State Change"
JSON_TYPES = ["application/json", "application/jsonlines"]


class DeployBackend(Protocol):
    """What `decide` needs from an endpoint world (SageMaker or local)."""

    endpoint_name: str

    def serving_version(self) -> int | None: ...
    def current_status(self, package: dict) -> str: ...
    def newest_approved(self, group: str, exclude: int | None = None) -> dict | None: ...
    def deploy(self, package: dict) -> str: ...


def package_from_event(event: dict) -> dict:
    """{"group", "version", "arn", "status"} from the event, with a clear error for other events."""
    if event.get("detail-type") != DETAIL_TYPE or event.get("source") != "aws.sagemaker":
        raise ValueError(f"not a {DETAIL_TYPE!r} event from aws.sagemaker: {event.get('detail-type')!r}")
    detail = event.get("detail") or {}
    missing = [k for k in ("ModelPackageGroupName", "ModelPackageVersion", "ModelApprovalStatus") if k not in detail]
    if missing:
        raise ValueError(f"event detail lacks {missing}")
    try:
        version = int(detail["ModelPackageVersion"])
    except (TypeError, ValueError):
        raise ValueError(f"event detail ModelPackageVersion={detail['ModelPackageVersion']!r} is not a number") from None
    return {"group": detail["ModelPackageGroupName"], "version": version,
            "arn": detail.get("ModelPackageArn", ""), "status": detail["ModelApprovalStatus"]}


def decide(event: dict, backend: DeployBackend) -> dict:
    """Apply one state-change event; returns {"action", "version", "reason"} (also logged)."""
    package = package_from_event(event)
    current = backend.current_status(package)
    if current != package["status"]:  # a late or out-of-order event: the registry has moved on
        outcome = {"action": "none", "version": backend.serving_version(), "reason":
                   f"stale event: version {package['version']} is now {current}, not {package['status']}"}
        logger.info("deploy decision", extra={"event_version": package["version"], "status": package["status"],
                                              **outcome})
        return outcome
    serving = backend.serving_version()
    if package["status"] == "Approved":
        if serving == package["version"]:
            outcome = {"action": "none", "version": serving, "reason": "this version is already serving"}
        else:
            backend.deploy(package)
            outcome = {"action": "deployed", "version": package["version"], "previous": serving,
                       "reason": "version approved"}
    elif serving == package["version"]:
        fallback = backend.newest_approved(package["group"], exclude=package["version"])
        if fallback is None:
            outcome = {"action": "none", "version": serving, "reason":
                       f"version {serving} is {package['status']} but no other version is Approved: left serving; "
                       "approve a version to replace it"}
        else:
            backend.deploy(fallback)
            outcome = {"action": "rolled_back", "version": fallback["version"], "previous": serving,
                       "reason": f"version {serving} is now {package['status']}"}
    else:
        outcome = {"action": "none", "version": serving,
                   "reason": f"version {package['version']} is {package['status']} and not serving"}
    logger.info("deploy decision", extra={"event_version": package["version"], "status": package["status"], **outcome})
    return outcome


# ----------------------------------------------------------------------------- AWS
@dataclass(frozen=True)
class SageMakerDeploySettings:
    """How the deploy Lambda builds endpoints, read from its environment (set by infra/template.yaml)."""

    endpoint_name: str = field(default_factory=lambda: os.environ.get("ENDPOINT_NAME", "bert-multilabel"))
    role_arn: str = field(default_factory=lambda: os.environ.get("MODEL_EXECUTION_ROLE_ARN", ""))
    instance_type: str = field(default_factory=lambda: os.environ.get("INSTANCE_TYPE", "ml.m5.xlarge"))
    instance_count: int = field(default_factory=lambda: int(os.environ.get("INSTANCE_COUNT", "1")))
    capture_uri: str = field(default_factory=lambda: os.environ.get("DATA_CAPTURE_S3_URI", ""))
    sample_percent: int = field(default_factory=lambda: int(os.environ.get("CAPTURE_SAMPLE_PERCENT", "100")))
    alarms: tuple = field(default_factory=lambda: tuple(
        a.strip() for a in os.environ.get("ROLLBACK_ALARM_NAMES", "").split(",") if a.strip()))

    def __post_init__(self):
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/.+", self.role_arn):
            raise ValueError(f"MODEL_EXECUTION_ROLE_ARN={self.role_arn!r} is not an IAM role ARN")
        if self.capture_uri and not self.capture_uri.startswith("s3://"):
            raise ValueError(f"DATA_CAPTURE_S3_URI={self.capture_uri!r} must start with s3://")
        if not 0 <= self.sample_percent <= 100:
            raise ValueError(f"CAPTURE_SAMPLE_PERCENT={self.sample_percent} must be within 0..100")


class EndpointBusyError(RuntimeError):
    """The endpoint is being created or updated to another version: retry later (Lambda async retries)."""


class SageMakerBackend:
    """Endpoint management through the SageMaker API (boto3 `sagemaker`)."""

    def __init__(self, client=None, settings: SageMakerDeploySettings | None = None):
        import boto3
        from botocore.config import Config

        self.config = settings or SageMakerDeploySettings()
        self.sm = client or boto3.client("sagemaker", config=Config(retries={"mode": "standard"}))
        self.endpoint_name = self.config.endpoint_name

    def _name(self, version: int) -> str:
        return f"{self.endpoint_name}-v{version}"

    @staticmethod
    def _missing(exc) -> bool:
        error = getattr(exc, "response", {}).get("Error", {})
        message = error.get("Message", "").lower()
        return error.get("Code") in ("ValidationException", "ResourceNotFound") and (
            "could not find" in message or "not found" in message or "does not exist" in message)

    def _describe_endpoint(self) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.sm.describe_endpoint(EndpointName=self.endpoint_name)
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise

    def _version_of(self, config_name: str) -> int | None:
        match = re.fullmatch(re.escape(self.endpoint_name) + r"-v(\d+)", config_name or "")
        return int(match.group(1)) if match else None

    def serving_version(self) -> int | None:
        """The version serving, or being rolled out by an update in progress (its target)."""
        endpoint = self._describe_endpoint()
        if endpoint is None:
            return None
        pending = (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        return self._version_of(pending or endpoint.get("EndpointConfigName", ""))

    def current_status(self, package: dict) -> str:
        arn = package["arn"] or self._package_arn(package["group"], package["version"])
        return self.sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]

    def _package_arn(self, group: str, version: int) -> str:
        for page in self.sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
            for summary in page["ModelPackageSummaryList"]:
                if int(summary["ModelPackageVersion"]) == version:
                    return summary["ModelPackageArn"]
        raise ValueError(f"model package group {group!r} has no version {version}")

    def newest_approved(self, group: str, exclude: int | None = None) -> dict | None:
        pages = self.sm.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime", SortOrder="Descending")
        for page in pages:
            for summary in page["ModelPackageSummaryList"]:
                version = int(summary["ModelPackageVersion"])
                if version != exclude:
                    return {"group": group, "version": version, "arn": summary["ModelPackageArn"], "status": "Approved"}
        return None

    def _exists(self, describe, **kwargs) -> bool:
        from botocore.exceptions import ClientError

        try:
            describe(**kwargs)
            return True
        except ClientError as exc:
            if self._missing(exc):
                return False
            raise

    def _containers(self, package: dict) -> list[dict]:
        """The package's inference containers (DescribeModelPackage) as CreateModel containers."""
        arn = package["arn"] or self._package_arn(package["group"], package["version"])
        described = self.sm.describe_model_package(ModelPackageName=arn)
        containers = []
        for c in described["InferenceSpecification"]["Containers"]:
            container = {"Image": c["Image"]}
            for key in ("ModelDataUrl", "Environment", "ModelDataSource"):
                if c.get(key):
                    container[key] = c[key]
            containers.append(container)
        return containers

    def deploy(self, package: dict) -> str:
        """Create model + endpoint config for the version (if absent), then create/update the endpoint."""
        cfg, name = self.config, self._name(package["version"])
        if not self._exists(self.sm.describe_model, ModelName=name):
            containers = self._containers(package)
            model: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": cfg.role_arn,
                                     "Tags": [{"Key": "ModelPackageVersion", "Value": str(package["version"])}]}
            if len(containers) == 1:
                model["PrimaryContainer"] = containers[0]
            else:
                model["Containers"] = containers
            self.sm.create_model(**model)
        if not self._exists(self.sm.describe_endpoint_config, EndpointConfigName=name):
            config: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [{
                "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": cfg.instance_count,
                "InstanceType": cfg.instance_type}]}
            if cfg.capture_uri:
                config["DataCaptureConfig"] = {
                    "EnableCapture": True, "InitialSamplingPercentage": cfg.sample_percent,
                    "DestinationS3Uri": cfg.capture_uri,
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                    "CaptureContentTypeHeader": {"JsonContentTypes": JSON_TYPES}}
            else:
                logger.warning("DATA_CAPTURE_S3_URI is empty: the endpoint config has no data capture, "
                               "so model monitoring gets no traffic", extra={"endpoint_config": name})
            self.sm.create_endpoint_config(**config)
        endpoint = self._describe_endpoint()
        if endpoint is None:
            self.sm.create_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=name)
            return "created"
        if endpoint.get("EndpointStatus") in ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"):
            raise EndpointBusyError(f"endpoint {self.endpoint_name} is {endpoint['EndpointStatus']}: "
                                    f"version {package['version']} is deployed on the retry once it settles")
        deployment = {"BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
            "TerminationWaitInSeconds": 300, "MaximumExecutionTimeoutInSeconds": 3600}}
        if cfg.alarms:
            deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in cfg.alarms]}
        self.sm.update_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=name,
                                DeploymentConfig=deployment)
        return "updated"


_backend: SageMakerBackend | None = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context=None) -> dict:
    """Lambda entry point (EventBridge rule on our model package group); one client per container."""
    global _backend
    if _backend is None:
        _backend = SageMakerBackend()
    return decide(event, _backend)
