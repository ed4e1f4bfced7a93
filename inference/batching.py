"""Dynamic batching of concurrent requests into model calls, with one request's failure kept to itself.

Requests that arrive while the model is busy queue up and go together in the next call, so batching adds no
latency at low load; `max_wait_ms` > 0 additionally waits for company. A call of at most `inline_texts` texts
with nothing queued behind it runs on the event loop itself, sparing the two thread hand-offs (loop -> model
thread -> loop) that a lone short request would otherwise wait for. When a batched call raises, every
request of the batch is predicted again alone: a request fails only for its own input, never for another
client's. At shutdown, `shed()` answers the requests still queued with a given error (the server's 503).
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger("inference.server")


class Batcher:
    """Groups texts of concurrent requests into model calls (up to max_batch_size texts per call)."""

    def __init__(self, predictor, max_batch_size: int, max_wait_ms: float, metrics, inline_texts: int = 0):
        self.predictor, self.max_batch_size, self.max_wait_ms, self.metrics = (predictor, max_batch_size,
                                                                               max_wait_ms, metrics)
        self.inline_texts = inline_texts
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.task: asyncio.Task | None = None
        self.shed_with: BaseException | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def predict(self, texts: list[str]) -> np.ndarray:
        if self.shed_with is not None:
            raise self.shed_with
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    def shed(self, error: BaseException) -> int:
        """Fail every queued request (and any later one) with `error`; the call in the model finishes. Returns
        how many queued requests were failed."""
        self.shed_with = error
        shed = 0
        while not self.queue.empty():
            _, future = self.queue.get_nowait()
            if not future.done():
                future.set_exception(error)
                shed += 1
        return shed

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect(loop)
            await self._predict(loop, [item for item in items if not item[1].done()])

    async def _call(self, loop: asyncio.AbstractEventLoop, texts: list[str]) -> Any:
        if len(texts) <= self.inline_texts and self.queue.empty():  # the model is idle: this call is all there is
            return self.predictor.predict_proba(texts, self.max_batch_size)
        return await loop.run_in_executor(self.executor, self.predictor.predict_proba, texts, self.max_batch_size)

    async def _predict(self, loop: asyncio.AbstractEventLoop, items: list) -> None:
        """One model call for `items`; if it raises for a batch of several requests, each is predicted alone."""
        if not items:
            return
        texts = [t for batch, _ in items for t in batch]
        self.metrics.batch_size.observe(len(texts))
        try:
            probabilities = await self._call(loop, texts)
        except Exception as exc:
            if len(items) == 1:
                if not items[0][1].done():
                    items[0][1].set_exception(exc)
                return
            log.warning("a model call for %d requests raised %s: %s; predicting each request alone", len(items),
                        exc.__class__.__name__, exc)
            self.metrics.batch_retries.inc()
            for item in items:
                if self.shed_with is None:
                    await self._predict(loop, [item])
                elif not item[1].done():
                    item[1].set_exception(self.shed_with)
            return
        start = 0
        for batch, future in items:
            if not future.done():
                future.set_result(probabilities[start : start + len(batch)])
            start += len(batch)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list:
        """The next request, and those queued behind it (waiting up to max_wait_ms), up to max_batch_size texts."""
        items = [await self.queue.get()]
        count = len(items[0][0])
        deadline = loop.time() + self.max_wait_ms / 1000.0
        while count < self.max_batch_size:
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
