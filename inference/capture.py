"""SageMaker-style data capture, written off the request path.

Each captured request becomes one JSON line in SageMaker's data-capture shape under
`<dir>/<endpoint>/<yyyy>/<mm>/<dd>/<hh>/<file>.jsonl`, rotated by size and age. A background
thread does the writing; a full queue drops the record and counts it: capture never blocks or
fails a request.
"""
from __future__ import annotations

import json
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO


@dataclass
class CaptureConfig:
    directory: Path
    endpoint_name: str = "local-endpoint"
    sample_percent: float = 100.0
    max_file_bytes: int = 16 * 1024 * 1024
    max_file_seconds: float = 3600.0
    queue_size: int = 10_000


def capture_record(inference_id: str, input_body: str, input_type: str, output_body: str, output_type: str,
                   when: datetime | None = None) -> dict:
    """One data-capture record as SageMaker writes it (eventVersion 0)."""
    when = when or datetime.now(timezone.utc)
    return {
        "captureData": {
            "endpointInput": {"observedContentType": input_type, "mode": "INPUT", "data": input_body,
                              "encoding": "JSON"},
            "endpointOutput": {"observedContentType": output_type, "mode": "OUTPUT", "data": output_body,
                               "encoding": "JSON"},
        },
        "eventMetadata": {"eventId": str(uuid.uuid4()), "inferenceId": inference_id,
                          "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"},
        "eventVersion": "0",
    }


class CaptureWriter:
    """Queue + writer thread; `submit` returns immediately."""

    def __init__(self, config: CaptureConfig):
        self.config = config
        self.queue: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.dropped = 0
        self.written = 0
        self.errors = 0
        self._file: TextIO | None = None
        self._file_path: Path | None = None
        self._file_opened = 0.0
        self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        return self.config.sample_percent >= 100 or random.uniform(0, 100) < self.config.sample_percent

    def submit(self, record: dict) -> bool:
        try:
            self.queue.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _target(self, now: float) -> Path:
        stamp = datetime.fromtimestamp(now, timezone.utc)
        folder = Path(self.config.directory) / self.config.endpoint_name / stamp.strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{stamp.strftime('%M-%S-%f')}-{uuid.uuid4().hex[:8]}.jsonl"

    def _rotate_if_needed(self, now: float) -> TextIO:
        """The file to write to now: a new one when the current is too big, too old or of another hour."""
        hour_changed = self._file_path is not None and datetime.fromtimestamp(now, timezone.utc).strftime(
            "%Y/%m/%d/%H") not in str(self._file_path)
        current = self._file
        if (current is None or current.tell() >= self.config.max_file_bytes
                or now - self._file_opened >= self.config.max_file_seconds or hour_changed):
            if current:
                current.close()
            self._file_path = self._target(now)
            current = self._file = open(self._file_path, "a", encoding="utf-8")
            self._file_opened = now
        return current

    def _run(self) -> None:
        while True:
            record = self.queue.get()
            if record is None:
                break
            try:
                out = self._rotate_if_needed(time.time())
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                while not self.queue.empty():  # drain a burst before flushing
                    nxt = self.queue.get_nowait()
                    if nxt is None:
                        self.queue.put(None)
                        break
                    out.write(json.dumps(nxt, ensure_ascii=False) + "\n")
                    self.written += 1
                out.flush()
                self.written += 1
            except Exception:  # a full disk must not take the endpoint down
                self.errors += 1
        if self._file:
            self._file.close()

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued and stop the thread."""
        self.queue.put(None)
        self._thread.join(timeout)
