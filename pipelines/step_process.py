"""Run a step script as a subprocess: its output streamed live to the console (prefixed) and to its log.

Quiet (the default of `mlops run`): the console gets the step's own lines (stdout: the project's INFO and
WARNING logs, metric lines), progress bars and errors; what libraries print on stderr (warnings such as
TracerWarning, transformers' LOAD REPORT) goes to the step's log only. Verbose: everything, as it comes.
"""
from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import TextIO

TAIL_LINES = 25
PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's bar, also its final line (which ends with a newline)
SHOWN_FROM_STDERR = ("error:", "Traceback", "Error", "Exception")  # quiet still shows these


class StepPrinter:
    """Prints a step's output live with a `[Step]` prefix; tqdm's carriage-return updates stay on one line."""

    def __init__(self, out: TextIO, progress_interval_s: float = 5.0):
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.interval = progress_interval_s
        self._last_progress = 0.0
        self._open = False
        self.hidden = 0  # stderr lines kept out of the console (quiet), since the last reset

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


def _emit(printer: StepPrinter, prefix: str, text: str, terminator: bytes, stderr: bool, quiet: bool) -> None:
    """One segment of output to the console: a progress update, a line, or (quiet, library stderr) nothing."""
    if terminator == b"\r":
        printer.progress(prefix, text)
    elif not (quiet and stderr) or PROGRESS_BAR.search(text) or text.lstrip().startswith(SHOWN_FROM_STDERR):
        printer.line(prefix, text)
    else:
        printer.hidden += 1


def _segments(buffer: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Complete segments ending in CR or LF (decoded, stripped, non-empty) and the unfinished rest."""
    out = []
    while (match := re.search(rb"[\r\n]", buffer)) is not None:
        segment, terminator = buffer[: match.start()], buffer[match.start() : match.end()]
        buffer = buffer[match.end():]
        text = segment.decode("utf-8", errors="replace").rstrip()
        if text:
            out.append((text, terminator))
    return out, buffer


def run_script(argv: list[str], env: dict[str, str], log_path: Path, prefix: str, printer: StepPrinter,
               cwd: Path | None = None, quiet: bool = False) -> int:
    """Run a step script, streaming its stdout and stderr to the console (prefixed; see the module doc for
    `quiet`) and both, unfiltered, to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
        assert proc.stdout is not None and proc.stderr is not None
        pending = {proc.stdout.fileno(): b"", proc.stderr.fileno(): b""}
        is_err = {proc.stdout.fileno(): False, proc.stderr.fileno(): True}
        selector = selectors.DefaultSelector()
        for fd in pending:
            selector.register(fd, selectors.EVENT_READ)
        try:
            while selector.get_map():
                for key, _ in selector.select():
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fd)
                        rest = pending[key.fd].decode("utf-8", errors="replace").rstrip()
                        if rest:
                            _emit(printer, prefix, rest, b"\n", is_err[key.fd], quiet)
                        continue
                    log.write(chunk)
                    log.flush()
                    segments, pending[key.fd] = _segments(pending[key.fd] + chunk)
                    for text, terminator in segments:
                        _emit(printer, prefix, text, terminator, is_err[key.fd], quiet)
            return proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            selector.close()
            printer.close()
            proc.stdout.close()
            proc.stderr.close()


def log_tail(log_path: Path, n: int = TAIL_LINES) -> list[str]:
    """The last `n` non-empty lines of a log (progress-bar updates count as lines)."""
    if not log_path.exists():
        return []
    text = log_path.read_bytes().decode("utf-8", errors="replace")
    lines = [line.rstrip() for line in re.split(r"[\r\n]", text) if line.strip()]
    return list(deque(lines, maxlen=n))
