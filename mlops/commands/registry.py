"""`mlops registry`: list, describe, approve and reject model package versions in the local registry.

The local model registry ($MLOPS_HOME/registry, MLOPS_HOME defaults to ./.mlops): model package
versions with SageMaker's approval statuses. approve/reject emit the 'SageMaker Model Package State
Change' event to $MLOPS_HOME/events.jsonl.
"""
from __future__ import annotations

import argparse
import json
import sys

from mlops.cli import CliError
from mlops.output import add_output_option, emit, table
from mlops.settings import Settings
from pipelines.registry import LocalModelRegistry, RegistryError
from pipelines.spec import MODEL_PACKAGE_GROUP

ORDER = 20
TABLE_METRICS = ("f1_macro", "roc_auc_macro")


def publish_event(event: dict, settings: Settings, echo: bool = True, deploy: bool = False) -> dict | None:
    """Deliver a model package state-change event: append it to <home>/events.jsonl (and print it).

    With `deploy`, the event also goes to the deploy handler's decision logic (lambda_fn/deploy.py)
    with the local backend (mlops/local_deploy.py: `converge`, serialized with every other endpoint change),
    as EventBridge would deliver it to the deploy Lambda on AWS.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.events_file, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, separators=(",", ":")) + "\n")
    if echo:
        print(json.dumps(event, indent=2))
    if not deploy:
        return None
    from lambda_fn.deploy import logger
    from mlops.commands.stack import log_level
    from mlops.local_deploy import converge
    from mlops.local_endpoint import DeployError

    try:
        with log_level(logger, "INFO" if echo else "WARNING"):  # its "deploy decision" JSON line: --verbose
            return converge(settings, event)
    except DeployError as exc:
        raise CliError(f"the status changed, but deployment failed; the serving version is unchanged.\n{exc}") from None


def _metric(package: dict, name: str) -> str:
    value = package.get("Metrics", {}).get(name)
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _registry(args) -> tuple[LocalModelRegistry, str, Settings]:
    settings = Settings.from_env()
    return LocalModelRegistry(settings.registry_dir), args.group or settings.model_package_group, settings


def serving_version(settings: Settings) -> int | None:
    """The version the local endpoint serves now (None when nothing is deployed or its server is gone)."""
    from mlops.local_endpoint import LocalEndpoint
    from pipelines.spec import ENDPOINT_NAME

    return LocalEndpoint(settings.home, ENDPOINT_NAME).current_version()


def cmd_list(args) -> int:
    registry, group, settings = _registry(args)
    packages = registry.list_packages(group) if group in registry.list_groups() else []  # none yet: an empty list
    if args.status:
        packages = [p for p in packages if p["ModelApprovalStatus"] == args.status]
    serving = serving_version(settings)
    items = [{"Version": p["ModelPackageVersion"], "Status": p["ModelApprovalStatus"],
              "Serving": p["ModelPackageVersion"] == serving, "Created": p["CreationTime"],
              **{m: p.get("Metrics", {}).get(m) for m in TABLE_METRICS}, "SourceRunId": p.get("SourceRunId"),
              "ModelPackageArn": p["ModelPackageArn"],
              "ModelSha256": p["InferenceSpecification"]["Containers"][0].get("ModelDataETag")} for p in packages]
    columns = [("VERSION", "Version"), ("SERVING", "Serving"), ("STATUS", "Status"),
               ("CREATED", lambda i: i["Created"][:19].replace("T", " ")), *((m.upper(), m) for m in TABLE_METRICS),
               ("RUN", "SourceRunId")]
    emit(items, columns, args.output, title=f"model package group {group} ({registry.group_dir(group)}); "
         "SERVING * = on the local endpoint",
         empty=f"no versions in {group}" + (f" with status {args.status}" if args.status else "")
         + ("" if packages or args.status else " (a pipeline run that passes the quality gate registers one)"))
    return 0


def cmd_describe(args) -> int:
    registry, group, _ = _registry(args)
    try:
        package = registry.describe(group, args.version)
    except (RegistryError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(package, indent=2))
        return 0
    container = package["InferenceSpecification"]["Containers"][0]
    fields = [
        ("arn", package["ModelPackageArn"]),
        ("status", package["ModelApprovalStatus"]),
        ("approval note", package.get("ApprovalDescription") or "-"),
        ("created", package["CreationTime"]),
        ("last modified", package["LastModifiedTime"]),
        ("source run", package.get("SourceRunId") or "-"),
        ("model data", container["ModelDataUrl"]),
        ("model sha256", container.get("ModelDataETag", "-")),
        ("evaluation", package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]),
    ]
    width = max(len(k) for k, _ in fields)
    print(f"{group} version {package['ModelPackageVersion']}")
    for key, value in fields:
        print(f"  {key.ljust(width)}  {value}")
    metrics = package.get("Metrics", {})
    if metrics:
        print("metrics (test set):")
        print(table([("METRIC", "VALUE")] + [(k, _metric(package, k)) for k in metrics]))
    print("approval history:")
    print(table([("WHEN", "STATUS", "BY", "REASON")] + [
        (h["at"], h["status"], h.get("by") or "-", h.get("reason") or "-") for h in package.get("ApprovalHistory", [])
    ]))
    return 0


def _change(args, status: str) -> int:
    registry, group, settings = _registry(args)
    try:
        event = registry.update_status(group, args.version, status, reason=args.reason or "")
    except (RegistryError, ValueError) as exc:
        hint = ("; `mlops endpoint start` brings the local endpoint to the newest Approved version"
                if f"is {status}:" in str(exc) and args.deploy else "")
        raise CliError(f"{exc}{hint}") from None
    print(f"{group} version {event['detail']['ModelPackageVersion']} is now {status}", file=sys.stderr)
    outcome = publish_event(event, settings, echo=args.verbose, deploy=args.deploy)
    if outcome:
        print(f"local endpoint: {outcome['action']} (serving version {outcome['version']}): {outcome['reason']}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("registry", help="list, describe, approve or reject registered model versions",
                                   description=__doc__)
    sub = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--group", help=f"model package group (default: $MLOPS_MODEL_PACKAGE_GROUP or {MODEL_PACKAGE_GROUP})")

    p = sub.add_parser("list", parents=[common], help="versions with status, the serving one, headline metrics")
    p.add_argument("--status", choices=["PendingManualApproval", "Approved", "Rejected"], help="only this status")
    add_output_option(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("describe", parents=[common], help="one version: paths, metrics, approval history")
    p.add_argument("version", help="version number (1, 2, ...)")
    p.add_argument("--json", action="store_true", help="print package.json as is")
    p.set_defaults(func=cmd_describe)

    for action, status in (("approve", "Approved"), ("reject", "Rejected")):
        p = sub.add_parser(action, parents=[common], help=f"set a version's status to {status} and emit the event")
        p.add_argument("version", help="version number (1, 2, ...)")
        p.add_argument("--reason", default="", help="why (kept in the approval history)")
        p.add_argument("--no-deploy", dest="deploy", action="store_false",
                       help="only change the status; do not send the event to the local deploy handler")
        p.set_defaults(func=lambda args, status=status: _change(args, status))
