"""Replays of model package state-change deliveries, as AWS may make them, through the deploy Lambda's
controller (EventBridge events and the retry queue's SQS event source mapping) against moto server
over real HTTP. After every delivery the version the endpoint serves is asserted.

AWS documents that SageMaker may send several events per state change and EventBridge promises
neither order nor single delivery; events also come for changes that are not approvals
(UpdatedModelPackageFields ["ModelLifeCycle"], ...). Every sequence below converges on "the
Approved version with the highest ModelPackageVersion serves", and none rolls production back to
an older model unless the serving version itself stopped being Approved.

What goes through botocore's Stubber instead of moto (moto lacks them), and nothing else:
UpdateEndpoint, and DescribeEndpoint while the endpoint is Updating / Failed / InService after a
failed update (moto's endpoints are always InService). See tests/helpers/deploy_world.py.
"""
from __future__ import annotations

import pytest

from tests.helpers.deploy_world import ENDPOINT, World
from tests.helpers.servers import moto_server


@pytest.fixture(scope="module")
def moto_url():
    with moto_server(18150, 18199) as url:
        yield url


@pytest.fixture
def world(moto_url, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return World(moto_url)


class Replay:
    """Deliver steps and record what serves after each; never down, except where the step says so."""

    def __init__(self, world: World):
        self.world, self.history = world, []

    def step(self, what: str, outcome_or_none, serving: int | None, rollback_allowed: bool = False):
        now = self.world.serving()
        assert now == serving, f"after {what}: serving {now}, expected {serving} (outcome {outcome_or_none})"
        if self.history and now is not None and self.history[-1][1] is not None and not rollback_allowed:
            assert now >= self.history[-1][1], f"{what} rolled production back from {self.history[-1][1]} to {now}"
        self.history.append((what, now))
        return outcome_or_none


def test_duplicates_and_out_of_order_delivery_converge_on_the_newest_approved(world):
    replay = Replay(world)
    for v in (1, 2):
        world.register()
        world.set_status(v, "Approved")
    e1, e2 = world.event(1, "Approved"), world.event(2, "Approved")
    # v2's approval is delivered before v1's, then both again (late duplicates)
    out = replay.step("v2 approved (delivered first)", world.deliver(e2), serving=2)
    assert out["action"] == "deployed" and out["how"] == "created" and out["target"] == 2
    out = replay.step("v1 approved (late)", world.deliver(e1), serving=2)
    assert out["action"] == "none" and "version 2 is the newest Approved and already serving" in out["reason"]
    assert out["trigger"]["version"] == 1  # it says which event it answered
    replay.step("v2 approved (duplicate)", world.deliver(world.event(2, "Approved")), serving=2)
    replay.step("v1 approved (duplicate)", world.deliver(e1), serving=2)
    replay.step("re-drives", world.drain(), serving=2)
    assert world.edge.updates == [], "no update of a serving endpoint for duplicates or older versions"
    assert [m["ModelName"] for m in world.sm.list_models()["Models"]] == [f"{ENDPOINT}-v2"]
    assert world.queued() == 0, "the follow-up chain ends once the endpoint is settled"


def test_a_metadata_update_of_an_old_approved_version_changes_nothing(world):
    replay = Replay(world)
    for v in (1, 2):
        world.register()
        world.set_status(v, "Approved")
        world.deliver(world.event(v, "Approved"))
        if world.edge.pending:
            world.edge.finish_update()
        world.drain()
    replay.step("v1 then v2 approved", None, serving=2)
    lifecycle = world.event(1, "Approved", fields=["ModelLifeCycle"],
                            ModelLifeCycle={"Stage": "Production", "StageStatus": "Approved",
                                            "StageDescription": "promoted"})
    out = replay.step("ModelLifeCycle update of v1", world.deliver(lifecycle), serving=2)
    assert out["action"] == "none" and out["trigger"]["fields"] == ["ModelLifeCycle"]
    metadata = world.event(1, "Approved", fields=["CustomerMetadataProperties"])
    replay.step("metadata update of v1", world.deliver(metadata), serving=2)
    replay.step("re-drives", world.drain(), serving=2)
    assert [u["EndpointConfigName"] for u in world.edge.updates] == [f"{ENDPOINT}-v2"]


def test_an_approval_during_an_update_is_applied_after_it_and_nothing_is_dropped(world):
    replay = Replay(world)
    for _ in range(3):
        world.register()
    world.set_status(1, "Approved")
    replay.step("v1 approved", world.deliver(world.event(1)), serving=1)
    world.drain()
    world.set_status(2, "Approved")
    out = replay.step("v2 approved", world.deliver(world.event(2)), serving=1)  # blue/green under way
    assert out["action"] == "deployed" and out["how"] == "updated" and world.edge.pending == f"{ENDPOINT}-v2"
    world.set_status(3, "Approved")
    out = replay.step("v3 approved during the update", world.deliver(world.event(3)), serving=1)
    assert out["action"] == "deferred" and "is Updating" in out["reason"] and out["next"]["redrive"]
    replay.step("v3 approved (duplicate, still updating)", world.deliver(world.event(3)), serving=1)
    replay.step("v2 approved (duplicate, still updating)", world.deliver(world.event(2)), serving=1)
    outcomes = replay.step("re-drives while updating", world.drain(rounds=3), serving=1)
    assert outcomes and {o["action"] for o in outcomes} <= {"deferred", "none"}
    assert len(world.edge.updates) == 1, "no UpdateEndpoint on an endpoint that is Updating"

    world.edge.finish_update()
    replay.step("v2 rollout done", None, serving=2)
    outcomes = replay.step("re-drives after the rollout", world.drain(rounds=1), serving=2)
    assert [o["action"] for o in outcomes].count("deployed") == 1, outcomes  # v3, once, by one of the chains
    assert world.edge.pending == f"{ENDPOINT}-v3"
    replay.step("re-drives while v3 rolls out", world.drain(rounds=2), serving=2)
    world.edge.finish_update()
    replay.step("v3 rollout done", world.drain(), serving=3)
    assert [u["EndpointConfigName"] for u in world.edge.updates] == [f"{ENDPOINT}-v2", f"{ENDPOINT}-v3"]
    assert world.queued() == 0 and world.failures() == []
    target = world.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [t["ResourceId"] for t in target] == [f"endpoint/{ENDPOINT}/variant/AllTraffic"]


def test_rejecting_the_serving_version_rolls_back_and_a_late_approval_of_it_does_not_return(world):
    replay = Replay(world)
    for v in (1, 2, 3):
        world.register()
        world.set_status(v, "Approved")
    world.deliver(world.event(3))
    replay.step("v3 serving", world.drain(), serving=3)
    world.set_status(3, "Rejected")
    out = replay.step("v3 rejected", world.deliver(world.event(3)), serving=3)
    assert out["action"] == "rolled_back" and out["version"] == 2 and out["previous"] == 3
    assert "version 3 is no longer Approved" in out["reason"]
    world.edge.finish_update()
    replay.step("rollback done", world.drain(), serving=2, rollback_allowed=True)
    # the Approved event of v3 delivered late, and v3's Rejected event again
    out = replay.step("v3 approved (late)", world.deliver(world.event(3, "Approved")), serving=2)
    assert out["action"] == "none"
    replay.step("v3 rejected (duplicate)", world.deliver(world.event(3, "Rejected")), serving=2)
    assert [u["EndpointConfigName"] for u in world.edge.updates] == [f"{ENDPOINT}-v2"]


def test_rejecting_a_version_that_is_not_serving_changes_nothing(world):
    replay = Replay(world)
    for v in (1, 2):
        world.register()
        world.set_status(v, "Approved")
    world.register()  # v3, pending
    world.deliver(world.event(2))
    replay.step("v2 serving", world.drain(), serving=2)
    world.set_status(1, "Rejected")
    out = replay.step("v1 rejected", world.deliver(world.event(1)), serving=2)
    assert out["action"] == "none"
    world.set_status(3, "Rejected")
    replay.step("v3 rejected before it was ever approved", world.deliver(world.event(3)), serving=2)
    assert world.edge.updates == []


def test_rejecting_the_only_approved_version_leaves_it_serving_and_says_so(world):
    replay = Replay(world)
    world.register()
    world.set_status(1, "Approved")
    world.deliver(world.event(1))
    world.set_status(1, "Rejected")
    out = replay.step("v1 rejected", world.deliver(world.event(1)), serving=1)
    assert out["action"] == "none" and out["target"] is None
    assert "no version is Approved: version 1 left serving" in out["reason"]
