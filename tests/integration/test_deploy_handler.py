"""The deploy-on-approval handler's AWS calls against moto server over real HTTP.

moto implements the model package, model, endpoint config and endpoint APIs but not
UpdateEndpoint: that one call alone goes through botocore's Stubber (see StubbedUpdate). moto's
endpoints are InService at once, so an update in progress is a Stubber answer too (one test).
"""
from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from lambda_fn.deploy import EndpointBusyError, SageMakerBackend, SageMakerDeploySettings, decide, package_from_event
from tests.helpers.servers import moto_server

GROUP, ENDPOINT, ROLE = "bert-multilabel", "bert-ep", "arn:aws:iam::123456789012:role/model"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hf-pytorch-inference:2.1"


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(18150, 18199) as url:
        yield url


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
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz",
                                                "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}}],
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
        self.updates: list[dict] = []

    def expect_update(self, config_name: str):
        self.stubber.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123:endpoint/x"},
                                  {"EndpointName": ENDPOINT, "EndpointConfigName": config_name,
                                   "DeploymentConfig": ANY})
        self.stubber.activate()

    def update_endpoint(self, **kwargs):
        self.updates.append(kwargs)
        response = self.stubbed.update_endpoint(**kwargs)
        # mirror the update on the moto side so describe_endpoint reflects it
        self._real.delete_endpoint(EndpointName=ENDPOINT)
        self._real.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=kwargs["EndpointConfigName"])
        return response

    def __getattr__(self, name):
        return getattr(self._real, name)


def backend(client, alarms: tuple = ()) -> SageMakerBackend:
    settings = SageMakerDeploySettings(endpoint_name=ENDPOINT, role_arn=ROLE, alarms=alarms)
    return SageMakerBackend(client=client, settings=settings)


def test_event_shape_is_validated():
    with pytest.raises(ValueError, match="not a 'SageMaker Model Package State Change' event"):
        package_from_event({"detail-type": "Other", "source": "aws.sagemaker"})
    good = event({"ModelPackageArn": "arn:x", "ModelPackageVersion": 1}, "Approved")
    del good["detail"]["ModelApprovalStatus"]
    with pytest.raises(ValueError, match=r"lacks \['ModelApprovalStatus'\]"):
        package_from_event(good)
    good["detail"].update(ModelApprovalStatus="Approved", ModelPackageVersion="one")
    with pytest.raises(ValueError, match="ModelPackageVersion='one' is not a number"):
        package_from_event(good)


def test_settings_are_validated(monkeypatch):
    monkeypatch.setenv("MODEL_EXECUTION_ROLE_ARN", "my-role")
    with pytest.raises(ValueError, match="MODEL_EXECUTION_ROLE_ARN='my-role' is not an IAM role ARN"):
        SageMakerDeploySettings()
    monkeypatch.setenv("MODEL_EXECUTION_ROLE_ARN", ROLE)
    monkeypatch.setenv("DATA_CAPTURE_S3_URI", "/tmp/capture")
    with pytest.raises(ValueError, match="must start with s3://"):
        SageMakerDeploySettings()


def test_approval_creates_model_config_and_endpoint_once(sm, monkeypatch):
    monkeypatch.setenv("DATA_CAPTURE_S3_URI", "s3://capture/bucket")
    v1 = add_package(sm, "PendingManualApproval")
    sm.update_model_package(ModelPackageArn=v1["ModelPackageArn"], ModelApprovalStatus="Approved")
    outcome = decide(event(v1, "Approved"), backend(sm))
    assert outcome["action"] == "deployed" and outcome["version"] == 1
    model = sm.describe_model(ModelName=f"{ENDPOINT}-v1")
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == IMAGE  # copied from DescribeModelPackage
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://bucket/model.tar.gz"
    assert model["PrimaryContainer"]["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}
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
    assert decide(event(v2, "Approved"), backend(client, alarms=("ep-5xx",)))["action"] == "deployed"
    client.stubber.assert_no_pending_responses()
    [update] = client.updates
    assert update["EndpointConfigName"] == f"{ENDPOINT}-v2"
    assert update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "ep-5xx"}]}

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


def test_a_late_approved_event_for_a_since_rejected_version_is_ignored(sm):
    v1 = add_package(sm, "Approved")
    decide(event(v1, "Approved"), backend(sm))
    v2 = add_package(sm, "Rejected")  # approved, then rejected; the Approved event arrives last
    outcome = decide(event(v2, "Approved"), backend(sm))
    assert outcome["action"] == "none" and "stale event: version 2 is now Rejected" in outcome["reason"]
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{ENDPOINT}-v1"
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == [f"{ENDPOINT}-v1"]


def test_an_update_in_progress_counts_as_serving_its_target(sm):
    """moto cannot hold an endpoint in Updating: describe_endpoint alone is a Stubber answer here."""
    v1 = add_package(sm, "Approved")
    decide(event(v1, "Approved"), backend(sm))
    v2 = add_package(sm, "Approved")
    v3 = add_package(sm, "Approved")
    stubbed = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(stubbed)
    updating = {"EndpointName": ENDPOINT, "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/bert-ep",
                "EndpointConfigName": f"{ENDPOINT}-v1", "EndpointStatus": "Updating",
                "CreationTime": "2026-11-24T20:00:00Z", "LastModifiedTime": "2026-11-24T20:05:00Z",
                "PendingDeploymentSummary": {"EndpointConfigName": f"{ENDPOINT}-v2"}}
    for _ in range(3):
        stubber.add_response("describe_endpoint", updating, {"EndpointName": ENDPOINT})
    stubber.activate()

    class Client:
        def __getattr__(self, name):
            return getattr(stubbed if name == "describe_endpoint" else sm, name)

    # the same Approved event again while v2 rolls out: no second update
    assert decide(event(v2, "Approved"), backend(Client())) == {
        "action": "none", "version": 2, "reason": "this version is already serving"}
    # another version meanwhile: no update_endpoint on a busy endpoint; the Lambda's async retry redoes it
    with pytest.raises(EndpointBusyError, match="is Updating"):
        decide(event(v3, "Approved"), backend(Client()))
    stubber.assert_no_pending_responses()
