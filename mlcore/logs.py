"""Logging of the step scripts: plain lines, as SageMaker's metric definitions and the local runner read them.

mlcore and steps log through `logging.getLogger(__name__)`; a step's `main()` calls
`configure_step_logging()` so that INFO lines ("epoch=1 train_loss=0.1234", "test_f1_macro=...")
reach stdout as they are, warnings as "warning: ...", and errors reach stderr as "error: ...".
Only the project's loggers are configured: libraries keep their own settings.
"""
from __future__ import annotations

import logging
import sys

# The project's loggers in a step process: its library, the step modules, and the script run as __main__.
STEP_LOGGERS = ("mlcore", "steps", "__main__")
_MARK = "_mlops_step_handler"


class _PlainFormatter(logging.Formatter):
    """The message as is for INFO and below, prefixed with the level's name from WARNING up."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def _handler(stream, low: int, high: int) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setLevel(low)
    handler.addFilter(lambda record: record.levelno < high)
    handler.setFormatter(_PlainFormatter("%(message)s"))
    setattr(handler, _MARK, True)
    return handler


def configure_step_logging(level: int = logging.INFO) -> None:
    """INFO and WARNING on stdout, ERROR and above on stderr, for the step loggers (idempotent)."""
    for name in STEP_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(handler)
        logger.addHandler(_handler(sys.stdout, logging.DEBUG, logging.ERROR))
        logger.addHandler(_handler(sys.stderr, logging.ERROR, logging.CRITICAL + 1))
