"""SageMaker Runtime's InvokeEndpoint in front of a model container, as AWS documents it.

boto3's `sagemaker-runtime` client (and the predict Lambda) call `POST /endpoints/<name>/invocations`;
SageMaker forwards the body to the container's `POST /invocations` with the request's Content-Type,
Accept, custom attributes and inference id, and answers (botocore's service model and the
InvokeEndpoint API reference):
- the container's 2xx body and Content-Type, with `x-Amzn-Invoked-Production-Variant`;
- a container error as **424 ModelError** (`OriginalStatusCode`, `OriginalMessage`, `LogStreamArn`,
  "Received client error (400) from primary with message ..."), never the container's own status;
- an unknown endpoint as 400 ValidationError "Endpoint <name> of account <id> not found.";
- a container that does not answer in 60 s as ModelError, one that cannot be reached as 503;
- a body over 6 MB as 413, refused while it streams in (a huge chunked body is never held).
A request without a Content-Type reaches the container without one (SageMaker's containers read that as
application/json); the front never invents one. The container routes (`/ping`, `/invocations`, `/metrics`)
are forwarded unchanged, plus the container's Retry-After; the front's own errors on them (404, 405, 413,
503, 504) are JSON `{"error": {"code", "message"}}`.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Callable

import aiohttp
from aiohttp import web

ACCOUNT = "000000000000"
REGION = "local"
VARIANT = "AllTraffic"
CONTAINER = "primary"
CONTAINER_TIMEOUT_S = 60.0  # SageMaker's limit for a real-time endpoint's container to answer
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # real-time endpoints' request limit
FORWARDED_HEADERS = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes", "x-amzn-sagemaker-inference-id")
SESSION = web.AppKey("session", aiohttp.ClientSession)
RETURNED_HEADERS = ("content-type", "x-amzn-sagemaker-custom-attributes", "x-amzn-sagemaker-inference-id")
CONTAINER_HEADERS = RETURNED_HEADERS + ("retry-after",)  # what the container routes pass on besides


@dataclass(frozen=True)
class Target:
    """Where the endpoint's traffic goes now: the container's base URL, and the model version it serves."""

    url: str
    version: int | None = None


def aws_error(status: int, code: str, message: str, **members) -> web.Response:
    """An AWS rest-json error: the code in x-amzn-ErrorType, the members in the JSON body."""
    return web.Response(status=status, body=json.dumps({"message": message, **members}),
                        headers={"Content-Type": "application/json", "x-amzn-ErrorType": code})


def json_error(status: int, code: str, message: str) -> web.Response:
    """The container routes' error shape (the model server's own)."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class _TooLarge(Exception):
    """The body passed MAX_PAYLOAD_BYTES while it was read."""


