"""Captures: recorded venue traffic as JSON lines, read and written here.

A capture holds raw venue traffic in receive order (see ../shared/data/README.md):

- one `meta` line first: where it came from (`source`), the combined-stream URL recorded
  (`ws_url`) and the symbols;
- `rest` lines: `recv_ts`, `path`, `params`, `body` (a REST response as the venue sent it);
- `ws` lines: `recv_ts`, `body` = one combined-stream message `{"stream": ..., "data": ...}`.

`recv_ts` is the receive time in seconds since the epoch (float). Unknown fields are ignored on
reading, so captures written by newer versions still load.

`read_capture` is a generator (constant memory whatever the file size) that decodes each line
once into a tagged union on `type`; `CaptureWriter` appends lines (used by `context8 record`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import msgspec

__all__ = [
    "CaptureError",
    "CaptureLine",
    "CaptureWriter",
    "MetaLine",
    "RestLine",
    "StreamMessage",
    "WsLine",
    "read_capture",
]


class MetaLine(msgspec.Struct, tag="meta", tag_field="type", kw_only=True):
    recv_ts: float
    source: str
    ws_url: str = ""
    symbols: list[str] = msgspec.field(default_factory=list)


class RestLine(msgspec.Struct, tag="rest", tag_field="type", kw_only=True):
    recv_ts: float
    path: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    body: Any = None


class StreamMessage(msgspec.Struct, kw_only=True):
    """One combined-stream message; `data` stays plain JSON, as replay rewrites fields in it
    (a list for the all-market array streams)."""

    stream: str
    data: dict[str, Any] | list[Any]


class WsLine(msgspec.Struct, tag="ws", tag_field="type", kw_only=True):
    recv_ts: float
    body: StreamMessage


CaptureLine = MetaLine | RestLine | WsLine


class CaptureError(ValueError):
    """A capture line that does not decode; names the file and line."""


def read_capture(path: str | Path) -> Iterator[CaptureLine]:
    """Yield the lines of a capture in file order; blank lines are skipped."""
    decoder = msgspec.json.Decoder(CaptureLine)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield decoder.decode(raw)
            except msgspec.DecodeError as e:
                raise CaptureError(f"{path}:{number}: {e}") from e


class CaptureWriter:
    """Appends capture lines to a file; one `meta` line should come first."""

    def __init__(self, path: str | Path) -> None:
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - closed by close()/__exit__
        self._encoder = msgspec.json.Encoder()

    def write(self, line: CaptureLine) -> None:
        self._file.write(self._encoder.encode(line) + b"\n")

    def meta(self, source: str, ws_url: str, symbols: list[str]) -> None:
        self.write(MetaLine(recv_ts=time.time(), source=source, ws_url=ws_url, symbols=symbols))

    def rest(
        self, path: str, params: dict[str, Any], body: Any, recv_ts: float | None = None
    ) -> None:
        self.write(
            RestLine(
                recv_ts=time.time() if recv_ts is None else recv_ts,
                path=path,
                params=params,
                body=body,
            )
        )

    def ws(
        self, stream: str, data: dict[str, Any] | list[Any], recv_ts: float | None = None
    ) -> None:
        self.write(
            WsLine(
                recv_ts=time.time() if recv_ts is None else recv_ts,
                body=StreamMessage(stream=stream, data=data),
            )
        )

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
