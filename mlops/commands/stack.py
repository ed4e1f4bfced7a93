"""`mlops up`: the local serving stack in one command; `mlops endpoint`: its endpoint's state and life.

up = the stable endpoint (proxy on :8080 to the serving model version, deploying the newest
Approved version if none is running; its process supervises the model server and restarts it when
it dies) + the predict Lambda as a Function URL (:8090) + the web app (:8000, its /api/predict
proxied to the Lambda). Ctrl-C or SIGTERM stops everything, the model server of the endpoint
included unless --keep-endpoint.

endpoint status: what is set to serve and whether its model server lives; start: bring the endpoint
to the newest Approved version and restart a dead model server (what `mlops up` does by itself);
restart: a new model server for the serving version (blue/green); stop: stop the model server.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from mlcore.config import env_value
from mlops.cli import CliError
from mlops.ports import port_is_free
from mlops.settings import Settings
from pipelines import spec

ORDER = 30
REPO_ROOT = Path(__file__).resolve().parents[2]


PORT_VARS = {"endpoint": "MLOPS_ENDPOINT_PORT", "lambda_url": "MLOPS_LAMBDA_PORT", "site": "MLOPS_SITE_PORT"}


def _env_port(name: str, default: int) -> int:
    try:
        port = env_value(name, default)
    except ValueError:
        raise CliError(f"{name}={os.environ.get(name)!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise CliError(f"{name}={port} is not a port number (1-65535)")
    return port


@dataclass
class StackPorts:
    """Ports of the local stack (env: MLOPS_ENDPOINT_PORT, MLOPS_LAMBDA_PORT, MLOPS_SITE_PORT)."""

    endpoint: int = field(default_factory=lambda: _env_port("MLOPS_ENDPOINT_PORT", 8080))
    lambda_url: int = field(default_factory=lambda: _env_port("MLOPS_LAMBDA_PORT", 8090))
    site: int = field(default_factory=lambda: _env_port("MLOPS_SITE_PORT", 8000))

    def check_free(self, names: list[str]) -> None:
        """Fail before starting anything when a port is taken (a previous `mlops up` still running?)."""
        for name in names:
            port = getattr(self, name)
            if not port_is_free(port):
                raise CliError(f"port {port} ({PORT_VARS[name]}) is in use: stop what runs there "
                               f"(another `mlops up`?) or set {PORT_VARS[name]} to a free port")


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until `url` answers (any status below 500, or 503 from a proxy with nothing deployed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise CliError(f"a stack process exited early (status {proc.returncode}) while waiting for {url}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise CliError(f"{url} did not come up within {timeout:.0f}s")


def ensure_serving(settings: Settings, log=print) -> int | None:
    """Bring the endpoint to what decide says (the newest Approved version), restarting a dead model server
    (e.g. after a reboot); returns the version serving."""
    from mlops.local_deploy import converge

    outcome = converge(settings)
    if outcome["version"] is None:
        log("no Approved model version yet: the endpoint answers 503 until you approve one "
            "(mlops registry approve N)")
    elif outcome["action"] != "none" or outcome.get("revived"):
        log(f"endpoint: {outcome['action']}{' (model server restarted)' if outcome.get('revived') else ''}: "
            f"version {outcome['version']} serves ({outcome['reason']})")
    return outcome["version"]


@contextlib.contextmanager
def log_level(logger, level: str):
    """A powertools Logger at `level` for a while (an in-process handler's log lines off the terminal)."""
    previous = logger.log_level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def lambda_env(ports: StackPorts, settings: Settings, verbose: bool = False) -> dict:
    """Environment under which the predict handler reaches the local endpoint through boto3, unchanged, and
    stores feedback in the monitor's ground-truth store (a feedback key per stack start: tokens of an
    earlier stack are refused). Its JSON log lines show with `--verbose`."""
    return {
        "GROUND_TRUTH_DIR": str(settings.ground_truth_dir),
        "FEEDBACK_SECRET": os.environ.get("FEEDBACK_SECRET") or secrets.token_hex(32),
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO" if verbose else "WARNING"),
        "ENDPOINT_NAME": spec.ENDPOINT_NAME,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://127.0.0.1:{ports.endpoint}",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
        "ALLOWED_ORIGINS": os.environ.get("ALLOWED_ORIGINS",
                                          f"http://127.0.0.1:{ports.site},http://localhost:{ports.site}"),
        "POWERTOOLS_METRICS_NAMESPACE": "BertMultilabelLocal",
        "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
    }


class Stack:
    """Child processes of `mlops up`, started in order and stopped together."""

    def __init__(self, settings: Settings, ports: StackPorts, with_site: bool = True, keep_endpoint: bool = False,
                 verbose: bool = False):
        self.settings, self.ports, self.with_site, self.keep_endpoint = settings, ports, with_site, keep_endpoint
        self.verbose = verbose
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def _spawn(self, name: str, argv: list[str], url: str, env: dict | None = None) -> None:
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=REPO_ROOT)
        self.procs.append((name, proc))
        wait_http(url, proc=proc)

    def start(self) -> dict[str, str]:
        py = self.settings.python
        env = {"MLOPS_HOME": str(self.settings.home)}
        urls = {"endpoint": f"http://127.0.0.1:{self.ports.endpoint}",
                "lambda": f"http://127.0.0.1:{self.ports.lambda_url}",
                "site": f"http://127.0.0.1:{self.ports.site}"}
        self._spawn("endpoint", [py, "-m", "mlops.endpoint_supervisor", "--home", str(self.settings.home), "--name",
                                 spec.ENDPOINT_NAME, "--port", str(self.ports.endpoint)], urls["endpoint"] + "/ping", env)
        self._spawn("lambda", [py, "-m", "lambda_fn.local_adapter", "--port", str(self.ports.lambda_url)],
                    urls["lambda"] + "/", {**env, **lambda_env(self.ports, self.settings, self.verbose)})
        if self.with_site:
            node = shutil.which("node")
            if not node:
                raise CliError("node (20+) is needed to serve the web app (site/server.mjs); install Node.js "
                               "or run `mlops up --no-site`")
            self._spawn("site", [node, str(REPO_ROOT / "site" / "server.mjs"), "--port", str(self.ports.site),
                                 "--predict-url", urls["lambda"] + "/"], urls["site"] + "/", env)
        else:
            urls.pop("site")
        return urls

    def wait(self) -> int:
        """Block until a child exits (1) or Ctrl-C / SIGTERM arrives (KeyboardInterrupt); the caller stops all."""
        while True:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    print(f"{name} exited with status {proc.returncode}; stopping the stack", file=sys.stderr)
                    return 1
            time.sleep(0.3)

    def stop(self) -> None:
        """Stop the children (SIGTERM, then SIGKILL after 15 s) and, unless kept, the endpoint's model server."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not self.keep_endpoint:
            from mlops.local_endpoint import LocalEndpoint

            LocalEndpoint(self.settings.home, spec.ENDPOINT_NAME).stop()


def _interrupt(*_):
    raise KeyboardInterrupt


def cmd_up(args) -> int:
    from mlops.local_endpoint import DeployError

    settings = Settings.from_env()
    ports = StackPorts()
    ports.check_free(["endpoint", "lambda_url"] + ([] if args.no_site else ["site"]))
    stack = Stack(settings, ports, with_site=not args.no_site, keep_endpoint=args.keep_endpoint, verbose=args.verbose)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM = Ctrl-C, from the very start
    try:
        try:
            version = ensure_serving(settings)
        except DeployError as exc:
            raise CliError(str(exc)) from None
        urls = stack.start()
        print(f"endpoint  {urls['endpoint']}/invocations  (serving version {version if version else 'none yet'})")
        print(f"lambda    {urls['lambda']}/  (Function URL shape: POST {{\"text\": \"...\"}}; POST /feedback stores "
              f"corrections in {settings.ground_truth_dir})")
        if "site" in urls:
            print(f"site      {urls['site']}/")
        print("Ctrl-C stops the stack" + (" (the model server keeps running: mlops endpoint stop)"
                                           if args.keep_endpoint else ", the model server included"), flush=True)
        return stack.wait()
    except KeyboardInterrupt:
        print("stopping the stack ...", file=sys.stderr, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def endpoint_status(settings: Settings) -> dict:
    """What `mlops endpoint status` reports: the version set to serve and whether its model server lives."""
    from mlops.local_endpoint import LocalEndpoint

    endpoint = LocalEndpoint(settings.home, spec.ENDPOINT_NAME)
    state = endpoint.state()
    report = {"endpoint": spec.ENDPOINT_NAME, "health": endpoint.health(), "version": state.get("version"),
              "pid": state.get("pid"), "url": state.get("url"), "deployed_at": state.get("deployed_at"),
              "restarts": state.get("restarts", 0), "last_restart": state.get("last_restart"),
              "pending_change": endpoint.redrive_pending()}
    return report


def _describe(report: dict) -> str:
    name, health = report["endpoint"], report["health"]
    if health == "none":
        return f"endpoint {name}: nothing deployed (approve a version: mlops registry approve N)"
    if health == "dead":
        return (f"endpoint {name}: version {report['version']} is set to serve, but its model server (pid "
                f"{report['pid']}) is dead: `mlops endpoint start` restarts it (a running `mlops up` does it by "
                "itself)")
    restarts = f", restarted {report['restarts']} times" if report["restarts"] else ""
    return (f"endpoint {name}: version {report['version']} serving (pid {report['pid']}, {report['url']}, since "
            f"{report['deployed_at']}{restarts})")


def cmd_endpoint(args) -> int:
    from mlops.local_endpoint import DeployError, LocalEndpoint

    settings = Settings.from_env()
    endpoint = LocalEndpoint(settings.home, spec.ENDPOINT_NAME, python=settings.python)
    try:
        if args.action == "stop":
            endpoint.stop()
            print(f"stopped the model server of endpoint {spec.ENDPOINT_NAME}")
        elif args.action == "start":
            ensure_serving(settings)
        elif args.action == "restart" and not endpoint.restart("mlops endpoint restart"):
            ensure_serving(settings)
    except DeployError as exc:
        raise CliError(str(exc)) from None
    report = endpoint_status(settings)
    print(json.dumps(report, indent=2) if args.json else _describe(report))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "up", help="serve locally: endpoint (:8080) + predict Lambda (:8090) + web app (:8000)",
        description=__doc__)
    parser.add_argument("--no-site", action="store_true", help="do not serve the web app")
    parser.add_argument("--keep-endpoint", action="store_true",
                        help="leave the model server running on exit (the next `mlops up` reuses it)")
    parser.set_defaults(func=cmd_up)
    parser = subparsers.add_parser("endpoint", help="the local endpoint: status, start, restart or stop its model "
                                   "server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["status", "start", "restart", "stop"], nargs="?", default="status",
                        help="status (default); start: deploy the newest Approved version and restart a dead model "
                             "server; restart: a new model server for the serving version; stop")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(func=cmd_endpoint)
