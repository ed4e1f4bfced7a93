"""Serve the predict Lambda locally as a Function URL would: HTTP in, payload-2.0 event, handler out.

    python -m lambda_fn.local_adapter --port 8090   (ENDPOINT_NAME, AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME)
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit


class LambdaContext:
    """The attributes of Lambda's context object that handlers and powertools read."""

    def __init__(self, function_name: str = "predict", memory_mb: int = 512, timeout_s: float = 30.0):
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.time() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def function_url_event(method: str, raw_path: str, headers: dict, body: bytes, source_ip: str) -> dict:
    """A Lambda Function URL (payload format 2.0) event for one HTTP request."""
    parts = urlsplit(raw_path)
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode("ascii"), True
    now = time.time()
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": parts.path, "rawQueryString": parts.query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": "anonymous", "apiId": "local", "domainName": headers.get("Host", "localhost"),
            "domainPrefix": "local", "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": headers.get("User-Agent", "")},
        },
        "body": text if body else None, "isBase64Encoded": is_b64,
    }


def make_handler_class(lambda_handler):
    """HTTP handler class; one event at a time through the Lambda handler, as in one Lambda container
    (powertools' Logger and Metrics hold per-invocation state in module globals)."""
    invoke_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _dispatch(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(413, {"Content-Type": "application/json"},
                           json.dumps({"error": {"code": "payload_too_large", "message": "request over 6 MB"}}))
                return
            body = self.rfile.read(length) if length else b""
            event = function_url_event(self.command, self.path, dict(self.headers), body, self.client_address[0])
            try:
                with invoke_lock:
                    result = lambda_handler(event, LambdaContext())
            except Exception as exc:  # what a Function URL answers when the function itself fails
                print(f"handler raised {exc.__class__.__name__}: {exc}", file=sys.stderr)
                self._send(502, {"Content-Type": "application/json"}, json.dumps({"Message": "Internal Server Error"}))
                return
            payload = result.get("body") or ""
            if result.get("isBase64Encoded"):
                payload = base64.b64decode(payload)
            self._send(int(result.get("statusCode", 200)), result.get("headers") or {}, payload)

        def _send(self, status: int, headers: dict, payload) -> None:
            data = payload.encode("utf-8") if isinstance(payload, str) else payload
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET = do_OPTIONS = do_PUT = do_DELETE = _dispatch

        def log_message(self, fmt, *args):  # quiet; the handler logs structured lines itself
            pass

    return Handler


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    from lambda_fn.predict import handler

    server = ThreadingHTTPServer((host, port), make_handler_class(handler))
    server.daemon_threads = True
    return server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLOPS_LAMBDA_PORT", "8090")))
    args = parser.parse_args(argv)
    server = serve(args.port, args.host)
    print(f"predict Lambda (Function URL shape) on http://{args.host}:{args.port}/", flush=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
