"""Entry point of the `mlops` CLI.

Command groups are discovered from `mlops.commands`: each module defines
`register(subparsers)` that adds its parser and sets `func(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

import mlops.commands


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2 (or `.status`)."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="Multi-label BERT text classification: run the workflow locally, manage the "
        "model registry, serve, deploy and monitor; generate and drive the SageMaker Pipeline.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [
        importlib.import_module(f"mlops.commands.{m.name}")
        for m in pkgutil.iter_modules(mlops.commands.__path__)
        if not m.name.startswith("_")
    ]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__)):
        module.register(subparsers)
    return parser


def _mark_abandoned_runs() -> None:
    """A pipeline run whose process was killed stays "Executing" in its run.json: mark it Failed and say so."""
    from mlops.settings import Settings
    from pipelines.run_result import mark_abandoned

    for doc in mark_abandoned(Settings.from_env().runs_dir):
        print(f"note: run {doc['run_id']} was left Executing by pid {doc['pid']}, which is gone: marked Failed",
              file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _mark_abandoned_runs()
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
