"""A stand-in for SageMaker Runtime over real HTTP: answers InvokeEndpoint with a chosen status, AWS error
headers or body, and records what the caller sent (the predict Lambda's tests)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeRuntime:
    """Answers InvokeEndpoint like SageMaker runtime would: a status, AWS error headers, a body (`raw`: these
    bytes as a 200 answer, whatever they are)."""

    def __init__(self):
        self.status, self.error, self.body, self.delay, self.members = 200, None, None, 0.0, {}
        self.raw: bytes | None = None
        self.version: str | None = None  # the local endpoint's X-Mlops-Model-Version
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "body": body})
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                time.sleep(fake.delay)
                if fake.error:
                    payload = json.dumps({"message": fake.error[1], **fake.members}).encode()
                    self.send_response(fake.status)
                    self.send_header("x-amzn-ErrorType", fake.error[0])
                elif fake.raw is not None:
                    payload = fake.raw
                    self.send_response(200)
                else:
                    results = [{"labels": ["a"], "scores": {"a": 0.9, "b": 0.1}} for _ in body["inputs"]]
                    payload = json.dumps(fake.body if fake.body is not None else results).encode()
                    self.send_response(200)
                    self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
                    if fake.version:
                        self.send_header("X-Mlops-Model-Version", fake.version)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
