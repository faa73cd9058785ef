"""``python -m context8_mcp --transport stdio|http --redis-url URL [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from context8_mcp.server import run
from context8_mcp.store import DEFAULT_TIMEOUT_S


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m context8_mcp", description="context8 read-only MCP server"
    )
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="Redis to read reports from (default: $REDIS_URL)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="http: address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="http: port to listen on")
    parser.add_argument(
        "--timeout-ms",
        type=int,
        default=int(DEFAULT_TIMEOUT_S * 1000),
        help="deadline of one Redis read; past it the answer is backend_unavailable",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.redis_url:
        parser.error("--redis-url or REDIS_URL is required")
    # stderr only: on stdio, stdout carries the protocol.
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run(
        redis_url=args.redis_url,
        transport=args.transport,
        host=args.host,
        port=args.port,
        timeout_s=args.timeout_ms / 1000,
    )


if __name__ == "__main__":
    main()
