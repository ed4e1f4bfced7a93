"""Entry point of the `mlops` CLI.

Command groups are discovered from `mlops.commands`: each module defines
`register(subparsers)` that adds its parser and sets `func(args) -> int`.

Exit status (as `aws` and `sam` users expect): 0 success, 1 the command ran and failed (a pipeline
step, the quality gate, a violation with --fail-on-violation), 2 bad input (an unknown command or
flag, a bad dataset, parameter or file), 130 interrupted (Ctrl-C), 141 the reader of the output went
away (`mlops ... | head`).
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.metadata
import os
import pkgutil
import re
import sys
from typing import Sequence

import mlops.commands

PACKAGE = "bert-multilabel-mlops"  # setup.py's name
EXIT_USAGE, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 2, 141, 130


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2 (or `.status`)."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class MlopsParser(argparse.ArgumentParser):
    """argparse with the habits of AWS's CLIs: `--verbose` on every command, and "did you mean" for a
    mistyped command or flag. Sub-command parsers are of this class too (argparse uses the parent's)."""

    last: "MlopsParser | None" = None  # the deepest parser that parsed: its flags are the candidates

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.add_help:  # a command, not a parent holding shared flags
            self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                              help="show everything: step and library output, the Lambda's log lines, events")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        MlopsParser.last = self
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        hint = suggestion(message, MlopsParser.last or self)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{hint}\n")


def suggestion(message: str, parser: argparse.ArgumentParser) -> str:
    """"\n  did you mean ...?" for an invalid choice or an unknown flag, when one is close enough."""
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        candidates = re.findall(r"'([^']*)'", choice.group(2)) or [c.strip() for c in choice.group(2).split(",")]
        wrong = [choice.group(1)]
    elif message.startswith("unrecognized arguments:"):
        candidates = [o for o in parser._option_string_actions if o.startswith("--")]
        wrong = [w.split("=", 1)[0] for w in message.split(":", 1)[1].split() if w.startswith("-")]
    else:
        return ""
    hints = [f"{w} -> {m[0]}" for w in wrong if (m := difflib.get_close_matches(w, candidates, n=1, cutoff=0.6))]
    return f"\n  did you mean: {', '.join(hints)}?" if hints else ""


def version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = MlopsParser(
        prog="mlops",
        description="Multi-label BERT text classification: run the workflow locally, manage the "
        "model registry, serve, deploy and monitor; generate and drive the SageMaker Pipeline.",
        epilog="Exit status: 0 success, 1 the command ran and failed (a step, the quality gate, a violation "
        "with --fail-on-violation), 2 bad input (unknown command or flag, bad dataset, parameter or file), "
        "130 interrupted, 141 output pipe closed. Quiet by default: -v/--verbose on any command shows everything.",
    )
    parser.add_argument("--version", action="version", version=f"mlops {version()} (Python {sys.version.split()[0]})")
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
    args.verbose = getattr(args, "verbose", False)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _mark_abandoned_runs()
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
        return status
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `mlops ... | head`: the reader left. Point stdout at devnull so the interpreter's final flush
        # does not raise again (Python's documented recipe), and exit as a killed-by-SIGPIPE tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
