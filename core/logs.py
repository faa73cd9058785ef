"""Structured logs: JSON lines for machines, a short readable line when stderr is a terminal.

Every line carries the process's context (``node_id``, ``role``; set once with
``set_log_context``) and whatever the call passed in ``extra`` (``symbol``, ``event``, ...).
State transitions are logged with ``log_event`` so they always have an ``event`` name.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["log_event", "set_log_context", "setup_logging"]

# uvicorn adds a colour-coded copy of each message; the plain one is enough
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "color_message",
}
_HEAD = ("node_id", "role", "symbol", "event")
_context: dict[str, object] = {}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    return {**_context, **extra}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        head = " ".join(str(fields.pop(k)) for k in _HEAD if fields.get(k) is not None)
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        text = f"{stamp} {record.levelname[0]} {head} {record.getMessage()} {tail}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_HumanFormatter() if sys.stderr.isatty() else _JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def set_log_context(**fields: object) -> None:
    """Fields every later line of this process carries (``node_id``, ``role``)."""
    _context.update(fields)


def log_event(
    logger: logging.Logger,
    event: str,
    msg: str = "",
    *,
    level: int = logging.INFO,
    exc_info: BaseException | None = None,
    **fields: object,
) -> None:
    """Log one state transition under its ``event`` name, with its fields (and the traceback
    of ``exc_info``)."""
    logger.log(level, msg or event, exc_info=exc_info, extra={"event": event, **fields})
