"""Run a step script as a subprocess: its output streamed live to the console (prefixed) and to its log."""
from __future__ import annotations

import os
import re
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import TextIO

TAIL_LINES = 25


class StepPrinter:
    """Prints a step's output live with a `[Step]` prefix; tqdm's carriage-return updates stay on one line."""

    def __init__(self, out: TextIO, progress_interval_s: float = 5.0):
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.interval = progress_interval_s
        self._last_progress = 0.0
        self._open = False

    def line(self, prefix: str, text: str) -> None:
        if self._open:
            self.out.write("\r\x1b[K" if self.tty else "\n")
            self._open = False
        self.out.write(f"[{prefix}] {text}\n")
        self.out.flush()

    def progress(self, prefix: str, text: str) -> None:
        if self.tty:
            self.out.write(f"\r\x1b[K[{prefix}] {text}")
            self._open = True
        else:
            now = time.monotonic()
            if now - self._last_progress < self.interval:
                return
            self._last_progress = now
            self.out.write(f"[{prefix}] {text}\n")
        self.out.flush()

    def close(self) -> None:
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open = False


def run_script(argv: list[str], env: dict[str, str], log_path: Path, prefix: str, printer: StepPrinter,
               cwd: Path | None = None) -> int:
    """Run a step script, streaming merged stdout/stderr to the console (prefixed) and to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        assert proc.stdout is not None
        buffer = b""
        try:
            while True:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                buffer += chunk
                while (match := re.search(rb"[\r\n]", buffer)) is not None:
                    segment, terminator = buffer[: match.start()], buffer[match.start() : match.end()]
                    buffer = buffer[match.end():]
                    text = segment.decode("utf-8", errors="replace").rstrip()
                    if not text:
                        continue
                    if terminator == b"\r":
                        printer.progress(prefix, text)
                    else:
                        printer.line(prefix, text)
            if buffer.strip():
                printer.line(prefix, buffer.decode("utf-8", errors="replace").rstrip())
            return proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            printer.close()
            proc.stdout.close()


def log_tail(log_path: Path, n: int = TAIL_LINES) -> list[str]:
    """The last `n` non-empty lines of a log (progress-bar updates count as lines)."""
    if not log_path.exists():
        return []
    text = log_path.read_bytes().decode("utf-8", errors="replace")
    lines = [line.rstrip() for line in re.split(r"[\r\n]", text) if line.strip()]
    return list(deque(lines, maxlen=n))
