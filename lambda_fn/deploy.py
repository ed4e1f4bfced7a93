"""Deploy on approval: the newest Approved model package version is what serves.

Decisions come from state, never from the event. EventBridge may deliver a "SageMaker Model Package
State Change" event several times, late or out of order, and sends one for changes that are not
approvals (a ModelLifeCycle or metadata update, `UpdatedModelPackageFields`). So whatever arrives
(an event for any version, a duplicate, or a re-drive message), `decide` reads the registry and the
endpoint and converges them, idempotently:

- target  = the Approved version with the highest ModelPackageVersion (creation order), or none;
- serving = the version the endpoint serves, or is being rolled out to (an update in progress counts
  as its target);
- no target: leave the endpoint as it is and say so; target == serving: nothing to do; otherwise
  deploy the target (a roll back when it is older: the serving one is no longer Approved);
- the endpoint busy (Creating, Updating, SystemUpdating, RollingBack, Deleting, OutOfService):
  "deferred" -- the same decision is taken again later against the state of that moment (on AWS a
  delayed SQS message re-invokes this function: `DeployController`; the local twin re-runs it after
  its switch). A Failed endpoint is deleted, then re-created on a later pass.

The backend protocol `decide` needs (SageMakerBackend here; `mlops.local_deploy.LocalBackend`, the local
twin's, implements the same and lives with the CLI: the Lambda package carries only this directory):

    endpoint_name: str
    newest_approved(group) -> {"group", "version", "arn", "status"} | None
        the Approved version with the highest ModelPackageVersion in the group
    serving_version() -> int | None
        what serves, or the target of a rollout in progress; None when nothing serves
    deploy(package) -> str
        start serving `package` (a short word: "created", "updated", "deployed");
        raise EndpointBusyError when a switch is in progress (decide answers "deferred": retry later),
        raise DeployRefused when a person must act first (decide answers "refused": no retry)

Outcome of `decide`: {"action": none | deployed | rolled_back | deferred | refused, "version" (serving
after this decision, or still serving when deferred), "target", "reason", "trigger"} (+ "previous",
"how" when deployed or rolled back), also logged.

AWS only (`DeployController`, `SageMakerBackend.settle`): the re-drive through an SQS delay queue,
bounded by RETRY_MAX_HOURS (then a message in the failures queue raises DeployErrorsAlarm);
Application Auto Scaling on the variant; deleting models and endpoint configs beyond the newest
KEEP_VERSIONS. Settings: `SageMakerDeploySettings` (its fields name the environment variables).
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from aws_lambda_powertools import Logger

logger = Logger(service="deploy")

DETAIL_TYPE = "SageMaker Model Package State Change"
REDRIVE_SOURCE = "bert-multilabel.deploy.redrive"
JSON_TYPES = ["application/json", "application/jsonlines"]
VARIANT = "AllTraffic"
# DescribeEndpoint's EndpointStatus values (AWS API reference) and what the deploy decision does with each
BUSY_STATES = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "OutOfService")
FAILED, IN_SERVICE, ROLLBACK_FAILED = "Failed", "InService", "UpdateRollbackFailed"


class EndpointBusyError(RuntimeError):
    """A switch is in progress: the decision is taken again once it is over (nothing is lost)."""


class DeployRefused(RuntimeError):
    """Deploying now would repeat something that already failed: a person must act (no automatic retry)."""


class DeployBackend(Protocol):
    """What `decide` needs from an endpoint world (see the module docstring for the contract)."""

    endpoint_name: str

    def newest_approved(self, group: str) -> dict | None: ...
    def serving_version(self) -> int | None: ...
    def deploy(self, package: dict) -> str: ...


def trigger_from_event(event: dict) -> dict:
    """What set a decision off: a model package state-change event or a re-drive message.

    Only the group matters to the decision (state is re-read); the rest is said in the outcome.
    """
    if event.get("source") == REDRIVE_SOURCE:
        group = event.get("ModelPackageGroupName")
        if not isinstance(group, str) or not group:
            raise ValueError(f"re-drive message without a ModelPackageGroupName: {event!r}")
        return {"kind": "redrive", "group": group, "attempt": int(event.get("attempt", 1)),
                "first_seen": event.get("firstSeen"), "cause": event.get("cause", "")}
    if event.get("detail-type") != DETAIL_TYPE or event.get("source") != "aws.sagemaker":
        raise ValueError(f"not a {DETAIL_TYPE!r} event from aws.sagemaker: {event.get('detail-type')!r}")
    detail = event.get("detail") or {}
    group = detail.get("ModelPackageGroupName")
    if not isinstance(group, str) or not group:
        raise ValueError("event detail lacks ModelPackageGroupName")
    version = detail.get("ModelPackageVersion")
    try:
        version = None if version is None else int(version)
    except (TypeError, ValueError):
        raise ValueError(f"event detail ModelPackageVersion={version!r} is not a number") from None
    return {"kind": "event", "group": group, "id": event.get("id"), "version": version,
            "status": detail.get("ModelApprovalStatus"), "fields": detail.get("UpdatedModelPackageFields")}


def decide(event: dict, backend: DeployBackend) -> dict:
    """Converge the endpoint on the newest Approved version, whatever the event says (see the module doc)."""
    trigger = trigger_from_event(event)
    target = backend.newest_approved(trigger["group"])
    serving = backend.serving_version()
    outcome = {"action": "none", "version": serving, "target": target and target["version"], "trigger": trigger}
    if target is None:
        outcome["reason"] = (f"no version is Approved: version {serving} left serving; approve a version to replace it"
                             if serving is not None else "no version is Approved: nothing to deploy")
    elif target["version"] == serving:
        outcome["reason"] = f"version {serving} is the newest Approved and already serving"
    else:
        rollback = serving is not None and target["version"] < serving
        try:
            how = backend.deploy(target)
        except EndpointBusyError as exc:
            outcome.update(action="deferred", reason=f"version {target['version']} is the newest Approved; {exc}")
        except DeployRefused as exc:
            outcome.update(action="refused", reason=f"version {target['version']} is the newest Approved; {exc}")
        else:
            outcome.update(action="rolled_back" if rollback else "deployed", version=target["version"],
                           previous=serving, how=how, reason=(
                               f"version {serving} is no longer Approved; version {target['version']} is the newest "
                               "Approved" if rollback else f"version {target['version']} is the newest Approved"))
    log = logger.error if outcome["action"] == "refused" else logger.info
    log("deploy decision", extra=outcome)
    return outcome


# ----------------------------------------------------------------------------- AWS
def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be a number") from None


@dataclass(frozen=True)
class SageMakerDeploySettings:
    """How the deploy Lambda builds, scales, cleans up and re-drives (environment set by infra/template.yaml)."""

    endpoint_name: str = field(default_factory=lambda: os.environ.get("ENDPOINT_NAME", "bert-multilabel"))
    role_arn: str = field(default_factory=lambda: os.environ.get("MODEL_EXECUTION_ROLE_ARN", ""))
    instance_type: str = field(default_factory=lambda: os.environ.get("INSTANCE_TYPE", "ml.m5.xlarge"))
    # the variant's initial instance count and the autoscaling minimum
    instance_count: int = field(default_factory=lambda: _env_int("INSTANCE_COUNT", 1))
    max_instances: int = field(default_factory=lambda: _env_int("MAX_INSTANCES", 2))
    # target tracking on SageMakerVariantInvocationsPerInstance (invocations per instance per minute)
    target_invocations: float = field(default_factory=lambda: _env_float("TARGET_INVOCATIONS_PER_INSTANCE", 70.0))
    capture_uri: str = field(default_factory=lambda: os.environ.get("DATA_CAPTURE_S3_URI", ""))
    sample_percent: int = field(default_factory=lambda: _env_int("CAPTURE_SAMPLE_PERCENT", 100))
    alarms: tuple = field(default_factory=lambda: tuple(
        a.strip() for a in os.environ.get("ROLLBACK_ALARM_NAMES", "").split(",") if a.strip()))
    # models and endpoint configs of the newest KEEP_VERSIONS versions (and the serving one) are kept
    keep_versions: int = field(default_factory=lambda: _env_int("KEEP_VERSIONS", 3))
    retry_queue_url: str = field(default_factory=lambda: os.environ.get("RETRY_QUEUE_URL", ""))
    failures_queue_url: str = field(default_factory=lambda: os.environ.get("FAILURES_QUEUE_URL", ""))
    retry_delay_s: int = field(default_factory=lambda: _env_int("RETRY_DELAY_S", 300))
    retry_max_hours: float = field(default_factory=lambda: _env_float("RETRY_MAX_HOURS", 6.0))

    def __post_init__(self):
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/.+", self.role_arn):
            raise ValueError(f"MODEL_EXECUTION_ROLE_ARN={self.role_arn!r} is not an IAM role ARN")
        if self.capture_uri and not self.capture_uri.startswith("s3://"):
            raise ValueError(f"DATA_CAPTURE_S3_URI={self.capture_uri!r} must start with s3://")
        if not 0 <= self.sample_percent <= 100:
            raise ValueError(f"CAPTURE_SAMPLE_PERCENT={self.sample_percent} must be within 0..100")
        if self.instance_count < 1 or self.max_instances < self.instance_count:
            raise ValueError(f"INSTANCE_COUNT={self.instance_count} and MAX_INSTANCES={self.max_instances}: "
                             "need 1 <= INSTANCE_COUNT <= MAX_INSTANCES")
        if self.target_invocations <= 0:
            raise ValueError(f"TARGET_INVOCATIONS_PER_INSTANCE={self.target_invocations} must be > 0")
        if self.keep_versions < 1:
            raise ValueError(f"KEEP_VERSIONS={self.keep_versions} must be >= 1")
        if not 0 <= self.retry_delay_s <= 900:  # SQS DelaySeconds range
            raise ValueError(f"RETRY_DELAY_S={self.retry_delay_s} must be within 0..900 (SQS DelaySeconds)")
        if self.retry_max_hours <= 0:
            raise ValueError(f"RETRY_MAX_HOURS={self.retry_max_hours} must be > 0")

    @property
    def scalable_resource_id(self) -> str:
        return f"endpoint/{self.endpoint_name}/variant/{VARIANT}"


def _error(exc) -> tuple[str, str]:
    error = getattr(exc, "response", {}).get("Error", {})
    return error.get("Code", ""), error.get("Message", "")


def _missing(exc) -> bool:
    code, message = _error(exc)
    message = message.lower()
    return code in ("ValidationException", "ResourceNotFound") and (
        "could not find" in message or "not found" in message or "does not exist" in message)


class SageMakerBackend:
    """Endpoint management through the SageMaker API, plus Application Auto Scaling for its variant."""

    def __init__(self, client=None, settings: SageMakerDeploySettings | None = None, autoscaling=None):
        import boto3
        from botocore.config import Config

        self.config = settings or SageMakerDeploySettings()
        retries = Config(retries={"mode": "standard"})
        self.sm = client or boto3.client("sagemaker", config=retries)
        self.autoscaling = autoscaling or boto3.client("application-autoscaling", config=retries)
        self.endpoint_name = self.config.endpoint_name

    # -- names: model and endpoint config of version N are both <endpoint>-v<N>
    def _name(self, version: int) -> str:
        return f"{self.endpoint_name}-v{version}"

    def _version_of(self, config_name: str | None) -> int | None:
        match = re.fullmatch(re.escape(self.endpoint_name) + r"-v(\d+)", config_name or "")
        return int(match.group(1)) if match else None

    def _call_or_none(self, method, **kwargs) -> dict | None:
        """The call's answer, or None when the resource does not exist."""
        from botocore.exceptions import ClientError

        try:
            return method(**kwargs)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def describe_endpoint(self) -> dict | None:
        return self._call_or_none(self.sm.describe_endpoint, EndpointName=self.endpoint_name)

    def endpoint_status(self) -> str | None:
        endpoint = self.describe_endpoint()
        return endpoint["EndpointStatus"] if endpoint else None

    # -- the protocol
    def serving_version(self) -> int | None:
        """The version serving, or being rolled out (its target); None without an endpoint or when it Failed."""
        endpoint = self.describe_endpoint()
        if endpoint is None or endpoint["EndpointStatus"] in (FAILED, "Deleting"):
            return None
        pending = (endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        return self._version_of(pending or endpoint.get("EndpointConfigName"))

    def _versions(self, group: str, status: str | None = None) -> list[dict]:
        kwargs = {"ModelPackageGroupName": group, **({"ModelApprovalStatus": status} if status else {})}
        return [summary for page in self.sm.get_paginator("list_model_packages").paginate(**kwargs)
                for summary in page["ModelPackageSummaryList"]]

    def newest_approved(self, group: str) -> dict | None:
        """The Approved version with the highest ModelPackageVersion (not the newest event's, nor by time)."""
        approved = self._versions(group, "Approved")
        if not approved:
            return None
        best = max(approved, key=lambda s: int(s["ModelPackageVersion"]))
        return {"group": group, "version": int(best["ModelPackageVersion"]), "arn": best["ModelPackageArn"],
                "status": "Approved"}

    def _containers(self, package: dict) -> list[dict]:
        """The package's inference containers (DescribeModelPackage) as CreateModel containers."""
        described = self.sm.describe_model_package(ModelPackageName=package["arn"])
        containers = []
        for c in described["InferenceSpecification"]["Containers"]:
            container = {"Image": c["Image"]}
            for key in ("ModelDataUrl", "Environment", "ModelDataSource"):
                if c.get(key):
                    container[key] = c[key]
            containers.append(container)
        return containers

    def _create(self, method, **kwargs) -> None:
        """Create a resource; one that another invocation created meanwhile is as good."""
        from botocore.exceptions import ClientError

        try:
            method(**kwargs)
        except ClientError as exc:
            if "already exist" not in _error(exc)[1].lower():
                raise

    def _ensure_model_and_config(self, package: dict) -> str:
        cfg, name = self.config, self._name(package["version"])
        if self._call_or_none(self.sm.describe_model, ModelName=name) is None:
            containers = self._containers(package)
            model: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": cfg.role_arn,
                                     "Tags": [{"Key": "ModelPackageVersion", "Value": str(package["version"])}]}
            if len(containers) == 1:
                model["PrimaryContainer"] = containers[0]
            else:
                model["Containers"] = containers
            self._create(self.sm.create_model, **model)
        if self._call_or_none(self.sm.describe_endpoint_config, EndpointConfigName=name) is None:
            config: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [{
                "VariantName": VARIANT, "ModelName": name, "InitialInstanceCount": cfg.instance_count,
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
            self._create(self.sm.create_endpoint_config, **config)
        return name

    def _refuse_a_failed_rollout_again(self, endpoint: dict, name: str) -> None:
        """An update to `name` that already ended without it serving (auto-rollback on the alarm, or a failed
        update: the endpoint is back InService with a FailureReason) is not started again by itself: each
        try runs a second fleet for 10+ minutes. A person decides (approve a newer version, or delete the
        endpoint config to allow another try)."""
        reason = endpoint.get("FailureReason")
        if not reason:
            return
        config = self._call_or_none(self.sm.describe_endpoint_config, EndpointConfigName=name)
        if config is not None and config["CreationTime"] <= endpoint["LastModifiedTime"]:
            raise DeployRefused(
                f"the last update of endpoint {self.endpoint_name} to {name} did not complete ({reason}); it stays "
                f"on {endpoint['EndpointConfigName']}. Approve a newer version, or delete endpoint config {name} "
                "to try this one again")

    def deploy(self, package: dict) -> str:
        """Create the endpoint on the version, or update it blue/green with auto-rollback on the alarms."""
        from botocore.exceptions import ClientError

        endpoint = self.describe_endpoint()
        name = self._name(package["version"])
        if endpoint is not None:
            status = endpoint["EndpointStatus"]
            if status in BUSY_STATES:
                raise EndpointBusyError(f"endpoint {self.endpoint_name} is {status}: it is applied once that is over")
            if status == FAILED:
                self.sm.delete_endpoint(EndpointName=self.endpoint_name)  # the only operation a Failed endpoint takes
                raise EndpointBusyError(f"endpoint {self.endpoint_name} was Failed "
                                        f"({endpoint.get('FailureReason', 'no reason given')}): deleted, it is "
                                        "created again once the deletion is over")
            if status == ROLLBACK_FAILED:
                raise DeployRefused(f"endpoint {self.endpoint_name} is UpdateRollbackFailed (a mix of old and new "
                                    "instances): see FailureReason and AWS's rolling deployment guide")
            self._refuse_a_failed_rollout_again(endpoint, name)
        self._ensure_model_and_config(package)
        try:
            if endpoint is None:
                self.sm.create_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=name)
                return "created"
            deployment = {"BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
                "TerminationWaitInSeconds": 300, "MaximumExecutionTimeoutInSeconds": 3600}}
            if self.config.alarms:
                deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in self.config.alarms]}
            # keep the instance count autoscaling chose; take data capture from the new config
            self.sm.update_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=name,
                                    RetainAllVariantProperties=True,
                                    ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DataCaptureConfig"}],
                                    DeploymentConfig=deployment)
            return "updated"
        except ClientError as exc:  # another invocation started a create/update between describe and here
            code, message = _error(exc)
            lowered = message.lower()
            if code == "ResourceInUse" or "in-progress" in lowered or "in progress" in lowered \
                    or "already exist" in lowered:
                raise EndpointBusyError(f"endpoint {self.endpoint_name} is changing ({message})") from None
            raise

    # -- housekeeping once the endpoint is InService on the newest Approved version
    def settle(self, group: str) -> dict:
        """Register autoscaling (idempotent) and delete models/endpoint configs beyond the newest KEEP_VERSIONS."""
        endpoint = self.describe_endpoint()
        if endpoint is None or endpoint["EndpointStatus"] != IN_SERVICE:
            return {"settled": False}
        cfg = self.config
        target = {"ServiceNamespace": "sagemaker", "ResourceId": cfg.scalable_resource_id,
                  "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
        self.autoscaling.register_scalable_target(**target, MinCapacity=cfg.instance_count,
                                                  MaxCapacity=cfg.max_instances)
        self.autoscaling.put_scaling_policy(
            PolicyName=f"{self.endpoint_name}-invocations-per-instance", PolicyType="TargetTrackingScaling", **target,
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": cfg.target_invocations, "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})
        return {"settled": True, "deleted": self.prune(group, endpoint)}

    def prune(self, group: str, endpoint: dict) -> list[str]:
        """Delete our models and endpoint configs of versions older than the newest KEEP_VERSIONS (never the one
        in use). The names come from the registry, so no List* call (which IAM cannot scope) is needed; a
        version pruned before answers not-found and is skipped. Deleted ones are re-created if ever needed."""
        versions = sorted({int(s["ModelPackageVersion"]) for s in self._versions(group)}, reverse=True)
        keep = set(versions[:self.config.keep_versions]) | {self._version_of(endpoint.get("EndpointConfigName"))}
        deleted = []
        for version in versions[self.config.keep_versions:]:
            if version in keep:
                continue
            name = self._name(version)
            if self._call_or_none(self.sm.delete_endpoint_config, EndpointConfigName=name) is not None:
                deleted.append(f"endpoint-config/{name}")
            if self._call_or_none(self.sm.delete_model, ModelName=name) is not None:
                deleted.append(f"model/{name}")
        if deleted:
            logger.info("old versions deleted", extra={"deleted": deleted})
        return deleted


