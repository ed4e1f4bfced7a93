"""The deploy-on-approval Lambda's AWS calls against moto server over real HTTP.

moto implements the model package, model, endpoint config and endpoint APIs, Application Auto
Scaling and SQS, but not UpdateEndpoint, and its endpoints are always InService: that call, and
DescribeEndpoint in the states moto cannot hold (Updating, Failed, UpdateRollbackFailed, InService
after a failed update), go through botocore's Stubber (tests/helpers/deploy_world.py). The
sequences of deliveries AWS may make are in test_deploy_replay.py.
"""
from __future__ import annotations

import json
import time

import pytest

from lambda_fn.deploy import SageMakerDeploySettings, decide, trigger_from_event
from tests.helpers.deploy_world import ENDPOINT, GROUP, IMAGE, ROLE, World, sqs_event, state_change_event
from tests.helpers.servers import moto_server


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(18150, 18199) as url:
        yield url


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def world(moto_url, credentials):
    return World(moto_url)


def serve(world: World, *versions: int) -> None:
    """Approve each version in turn and let every rollout complete."""
    for v in versions:
        if v not in world.packages:
            world.register()
        world.set_status(v, "Approved")
        world.deliver(world.event(v))
        if world.edge.pending:
            world.edge.finish_update()
        world.drain()


def test_events_and_redrive_messages_are_validated():
    with pytest.raises(ValueError, match="not a 'SageMaker Model Package State Change' event"):
        trigger_from_event({"detail-type": "Other", "source": "aws.sagemaker"})
    good = state_change_event({"ModelPackageArn": "arn:x", "ModelPackageVersion": 1}, "Approved")
    del good["detail"]["ModelPackageGroupName"]
    with pytest.raises(ValueError, match="lacks ModelPackageGroupName"):
        trigger_from_event(good)
    good["detail"].update(ModelPackageGroupName=GROUP, ModelPackageVersion="one")
    with pytest.raises(ValueError, match="ModelPackageVersion='one' is not a number"):
        trigger_from_event(good)
    # the decision reads state, so an event without an approval status (a lifecycle update) is fine
    good["detail"].update(ModelPackageVersion=3, UpdatedModelPackageFields=["ModelLifeCycle"])
    del good["detail"]["ModelApprovalStatus"]
    assert trigger_from_event(good) == {"kind": "event", "group": GROUP, "id": good["id"], "version": 3,
                                        "status": None, "fields": ["ModelLifeCycle"]}
    with pytest.raises(ValueError, match="re-drive message without a ModelPackageGroupName"):
        trigger_from_event({"source": "bert-multilabel.deploy.redrive"})


def test_settings_are_validated(monkeypatch):
    monkeypatch.setenv("MODEL_EXECUTION_ROLE_ARN", "my-role")
    with pytest.raises(ValueError, match="MODEL_EXECUTION_ROLE_ARN='my-role' is not an IAM role ARN"):
        SageMakerDeploySettings()
    monkeypatch.setenv("MODEL_EXECUTION_ROLE_ARN", ROLE)
    for name, value, message in [("DATA_CAPTURE_S3_URI", "/tmp/capture", "must start with s3://"),
                                 ("INSTANCE_COUNT", "two", "INSTANCE_COUNT='two' must be an integer"),
                                 ("MAX_INSTANCES", "0", "need 1 <= INSTANCE_COUNT <= MAX_INSTANCES"),
                                 ("RETRY_DELAY_S", "901", "within 0..900"),
                                 ("KEEP_VERSIONS", "0", "KEEP_VERSIONS=0 must be >= 1")]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=message):
            SageMakerDeploySettings()
        monkeypatch.delenv(name)
    monkeypatch.setenv("INSTANCE_COUNT", "2")
    monkeypatch.setenv("MAX_INSTANCES", "4")
    assert (SageMakerDeploySettings().instance_count, SageMakerDeploySettings().max_instances) == (2, 4)


