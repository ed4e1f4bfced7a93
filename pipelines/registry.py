"""A local model registry shaped like SageMaker's: model package groups with numbered versions.

Layout: `<root>/<group>/v<N>/{model.tar.gz, evaluation.json, package.json}`. `package.json`
mirrors DescribeModelPackage (plus metrics, source run id, approval history). Everything is on
disk; a version appears by renaming a complete temp directory, files are replaced atomically
and a per-group file lock (`filelock`, released by the OS if its holder dies) serialises writers
across processes; every change re-reads the version under the lock.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from mlcore.config import EVALUATION_FILE
from pipelines.digests import file_sha256
from pipelines.spec import PROJECT_NAME

LOCAL_REGION = "local"
LOCAL_ACCOUNT = "000000000000"
LOCAL_IMAGE = f"local/{PROJECT_NAME}-inference"  # the model server (inference/), as a registered image
APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
# Allowed ModelApprovalStatus changes; a version never goes back to PendingManualApproval.
TRANSITIONS = {
    "PendingManualApproval": ("Approved", "Rejected"),
    "Approved": ("Rejected",),
    "Rejected": ("Approved",),
}
EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"
MODEL_FILE = "model.tar.gz"
PACKAGE_FILE = "package.json"
GROUP_FILE = "group.json"
_GROUP_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's EntityName pattern
_VERSION_DIR = re.compile(r"^v(\d+)$")


class RegistryError(LookupError):
    """An unknown group/version or an invalid status change; the message says what exists."""


def now_iso() -> str:
    """Current UTC time, ISO 8601 with milliseconds and a Z (as AWS writes it)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def atomic_write_json(path: Path, document: Any) -> None:
    """Write JSON to a temp file beside `path`, fsync, then os.replace (readers never see half a file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def headline_metrics(evaluation: dict) -> dict[str, float | None]:
    """The evaluation's scalar metrics (`{"f1_macro": 0.41, ...}`) from `{"name": {"value": v}}` entries."""
    section = evaluation.get("multilabel_classification_metrics", evaluation)
    metrics = {
        name: entry.get("value")
        for name, entry in section.items()
        if isinstance(entry, dict) and "value" in entry
    }
    if "n_samples" in evaluation:
        metrics["n_samples"] = evaluation["n_samples"]
    return metrics


def model_package_arn(group: str, version: int, region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT) -> str:
    """`arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>` as SageMaker writes it."""
    return f"arn:aws:sagemaker:{region}:{account}:model-package/{group.lower()}/{version}"