class DeployController:
    """The deploy Lambda on AWS: EventBridge events and re-drive messages (SQS) take the same decision.

    After a decision, while the endpoint is not settled (a deployment just started, a deferred one, or
    any transitional state), a message "re-evaluate group G" goes to the retry queue with a delay
    (RETRY_DELAY_S); its event source mapping invokes this function again, which decides again against
    the state of that moment. When the endpoint is InService on the newest Approved version, it is
    settled: autoscaling registered, old versions deleted. A chain that has not settled after
    RETRY_MAX_HOURS, or a refused decision, puts a message in the failures queue (DeployErrorsAlarm).
    """

    def __init__(self, backend: SageMakerBackend, sqs=None, clock=time.time):
        import boto3

        self.backend, self.clock = backend, clock
        self.config = backend.config
        self.sqs = sqs or boto3.client("sqs")
        if not self.config.retry_queue_url or not self.config.failures_queue_url:
            raise ValueError("RETRY_QUEUE_URL and FAILURES_QUEUE_URL must be set: without them a deployment "
                             "that meets a busy endpoint would be lost")

    def handle(self, event: dict, context=None) -> dict:
        if isinstance(event.get("Records"), list):  # the retry queue's event source mapping
            from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

            return dict(process_partial_response(event=event, record_handler=self._record,
                                                 processor=BatchProcessor(event_type=EventType.SQS), context=context))
        return self.apply(event)

    def _record(self, record) -> dict:
        return self.apply(json.loads(record.body))

    def apply(self, message: dict) -> dict:
        """One decision, then follow it: re-drive, settle, or raise the alarm."""
        now = self.clock()
        outcome = decide(message, self.backend)
        trigger = outcome["trigger"]
        redrive = trigger["kind"] == "redrive"
        first_seen = _epoch(trigger.get("first_seen"), default=now) if redrive else now
        attempt = trigger.get("attempt", 0) if redrive else 0
        status = self.backend.endpoint_status()
        unsettled = outcome["target"] is not None and status in BUSY_STATES + (FAILED,)
        if outcome["action"] == "refused":
            outcome["next"] = self._alarm(trigger["group"], outcome, first_seen, attempt, outcome["reason"])
        elif outcome["action"] in ("deployed", "rolled_back", "deferred") or unsettled:
            if now - first_seen > self.config.retry_max_hours * 3600:
                outcome["next"] = self._alarm(
                    trigger["group"], outcome, first_seen, attempt,
                    f"gave up after {self.config.retry_max_hours:g} h: endpoint {self.backend.endpoint_name} is "
                    f"{status}, not settled on the newest Approved version")
            else:
                outcome["next"] = self._redrive(trigger["group"], first_seen, attempt + 1,
                                                f"{outcome['action']}, endpoint {status}")
        elif status == IN_SERVICE and outcome["target"] is not None and outcome["target"] == outcome["version"]:
            outcome["next"] = self.backend.settle(trigger["group"])
        else:
            outcome["next"] = {"settled": False}
        logger.info("deploy next step", extra={"group": trigger["group"], "endpoint_status": status,
                                               "next": outcome["next"]})
        return outcome

    def _redrive(self, group: str, first_seen: float, attempt: int, cause: str) -> dict:
        body = {"source": REDRIVE_SOURCE, "ModelPackageGroupName": group, "attempt": attempt,
                "firstSeen": _iso(first_seen), "cause": cause}
        self.sqs.send_message(QueueUrl=self.config.retry_queue_url, MessageBody=json.dumps(body),
                              DelaySeconds=self.config.retry_delay_s)
        return {"redrive": body, "delay_s": self.config.retry_delay_s}

    def _alarm(self, group: str, outcome: dict, first_seen: float, attempt: int, reason: str) -> dict:
        body = {"ModelPackageGroupName": group, "firstSeen": _iso(first_seen), "attempts": attempt, "reason": reason,
                "outcome": {k: v for k, v in outcome.items() if k != "trigger"}}
        self.sqs.send_message(QueueUrl=self.config.failures_queue_url, MessageBody=json.dumps(body, default=str))
        logger.error("deployment needs a person", extra=body)
        return {"failed": body}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(iso: str | None, default: float) -> float:
    if not iso:
        return default
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


_controller: DeployController | None = None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context=None) -> dict:
    """Lambda entry point: the EventBridge rule on our model package group, and the retry queue's event
    source mapping. One set of clients per container."""
    global _controller
    if _controller is None:
        _controller = DeployController(SageMakerBackend())
    return _controller.handle(event, context)
