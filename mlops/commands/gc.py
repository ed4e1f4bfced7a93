"""`mlops gc`: free disk space under $MLOPS_HOME, keeping what is in use.

Kept: the newest --keep-runs runs and --keep-versions model versions, every Approved version, the version
the local endpoint serves, the runs that built kept versions (the monitor's baseline reads their
statistics), runs still executing, and the step-cache entries of kept runs. Removed: the other runs, model
versions, step-cache entries, extracted models of versions the endpoint no longer serves, and score
baselines of removed versions. `--dry-run` lists what would go.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from mlops.cli import CliError
from mlops.commands.runs import load_runs
from mlops.output import add_output_option, emit
from mlops.settings import Settings
from pipelines import spec
from pipelines.registry import LocalModelRegistry

ORDER = 90


def _files(path: Path):
    if path.is_file():
        yield path
    for root, _, files in os.walk(path):
        for name in files:
            yield Path(root) / name


def freed_bytes(paths: list[Path]) -> int:
    """Bytes that removing all of `paths` frees: a file's bytes count when every hard link to it is among them
    (a run's outputs and their step-cache entry share their files)."""
    seen: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [links found, links it has, size]
    for path in paths:
        for file in _files(path):
            st = os.lstat(file)
            entry = seen.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_size])
            entry[0] += 1
    return sum(size for found, links, size in seen.values() if found >= links)


def human_size(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _versions(settings: Settings, keep: int, serving: int | None) -> tuple[list[dict], set[int]]:
    """(versions to remove, versions kept) of the model package group."""
    registry = LocalModelRegistry(settings.registry_dir)
    if settings.model_package_group not in registry.list_groups():
        return [], set()
    packages = registry.list_packages(settings.model_package_group)
    newest = {p["ModelPackageVersion"] for p in packages[-keep:]}
    kept = newest | {p["ModelPackageVersion"] for p in packages if p["ModelApprovalStatus"] == "Approved"}
    kept |= {serving} if serving is not None else set()
    doomed = [p for p in packages if p["ModelPackageVersion"] not in kept]
    return doomed, {p["ModelPackageVersion"] for p in packages if p["ModelPackageVersion"] in kept}


def plan(settings: Settings, keep_runs: int, keep_versions: int) -> list[dict]:
    """What gc removes: [{"Kind", "Name", "Path", "Bytes", "Why"}]."""
    from mlops.local_endpoint import LocalEndpoint

    endpoint = LocalEndpoint(settings.home, spec.ENDPOINT_NAME)
    serving = endpoint.current_version()
    doomed_versions, kept_versions = _versions(settings, keep_versions, serving)
    registry = LocalModelRegistry(settings.registry_dir)
    group = settings.model_package_group
    builders = {p.get("SourceRunId") for v in kept_versions for p in [registry.describe(group, v)]}
    runs = load_runs(settings.runs_dir)
    kept_runs = [r for i, r in enumerate(runs) if i < keep_runs or r["run_id"] in builders or r.get("status") == "Executing"]
    kept_ids = {r["run_id"] for r in kept_runs}
    kept_keys = {s.get("cache_key") for r in kept_runs for s in r.get("steps") or []}
    items = [{"Kind": "model version", "Name": f"v{p['ModelPackageVersion']}", "Version": p["ModelPackageVersion"],
              "Path": registry.version_dir(group, p["ModelPackageVersion"]),
              "Why": f"{p['ModelApprovalStatus']}, not among the newest {keep_versions}, not serving"}
             for p in doomed_versions]
    items += [{"Kind": "run", "Name": r["run_id"], "Path": Path(settings.runs_dir) / r["run_id"],
               "Why": f"{r.get('status')}, not among the newest {keep_runs}, built no kept version"}
              for r in runs if r["run_id"] not in kept_ids]
    cache = Path(settings.cache_dir)
    items += [{"Kind": "cache entry", "Name": f"{entry.parent.name}/{entry.name}", "Path": entry,
               "Why": "used by no kept run"}
              for entry in sorted(cache.glob("*/*")) if entry.is_dir() and entry.name not in kept_keys]
    items += [{"Kind": "extracted model", "Name": f"endpoint v{d.name[1:]}", "Path": d / "model",
               "Why": "the endpoint does not serve this version"}
              for d in sorted(endpoint.dir.glob("v*")) if d.name[1:].isdigit() and int(d.name[1:]) != serving
              and (d / "model").is_dir()]
    baselines = settings.monitoring_dir / "baseline"
    items += [{"Kind": "score baseline", "Name": f"v{p['ModelPackageVersion']}",
               "Path": baselines / f"v{p['ModelPackageVersion']}", "Why": "its model version is removed"}
              for p in doomed_versions if (baselines / f"v{p['ModelPackageVersion']}").is_dir()]
    for item in items:
        item["Bytes"] = freed_bytes([item["Path"]])  # alone; the total below counts shared files once
    return items


def remove(settings: Settings, items: list[dict]) -> None:
    registry = LocalModelRegistry(settings.registry_dir)
    for item in items:
        if item["Kind"] == "model version":
            registry.delete_version(settings.model_package_group, item["Version"])
        else:
            shutil.rmtree(item["Path"], ignore_errors=True)


def cmd_gc(args) -> int:
    if args.keep_runs < 1 or args.keep_versions < 1:
        raise CliError("--keep-runs and --keep-versions must be at least 1 (the newest run and version always stay)")
    settings = Settings.from_env()
    items = plan(settings, args.keep_runs, args.keep_versions)
    freed = freed_bytes([i["Path"] for i in items])
    if not args.dry_run:
        remove(settings, items)
    verb = "would free" if args.dry_run else "freed"
    rows = [{k: (str(v) if k == "Path" else v) for k, v in i.items()} for i in items]
    emit(rows, [("WHAT", "Kind"), ("NAME", "Name"), ("SIZE", lambda i: human_size(i["Bytes"])), ("WHY", "Why")],
         args.output, title=f"{'would remove' if args.dry_run else 'removed'} {len(items)} item(s) under {settings.home}",
         empty=f"nothing to remove under {settings.home}")
    if args.output == "table":
        print(f"{verb} {freed} bytes ({human_size(freed)})")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("gc", help="free disk space: keep the newest runs and versions, never the serving "
                                   "or an Approved one", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-runs", type=int, default=5, metavar="N", help="newest runs kept (default 5)")
    parser.add_argument("--keep-versions", type=int, default=5, metavar="N",
                        help="newest model versions kept, besides Approved and serving ones (default 5)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    add_output_option(parser)
    parser.set_defaults(func=cmd_gc)
