"""A SageMaker world for the deploy handler's tests: moto server over real HTTP for every call it
implements, botocore's Stubber for exactly what it lacks.

moto implements the model registry (model packages, approval updates), models, endpoint configs,
CreateEndpoint / DescribeEndpoint / DeleteEndpoint, Application Auto Scaling and SQS (delay queues
included). It lacks UpdateEndpoint, and its endpoints are InService from creation to deletion, so:
- UpdateEndpoint is answered by a Stubber (the request validated against botocore's model of the
  call); the update is then in progress, as on AWS, until the test finishes or fails it;
- DescribeEndpoint, while the endpoint is in a state moto cannot hold (Updating with its
  PendingDeploymentSummary, Failed, SystemUpdating, InService with a FailureReason after a failed
  update), is moto's own answer with those fields set, returned through a Stubber (validated
  against botocore's output shape). In every other state it is moto's answer unchanged.
"""
from __future__ import annotations

import copy
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import boto3
from botocore.stub import Stubber

GROUP, ENDPOINT, ROLE = "bert-multilabel", "bert-ep", "arn:aws:iam::123456789012:role/model"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hf-pytorch-inference:2.1"
REGION = "us-east-1"
EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def add_package(sm, status: str) -> dict:
    """Register a model package version (as the pipeline's RegisterModel step does); its description."""
    arn = sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz",
                                                "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]
    return sm.describe_model_package(ModelPackageName=arn)


def state_change_event(package: dict, status: str, fields=("ModelApprovalStatus",), **detail) -> dict:
    """An EventBridge "SageMaker Model Package State Change" event in the shape AWS documents, for one version.

    `fields` is UpdatedModelPackageFields (what changed: ["ModelLifeCycle"] for a stage update, ...);
    a fresh event id each time, as EventBridge gives a duplicate delivery of the same change its own id."""
    event = json.loads((EVENTS / "model_package_state_change.json").read_text())
    event["id"] = str(uuid.uuid4())
    event["resources"] = [package["ModelPackageArn"]]
    event["detail"].update(ModelPackageGroupName=GROUP, ModelPackageVersion=package["ModelPackageVersion"],
                           ModelPackageArn=package["ModelPackageArn"], ModelApprovalStatus=status,
                           UpdatedModelPackageFields=list(fields), **detail)
    return event


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """The event Lambda's SQS event source mapping delivers for received messages (AWS's documented shape)."""
    template = json.loads((EVENTS / "sqs_receive_message.json").read_text())["Records"][0]
    records = []
    for message in messages:
        record = copy.deepcopy(template)
        record.update(messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"], body=message["Body"],
                      md5OfBody=message["MD5OfBody"], eventSourceARN=queue_arn)
        record["attributes"].update({k: v for k, v in message.get("Attributes", {}).items()
                                     if k in record["attributes"]})
        records.append(record)
    return {"Records": records}


class SageMakerEdge:
    """The moto-backed SageMaker client, except the calls and states moto lacks (see the module docstring)."""

    def __init__(self, real):
        self._real = real
        self._stubbed = boto3.client("sagemaker", region_name=REGION)
        self.stubber = Stubber(self._stubbed)
        self.stubber.activate()
        self.updates: list[dict] = []       # every UpdateEndpoint request, as sent
        self.pending: str | None = None     # the config an update in progress rolls out
        self.overlay: dict = {}             # DescribeEndpoint fields moto cannot hold
        self.reject_next_update: str | None = None

    def __getattr__(self, name):
        return getattr(self._real, name)

    def update_endpoint(self, **kwargs):
        if self.reject_next_update:
            self.stubber.add_client_error("update_endpoint", service_error_code="ValidationException",
                                          service_message=self.reject_next_update, http_status_code=400)
            self.reject_next_update = None
        else:
            arn = f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{kwargs['EndpointName']}"
            self.stubber.add_response("update_endpoint", {"EndpointArn": arn}, kwargs)
        response = self._stubbed.update_endpoint(**kwargs)
        self.updates.append(kwargs)
        self.pending = kwargs["EndpointConfigName"]
        self.overlay = {"EndpointStatus": "Updating"}
        return response

    def describe_endpoint(self, **kwargs):
        answer = self._real.describe_endpoint(**kwargs)
        if not self.overlay and not self.pending:
            return answer
        # moto answers an endpoint without data capture with DataCaptureConfig {}: AWS leaves it out
        answer = {k: v for k, v in answer.items() if k != "ResponseMetadata" and v not in (None, {})}
        answer.update(self.overlay)
        if self.pending:
            answer["PendingDeploymentSummary"] = {"EndpointConfigName": self.pending,
                                                  "StartTime": datetime.now(timezone.utc)}
        self.stubber.add_response("describe_endpoint", answer, kwargs)
        return self._stubbed.describe_endpoint(**kwargs)

    def delete_endpoint(self, **kwargs):
        response = self._real.delete_endpoint(**kwargs)  # moto: gone at once (AWS: Deleting for a while)
        self.overlay, self.pending = {}, None
        return response

    # -- what AWS does by itself, driven by the test
    def finish_update(self) -> None:
        """The blue/green update completes: the endpoint serves the new config (mirrored onto moto)."""
        assert self.pending, "no update in progress"
        name = self._real.describe_endpoint(EndpointName=ENDPOINT)["EndpointName"]
        self._real.delete_endpoint(EndpointName=name)
        self._real.create_endpoint(EndpointName=name, EndpointConfigName=self.pending)
        self.pending, self.overlay = None, {}

    def fail_update(self, reason: str) -> None:
        """The update is rolled back (an alarm fired): InService on the old config, with a FailureReason."""
        assert self.pending, "no update in progress"
        self.pending = None
        self.overlay = {"EndpointStatus": "InService", "FailureReason": reason,
                        "LastModifiedTime": datetime.now(timezone.utc)}

    def set_state(self, status: str, reason: str | None = None) -> None:
        self.overlay = {"EndpointStatus": status, **({"FailureReason": reason} if reason else {})}