class LocalModelRegistry:
    """Model package groups and versions under `root`; safe to use from several processes."""

    def __init__(self, root: str | Path, region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT):
        self.root = Path(root)
        self.region = region
        self.account = account

    # ----- paths and locking
    def group_dir(self, group: str) -> Path:
        return self.root / group

    def version_dir(self, group: str, version: int) -> Path:
        return self.group_dir(group) / f"v{int(version)}"

    @contextlib.contextmanager
    def _lock(self, group: str) -> Iterator[None]:
        """Exclusive lock on `<group>/.lock` (an flock through filelock: released by the OS if the process dies)."""
        self.group_dir(group).mkdir(parents=True, exist_ok=True)
        with FileLock(self.group_dir(group) / ".lock", is_singleton=True):
            yield

    # ----- reading
    def list_groups(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / GROUP_FILE).exists())

    def versions(self, group: str) -> list[int]:
        """Version numbers of `group`, ascending (complete versions only)."""
        self._require_group(group)
        found = []
        for child in self.group_dir(group).iterdir():
            match = _VERSION_DIR.match(child.name)
            if match and (child / PACKAGE_FILE).exists():
                found.append(int(match.group(1)))
        return sorted(found)

    def list_packages(self, group: str) -> list[dict]:
        """Every version's package description, oldest first."""
        return [self.describe(group, v) for v in self.versions(group)]

    def describe(self, group: str, version: int | str) -> dict:
        """DescribeModelPackage-shaped dict of one version (plus Metrics, SourceRunId, ApprovalHistory)."""
        version = self._parse_version(version)
        path = self.version_dir(group, version) / PACKAGE_FILE
        if not path.exists():
            existing = self.versions(group)
            listing = ", ".join(map(str, existing)) if existing else "none yet"
            raise RegistryError(
                f"model package group {group!r} has no version {version}; versions: {listing}"
            )
        return json.loads(path.read_text(encoding="utf-8"))

    def latest(self, group: str, status: str | None = "Approved") -> dict | None:
        """The newest version with `status` (any status when None), or None."""
        for package in reversed(self.list_packages(group)):
            if status is None or package["ModelApprovalStatus"] == status:
                return package
        return None

    def find_by_model_digest(self, group: str, sha256: str) -> dict | None:
        """The newest version whose model.tar.gz has this sha256 (its ModelDataETag), or None."""
        if not (self.group_dir(group) / GROUP_FILE).exists():
            return None
        for package in reversed(self.list_packages(group)):
            if package["InferenceSpecification"]["Containers"][0].get("ModelDataETag") == sha256:
                return package
        return None

    def model_path(self, group: str, version: int | str) -> Path:
        """Local path of a version's model.tar.gz."""
        self.describe(group, version)
        return self.version_dir(group, self._parse_version(version)) / MODEL_FILE

    # ----- writing
    def create_group(self, group: str, description: str = "") -> dict:
        """Create the group if absent (idempotent); returns its description."""
        if not _GROUP_NAME.match(group or ""):
            raise ValueError(
                f"invalid model package group name {group!r}: 1-63 letters, digits or hyphens, "
                "starting and ending with a letter or digit"
            )
        with self._lock(group):
            path = self.group_dir(group) / GROUP_FILE
            if path.exists():
                return json.loads(path.read_text(encoding="utf-8"))
            doc = {
                "ModelPackageGroupName": group,
                "ModelPackageGroupArn": f"arn:aws:sagemaker:{self.region}:{self.account}:model-package-group/{group.lower()}",
                "ModelPackageGroupDescription": description,
                "CreationTime": now_iso(),
                "ModelPackageGroupStatus": "Completed",
            }
            atomic_write_json(path, doc)
            return doc

    def register(
        self,
        group: str,
        model_artifact: str | Path,
        evaluation: str | Path | dict,
        approval_status: str = "PendingManualApproval",
        source_run_id: str | None = None,
        description: str = "",
        created_by: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict:
        """Add version N+1 with a copy of `model_artifact` (a model.tar.gz) and the evaluation report."""
        self._check_status(approval_status)
        model_artifact = Path(model_artifact)
        if not model_artifact.is_file():
            raise FileNotFoundError(f"model artifact not found (expected a model.tar.gz file): {model_artifact}")
        if isinstance(evaluation, dict):
            evaluation_doc = evaluation
        else:
            evaluation_path = Path(evaluation)
            if not evaluation_path.is_file():
                raise FileNotFoundError(f"evaluation report not found: {evaluation_path}")
            evaluation_doc = json.loads(evaluation_path.read_text(encoding="utf-8"))
        self.create_group(group)
        user = created_by or _user()
        with self._lock(group):
            existing = self.versions(group)
            version = (max(existing) if existing else 0) + 1
            final = self.version_dir(group, version)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-v{version}-", dir=self.group_dir(group)))
            try:
                shutil.copy2(model_artifact, tmp / MODEL_FILE)
                atomic_write_json(tmp / EVALUATION_FILE, evaluation_doc)
                created = now_iso()
                arn = model_package_arn(group, version, self.region, self.account)
                package = {
                    "ModelPackageGroupName": group,
                    "ModelPackageVersion": version,
                    "ModelPackageArn": arn,
                    "ModelPackageName": group,
                    "ModelPackageDescription": description,
                    "CreationTime": created,
                    "LastModifiedTime": created,
                    "ModelPackageStatus": "Completed",
                    "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
                    "ModelApprovalStatus": approval_status,
                    "ApprovalDescription": "",
                    "CertifyForMarketplace": False,
                    "InferenceSpecification": {
                        "Containers": [{
                            "Image": LOCAL_IMAGE,
                            "ModelDataUrl": (final / MODEL_FILE).resolve().as_uri(),
                            "ModelDataETag": file_sha256(tmp / MODEL_FILE),
                        }],
                        "SupportedContentTypes": ["application/json", "text/csv"],
                        "SupportedResponseMIMETypes": ["application/json"],
                    },
                    "ModelMetrics": {"ModelQuality": {"Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": (final / EVALUATION_FILE).resolve().as_uri(),
                    }}},
                    "MetadataProperties": {"GeneratedBy": self._execution_arn(source_run_id)} if source_run_id else {},
                    "CustomerMetadataProperties": dict(metadata or {}),
                    "CreatedBy": {"UserProfileName": user},
                    "LastModifiedBy": {"UserProfileName": user},
                    "Metrics": headline_metrics(evaluation_doc),
                    "SourceRunId": source_run_id,
                    "ApprovalHistory": [
                        {"status": approval_status, "previous": None, "by": user, "at": created,
                         "reason": "registered by the pipeline" if source_run_id else "registered"}
                    ],
                }
                atomic_write_json(tmp / PACKAGE_FILE, package)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return package

    def delete_version(self, group: str, version: int | str) -> None:
        """Remove a version and its files (DeleteModelPackage). Numbers come from the highest version left: the
        caller keeps the newest one (`mlops gc` always does), or its number would be given again."""
        version = self._parse_version(version)
        with self._lock(group):
            self.describe(group, version)
            doomed = self.group_dir(group) / f".deleted-v{version}-{uuid.uuid4().hex[:6]}"
            os.rename(self.version_dir(group, version), doomed)  # gone for readers at once; the bytes go next
            shutil.rmtree(doomed, ignore_errors=True)

    def update_status(self, group: str, version: int | str, status: str, reason: str = "",
                      by: str | None = None) -> dict:
        """Change ModelApprovalStatus; returns the EventBridge event SageMaker would emit."""
        self._check_status(status)
        version = self._parse_version(version)
        user = by or _user()
        with self._lock(group):
            package = self.describe(group, version)
            current = package["ModelApprovalStatus"]
            allowed = TRANSITIONS.get(current, ())
            if status not in allowed:
                options = " or ".join(allowed) if allowed else "nothing"
                raise RegistryError(
                    f"{group} version {version} is {current}: it can change to {options}, not {status}"
                )
            changed = now_iso()
            package["ModelApprovalStatus"] = status
            package["ApprovalDescription"] = reason
            package["LastModifiedTime"] = changed
            package["LastModifiedBy"] = {"UserProfileName": user}
            package.setdefault("ApprovalHistory", []).append(
                {"status": status, "previous": current, "by": user, "at": changed, "reason": reason}
            )
            atomic_write_json(self.version_dir(group, version) / PACKAGE_FILE, package)
        return self.state_change_event(package)

    def state_change_event(self, package: dict) -> dict:
        """The "SageMaker Model Package State Change" EventBridge event for a package description."""
        detail_keys = (
            "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn", "ModelPackageName",
            "ModelPackageDescription", "InferenceSpecification", "ModelPackageStatus",
            "ModelPackageStatusDetails", "CertifyForMarketplace", "ModelApprovalStatus",
            "ApprovalDescription", "MetadataProperties", "ModelMetrics", "CreatedBy", "LastModifiedBy",
            "CustomerMetadataProperties",
        )
        detail = {k: package[k] for k in detail_keys if k in package}
        # The event carries times as epoch milliseconds (DescribeModelPackage returns timestamps).
        detail["CreationTime"] = _epoch_ms(package["CreationTime"])
        detail["LastModifiedTime"] = _epoch_ms(package["LastModifiedTime"])
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": EVENT_DETAIL_TYPE,
            "source": "aws.sagemaker",
            "account": self.account,
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [package["ModelPackageArn"]],
            "detail": detail,
        }

    # ----- helpers
    def _execution_arn(self, run_id: str) -> str:
        from pipelines.spec import PIPELINE_NAME

        return f"arn:aws:sagemaker:{self.region}:{self.account}:pipeline/{PIPELINE_NAME}/execution/{run_id}"

    def _require_group(self, group: str) -> None:
        if not (self.group_dir(group) / GROUP_FILE).exists():
            groups = self.list_groups()
            listing = ", ".join(groups) if groups else "none yet (a passing pipeline run registers one)"
            raise RegistryError(f"no model package group {group!r} in {self.root}; groups: {listing}")

    @staticmethod
    def _check_status(status: str) -> None:
        if status not in APPROVAL_STATUSES:
            raise ValueError(f"invalid ModelApprovalStatus {status!r}; use one of: {', '.join(APPROVAL_STATUSES)}")

    @staticmethod
    def _parse_version(version: int | str) -> int:
        text = str(version).strip().lstrip("v")
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"invalid model package version {version!r}: expected a number 1, 2, ...")
        return int(text)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "local"
