"""`mlops run`: execute the pipeline DAG locally (preprocess, train, evaluate, quality gate, register).

Run the pipeline DAG of pipelines/spec.py on this machine with the real step scripts,
the way SageMaker would (same parameters, paths and quality gate), then register a
passing model in the local model registry.
"""
from __future__ import annotations

import argparse
from typing import Iterable

from mlops.cli import CliError
from mlops.settings import Settings
from pipelines import parameters, spec

ORDER = 10

# CLI shortcuts and the pipeline parameter each one sets.
SHORTCUTS = {"input": "InputData", "epochs": "Epochs", "base_model": "BaseModel"}
# steps/preprocess.py flags `mlops run` passes through (the dataset errors' hints name them)
PREPROCESS_OPTIONS = ("text-column", "label-column")


def parse_assignments(items: Iterable[str], flag: str) -> dict[str, str]:
    """`NAME=VALUE` strings as a dict (`pipelines.parameters.parse_assignments`); errors are CliErrors."""
    try:
        return parameters.parse_assignments(items, flag)
    except parameters.PipelineError as exc:
        raise CliError(str(exc)) from None


def parameters_epilog() -> str:
    lines = ["pipeline parameters (--param NAME=VALUE):"]
    for p in spec.PARAMETERS:
        lines.append(f"  {p.name:<24} {p.type:<8} {p.help} (default: {p.default})")
    lines += [
        "",
        "Steps run as subprocesses in $MLOPS_HOME/runs/<run-id>/<Step>/ (MLOPS_HOME defaults to ./.mlops);",
        "unchanged steps are reused from the step cache, and a model byte-identical to a registered version",
        "is not registered again. Quiet: library output of the steps goes to their step.log (--verbose shows it).",
        "Exit status: 0 when the model was registered (or is already), 1 when a step failed or the quality",
        "gate (F1Threshold, RocAucThreshold) was not met, 2 for bad input (a parameter, or a dataset or",
        "hyperparameter that a step refused).",
    ]
    return "\n".join(lines)


def add_run_options(parser: argparse.ArgumentParser, shortcuts: bool = True) -> None:
    """Options shared by `mlops run` and `mlops demo`."""
    parser.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                        help="set a pipeline parameter (repeatable); see the list below")
    if shortcuts:
        parser.add_argument("--input", metavar="PATH", help="shortcut for --param InputData=PATH ('demo', a file or directory, hf:<name>)")
        parser.add_argument("--base-model", metavar="NAME_OR_PATH", help="shortcut for --param BaseModel=...")
        for option in PREPROCESS_OPTIONS:
            parser.add_argument(f"--{option}", metavar="NAME",
                                help=f"the dataset's {option.split('-')[0]} column or key (default: detected); "
                                     "passed to the preprocessing step")
    parser.add_argument("--epochs", metavar="N", help="shortcut for --param Epochs=N")
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE",
                        help="extra training hyperparameter, a TrainingConfig field (e.g. --hp batch_size=16 "
                             "--hp max_steps=50); passed to steps/train.py as --name value")
    parser.add_argument("--no-cache", action="store_true", help="run every step even if a cached result exists")


def collect_parameters(args: argparse.Namespace, base: dict[str, str] | None = None) -> dict[str, str]:
    """Pipeline parameter overrides from --param and the shortcuts; one parameter set both ways is an error."""
    explicit = parse_assignments(args.param, "--param")
    params = {**(base or {}), **explicit}
    for attr, name in SHORTCUTS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        if name in explicit:
            raise CliError(f"{name} given twice: --{attr.replace('_', '-')} {value} and --param {name}={explicit[name]}")
        params[name] = value
    return params


def run(params: dict[str, str], hps: dict[str, str], no_cache: bool, settings: Settings | None = None,
        verbose: bool = False, preprocess_options: dict[str, str] | None = None):
    """Run the pipeline; registration events go to the local deploy handler, as EventBridge would."""
    from mlops.commands.registry import publish_event
    from pipelines.local_runner import run_pipeline

    settings = settings or Settings.from_env()
    try:
        return run_pipeline(params, settings, cache=not no_cache, hyperparameters=hps,
                            on_event=lambda event: publish_event(event, settings, echo=verbose, deploy=True),
                            verbose=verbose, preprocess_options=preprocess_options)
    except parameters.PipelineError as exc:
        raise CliError(str(exc)) from None


def exit_status(result) -> int:
    """0 registered (or already registered), 2 a step refused its input, 1 any other failure."""
    return 0 if result.succeeded else 2 if result.bad_input else 1


def cmd_run(args: argparse.Namespace) -> int:
    params = collect_parameters(args)
    hps = parse_assignments(args.hp, "--hp")
    options = {o: getattr(args, o.replace("-", "_")) for o in PREPROCESS_OPTIONS}
    return exit_status(run(params, hps, args.no_cache, verbose=args.verbose, preprocess_options=options))


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run the pipeline locally: preprocess, train, evaluate, quality gate, "
                                   "register", description=__doc__, epilog=parameters_epilog(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser)
    parser.set_defaults(func=cmd_run)
