"""The local twin of the deploy Lambda's endpoint world: the local model registry and a local endpoint.

`lambda_fn.deploy.decide` makes the decisions for both worlds; this backend carries them out
against `<home>/registry` and the model server processes of `mlops.local_endpoint`.

`converge` is the one local decision path (approve, reject, `mlops up`, `mlops endpoint start`, the
supervisor): it leaves a re-drive request, then decides under the endpoint's lock, again and again while
requests arrive during its own switch or the switch was superseded, so a change made while a switch is in
progress is applied after it (the AWS twin re-drives through SQS), and the end state is always decide's:
the newest Approved version serves (or, with none Approved, the one left serving).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from filelock import Timeout

from lambda_fn.deploy import REDRIVE_SOURCE, EndpointBusyError, decide, trigger_from_event
from mlops.local_endpoint import LOCK_TIMEOUT_S, DeployError, LocalEndpoint, Superseded
from pipelines.registry import LocalModelRegistry, RegistryError
from pipelines.spec import ENDPOINT_NAME

MAX_PASSES = 20  # decisions in one converge call at most (each pass follows a change made meanwhile)


class LocalBackend:
    """The same decisions against the local registry and a local endpoint (model server processes)."""

    def __init__(self, settings, endpoint_name: str | None = None):
        self.settings = settings
        self.endpoint_name = endpoint_name or ENDPOINT_NAME
        self.registry = LocalModelRegistry(settings.registry_dir)
        self.endpoint = LocalEndpoint(settings.home, self.endpoint_name, python=settings.python)

    def serving_version(self) -> int | None:
        """The version the endpoint is set to serve; a dead server of it is revived by `converge`, not redeployed."""
        return self.endpoint.current_version()

    def newest_approved(self, group: str, exclude: int | None = None) -> dict | None:
        try:
            packages = self.registry.list_packages(group)
        except RegistryError:  # no such group yet: nothing is Approved
            return None
        approved = [p for p in packages
                    if p["ModelApprovalStatus"] == "Approved" and int(p["ModelPackageVersion"]) != exclude]
        if not approved:
            return None
        best = max(approved, key=lambda p: int(p["ModelPackageVersion"]))
        return {"group": group, "version": int(best["ModelPackageVersion"]), "arn": best.get("ModelPackageArn", ""),
                "status": "Approved"}

    def deploy(self, package: dict) -> str:
        model_tar = self.registry.model_path(package["group"], package["version"])

        def still_wanted() -> bool:  # re-read the registry once the new server is ready, before switching to it
            newest = self.newest_approved(package["group"])
            return newest is not None and newest["version"] == package["version"]

        try:
            self.endpoint.deploy(package["version"], model_tar, still_wanted=still_wanted)
        except Superseded as exc:
            raise EndpointBusyError(f"{exc}; deciding again") from None
        return "deployed"


def redrive_event(group: str, attempt: int, cause: str) -> dict:
    """The message that makes `decide` take the decision again (the shape the AWS re-drive queue carries)."""
    return {"source": REDRIVE_SOURCE, "ModelPackageGroupName": group, "attempt": attempt, "cause": cause}


@contextmanager
def _holding(endpoint: LocalEndpoint) -> Iterator[None]:
    """The endpoint's lock, waiting up to LOCK_TIMEOUT_S for the change in progress (a DeployError past that)."""
    try:
        endpoint.lock.acquire()
    except Timeout:
        raise DeployError(f"another change to endpoint {endpoint.name} has held its lock for {LOCK_TIMEOUT_S:.0f} s; "
                          "this change stays pending and is applied after it") from None
    try:
        yield
    finally:
        endpoint.lock.release()


def converge(settings, event: dict | None = None, endpoint_name: str | None = None) -> dict:
    """decide() for the local endpoint, serialized and re-driven (see the module docstring); then a dead server of
    the version left serving is revived. Returns the last decision's outcome (+ "revived" when one was)."""
    backend = LocalBackend(settings, endpoint_name)
    endpoint = backend.endpoint
    trigger = event or redrive_event(settings.model_package_group, 1, "converge")
    group = trigger_from_event(trigger)["group"]  # a malformed event fails here, before anything is requested
    endpoint.request_redrive(group, f"{trigger.get('detail-type') or trigger.get('cause')}")
    with _holding(endpoint):
        endpoint.reap_orphans()
        for attempt in range(1, MAX_PASSES + 1):
            seen = endpoint.pending_redrives()
            try:
                outcome = decide(trigger, backend)
            finally:  # carried out, or failed for a person to look at (DeployError); a command killed meanwhile
                endpoint.clear_redrives(seen)  # leaves its request pending for the next one
            if outcome["action"] != "deferred" and not endpoint.redrive_pending():
                break
            trigger = redrive_event(group, attempt + 1, outcome.get("reason", "a change arrived during the switch"))
        revived = endpoint.revive("its model server was dead")
        if revived:
            outcome["revived"] = {"pid": revived["pid"], "url": revived["url"]}
    return outcome
