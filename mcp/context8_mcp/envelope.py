"""JSON-RPC envelopes checked before the SDK sees them, answered in one line when malformed.

The SDK answers a message that is not JSON-RPC with its whole validation report (about 1 KB
of union-member errors, the input echoed), and ``tools/call`` without a tool name with
"Invalid request parameters" and nothing more. A model reading those learns little and pays
for every byte, so a POST to ``/mcp`` is checked here first: not JSON is ``-32700 Parse
error``, not a JSON-RPC 2.0 message ``-32600 Invalid Request`` with the one rule broken, and a
``tools/call`` without ``params.name`` ``-32602 Invalid params`` saying what is missing.
Everything else goes on to the SDK unchanged (the body is read once and handed on).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["JsonRpcEnvelope", "envelope_problem"]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
INVALID_PARAMS: Final = -32602


def envelope_problem(message: Any) -> tuple[int, str] | None:
    """(code, one-line message) for a decoded body that is not a JSON-RPC message the server
    can act on, else None."""
    if not isinstance(message, dict):
        return INVALID_REQUEST, "Invalid Request: send one JSON-RPC 2.0 object"
    if message.get("jsonrpc") != "2.0":
        return INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"'
    if "id" in message and (
        isinstance(message["id"], bool) or not isinstance(message["id"], int | str)
    ):
        return INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer'
    method = message.get("method")
    if method is None:
        if "id" in message and ("result" in message or "error" in message):
            return None  # a client's answer to a server request
        return INVALID_REQUEST, 'Invalid Request: "method" is missing'
    if not isinstance(method, str):
        return INVALID_REQUEST, 'Invalid Request: "method" must be a string'
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return INVALID_REQUEST, 'Invalid Request: "params" must be an object'
    if method == "tools/call" and not isinstance((params or {}).get("name"), str):
        return (
            INVALID_PARAMS,
            "Invalid params: tools/call needs params.name, a tool from tools/list",
        )
    return None


class JsonRpcEnvelope:
    """ASGI middleware for the POSTs to ``path``; bodies over ``max_body_bytes`` are left to
    the SDK, which refuses them."""

    def __init__(self, app: ASGIApp, *, path: str, max_body_bytes: int) -> None:
        self._app = app
        self._path = path
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self._path:
            await self._app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more and size <= self._max_body_bytes:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not more and size <= self._max_body_bytes:
            problem = _problem(body)
            if problem is not None:
                await _answer(send, *problem)
                return
        await self._app(scope, _replaying(body, more, receive), send)


def _problem(body: bytes) -> tuple[Any, int, str] | None:
    try:
        message = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None, PARSE_ERROR, "Parse error: the body is not JSON"
    found = envelope_problem(message)
    if found is None:
        return None
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    return request_id, *found


async def _answer(send: Send, request_id: Any, code: int, message: str) -> None:
    body = msgspec.json.encode(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    )
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _replaying(body: bytes, more: bool, receive: Receive) -> Receive:
    """``receive`` for the app: the part of the body already read, then the rest as sent."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
