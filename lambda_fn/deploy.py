"""Deploy on approval: the EventBridge handler for "SageMaker Model Package State Change".

Approved -> the version is deployed (a model from the package, an endpoint config with data
capture, then the endpoint created or updated blue/green with auto-rollback). Rejected or
approval revoked for the version being served -> roll back to the newest version still
Approved. The same event twice makes one deployment. The decision logic is one function over a
small backend interface: `SageMakerBackend` on AWS, `LocalBackend` for the local twin.

Env (AWS): ENDPOINT_NAME, MODEL_EXECUTION_ROLE_ARN, INSTANCE_TYPE (ml.m5.xlarge),
INSTANCE_COUNT (1), DATA_CAPTURE_S3_URI, CAPTURE_SAMPLE_PERCENT (100), ROLLBACK_ALARM_NAMES.
"""
from __future__ import annotations

import os
import re
from typing import Protocol

from aws_lambda_powertools import Logger

logger = Logger(service="deploy")

DETAIL_TYPE = "SageMaker Model Package State Change"
JSON_TYPES = ["application/json", "application/jsonlines"]


class DeployBackend(Protocol):
    endpoint_name: str

    def serving_version(self) -> int | None: ...
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
    return {"group": detail["ModelPackageGroupName"], "version": int(detail["ModelPackageVersion"]),
            "arn": detail.get("ModelPackageArn", ""), "status": detail["ModelApprovalStatus"]}


def decide(event: dict, backend: DeployBackend) -> dict:
    """Apply one state-change event; returns {"action", "version", "reason"} (also logged)."""
    package = package_from_event(event)
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
class SageMakerBackend:
    """Endpoint management through the SageMaker API (boto3 `sagemaker`)."""

    def __init__(self, client=None, endpoint_name: str | None = None, role_arn: str | None = None):
        import boto3

        self.sm = client or boto3.client("sagemaker")
        self.endpoint_name = endpoint_name or os.environ.get("ENDPOINT_NAME", "bert-multilabel")
        self.role_arn = role_arn or os.environ.get("MODEL_EXECUTION_ROLE_ARN", "")
        self.instance_type = os.environ.get("INSTANCE_TYPE", "ml.m5.xlarge")
        self.instance_count = int(os.environ.get("INSTANCE_COUNT", "1"))
        self.capture_uri = os.environ.get("DATA_CAPTURE_S3_URI", "")
        self.sample_percent = int(os.environ.get("CAPTURE_SAMPLE_PERCENT", "100"))
        self.alarms = [a for a in os.environ.get("ROLLBACK_ALARM_NAMES", "").split(",") if a]

    def _names(self, version: int) -> str:
        return f"{self.endpoint_name}-v{version}"

    def _missing(self, exc) -> bool:
        error = getattr(exc, "response", {}).get("Error", {})
        return error.get("Code") in ("ValidationException", "ResourceNotFound") and (
            "not" in error.get("Message", "").lower() or "could not find" in error.get("Message", "").lower())

    def serving_version(self) -> int | None:
        from botocore.exceptions import ClientError

        try:
            endpoint = self.sm.describe_endpoint(EndpointName=self.endpoint_name)
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise
        match = re.search(r"-v(\d+)$", endpoint.get("EndpointConfigName", ""))
        return int(match.group(1)) if match else None

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

    def deploy(self, package: dict) -> str:
        """Create model + endpoint config for the version (if absent), then create/update the endpoint."""
        name = self._names(package["version"])
        if not self._exists(self.sm.describe_model, ModelName=name):
            self.sm.create_model(ModelName=name, ExecutionRoleArn=self.role_arn,
                                 Containers=[{"ModelPackageName": package["arn"]}],
                                 Tags=[{"Key": "ModelPackageVersion", "Value": str(package["version"])}])
        if not self._exists(self.sm.describe_endpoint_config, EndpointConfigName=name):
            config = {"EndpointConfigName": name, "ProductionVariants": [{
                "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": self.instance_count,
                "InstanceType": self.instance_type}]}
            if self.capture_uri:
                config["DataCaptureConfig"] = {
                    "EnableCapture": True, "InitialSamplingPercentage": self.sample_percent,
                    "DestinationS3Uri": self.capture_uri,
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                    "CaptureContentTypeHeader": {"JsonContentTypes": JSON_TYPES}}
            self.sm.create_endpoint_config(**config)
        if self.serving_version() is None and not self._exists(self.sm.describe_endpoint, EndpointName=self.endpoint_name):
            self.sm.create_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=name)
            return "created"
        deployment = {"BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
            "TerminationWaitInSeconds": 300, "MaximumExecutionTimeoutInSeconds": 3600}}
        if self.alarms:
            deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in self.alarms]}
        self.sm.update_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=name,
                                DeploymentConfig=deployment)
        return "updated"


# ----------------------------------------------------------------------------- local twin
class LocalBackend:
    """The same decisions against the local registry and a local endpoint (model server processes)."""

    def __init__(self, settings, endpoint_name: str | None = None):
        from mlops.local_endpoint import LocalEndpoint
        from pipelines.registry import LocalModelRegistry
        from pipelines.spec import ENDPOINT_NAME

        self.settings = settings
        self.endpoint_name = endpoint_name or ENDPOINT_NAME
        self.registry = LocalModelRegistry(settings.registry_dir)
        self.endpoint = LocalEndpoint(settings.home, self.endpoint_name, python=settings.python)

    def serving_version(self) -> int | None:
        return self.endpoint.current_version()

    def newest_approved(self, group: str, exclude: int | None = None) -> dict | None:
        approved = [p for p in self.registry.list_packages(group)
                    if p["ModelApprovalStatus"] == "Approved" and int(p["ModelPackageVersion"]) != exclude]
        if not approved:
            return None
        best = max(approved, key=lambda p: int(p["ModelPackageVersion"]))
        return {"group": group, "version": int(best["ModelPackageVersion"]), "arn": best.get("ModelPackageArn", ""),
                "status": "Approved"}

    def deploy(self, package: dict) -> str:
        model_tar = self.registry.model_path(package["group"], package["version"])
        self.endpoint.deploy(package["version"], model_tar)
        return "deployed"


def handler(event: dict, context=None) -> dict:
    """Lambda entry point (EventBridge rule on our model package group)."""
    return decide(event, SageMakerBackend())