class World:
    """Registry, endpoint, autoscaling and queues at moto (over HTTP) + the deploy controller under test."""

    def __init__(self, moto_url: str, **settings):
        import requests

        from lambda_fn.deploy import DeployController, SageMakerBackend, SageMakerDeploySettings

        requests.post(f"{moto_url}/moto-api/reset")
        kw = {"region_name": REGION, "endpoint_url": moto_url}
        self.sm = boto3.client("sagemaker", **kw)
        self.autoscaling = boto3.client("application-autoscaling", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.sm.create_model_package_group(ModelPackageGroupName=GROUP)
        self.retry_url = self.sqs.create_queue(QueueName="deploy-retry")["QueueUrl"]
        self.failures_url = self.sqs.create_queue(QueueName="deploy-failures")["QueueUrl"]
        self.retry_arn = self.sqs.get_queue_attributes(QueueUrl=self.retry_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self.edge = SageMakerEdge(self.sm)
        self.now = time.time()
        options = {"endpoint_name": ENDPOINT, "role_arn": ROLE, "retry_queue_url": self.retry_url,
                   "failures_queue_url": self.failures_url, "retry_delay_s": 0, **settings}
        self.settings = SageMakerDeploySettings(**options)
        self.backend = SageMakerBackend(client=self.edge, settings=self.settings, autoscaling=self.autoscaling)
        self.controller = DeployController(self.backend, sqs=self.sqs, clock=lambda: self.now)
        self.outcomes: list[dict] = []
        apply = self.controller.apply

        def recording(message):
            outcome = apply(message)
            self.outcomes.append(outcome)
            return outcome

        self.controller.apply = recording
        self.packages: dict[int, dict] = {}

    # -- the registry
    def register(self, status: str = "PendingManualApproval") -> dict:
        package = add_package(self.sm, status)
        self.packages[package["ModelPackageVersion"]] = package
        return package

    def set_status(self, version: int, status: str) -> dict:
        self.sm.update_model_package(ModelPackageArn=self.packages[version]["ModelPackageArn"],
                                     ModelApprovalStatus=status)
        return self.packages[version]

    def event(self, version: int, status: str | None = None, **kw) -> dict:
        package = self.packages[version]
        status = status or self.sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])[
            "ModelApprovalStatus"]
        return state_change_event(package, status, **kw)

    # -- delivery
    def deliver(self, event: dict) -> dict:
        """EventBridge -> the deploy function (asynchronous invocation)."""
        return self.controller.handle(event)

    def drain(self, rounds: int = 5) -> list[dict]:
        """The retry queue's event source mapping: receive what is visible, invoke, delete what succeeded."""
        outcomes_before = len(self.outcomes)
        for _ in range(rounds):
            messages = self.sqs.receive_message(QueueUrl=self.retry_url, MaxNumberOfMessages=10,
                                                AttributeNames=["All"]).get("Messages", [])
            if not messages:
                break
            failed = {f["itemIdentifier"] for f in
                      self.controller.handle(sqs_event(messages, self.retry_arn))["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.retry_url, ReceiptHandle=message["ReceiptHandle"])
        return self.outcomes[outcomes_before:]

    def queued(self, url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.retry_url, AttributeNames=["ApproximateNumberOfMessages",
                                                            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesDelayed"])

    def failures(self) -> list[dict]:
        messages = self.sqs.receive_message(QueueUrl=self.failures_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    # -- the endpoint
    def serving(self) -> int | None:
        """The version the endpoint actually serves now (not the target of an update in progress)."""
        try:
            config = self.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
        except self.sm.exceptions.ClientError:
            return None
        return int(config.rsplit("-v", 1)[1])
