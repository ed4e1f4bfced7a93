"""The model server: SageMaker's container contract on port 8080, fast on CPU.

GET /ping (200 only once the model is loaded and warmed), POST /invocations and
POST /endpoints/<name>/invocations (so boto3 `sagemaker-runtime` with a local endpoint_url works
unchanged), GET /metrics (Prometheus). Concurrent requests are batched together while the model
is busy; data capture is written off the request path; SIGTERM lets in-flight requests finish.

    python -m inference.server --model-dir DIR [--port 8080] [--backend auto]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inference.capture import CaptureConfig, CaptureWriter, capture_record
from inference.metrics import ServerMetrics
from mlcore import handler as handlers
from mlcore.config import env_value, field_default
from mlcore.predictor import Predictor

log = logging.getLogger("inference.server")
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints' request limit
ERROR_CODES = {400: "bad_request", 406: "not_acceptable", 413: "payload_too_large", 415: "unsupported_media_type",
               500: "internal_error", 503: "model_not_ready"}


@dataclass
class ServerConfig:
    """Server settings; env vars follow SageMaker's names where it has one."""

    model_dir: str = field(default="/opt/ml/model", metadata={"env": "SM_MODEL_DIR"})
    host: str = field(default="0.0.0.0", metadata={"env": "MLOPS_HOST"})
    port: int = field(default=8080, metadata={"env": "SAGEMAKER_BIND_TO_PORT"})
    backend: str = field(default="auto", metadata={"env": "MLOPS_BACKEND"})
    max_batch_size: int = field(default=32, metadata={"env": "MLOPS_MAX_BATCH_SIZE"})
    max_wait_ms: float = field(default=0.0, metadata={"env": "MLOPS_MAX_WAIT_MS"})
    max_payload_bytes: int = field(default=MAX_PAYLOAD_BYTES, metadata={"env": "MLOPS_MAX_PAYLOAD_BYTES"})
    num_threads: int = field(default=0, metadata={"env": "MLOPS_NUM_THREADS"})
    endpoint_name: str = field(default="local-endpoint", metadata={"env": "MLOPS_ENDPOINT_NAME"})
    capture_dir: str = field(default="", metadata={"env": "MLOPS_CAPTURE_DIR"})
    capture_sample_percent: float = field(default=100.0, metadata={"env": "MLOPS_CAPTURE_SAMPLE_PERCENT"})
    graceful_timeout_s: int = field(default=30, metadata={"env": "MLOPS_GRACEFUL_TIMEOUT"})

    @classmethod
    def from_env(cls, **overrides) -> ServerConfig:
        """Each field from its env var (unset: the default), then the overrides that are not None."""
        values = {f.name: env_value(f.metadata["env"], field_default(f)) for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class Batcher:
    """Groups texts of concurrent requests into model calls (up to max_batch_size).

    Requests that arrive while the model is busy queue up and go together in the next call, so
    batching adds no latency at low load; `max_wait_ms` > 0 additionally waits for company.
    """

    def __init__(self, predictor, config: ServerConfig, metrics: ServerMetrics):
        self.predictor, self.config, self.metrics = predictor, config, metrics
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def predict(self, texts: list[str]) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect(loop)
            texts = [t for batch, _ in items for t in batch]
            self.metrics.batch_size.observe(len(texts))
            try:
                probabilities = await loop.run_in_executor(
                    self.executor, self.predictor.predict_proba, texts, self.config.max_batch_size)
            except Exception as exc:
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for batch, future in items:
                if not future.done():
                    future.set_result(probabilities[start : start + len(batch)])
                start += len(batch)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list:
        """The next request, and those queued behind it (waiting up to max_wait_ms), up to max_batch_size texts."""
        items = [await self.queue.get()]
        count = len(items[0][0])
        deadline = loop.time() + self.config.max_wait_ms / 1000.0
        while count < self.config.max_batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            items.append(item)
            count += len(item[0])
        return items


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
            predictor.predict_proba(["warm up the model", "and a second, somewhat longer text to warm up"] * 4)
            self.predictor = predictor
            self.ready.set()
            log.info("model loaded and warmed in %.1fs: %d labels, backend %s", time.time() - started,
                     len(predictor.label_names), type(predictor).__name__)
        except Exception as exc:
            self.error = f"{exc.__class__.__name__}: {exc}"
            log.exception("model failed to load from %s", self.config.model_dir)


def error_response(status: int, message: str, request_id: str | None = None) -> JSONResponse:
    body = {"error": {"code": ERROR_CODES.get(status, "error"), "message": message}}
    headers = {INFERENCE_ID_HEADER: request_id} if request_id else None
    return JSONResponse(body, status_code=status, headers=headers)


class _Rejected(Exception):
    """A request refused before prediction (model not ready, payload too large), with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


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

    @asynccontextmanager
    async def lifespan(self, app):
        threading.Thread(target=self.state.load, name="model-loader", daemon=True).start()
        yield
        if self.capture:
            self.capture.close()

    async def ping(self, request: Request) -> Response:
        state = self.state
        if state.ready.is_set() and state.predictor is not None:
            return JSONResponse({"status": "ready", "labels": len(state.predictor.label_names),
                                 "backend": type(state.predictor).__name__})
        if state.error:
            return JSONResponse({"status": "failed", "error": state.error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    async def _body(self, request: Request) -> bytes:
        """The request body, once the model is ready and when it is within the payload limit."""
        if not self.state.ready.is_set():
            raise _Rejected(503, "the model is not loaded yet" if not self.state.error
                            else f"the model failed to load: {self.state.error}")
        limit = self.config.max_payload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _Rejected(413, f"payload of {declared} bytes is over the {limit} byte limit: send fewer or "
                                 "shorter texts per request")
        body = await request.body()
        if len(body) > limit:
            raise _Rejected(413, f"payload of {len(body)} bytes is over the {limit} byte limit: send fewer or "
                                 "shorter texts per request")
        return body

    async def _predict(self, request: Request, body: bytes, inference_id: str) -> Response:
        """Decode (the handlers' codecs), predict through the batcher, encode, capture."""
        content_type = request.headers.get("content-type", handlers.JSON)
        accept = request.headers.get("accept")
        out_type = handlers.response_type(accept)
        requests = handlers.input_fn(body, content_type)
        texts = [t for r in requests for t in r["texts"]]
        self.metrics.texts_per_request.observe(len(texts))
        if self.batcher is None:
            self.batcher = Batcher(self.state.predictor, self.config, self.metrics)
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
        except (_Rejected, handlers.RequestError) as exc:
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
    app = Starlette(routes=routes, lifespan=service.lifespan)
    app.state.model = service.state
    return app


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
    parser.add_argument("--num-threads", type=int)
    parser.add_argument("--endpoint-name")
    parser.add_argument("--capture-dir", help="write SageMaker data capture JSONL here")
    parser.add_argument("--capture-sample-percent", type=float)
    args = parser.parse_args(argv)
    return ServerConfig.from_env(**{k: v for k, v in vars(args).items()})


def serve(config: ServerConfig) -> None:
    """Run until SIGTERM/SIGINT; in-flight requests finish before exit."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.model_dir.endswith((".tar.gz", ".tgz")):
        from mlcore.predictor import extract_model

        config.model_dir = str(extract_model(config.model_dir))
    server = uvicorn.Server(uvicorn.Config(create_app(config), host=config.host, port=config.port,
                                           log_level="warning", timeout_graceful_shutdown=config.graceful_timeout_s,
                                           access_log=False))
    log.info("listening on http://%s:%d (model %s)", config.host, config.port, config.model_dir)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal: make that a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()


def main(argv=None) -> int:
    serve(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