def test_first_approval_creates_model_config_and_endpoint_once_then_autoscales(moto_url, credentials):
    world = World(moto_url, capture_uri="s3://capture/bucket", instance_count=2, max_instances=4,
                  target_invocations=120.0)
    world.register()
    world.set_status(1, "Approved")
    outcome = world.deliver(world.event(1))
    assert outcome["action"] == "deployed" and outcome["version"] == 1 and outcome["how"] == "created"
    model = world.sm.describe_model(ModelName=f"{ENDPOINT}-v1")
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == IMAGE  # copied from DescribeModelPackage
    assert model["PrimaryContainer"]["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py"}
    config = world.sm.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-v1")
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2  # INSTANCE_COUNT, wired by the template
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    assert config["DataCaptureConfig"]["CaptureContentTypeHeader"]["JsonContentTypes"] == [
        "application/json", "application/jsonlines"]
    assert outcome["next"]["redrive"]["attempt"] == 1  # followed until settled
    assert world.deliver(world.event(1))["action"] == "none"  # the same event twice: one deployment
    world.drain()
    assert len(world.sm.list_endpoint_configs()["EndpointConfigs"]) == 1 and len(world.sm.list_models()["Models"]) == 1

    [target] = world.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["ScalableDimension"], target["MinCapacity"], target["MaxCapacity"]) == (
        f"endpoint/{ENDPOINT}/variant/AllTraffic", "sagemaker:variant:DesiredInstanceCount", 2, 4)
    [policy] = world.autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling" and tracking["TargetValue"] == 120.0
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_a_later_approval_updates_blue_green_keeping_the_autoscaled_count(moto_url, credentials):
    world = World(moto_url, alarms=("ep-5xx",))
    serve(world, 1)
    world.register()
    world.set_status(2, "Approved")
    assert world.deliver(world.event(2))["action"] == "deployed"
    [update] = world.edge.updates
    assert update["EndpointConfigName"] == f"{ENDPOINT}-v2"
    assert update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "ep-5xx"}]}
    assert update["RetainAllVariantProperties"] is True  # autoscaling's current instance count survives the update
    assert update["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DataCaptureConfig"}]


def test_a_failed_endpoint_is_deleted_then_created_again(world):
    serve(world, 1)
    world.edge.set_state("Failed", "CapacityError: insufficient capacity")
    world.register()
    world.set_status(2, "Approved")
    outcome = world.deliver(world.event(2))
    assert outcome["action"] == "deferred" and "was Failed (CapacityError" in outcome["reason"]
    assert world.serving() is None  # deleted (moto at once; AWS goes through Deleting)
    [again] = world.drain(rounds=1)
    assert again["action"] == "deployed" and again["how"] == "created" and world.serving() == 2
    world.drain()
    assert world.queued() == 0 and world.failures() == []


def test_a_rolled_back_update_is_not_retried_by_itself_and_raises_the_alarm(world):
    serve(world, 1)
    world.register()
    world.set_status(2, "Approved")
    world.deliver(world.event(2))
    world.edge.fail_update("Rolled back: alarm ep-5xx went into ALARM during the baking period")
    outcomes = world.drain()
    assert outcomes[-1]["action"] == "refused" and "did not complete (Rolled back: alarm" in outcomes[-1]["reason"]
    assert len(world.edge.updates) == 1, "a failed rollout is not started again by a re-drive"
    [failure] = world.failures()
    assert failure["ModelPackageGroupName"] == GROUP and "delete endpoint config bert-ep-v2" in failure["reason"]
    assert world.serving() == 1 and world.queued() == 0
    # a newer approved version is deployed as usual
    world.register()
    world.set_status(3, "Approved")
    assert world.deliver(world.event(3))["action"] == "deployed"


def test_update_rollback_failed_needs_a_person(world):
    serve(world, 1)
    world.edge.set_state("UpdateRollbackFailed", "both the update and its rollback failed")
    world.register()
    world.set_status(2, "Approved")
    outcome = world.deliver(world.event(2))
    assert outcome["action"] == "refused" and world.edge.updates == [] and len(world.failures()) == 1


def test_an_update_racing_another_invocation_is_deferred_not_lost(world):
    serve(world, 1)
    world.register()
    world.set_status(2, "Approved")
    world.edge.reject_next_update = "Cannot update in-progress endpoint \"arn:aws:sagemaker:...:endpoint/bert-ep\"."
    outcome = world.deliver(world.event(2))
    assert outcome["action"] == "deferred" and outcome["next"]["redrive"]
    [again] = world.drain(rounds=1)
    assert again["action"] == "deployed" and world.edge.pending == f"{ENDPOINT}-v2"


