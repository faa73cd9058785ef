"""Structured logs: JSON lines (node_id, role, symbol, event, ...) for machines, a short
readable line when stderr is a terminal."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["log_event", "setup_logging"]

_CONTEXT_FIELDS = ("node_id", "role", "symbol", "event")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", {}))
        head = " ".join(str(fields.pop(k)) for k in _CONTEXT_FIELDS if k in fields)
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


def log_event(
    logger: logging.Logger,
    event: str,
    msg: str = "",
    *,
    level: int = logging.INFO,
    **fields: object,
) -> None:
    """Log one state transition with its context fields (node_id, role, symbol, ...)."""
    logger.log(level, msg or event, extra={"fields": {"event": event, **fields}})
