"""The process that owns the local endpoint (`mlops up` starts it): the stable proxy, and a supervisor.

The supervisor looks at the endpoint twice a second. When the model server of the version set to serve has
died (killed, crashed, SIGTERMed by someone), or a command left a change it did not apply (killed while it
waited or switched: its re-drive request is still there), it converges the endpoint
(`mlops.local_deploy.converge`: decide, then revive the dead server), under the endpoint's lock and never
while a command holds it. A failed start is retried with exponential backoff (1 s, 2 s, ... up to 60 s).
Every action is logged on this process's output.

    python -m mlops.endpoint_supervisor --home H --name N --port P
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime
from typing import Callable

from filelock import Timeout

from mlops.local_deploy import converge
from mlops.local_endpoint import DeployError, LocalEndpoint, create_proxy_app
from mlops.settings import Settings
from pipelines.spec import ENDPOINT_NAME

INTERVAL_S = 0.5
MAX_BACKOFF_S = 60.0


class Supervisor:
    """Keeps the endpoint on decide's version with a live model server; `tick()` is one look."""

    def __init__(self, settings: Settings, endpoint_name: str = ENDPOINT_NAME, log: Callable[[str], None] = print):
        self.settings, self.log = settings, log
        self.endpoint = LocalEndpoint(settings.home, endpoint_name, python=settings.python)
        self.failures = 0
        self.next_attempt = 0.0

    def needs_action(self) -> str | None:
        """Why the endpoint needs converging now, or None."""
        if self.endpoint.redrive_pending():
            return "a change was left pending (the command that made it ended before applying it)"
        state = self.endpoint.state()
        if state.get("stale"):
            return f"the model server of version {state['version']} (pid {state['pid']}) is gone"
        return None

    def tick(self) -> dict | None:
        """Converge when needed and not backing off and no command holds the lock; the outcome when it acted."""
        if time.monotonic() < self.next_attempt or self.needs_action() is None:
            return None
        try:
            self.endpoint.lock.acquire(timeout=0)
        except Timeout:  # a command is switching: it leaves the endpoint right, or the next look acts
            return None
        try:
            why = self.needs_action()  # again, under the lock
            return self._converge(why) if why else None
        finally:
            self.endpoint.lock.release()

    def _converge(self, why: str) -> dict | None:
        self._log(f"{why}: converging the endpoint" + (f" (attempt {self.failures + 1})" if self.failures else ""))
        started = time.monotonic()
        try:
            outcome = converge(self.settings, endpoint_name=self.endpoint.name)
        except DeployError as exc:
            self.failures += 1
            delay = min(MAX_BACKOFF_S, 2.0 ** (self.failures - 1))
            self.next_attempt = time.monotonic() + delay
            self._log(f"could not start the model server ({str(exc).splitlines()[0]}); next attempt in {delay:.0f} s")
            return None
        self.failures = 0
        took = time.monotonic() - started
        if outcome.get("revived"):
            self._log(f"restarted version {outcome['version']}: pid {outcome['revived']['pid']} serves at "
                      f"{outcome['revived']['url']} ({took:.1f} s)")
        else:
            self._log(f"{outcome['action']}: version {outcome['version']} serves ({outcome.get('reason', '')})")
        return outcome

    def _log(self, message: str) -> None:
        self.log(f"{datetime.now().strftime('%H:%M:%S')} endpoint {self.endpoint.name} supervisor: {message}")

    def run(self, stop: threading.Event, interval_s: float = INTERVAL_S) -> None:
        while not stop.wait(interval_s):
            try:
                self.tick()
            except Exception as exc:  # the proxy must keep serving whatever happens here; say it and look again
                self._log(f"unexpected {exc.__class__.__name__}: {exc}")


def main(argv=None) -> int:
    """Serve the endpoint's proxy on --port and supervise its model servers until SIGTERM/Ctrl-C."""
    from aiohttp import web

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default=os.environ.get("MLOPS_HOME", ".mlops"))
    parser.add_argument("--name", default=ENDPOINT_NAME)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    settings = Settings.from_env(home=args.home)
    supervisor = Supervisor(settings, args.name, log=lambda line: print(line, flush=True))
    stop = threading.Event()
    thread = threading.Thread(target=supervisor.run, args=(stop,), name="supervisor", daemon=True)
    thread.start()
    try:
        web.run_app(create_proxy_app(supervisor.endpoint), host=args.host, port=args.port, print=None,
                    shutdown_timeout=10)
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
