"""The errors the server answers with: one flat hierarchy, each with a stable machine-readable
``code`` (what a client branches on) and the HTTP status of the plain JSON routes.

Outside errors (Redis, decoding) are wrapped where they happen (``raise ... from e``); nothing
else reaches a client.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

__all__ = [
    "BackendUnavailable",
    "ErrorCode",
    "ErrorInfo",
    "InvalidInput",
    "NotPublished",
    "ReportExpired",
    "ReportInvalid",
    "ServerError",
    "SymbolNotIndexed",
    "quoted",
]

_QUOTED_MAX = 32


def quoted(value: object) -> str:
    """A client's input quoted in an error: at most a short prefix (an error sized for a
    model, whatever was sent), with the full length when it was cut."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= _QUOTED_MAX:
        return repr(text)
    return f"{text[:_QUOTED_MAX]!r}... ({len(text)} characters)"


ErrorCode = Literal[
    "invalid_input",
    "symbol_not_indexed",
    "report_expired",
    "not_published",
    "report_invalid",
    "backend_unavailable",
    "unauthorized",
    "rate_limited",
]
"""The last two come from the HTTP front door only (``context8_mcp.guard``)."""


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The machine-readable form of an error (``_meta["context8/error"]`` of a tool result, the
    ``error`` object of a plain HTTP answer)."""

    code: ErrorCode
    message: str
    symbol: str | None = None
    available: list[str] | None = None


class ServerError(Exception):
    """Base of every error a client can see; ``str(e)`` is the message, without the code."""

    code: ClassVar[ErrorCode]
    http_status: ClassVar[int]

    def __init__(self, message: str, *, symbol: str | None = None) -> None:
        super().__init__(message)
        self.symbol = symbol

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=str(self), symbol=self.symbol)


class InvalidInput(ServerError):
    """The arguments are malformed (a symbol must look like BTCUSDT or BTCUSDT.BINANCE)."""

    code = "invalid_input"
    http_status = 400


class SymbolNotIndexed(ServerError):
    """No report exists for the symbol and the index does not know it; lists what does exist."""

    code = "symbol_not_indexed"
    http_status = 404

    def __init__(self, symbol: str, available: list[str]) -> None:
        listed = ", ".join(available) if available else "none (nothing is being published)"
        super().__init__(f"{symbol} is not indexed; available symbols: {listed}", symbol=symbol)
        self.available = available

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code, message=str(self), symbol=self.symbol, available=self.available
        )


class ReportExpired(ServerError):
    """The index knows the symbol but its report key has expired (no publish within the report
    TTL): the processor for it has stopped."""

    code = "report_expired"
    http_status = 404


class NotPublished(ServerError):
    """The symbol has a report but not the projection asked for (e.g. no full-depth section):
    its processor does not publish it."""

    code = "not_published"
    http_status = 404


class ReportInvalid(ServerError):
    """A stored value (report, depth, history point, candle) does not decode as this server's
    schema of it (a writer of another version, or a corrupt value)."""

    code = "report_invalid"
    http_status = 502


class BackendUnavailable(ServerError):
    """Redis did not answer in time, refused the connection, or refused the command."""

    code = "backend_unavailable"
    http_status = 503
