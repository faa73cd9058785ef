"""``context8``: one entry point, a subcommand per role. Every setting also comes from the
environment (context8/config.py); a flag given on the command line wins."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine

from context8 import config
from context8.logs import setup_logging

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> config.Settings:
    symbols = getattr(args, "symbols", None)
    return config.load(
        symbols=config.parse_symbols(symbols) if symbols else None,
        redis_url=getattr(args, "redis_url", None),
        node_id=getattr(args, "node_id", None),
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", help="comma-separated symbols (env SYMBOLS)")
    parser.add_argument("--redis-url", help="Redis to use (env REDIS_URL)")
    parser.add_argument("--node-id", help="this node's id in the fleet (env NT_NODE_ID)")


def run_until_signalled(main: Callable[[asyncio.Event], Coroutine[object, object, None]]) -> None:
    """Run ``main(stop)`` on a fresh loop; SIGINT/SIGTERM set ``stop`` for a clean shutdown."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


def _cmd_demo(args: argparse.Namespace) -> int:
    from context8.demo import run_demo

    symbols_given = bool(args.symbols or os.environ.get("SYMBOLS", "").strip())
    return run_demo(_settings(args), symbols_given=symbols_given, data_dir=args.data_dir,
                    mcp_port=args.mcp_port, capture=args.capture, seed=args.seed)  # fmt: skip


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ingest.simulator import SimulatorConfig, serve

    symbols = config.parse_symbols(args.symbols) if args.symbols else config.load().symbols
    sim_config = SimulatorConfig(
        port=args.port,
        symbols=tuple(s.partition(".")[0] for s in symbols),
        seed=args.seed,
        capture=args.capture,
        speed=args.speed,
        rate=args.rate,
        drop_diff_every=args.drop_diff_every,
        loop=args.loop,
    )

    async def main(stop: asyncio.Event) -> None:
        server = asyncio.create_task(serve(sim_config, ready=lambda url: print(url, flush=True)))
        await stop.wait()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server

    run_until_signalled(main)
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.node import run

    run(_settings(args))
    return 0


def _cmd_process(args: argparse.Namespace) -> int:
    from context8.metrics import serve_metrics
    from processors.runtime import run_processor

    settings = _settings(args)
    metrics_url = serve_metrics(settings.metrics_port)
    run_until_signalled(lambda stop: run_processor(settings, stop, metrics_url=metrics_url))
    return 0


def _cmd_mcp(args: argparse.Namespace) -> int:
    from context8_mcp.server import run

    settings = _settings(args)
    if settings.redis_url is None:
        raise config.ConfigError("REDIS_URL: the MCP server needs the Redis holding the reports")
    run(redis_url=settings.redis_url, transport=args.transport, host=args.host, port=args.port)
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from projections.report import SCHEMA_PATH, schema_text

    if args.check:
        if SCHEMA_PATH.read_text() != schema_text():
            print(f"{SCHEMA_PATH} is out of date: run `context8 schema`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(schema_text())
    print(SCHEMA_PATH)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from context8.bench import run_bench

    return run_bench(args.name, seconds=args.seconds, rounds=args.rounds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="context8", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the whole pipeline on embedded defaults")
    _common(demo)
    demo.add_argument("--data-dir", default=".context8", help="Redis data and logs")
    demo.add_argument("--mcp-port", type=int, default=8765)
    demo.add_argument("--capture", help="replay this capture instead of the order-flow model")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_demo)

    sim = sub.add_parser("simulate", help="the local exchange simulator (Binance Spot protocol)")
    sim.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sim.add_argument("--symbols", help="comma-separated symbols (env SYMBOLS)")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--capture", help="replay this capture instead of the order-flow model")
    sim.add_argument("--speed", type=float, default=1.0, help="capture speed; 0 = fastest")
    sim.add_argument("--loop", action="store_true", help="replay the capture over and over")
    sim.add_argument("--rate", type=float, default=1.0, help="order-flow intensity multiplier")
    sim.add_argument("--drop-diff-every", type=int, default=0, help="fault injection: gaps")
    sim.set_defaults(func=_cmd_simulate)

    ingest = sub.add_parser("ingest", help="an ingest node (NautilusTrader -> md:{SYM})")
    _common(ingest)
    ingest.set_defaults(func=_cmd_ingest)

    process = sub.add_parser("process", help="a processor node (md:{SYM} -> report:{SYM})")
    _common(process)
    process.set_defaults(func=_cmd_process)

    mcp = sub.add_parser("mcp", help="the read-only MCP server")
    _common(mcp)
    mcp.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    mcp.add_argument("--host", default="127.0.0.1")
    mcp.add_argument("--port", type=int, default=8765)
    mcp.set_defaults(func=_cmd_mcp)

    schema = sub.add_parser("schema", help="write the report's JSON Schema")
    schema.add_argument("--check", action="store_true", help="fail if the file is stale")
    schema.set_defaults(func=_cmd_schema)

    bench = sub.add_parser("bench", help="benchmarks on the real pipeline, printing figures")
    bench.add_argument("name", nargs="?", default="pipeline", choices=("pipeline", "failover"))
    bench.add_argument("--seconds", type=float, default=20.0, help="pipeline: per phase")
    bench.add_argument("--rounds", type=int, default=20, help="failover: kill -9 rounds")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.func(args)
    except config.ConfigError as e:
        print(f"context8: bad configuration: {e}", file=sys.stderr)
        return 2
