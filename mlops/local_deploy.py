"""The local twin of the deploy Lambda's endpoint world: the local model registry and a local endpoint.

`lambda_fn.deploy.decide` makes the decisions for both worlds; this backend carries them out
against `<home>/registry` and the model server processes of `mlops.local_endpoint`.
"""
from __future__ import annotations

from mlops.local_endpoint import LocalEndpoint
from pipelines.registry import LocalModelRegistry
from pipelines.spec import ENDPOINT_NAME


class LocalBackend:
    """The same decisions against the local registry and a local endpoint (model server processes)."""

    def __init__(self, settings, endpoint_name: str | None = None):
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
