"""Registry and endpoint transitions cannot race (issue 13, cases 1 and 4; issue 11, item 6).

As found: `mlops registry approve N` then `mlops registry reject N` one second later, and `approve 3` and
`approve 4` at once, each as its own process while `mlops up` serves; a SIGKILLed approve. The end state
is always the one `lambda_fn.deploy.decide` defines (the newest Approved version serves), no Rejected or
older version serves once the commands have returned, and no model server is left that nothing owns.
"""
from __future__ import annotations

import json
import signal
import time

import pytest

from mlops.local_endpoint import LocalEndpoint
from pipelines import spec
from pipelines.registry import LocalModelRegistry
from tests.helpers.stack import Up, mlops, mlops_run, model_servers

pytestmark = pytest.mark.timeout(420)


def _settle(up: Up, home, expected: int) -> None:
    """Every answer through the endpoint comes from `expected`, and the only model server is the one serving."""
    versions = {up.serving() for _ in range(10)}
    assert versions == {expected}, f"versions answering: {versions}, expected only {expected}"
    state = LocalEndpoint(home, spec.ENDPOINT_NAME).state()
    assert state["version"] == expected
    pids = sorted(p.pid for p in model_servers(home))
    assert pids == [state["pid"]], f"model servers {pids}; the endpoint's is {state['pid']}: orphans left"


def _status(settings, version: int) -> str:
    return LocalModelRegistry(settings.registry_dir).describe(settings.model_package_group, version)[
        "ModelApprovalStatus"]


@pytest.fixture
def up(home):
    assert mlops_run(home.home, "registry", "approve", "1")[0] == 0
    stack = Up(home.home).start()
    yield stack
    stack.stop()


@pytest.mark.parametrize("rounds", [(2, 3)])
def test_a_reject_one_second_after_the_approve_never_leaves_the_rejected_version_serving(home, up, rounds):
    for version in rounds:  # "2 of 2 tries"
        approve = mlops(home.home, "registry", "approve", str(version))
        time.sleep(1.0)
        reject = mlops(home.home, "registry", "reject", str(version))
        reject_output = reject.communicate(timeout=300)[0]
        assert reject.returncode == 0, reject_output
        assert up.serving() == 1, f"v{version} was rejected, yet it serves once reject returned:\n{reject_output}"
        approve_output = approve.communicate(timeout=300)[0]
        assert approve.returncode == 0, approve_output
        assert _status(home, version) == "Rejected"
        _settle(up, home.home, 1)


def test_concurrent_approvals_end_on_the_newest_and_leave_no_orphan(home, up):
    for first, second, gap in ((2, 3, 0.0), (4, 5, 1.0)):  # at once; then the second during the first's switch
        a = mlops(home.home, "registry", "approve", str(first))
        time.sleep(gap)
        b = mlops(home.home, "registry", "approve", str(second))
        outputs = [p.communicate(timeout=300)[0] for p in (a, b)]
        assert a.returncode == 0 and b.returncode == 0, outputs
        _settle(up, home.home, second)


def test_stale_and_duplicate_events_change_nothing(home, up):
    assert mlops_run(home.home, "registry", "approve", "2")[0] == 0
    _settle(up, home.home, 2)
    events = [json.loads(line) for line in (home.home / "events.jsonl").read_text().splitlines()]
    v1_approval = next(e for e in events if e["detail"]["ModelPackageVersion"] == 1)
    from mlops.commands.registry import publish_event

    pid = LocalEndpoint(home.home, spec.ENDPOINT_NAME).state()["pid"]
    for event in (v1_approval, events[-1], events[-1]):  # late for v1, then v2's twice
        outcome = publish_event(event, home, echo=False, deploy=True)
        assert outcome["action"] == "none" and outcome["version"] == 2, outcome
    assert LocalEndpoint(home.home, spec.ENDPOINT_NAME).state()["pid"] == pid, "nothing may be redeployed"
    _settle(up, home.home, 2)


def test_a_sigkilled_approve_leaves_no_orphan_and_its_approval_is_not_lost(home, up):
    approve = mlops(home.home, "registry", "approve", "2")
    serving_pid = LocalEndpoint(home.home, spec.ENDPOINT_NAME).state()["pid"]
    deadline = time.time() + 60
    while time.time() < deadline and not [p for p in model_servers(home.home) if p.pid != serving_pid]:
        time.sleep(0.05)
    assert [p for p in model_servers(home.home) if p.pid != serving_pid], "v2's model server never started"
    approve.send_signal(signal.SIGKILL)
    approve.wait(10)
    assert _status(home, 2) == "Approved"
    deadline = time.time() + 90  # the process that owns the endpoint finishes what the killed command started
    while time.time() < deadline and (LocalEndpoint(home.home, spec.ENDPOINT_NAME).state().get("version") != 2
                                      or len(model_servers(home.home)) != 1):
        time.sleep(0.2)
    _settle(up, home.home, 2)
