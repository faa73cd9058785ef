"""``python -m context8_mcp [--transport stdio|http] [--redis-url URL] [--host H] [--port P]``;
every setting also from the environment (``context8_mcp.config``)."""

from __future__ import annotations

import argparse
import logging
import sys

from context8.config import ConfigError
from context8_mcp.config import load_config
from context8_mcp.server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m context8_mcp", description="context8 read-only MCP server"
    )
    parser.add_argument("--transport", choices=["stdio", "http"])
    parser.add_argument(
        "--redis-url", help="Redis to read reports from (env CONTEXT8_MCP_REDIS_URL, REDIS_URL)"
    )
    parser.add_argument("--host", help="http: address to listen on (env CONTEXT8_MCP_HOST)")
    parser.add_argument("--port", type=int, help="http: port to listen on (env CONTEXT8_MCP_PORT)")
    parser.add_argument(
        "--timeout-ms",
        type=int,
        help="deadline of one Redis read; past it the answer is backend_unavailable",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        config = load_config(
            redis_url=args.redis_url,
            transport=args.transport,
            host=args.host,
            port=args.port,
            timeout_ms=args.timeout_ms,
        )
    except ConfigError as e:
        parser.error(str(e))
    # stderr only: on stdio, stdout carries the protocol.
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run(config)


if __name__ == "__main__":
    main()