def test_models_and_configs_beyond_the_newest_keep_versions_are_deleted(moto_url, credentials):
    world = World(moto_url, keep_versions=2)
    serve(world, 1, 2, 3, 4)
    names = sorted(m["ModelName"] for m in world.sm.list_models()["Models"])
    assert names == [f"{ENDPOINT}-v3", f"{ENDPOINT}-v4"]
    assert sorted(c["EndpointConfigName"] for c in world.sm.list_endpoint_configs()["EndpointConfigs"]) == names
    # rolling back to a pruned version re-creates what it needs from the registry
    for v in (4, 3):
        world.set_status(v, "Rejected")
    world.deliver(world.event(3))
    world.edge.finish_update()
    world.drain()
    assert world.serving() == 2 and world.sm.describe_model(ModelName=f"{ENDPOINT}-v2")
    # the serving version is kept even when it is older than the newest KEEP_VERSIONS
    assert f"{ENDPOINT}-v2" in [m["ModelName"] for m in world.sm.list_models()["Models"]]


def test_retries_are_bounded_then_the_failures_queue_says_why(moto_url, credentials):
    world = World(moto_url, retry_max_hours=1.0)
    serve(world, 1)
    world.register()
    world.set_status(2, "Approved")
    world.deliver(world.event(2))  # an update that never finishes
    assert world.drain(rounds=2)[-1]["next"]["redrive"]
    world.now += 3601
    [last] = world.drain(rounds=1)
    assert "failed" in last["next"] and world.queued() == 0
    [failure] = world.failures()
    assert "gave up after 1 h: endpoint bert-ep is Updating" in failure["reason"]


def test_the_redrive_is_an_sqs_delay(moto_url, credentials):
    world = World(moto_url, retry_delay_s=1)
    world.register()
    world.set_status(1, "Approved")
    world.deliver(world.event(1))
    attributes = world.sqs.get_queue_attributes(QueueUrl=world.retry_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1" and attributes["ApproximateNumberOfMessages"] == "0"
    assert world.drain() == []  # not visible before its delay
    time.sleep(1.2)
    [outcome] = world.drain(rounds=1)
    assert outcome["trigger"]["kind"] == "redrive" and outcome["trigger"]["attempt"] == 1


def test_a_bad_queue_message_fails_alone(world):
    serve(world, 1)
    good = {"MessageId": "m-good", "ReceiptHandle": "r1", "MD5OfBody": "x",
            "Body": json.dumps({"source": "bert-multilabel.deploy.redrive", "ModelPackageGroupName": GROUP})}
    bad = {**good, "MessageId": "m-bad", "Body": "not json"}
    answer = world.controller.handle(sqs_event([good, bad], world.retry_arn))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}


def test_the_lambda_entry_point_takes_both_deliveries(moto_url, credentials, monkeypatch):
    """deploy.handler as Lambda runs it: clients from the environment (moto's URL), settings from env vars."""
    from lambda_fn import deploy
    from lambda_fn.local_adapter import LambdaContext

    world = World(moto_url)
    for name, value in {"AWS_ENDPOINT_URL": moto_url, "AWS_DEFAULT_REGION": "us-east-1", "ENDPOINT_NAME": ENDPOINT,
                        "MODEL_EXECUTION_ROLE_ARN": ROLE, "RETRY_QUEUE_URL": world.retry_url,
                        "FAILURES_QUEUE_URL": world.failures_url, "RETRY_DELAY_S": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(deploy, "_controller", None)
    world.register()
    world.set_status(1, "Approved")
    assert deploy.handler(world.event(1), LambdaContext("deploy"))["action"] == "deployed"
    messages = world.sqs.receive_message(QueueUrl=world.retry_url).get("Messages", [])
    assert deploy.handler(sqs_event(messages, world.retry_arn), LambdaContext("deploy")) == {"batchItemFailures": []}
    assert world.serving() == 1


def test_decide_works_with_any_backend_of_the_small_protocol():
    """The local twin's backend implements the same three members; decide needs nothing else."""
    from lambda_fn.deploy import EndpointBusyError

    class Backend:
        endpoint_name = "local"

        def __init__(self):
            self.approved, self.serving, self.busy = {1, 2}, 1, False

        def newest_approved(self, group):
            return {"group": group, "version": max(self.approved), "arn": "", "status": "Approved"} \
                if self.approved else None

        def serving_version(self):
            return self.serving

        def deploy(self, package):
            if self.busy:
                raise EndpointBusyError("a switch is in progress")
            self.serving = package["version"]
            return "deployed"

    backend = Backend()
    event = state_change_event({"ModelPackageArn": "arn:x", "ModelPackageVersion": 1}, "Approved")
    assert decide(event, backend)["action"] == "deployed" and backend.serving == 2
    backend.approved, backend.busy = {1}, True
    assert decide(event, backend)["action"] == "deferred" and backend.serving == 2
    backend.busy = False
    assert decide(event, backend)["action"] == "rolled_back" and backend.serving == 1
