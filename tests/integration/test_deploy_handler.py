"""The deploy-on-approval handler's AWS calls against moto server over real HTTP.

moto implements the model package, model, endpoint config and endpoint APIs but not
UpdateEndpoint: that one call alone goes through botocore's Stubber (see StubbedUpdate).
"""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto.server import ThreadedMotoServer

from lambda_fn.deploy import SageMakerBackend, decide, package_from_event
from tests.helpers.servers import free_port

GROUP, ENDPOINT, ROLE = "bert-multilabel", "bert-ep", "arn:aws:iam::123456789012:role/model"


@pytest.fixture(scope="module")
def moto_url():
    port = free_port(18150, 18199)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def sm(moto_url, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("sagemaker", region_name="us-east-1", endpoint_url=moto_url)
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url)  # same server, fresh state per test below
    import requests

    requests.post(f"{moto_url}/moto-api/reset")
    client.create_model_package_group(ModelPackageGroupName=GROUP)
    return client


def add_package(sm, status: str) -> dict:
    arn = sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "123.dkr.ecr.us-east-1.amazonaws.com/hf:latest",
                                                "ModelDataUrl": "s3://bucket/model.tar.gz"}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]
    return sm.describe_model_package(ModelPackageName=arn)


def event(package: dict, status: str) -> dict:
    """The EventBridge event as AWS documents it for a model package state change."""
    return {
        "version": "0", "id": "2c6c8e0c-0000-4b5a-9d3e-000000000000",
        "detail-type": "SageMaker Model Package State Change", "source": "aws.sagemaker",
        "account": "123456789012", "time": "2026-11-24T20:00:00Z", "region": "us-east-1",
        "resources": [package["ModelPackageArn"]],
        "detail": {"ModelPackageGroupName": GROUP, "ModelPackageVersion": package["ModelPackageVersion"],
                   "ModelPackageArn": package["ModelPackageArn"], "CreationTime": 1764014400000,
                   "ModelApprovalStatus": status, "ModelPackageStatus": "Completed"},
    }


class StubbedUpdate:
    """The moto-backed client, except update_endpoint, which a Stubber answers (moto lacks it)."""

    def __init__(self, real):
        self._real = real
        self.stubbed = boto3.client("sagemaker", region_name="us-east-1")
        self.stubber = Stubber(self.stubbed)
        self.updates: list[str] = []

    def expect_update(self, config_name: str):
        self.stubber.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123:endpoint/x"},
                                  {"EndpointName": ENDPOINT, "EndpointConfigName": config_name,
                                   "DeploymentConfig": ANY})
        self.stubber.activate()

    def update_endpoint(self, **kwargs):
        self.updates.append(kwargs["EndpointConfigName"])
        response = self.stubbed.update_endpoint(**kwargs)
        # mirror the update on the moto side so describe_endpoint reflects it
        self._real.delete_endpoint(EndpointName=ENDPOINT)
        self._real.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=kwargs["EndpointConfigName"])
        return response

    def __getattr__(self, name):
        return getattr(self._real, name)


def backend(client) -> SageMakerBackend:
    return SageMakerBackend(client=client, endpoint_name=ENDPOINT, role_arn=ROLE)


def test_event_shape_is_validated():
    with pytest.raises(ValueError, match="not a 'SageMaker Model Package State Change' event"):
        package_from_event({"detail-type": "Other", "source": "aws.sagemaker"})


def test_approval_creates_model_config_and_endpoint_once(sm, monkeypatch):
    monkeypatch.setenv("DATA_CAPTURE_S3_URI", "s3://capture/bucket")
    v1 = add_package(sm, "PendingManualApproval")
    sm.update_model_package(ModelPackageArn=v1["ModelPackageArn"], ModelApprovalStatus="Approved")
    outcome = decide(event(v1, "Approved"), backend(sm))
    assert outcome["action"] == "deployed" and outcome["version"] == 1
    assert sm.describe_model(ModelName=f"{ENDPOINT}-v1")["ModelName"] == f"{ENDPOINT}-v1"
    config = sm.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-v1")
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    assert config["DataCaptureConfig"]["CaptureContentTypeHeader"]["JsonContentTypes"] == ["application/json",
                                                                                         "application/jsonlines"]
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{ENDPOINT}-v1"
    again = decide(event(v1, "Approved"), backend(sm))  # the same event twice: one deployment
    assert again["action"] == "none"
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1 and len(sm.list_models()["Models"]) == 1


def test_second_approval_updates_blue_green_and_rejection_rolls_back(sm):
    v1 = add_package(sm, "Approved")
    decide(event(v1, "Approved"), backend(sm))
    v2 = add_package(sm, "Approved")
    client = StubbedUpdate(sm)
    client.expect_update(f"{ENDPOINT}-v2")
    assert decide(event(v2, "Approved"), backend(client))["action"] == "deployed"
    client.stubber.assert_no_pending_responses()
    assert client.updates == [f"{ENDPOINT}-v2"]

    sm.update_model_package(ModelPackageArn=v2["ModelPackageArn"], ModelApprovalStatus="Rejected")
    client.expect_update(f"{ENDPOINT}-v1")
    outcome = decide(event(v2, "Rejected"), backend(client))
    assert outcome == {"action": "rolled_back", "version": 1, "previous": 2, "reason": "version 2 is now Rejected"}
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{ENDPOINT}-v1"


def test_rejecting_a_version_that_is_not_serving_changes_nothing(sm):
    v1 = add_package(sm, "Approved")
    decide(event(v1, "Approved"), backend(sm))
    v2 = add_package(sm, "Rejected")
    assert decide(event(v2, "Rejected"), backend(sm))["action"] == "none"
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{ENDPOINT}-v1"


def test_rejecting_the_only_approved_version_leaves_it_serving_and_says_so(sm):
    v1 = add_package(sm, "Approved")
    decide(event(v1, "Approved"), backend(sm))
    sm.update_model_package(ModelPackageArn=v1["ModelPackageArn"], ModelApprovalStatus="Rejected")
    outcome = decide(event(v1, "Rejected"), backend(sm))
    assert outcome["action"] == "none" and "no other version is Approved" in outcome["reason"]
