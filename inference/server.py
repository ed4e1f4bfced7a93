"""The model server: SageMaker's container contract on port 8080, fast on CPU.

GET /ping (200 only once the model is loaded and warmed), POST /invocations and
POST /endpoints/<name>/invocations (so boto3 `sagemaker-runtime` with a local endpoint_url works
unchanged), GET /metrics (Prometheus). Concurrent requests are batched together while the model
is busy (inference/batching.py: one request's failure stays its own); data capture is written off
the request path. The body is read in chunks and refused (413) as soon as it passes the limit.
SIGTERM: stop accepting connections, finish what fits in the grace period (MLOPS_GRACEFUL_TIMEOUT),
answer what is still queued 503 with Retry-After. Every error is JSON: {"error": {"code", "message"}}.

    python -m inference.server --model-dir DIR [--port 8080] [--backend auto]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.batching import Batcher
from inference.capture import CaptureConfig, CaptureWriter, capture_record
from inference.metrics import ServerMetrics
from mlcore import handler as handlers
from mlcore.batching import CALL_COST_TOKENS
from mlcore.config import env_value, field_default
from mlcore.predictor import Predictor

log = logging.getLogger("inference.server")
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints' request limit
ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
               413: "payload_too_large", 415: "unsupported_media_type", 500: "internal_error", 503: "model_not_ready"}
RETRY_AFTER_S = 2  # what a 503 during shutdown tells the client: by then the next server serves
DRAIN_MARGIN_S = 5.0  # left of the grace period for the model call in progress when the queue is shed


@dataclass
class ServerConfig:
    """Server settings; env vars follow SageMaker's names where it has one."""

    model_dir: str = field(default="/opt/ml/model", metadata={"env": "SM_MODEL_DIR"})
    host: str = field(default="0.0.0.0", metadata={"env": "MLOPS_HOST"})
    port: int = field(default=8080, metadata={"env": "SAGEMAKER_BIND_TO_PORT"})
    backend: str = field(default="auto", metadata={"env": "MLOPS_BACKEND"})
    max_batch_size: int = field(default=32, metadata={"env": "MLOPS_MAX_BATCH_SIZE"})
    max_wait_ms: float = field(default=0.0, metadata={"env": "MLOPS_MAX_WAIT_MS"})
    # a model call of at most this many texts, with nothing queued, runs on the event loop (inference/batching.py)
    inline_texts: int = field(default=1, metadata={"env": "MLOPS_INLINE_TEXTS"})
    # one more model call's cost in padded tokens, for cutting a batch by length (mlcore/batching.py:plan_batches)
    call_cost_tokens: float = field(default=float(CALL_COST_TOKENS), metadata={"env": "MLOPS_CALL_COST_TOKENS"})
    max_payload_bytes: int = field(default=MAX_PAYLOAD_BYTES, metadata={"env": "MLOPS_MAX_PAYLOAD_BYTES"})
    num_threads: int = field(default=0, metadata={"env": "MLOPS_NUM_THREADS"})
    endpoint_name: str = field(default="local-endpoint", metadata={"env": "MLOPS_ENDPOINT_NAME"})
    capture_dir: str = field(default="", metadata={"env": "MLOPS_CAPTURE_DIR"})
    capture_sample_percent: float = field(default=100.0, metadata={"env": "MLOPS_CAPTURE_SAMPLE_PERCENT"})
    graceful_timeout_s: int = field(default=30, metadata={"env": "MLOPS_GRACEFUL_TIMEOUT"})

    def __post_init__(self) -> None:
        minimum = {"max_batch_size": 1, "max_wait_ms": 0, "inline_texts": 0, "call_cost_tokens": 0,
                   "max_payload_bytes": 1, "num_threads": 0, "graceful_timeout_s": 0}
        for f in fields(self):
            if f.name in minimum and getattr(self, f.name) < minimum[f.name]:
                raise ValueError(f"{f.name} ({f.metadata['env']}) must be >= {minimum[f.name]}, got "
                                 f"{getattr(self, f.name)!r}")

    @classmethod
    def from_env(cls, **overrides) -> ServerConfig:
        """Each field from its env var (unset: the default), then the overrides that are not None."""
        values = {f.name: env_value(f.metadata["env"], field_default(f)) for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class ModelState:
    """The model, loaded in the background after the socket opens; /ping reports on it."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.predictor: Predictor | None = None
        self.error: str | None = None
        self.ready = threading.Event()

    def load(self) -> None:
        try:
            from mlcore.predictor import load_predictor

            started = time.time()
            kwargs = {"num_threads": self.config.num_threads} if self.config.num_threads else {}
            predictor = load_predictor(self.config.model_dir, backend=self.config.backend, **kwargs)
            predictor.call_cost_tokens = self.config.call_cost_tokens
            predictor.predict_proba(["warm up the model", "and a second, somewhat longer text to warm up"] * 4)
            self.predictor = predictor
            self.ready.set()
            log.info("model loaded and warmed in %.1fs: %d labels, backend %s", time.time() - started,
                     len(predictor.label_names), type(predictor).__name__)
        except Exception as exc:
            self.error = f"{exc.__class__.__name__}: {exc}"
            log.exception("model failed to load from %s", self.config.model_dir)


def error_response(status: int, message: str, request_id: str | None = None, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    body = {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message}}
    headers = {**({INFERENCE_ID_HEADER: request_id} if request_id else {}), **(headers or {})}
    return JSONResponse(body, status_code=status, headers=headers)


class _Rejected(Exception):
    """A request refused before or instead of prediction (model not ready, payload too large, shutting down)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers


def shutting_down() -> _Rejected:
    return _Rejected(503, f"the server is shutting down and did not get to this request; retry in {RETRY_AFTER_S} s",
                     code="shutting_down", headers={"Retry-After": str(RETRY_AFTER_S)})


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in the JSON error shape, saying what the server answers."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}: use POST for /invocations, GET for /ping"
    else:
        message = f"no route {request.url.path}: the server answers GET /ping, POST /invocations, GET /metrics"
    return error_response(status, message)


class _Service:
    """What the routes share: the settings, metrics, the model, data capture and the batcher (made on first use)."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.metrics = ServerMetrics()
        self.state = ModelState(config)
        self.capture: CaptureWriter | None = None
        if config.capture_dir:
            self.capture = CaptureWriter(CaptureConfig(Path(config.capture_dir), config.endpoint_name,
                                                       config.capture_sample_percent))
            self.metrics.attach_capture(self.capture)
        self.batcher: Batcher | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.draining = self.shedding = False

    @asynccontextmanager
    async def lifespan(self, app):
        self.loop = asyncio.get_running_loop()
        threading.Thread(target=self.state.load, name="model-loader", daemon=True).start()
        yield
        if self.capture:
            self.capture.close()

    def drain(self) -> None:
        """SIGTERM arrived (the listener closes; in-flight requests go on): shed what is still queued once the grace
        period, less the time the model call in progress may need, has passed."""
        if self.loop is None or self.draining:
            return
        self.draining = True
        grace = self.config.graceful_timeout_s
        budget = max(grace / 2, grace - DRAIN_MARGIN_S)
        log.info("shutting down: finishing in-flight requests for %.1f s, then answering the rest 503", budget)
        self.loop.call_soon_threadsafe(self.loop.call_later, budget, self.shed)

    def shed(self) -> None:
        self.shedding = True
        shed = self.batcher.shed(shutting_down()) if self.batcher else 0
        log.warning("grace period nearly over: %d queued requests answered 503 with Retry-After", shed)

    async def ping(self, request: Request) -> Response:
        state = self.state
        if state.ready.is_set() and state.predictor is not None:
            return JSONResponse({"status": "ready", "labels": len(state.predictor.label_names),
                                 "backend": type(state.predictor).__name__})
        if state.error:
            return JSONResponse({"status": "failed", "error": state.error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    async def _body(self, request: Request) -> bytes:
        """The request body, once the model is ready, read in chunks: refused as soon as it passes the limit."""
        if self.shedding:
            raise shutting_down()
        if not self.state.ready.is_set():
            raise _Rejected(503, "the model is not loaded yet" if not self.state.error
                            else f"the model failed to load: {self.state.error}")
        limit = self.config.max_payload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(f"payload of {declared} bytes", limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(f"payload of more than {limit} bytes", limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _predict(self, request: Request, body: bytes, inference_id: str) -> Response:
        """Decode (the handlers' codecs), predict through the batcher, encode, capture."""
        content_type = request.headers.get("content-type", handlers.JSON)
        accept = request.headers.get("accept")
        out_type = handlers.response_type(accept)
        requests = handlers.input_fn(body, content_type)
        texts = [t for r in requests for t in r["texts"]]
        self.metrics.texts_per_request.observe(len(texts))
        if self.batcher is None:
            self.batcher = Batcher(self.state.predictor, self.config.max_batch_size, self.config.max_wait_ms,
                                   self.metrics, self.config.inline_texts)
            self.batcher.start()
        probabilities = await self.batcher.predict(texts)
        predictions = handlers.split_results(requests, probabilities, self.state.predictor)
        payload = handlers.output_fn(predictions, accept)
        if self.capture and self.capture.sampled():
            self.capture.submit(capture_record(inference_id, body.decode("utf-8", "replace"),
                                               _base(content_type), payload, out_type))
        return Response(payload, media_type=out_type, headers={INFERENCE_ID_HEADER: inference_id})

    async def invocations(self, request: Request) -> Response:
        started = time.perf_counter()
        inference_id = request.headers.get(INFERENCE_ID_HEADER) or str(uuid.uuid4())
        status = 200
        try:
            return await self._predict(request, await self._body(request), inference_id)
        except _Rejected as exc:
            status = exc.status
            return error_response(exc.status, str(exc), inference_id, exc.code, exc.headers)
        except handlers.RequestError as exc:
            status = exc.status
            return error_response(exc.status, str(exc), inference_id)
        except Exception:
            status = 500
            log.exception("request %s failed", inference_id)
            return error_response(500, f"internal error while predicting; see the server log (request "
                                  f"{inference_id})", inference_id)
        finally:
            self.metrics.observe_request("/invocations", status, time.perf_counter() - started)

    async def metrics_route(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)


def create_app(config: ServerConfig) -> Starlette:
    """The ASGI app; the model loads in a background thread at startup."""
    service = _Service(config)
    routes = [
        Route("/ping", service.ping, methods=["GET"]),
        Route("/invocations", service.invocations, methods=["POST"]),
        Route("/endpoints/{name}/invocations", service.invocations, methods=["POST"]),
        Route("/metrics", service.metrics_route, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=service.lifespan, exception_handlers={HTTPException: http_error})
    app.state.model = service.state
    app.state.service = service
    return app


def _too_large(what: str, limit: int) -> _Rejected:
    return _Rejected(413, f"{what} is over the {limit} byte limit: send fewer or shorter texts per request")


def _base(content_type: str) -> str:
    return content_type.split(";")[0].strip()


def parse_args(argv=None) -> ServerConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="model directory or model.tar.gz (default: $SM_MODEL_DIR or /opt/ml/model)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int, help="default: $SAGEMAKER_BIND_TO_PORT or 8080")
    parser.add_argument("--backend", help="auto | torch | torch-bf16 | onnx | onnx-int8")
    parser.add_argument("--max-batch-size", type=int)
    parser.add_argument("--max-wait-ms", type=float)
    parser.add_argument("--inline-texts", type=int,
                        help="calls of at most this many texts with nothing queued run on the event loop (0 = never)")
    parser.add_argument("--num-threads", type=int)
    parser.add_argument("--call-cost-tokens", type=float,
                        help="one more model call's cost in padded tokens when a batch is cut by length")
    parser.add_argument("--endpoint-name")
    parser.add_argument("--capture-dir", help="write SageMaker data capture JSONL here")
    parser.add_argument("--capture-sample-percent", type=float)
    args = parser.parse_args(argv)
    return ServerConfig.from_env(**{k: v for k, v in vars(args).items()})


def serve(config: ServerConfig) -> None:
    """Run until SIGTERM/SIGINT; a model.tar.gz is extracted to a temporary directory removed on exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not config.model_dir.endswith((".tar.gz", ".tgz")):
        return _run(config)
    from mlcore.predictor import extract_model

    with tempfile.TemporaryDirectory(prefix="model-") as scratch:
        config.model_dir = str(extract_model(config.model_dir, scratch))
        _run(config)


def _run(config: ServerConfig) -> None:
    import uvicorn

    app = create_app(config)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # SIGTERM/SIGINT: uvicorn stops accepting; we shed at the end
            app.state.service.drain()
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                   timeout_graceful_shutdown=config.graceful_timeout_s, access_log=False))
    log.info("listening on http://%s:%d (model %s)", config.host, config.port, config.model_dir)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal: make that a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()


def main(argv=None) -> int:
    try:
        config = parse_args(argv)
    except ValueError as exc:  # a setting out of range or of the wrong type, from a flag or an env var
        print(f"inference.server: {exc}", file=sys.stderr)
        return 2
    serve(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
