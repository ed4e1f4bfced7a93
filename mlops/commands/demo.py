"""`mlops demo`: the whole local workflow on the demo dataset, in one command.

run the pipeline -> approve the new version (the approval event deploys it to the local
endpoint) -> the showcase examples through the predict Lambda -> test texts with their true
labels while the server's /metrics are scraped -> a score baseline from the validation split ->
the monitoring report (quality, drift, latency, throughput, CPU, memory). Everything lands under
$MLOPS_HOME (default ./.mlops).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
from pathlib import Path

from mlcore.datasets.demo import SHOWCASE
from mlops.cli import CliError
from mlops.commands.run import add_run_options, collect_parameters, parameters_epilog, parse_assignments, run
from mlops.settings import Settings
from pipelines import spec

ORDER = 5
SCRAPES = 11  # /metrics scrapes around the test traffic: 10 intervals of latency, throughput, CPU, memory


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


def start_local_stack(settings: Settings, verbose: bool = False):
    """Endpoint proxy + Lambda adapter in this process (threads, free ports); returns (urls, stop)."""
    import asyncio

    from aiohttp import web

    from lambda_fn import local_adapter
    from mlops.commands.stack import StackPorts, lambda_env, log_level
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
    env = lambda_env(ports, settings, verbose)
    level = env.pop("POWERTOOLS_LOG_LEVEL")  # for this stack's handler only, not every later import
    restore = contextlib.ExitStack()  # stop() puts the environment and the log level back
    restore.callback(_restore_environ, {name: os.environ.get(name) for name in env})
    os.environ.update(env)
    adapter = local_adapter.serve(ports.lambda_url)
    from lambda_fn.predict import logger

    restore.enter_context(log_level(logger, level))
    threading.Thread(target=adapter.serve_forever, daemon=True).start()

    def stop():
        restore.close()
        adapter.shutdown()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)

    return {"endpoint": f"http://127.0.0.1:{ports.endpoint}", "lambda": f"http://127.0.0.1:{ports.lambda_url}/"}, stop


def _restore_environ(previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def show_predictions(lambda_url: str) -> int:
    """The showcase examples through the predict Lambda, beside the labels they carry; how many it got right."""
    import requests

    texts = [text for text, _ in SHOWCASE]
    response = requests.post(lambda_url, json={"texts": texts}, timeout=60)
    if response.status_code != 200:
        raise CliError(f"the predict Lambda answered {response.status_code}: {response.text}")
    answer = response.json()
    right = 0
    for (text, expected), prediction in zip(SHOWCASE, answer["predictions"]):
        top = sorted(prediction["scores"].items(), key=lambda kv: -kv[1])[:3]
        ok = sorted(prediction["labels"]) == sorted(expected)
        right += ok
        print(f"- {text}\n    predicted: {', '.join(prediction['labels']) or '(none)'}  "
              f"{'(as expected)' if ok else '(expected: ' + ', '.join(expected) + ')'}   "
              f"top scores: {', '.join(f'{k} {v:.2f}' for k, v in top)}")
    print(f"model version {answer['model']['version']}, {answer['latencyMs']['endpoint']:.0f} ms at the endpoint; "
          f"inference ids {answer['predictions'][0]['inferenceId']} ...")
    return right


def send_test_traffic(endpoint_url: str, test_dir: Path, labels_file: Path, metrics_file: Path,
                      limit: int = 200) -> int:
    """Send test texts to the endpoint with inference ids (as boto3 would) between scrapes of its /metrics,
    and write their true labels."""
    import boto3

    from monitoring.operational import sample

    rows = [json.loads(line) for line in (test_dir / "data.jsonl").read_text().splitlines()[:limit]]
    client = boto3.client("sagemaker-runtime", endpoint_url=endpoint_url)
    chunks = iter([list(enumerate(rows))[i::SCRAPES - 1] for i in range(SCRAPES - 1)])
    with open(labels_file, "w") as fh:
        def traffic(_seconds: float) -> None:  # between two scrapes: one share of the texts, one at a time
            for i, row in next(chunks):
                inference_id = f"demo-{i}"
                client.invoke_endpoint(EndpointName=spec.ENDPOINT_NAME, ContentType="application/json",
                                       Body=json.dumps({"inputs": row["text"]}), InferenceId=inference_id)
                fh.write(json.dumps({"inference_id": inference_id, "labels": row["labels"]}) + "\n")

        sample(f"{endpoint_url}/metrics", metrics_file, 1.0, SCRAPES, sleep=traffic, progress=True)
    return len(rows)


def mlops_command() -> str:
    """How to run `mlops` from here: the name when it is on PATH, else the script beside this Python."""
    if shutil.which("mlops"):
        return "mlops"
    script = Path(sys.executable).parent / "mlops"
    try:
        return str(script.relative_to(Path.cwd())) if script.exists() else f"{sys.executable} -m mlops"
    except ValueError:
        return str(script)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    params = collect_parameters(args, base={"InputData": "demo"})
    _section("1/6 pipeline: preprocess -> train -> evaluate -> quality gate -> register")
    result = run(params, parse_assignments(args.hp, "--hp"), args.no_cache, settings, verbose=args.verbose)
    if not result.succeeded or not result.model_package:
        print("the pipeline did not register a model: see the messages above", flush=True)
        return 1
    version = int(result.model_package["ModelPackageVersion"])

    _section(f"2/6 approve version {version}: the approval event deploys it to the local endpoint")
    outcome = approve_and_deploy(settings, version)
    print(f"deploy handler: {outcome['action']} (serving version {outcome['version']}): {outcome['reason']}")

    outputs = result.run_dir / spec.PREPROCESS / "output"
    labels_file = settings.home / "demo-ground-truth.jsonl"
    metrics_file = settings.monitoring_dir / "operational.jsonl"
    urls, stop = start_local_stack(settings, args.verbose)
    try:
        _section("3/6 the showcase examples through the predict Lambda (Function URL shape) -> endpoint")
        right = show_predictions(urls["lambda"])
        print(f"{right} of {len(SHOWCASE)} showcase examples labelled as expected")

        _section("4/6 test traffic with inference ids and its ground truth, scraping the server's /metrics")
        settings.monitoring_dir.mkdir(parents=True, exist_ok=True)
        sent = send_test_traffic(urls["endpoint"], outputs / "test", labels_file, metrics_file, args.traffic)
        print(f"sent {sent} test texts; true labels in {labels_file}; server metrics in {metrics_file}")
    finally:
        stop()
    return _monitor(settings, outputs, labels_file)


def _monitor(settings: Settings, outputs: Path, labels_file: Path) -> int:
    """Steps 5 and 6: the score baseline (the served model on the validation split), then the report."""
    import time

    from mlops.cli import main as cli_main
    from mlops.local_endpoint import LocalEndpoint

    _section("5/6 score baseline: the served model's probabilities on the validation split (for score drift)")
    model_dir = LocalEndpoint(settings.home, spec.ENDPOINT_NAME).state().get("model_dir")
    status = cli_main(["monitor", "baseline", "--model", str(model_dir), "--data",
                       str(outputs / "validation" / "data.jsonl"), "--quiet"])
    time.sleep(1.0)  # the capture writer flushes within a moment; the monitor reads what is on disk
    _section("6/6 monitoring: capture + ground truth -> quality, drift, operations, report")
    if status == 0:
        status = cli_main(["monitor", "ground-truth", str(labels_file)])
    if status == 0:
        status = cli_main(["monitor", "report", "--quiet"])
    report = settings.monitoring_dir / "output" / "report.json"
    if status == 0 and report.is_file():
        health = json.loads(report.read_text())["health"]
        print(f"\nis the model healthy? {health['status']}")
        for key in ("quality", "drift", "operations"):
            print(f"  {key:<10} {health[key]['status']:<9} {health[key]['detail']}")
    command = mlops_command()
    print(f"\nnext: `{command} up` serves the endpoint, the predict Lambda and the web app on http://127.0.0.1:8000 "
          f"(correct a prediction there, then `{command} monitor report` counts it); "
          f"`{command} endpoint stop` stops the model server.")
    return status


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the whole local workflow on the demo dataset (start here)",
        description=__doc__, epilog=parameters_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(parser, shortcuts=False)
    parser.add_argument("--traffic", type=int, default=200, help="test texts sent to the endpoint for monitoring")
    parser.set_defaults(func=cmd_demo)