async def read_limited(request: web.Request, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The request body, read chunk by chunk; _TooLarge as soon as it passes `limit` (the rest is not read)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _TooLarge()
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def model_error(endpoint: str, status: int, body: bytes) -> web.Response:
    """The 424 ModelError SageMaker answers when the container answers `status` (non-2xx) with `body`."""
    text = body.decode("utf-8", "replace")
    kind = "client" if 400 <= status < 500 else "server"
    log_stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
    message = (f"Received {kind} error ({status}) from {CONTAINER} with message \"{text}\". "
               f"See {log_stream} in account {ACCOUNT} for more information.")
    return aws_error(424, "ModelError", message, OriginalStatusCode=status, OriginalMessage=text,
                     LogStreamArn=log_stream)


class _Front:
    """The routes of the front: where traffic goes (`resolve`), and how each answer is shaped."""

    def __init__(self, endpoint_name: str, resolve: Callable[[], Target | None], on_unreachable=None,
                 container_timeout_s: float = CONTAINER_TIMEOUT_S):
        self.endpoint_name, self.resolve, self.on_unreachable = endpoint_name, resolve, on_unreachable
        self.container_timeout_s = container_timeout_s

    async def call(self, request: web.Request, path: str, body: bytes):
        """(target, (status, body, headers)) from the container; (target, None) when it cannot be reached twice,
        (None, None) when nothing is deployed."""
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        # aiohttp would add Content-Type: application/octet-stream to a body sent without one
        skip = ("Content-Type",) if "content-type" not in {k.lower() for k in headers} else ()
        session = request.app[SESSION]
        for attempt in range(2):
            target = self.resolve()
            if target is None:
                return None, None
            try:
                async with session.request(request.method, target.url + path, data=body, headers=headers,
                                           skip_auto_headers=skip,
                                           timeout=aiohttp.ClientTimeout(total=self.container_timeout_s)) as answer:
                    result = (answer.status, await answer.read(), answer.headers)
            except aiohttp.ClientError:  # refused, reset, or cut mid-answer (a container killed): unreachable
                result = None
            if attempt or not self._moved(target, result):
                return target, result
        return None, None

    def _moved(self, target: Target, result) -> bool:
        """After a refused connection or a 503 (a container going away): has traffic moved elsewhere meanwhile?"""
        if result is not None and result[0] != 503:
            return False
        if self.on_unreachable:
            self.on_unreachable()
        return result is None or self.resolve() != target

    async def invoke_endpoint(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        not_found = f"Endpoint {name} of account {ACCOUNT} not found."
        if name != self.endpoint_name:
            return aws_error(400, "ValidationError", not_found)
        try:
            body = await read_limited(request)
        except _TooLarge:
            return aws_error(413, "ValidationError", f"Request payload size exceeds the {MAX_PAYLOAD_BYTES} byte "
                                                     "limit of a real-time endpoint.")
        try:
            target, answer = await self.call(request, "/invocations", body)
        except asyncio.TimeoutError:
            return model_error(name, 0, (f"Your invocation timed out while waiting for a response from container "
                                         f"{CONTAINER}.").encode())
        if target is None:
            return aws_error(400, "ValidationError", not_found)
        if answer is None:
            return aws_error(503, "ServiceUnavailable", f"Endpoint {name} is not reachable: no healthy instance.")
        status, payload, headers = answer
        if not 200 <= status < 300:
            response = model_error(name, status, payload)
            response.headers.update(_version_header(target))
            return response
        return web.Response(body=payload, status=200, headers={
            **_returned(headers), "x-Amzn-Invoked-Production-Variant": VARIANT, **_version_header(target)})

    async def container_route(self, request: web.Request) -> web.Response:
        try:
            target, answer = await self.call(request, request.path, await read_limited(request))
        except _TooLarge:
            return json_error(413, "payload_too_large", f"the body is over the {MAX_PAYLOAD_BYTES} byte limit")
        except asyncio.TimeoutError:
            return json_error(504, "timeout", f"the model server did not answer in {self.container_timeout_s:.0f} s")
        if target is None:
            return json_error(503, "model_not_ready", f"no model version is deployed to endpoint "
                                                      f"{self.endpoint_name!r}: approve one (mlops registry approve N)")
        if answer is None:
            return json_error(503, "endpoint_unavailable", "the model server is not reachable (restarting?): retry "
                                                           "in a few seconds; `mlops endpoint status` says more")
        status, payload, headers = answer
        return web.Response(body=payload, status=status,
                            headers={**_returned(headers, CONTAINER_HEADERS), **_version_header(target)})


def _version_header(target: Target | None) -> dict:
    return {"X-Mlops-Model-Version": str(target.version)} if target and target.version is not None else {}


def _returned(headers, names=RETURNED_HEADERS) -> dict:
    """The container's response headers that SageMaker Runtime passes on."""
    return {k: v for k, v in headers.items() if k.lower() in names}


@web.middleware
async def json_errors(request: web.Request, handler):
    """aiohttp's own 404/405 (no such route, wrong method) in the JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 405:
            return json_error(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}: use "
                                                         "POST for /invocations, GET for /ping and /metrics")
        return json_error(exc.status, "not_found" if exc.status == 404 else "error",
                          f"no route {request.path}: the endpoint answers POST /endpoints/<name>/invocations, "
                          "POST /invocations, GET /ping, GET /metrics" if exc.status == 404 else exc.text or exc.reason)


async def _open_session(app: web.Application) -> None:
    app[SESSION] = aiohttp.ClientSession()


async def _close_session(app: web.Application) -> None:
    await app[SESSION].close()


def create_front_app(endpoint_name: str, resolve: Callable[[], Target | None], on_unreachable=None,
                     container_timeout_s: float = CONTAINER_TIMEOUT_S):
    """aiohttp app: InvokeEndpoint for `endpoint_name`, plus the container routes, to `resolve()`'s target.

    `on_unreachable()` is called when the target refused the connection (e.g. to re-read where traffic
    goes after a blue/green switch); the request is then tried once more.
    """
    front = _Front(endpoint_name, resolve, on_unreachable, container_timeout_s)
    app = web.Application(client_max_size=MAX_PAYLOAD_BYTES, middlewares=[json_errors])
    app.router.add_post("/endpoints/{name}/invocations", front.invoke_endpoint)
    app.router.add_get("/ping", front.container_route)
    app.router.add_get("/metrics", front.container_route)
    app.router.add_post("/invocations", front.container_route)
    app.on_startup.append(_open_session)
    app.on_cleanup.append(_close_session)
    return app
