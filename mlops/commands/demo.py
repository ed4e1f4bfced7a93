"""`mlops demo`: the whole local workflow on the demo dataset, in one command.

run the pipeline -> approve the new version (the approval event deploys it to the local
endpoint) -> predictions through the predict Lambda -> a batch of test texts with their true
labels -> the monitoring report. Everything lands under $MLOPS_HOME (default ./.mlops).
"""
from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

from mlops.cli import CliError
from mlops.commands.run import add_run_options, collect_parameters, parameters_epilog, parse_assignments, run
from mlops.settings import Settings
from pipelines import spec

ORDER = 5
EXAMPLES = [
    "I was charged twice this month and I want a refund!",
    "The app crashes every time I open it, this is urgent, my whole team is blocked.",
    "Thanks, your support team is amazing. Could you add a dark mode?",
]


def _section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)


def approve_and_deploy(settings: Settings, version: int) -> dict:
    from mlops.commands.registry import publish_event
    from pipelines.registry import LocalModelRegistry

    registry = LocalModelRegistry(settings.registry_dir)
    package = registry.describe(settings.model_package_group, version)
    if package["ModelApprovalStatus"] != "Approved":
        event = registry.update_status(settings.model_package_group, version, "Approved", reason="mlops demo")
    else:
        event = registry.state_change_event(package)
    return publish_event(event, settings, echo=False, deploy=True)


def start_local_stack(settings: Settings):
    """Endpoint proxy + Lambda adapter in this process (threads, free ports); returns (urls, stop)."""
    import asyncio

    from aiohttp import web

    from lambda_fn import local_adapter
    from mlops.commands.stack import StackPorts, lambda_env
    from mlops.local_endpoint import LocalEndpoint, create_proxy_app
    from mlops.ports import free_port

    ports = StackPorts(endpoint=free_port(), lambda_url=free_port(), site=0)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_proxy_app(LocalEndpoint(settings.home, spec.ENDPOINT_NAME)))

    def serve_proxy():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", ports.endpoint).start())
        loop.run_forever()

    threading.Thread(target=serve_proxy, daemon=True).start()
    os.environ.update(lambda_env(ports))
    adapter = local_adapter.serve(ports.lambda_url)
    threading.Thread(target=adapter.serve_forever, daemon=True).start()

    def stop():
        adapter.shutdown()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)

    return {"endpoint": f"http://127.0.0.1:{ports.endpoint}", "lambda": f"http://127.0.0.1:{ports.lambda_url}/"}, stop


def show_predictions(lambda_url: str) -> None:
    import requests

    response = requests.post(lambda_url, json={"texts": EXAMPLES}, timeout=60)
    if response.status_code != 200:
        raise CliError(f"the predict Lambda answered {response.status_code}: {response.text}")
    for text, prediction in zip(EXAMPLES, response.json()["predictions"]):
        top = sorted(prediction["scores"].items(), key=lambda kv: -kv[1])[:3]
        print(f"- {text}\n    labels: {', '.join(prediction['labels']) or '(none)'}   "
              f"top scores: {', '.join(f'{k} {v:.2f}' for k, v in top)}")


def send_test_traffic(endpoint_url: str, test_dir: Path, labels_file: Path, limit: int = 200) -> int:
    """Send test texts to the endpoint with inference ids (as boto3 would), write their true labels."""
    import boto3

    rows = [json.loads(line) for line in (test_dir / "data.jsonl").read_text().splitlines()[:limit]]
    client = boto3.client("sagemaker-runtime", endpoint_url=endpoint_url)
    with open(labels_file, "w") as fh:
        for i, row in enumerate(rows):
            inference_id = f"demo-{i}"
            client.invoke_endpoint(EndpointName=spec.ENDPOINT_NAME, ContentType="application/json",
                                   Body=json.dumps({"inputs": row["text"]}), InferenceId=inference_id)
            fh.write(json.dumps({"inference_id": inference_id, "labels": row["labels"]}) + "\n")
    return len(rows)


def cmd_demo(args: argparse.Namespace) -> int:
    from mlops.cli import main as cli_main

    settings = Settings.from_env()
    params = collect_parameters(args, base={"InputData": "demo"})
    _section("1/5 pipeline: preprocess -> train -> evaluate -> quality gate -> register")
    result = run(params, parse_assignments(args.hp, "--hp"), args.no_cache, settings)
    if not result.succeeded or not result.model_package:
        print("the pipeline did not register a model: see the messages above", flush=True)
        return 1
    version = int(result.model_package["ModelPackageVersion"])

    _section(f"2/5 approve version {version}: the approval event deploys it to the local endpoint")
    outcome = approve_and_deploy(settings, version)
    print(f"deploy handler: {outcome['action']} (serving version {outcome['version']}): {outcome['reason']}")

    urls, stop = start_local_stack(settings)
    try:
        _section("3/5 predictions through the predict Lambda (Function URL shape) -> endpoint")
        show_predictions(urls["lambda"])

        _section("4/5 test traffic with inference ids, and its ground truth")
        test_dir = result.run_dir / spec.PREPROCESS / "output" / "test"
        if not test_dir.exists():
            test_dir = next(result.run_dir.glob("**/test/data.jsonl")).parent
        labels_file = settings.home / "demo-ground-truth.jsonl"
        sent = send_test_traffic(urls["endpoint"], test_dir, labels_file, args.traffic)
        print(f"sent {sent} test texts; true labels in {labels_file}")
    finally:
        stop()
    # the capture writer flushes within a moment; the monitor reads what is on disk
    import time

    time.sleep(1.0)
    _section("5/5 monitoring: capture + ground truth -> quality, drift, report")
    status = cli_main(["monitor", "ground-truth", str(labels_file)])
    if status == 0:
        status = cli_main(["monitor", "report", "--quiet"])
    print("\nnext: `mlops up` serves the endpoint, the predict Lambda and the web app; "
          "`mlops endpoint stop` stops the model server.")
    return status


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the whole local workflow on the demo dataset (start here)",
        description=__doc__, epilog=parameters_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(parser, shortcuts=False)
    parser.add_argument("--traffic", type=int, default=200, help="test texts sent to the endpoint for monitoring")
    parser.set_defaults(func=cmd_demo)
