"""`mlops demo`: the whole local workflow on the demo dataset, in one command."""
from __future__ import annotations

import argparse

from mlops.commands.run import add_run_options, collect_parameters, execute, parameters_epilog, parse_assignments

ORDER = 5


def cmd_demo(args: argparse.Namespace) -> int:
    params = collect_parameters(args, base={"InputData": "demo"})
    status = execute(params, parse_assignments(args.hp, "--hp"), args.no_cache)
    # Later stages (deploy the approved model, serve, send traffic, monitor) hook in here.
    return status


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the whole local workflow on the demo dataset (start here)",
        description="Run the local workflow end to end on the bundled demo dataset: preprocess, train the\n"
                    "default base model, evaluate, check the quality gate and register the model.\n"
                    "Re-running reuses cached steps.",
        epilog=parameters_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(parser, shortcuts=False)
    parser.set_defaults(func=cmd_demo)
