"""``context8``: one entry point, a subcommand per role. Every setting also comes from the
environment or a TOML file (``--config FILE``; core/settings.py); a flag given on the
command line wins."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine

from context8.datadir import DEFAULT_DATA_DIR
from core import settings as config
from core.logs import setup_logging
from core.symbols import parse_symbols

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> config.Settings:
    symbols = getattr(args, "symbols", None)
    return config.load(
        symbols=_flag_symbols(symbols),
        redis_url=getattr(args, "redis_url", None),
        node_id=getattr(args, "node_id", None),
        processor_kinds=_kinds(getattr(args, "kinds", None)),
    )


def _flag_symbols(text: str | None) -> tuple[str, ...] | None:
    try:
        return parse_symbols(text) if text else None
    except ValueError as e:
        raise config.ConfigError(f"--symbols: {e}") from None


def _kinds(text: str | None) -> tuple[str, ...] | None:
    return tuple(k.strip() for k in text.split(",") if k.strip()) if text else None


def _symbols_given(args: argparse.Namespace) -> bool:
    """Whether SYMBOLS was chosen (flag, environment or config file) rather than defaulted."""
    return bool(getattr(args, "symbols", None)) or config.is_set("SYMBOLS")


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

    return run_demo(_settings(args), symbols_given=_symbols_given(args), data_dir=args.data_dir,
                    mcp_port=args.mcp_port, capture=args.capture, seed=args.seed,
                    reset=args.reset)  # fmt: skip


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ingest.simulator import SimulatorConfig, serve

    symbols = _flag_symbols(args.symbols) or config.load().symbols
    sim_config = SimulatorConfig(
        host=args.host,
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
    from core.metrics import serve_metrics
    from processors.runtime.node import run_processor

    settings = _settings(args)
    metrics_url = serve_metrics(settings.metrics_port, settings.metrics_host)
    run_until_signalled(lambda stop: run_processor(settings, stop, metrics_url=metrics_url))
    return 0


def _cmd_mcp(args: argparse.Namespace) -> int:
    from context8_mcp.config import load_config
    from context8_mcp.server import run

    # --redis-url > CONTEXT8_MCP_REDIS_URL > REDIS_URL > the config file's REDIS_URL
    settings = _settings(args)
    run(load_config(redis_url=args.redis_url, fallback_redis_url=settings.redis_url,
                    transport=args.transport, host=args.host, port=args.port))  # fmt: skip
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from context8.datadir import demo_redis_url
    from context8.status import run_status

    settings = _settings(args)
    redis_url = settings.redis_url or demo_redis_url(args.data_dir)
    if redis_url is None:
        raise config.ConfigError(
            f"REDIS_URL: status reads the fleet from Redis; give --redis-url (no demo runs on "
            f"{args.data_dir}, whose Redis it would use)"
        )
    symbols = settings.symbols if _symbols_given(args) else ()
    return run_status(redis_url, symbols, as_json=args.json, watch_s=args.watch or 0)


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return seconds


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
    if args.name == "mcp":
        from context8.bench.mcp import run_bench_mcp

        return run_bench_mcp(seconds=args.seconds or 2.0)
    if args.name == "kinds":
        from context8.bench.kinds import run_bench_kinds

        return run_bench_kinds(seconds=args.seconds or 20.0)
    if args.name == "analytics":
        from context8.bench.analytics import run_analytics_bench

        return run_analytics_bench(minutes=args.minutes)
    from context8.bench.pipeline import run_bench

    return run_bench(args.name, seconds=args.seconds or 20.0, rounds=args.rounds)


def _cmd_record(args: argparse.Namespace) -> int:
    from ingest.record import run

    return run(args)


def _cmd_replay(args: argparse.Namespace) -> int:
    from context8.replay import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="context8", description=__doc__)
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default %(default)s)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML settings file (env {config.CONFIG_ENV}); the environment overrides it",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the whole pipeline on embedded defaults")
    _common(demo)
    demo.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help="Redis data and logs; one demo per folder (default %(default)s)",
    )
    demo.add_argument(
        "--reset",
        action="store_true",
        help="start from an empty event log: delete the folder's Redis data first",
    )
    demo.add_argument(
        "--mcp-port",
        type=int,
        default=8765,
        help="port of the MCP server on 127.0.0.1 (default %(default)s)",
    )
    demo.add_argument("--capture", help="replay this capture instead of the order-flow model")
    demo.add_argument(
        "--seed", type=int, default=7, help="the order-flow model's seed (default %(default)s)"
    )
    demo.set_defaults(func=_cmd_demo)

    sim = sub.add_parser("simulate", help="the local exchange simulator (Binance Spot protocol)")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sim.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sim.add_argument("--symbols", help="comma-separated symbols (env SYMBOLS)")
    sim.add_argument(
        "--seed", type=int, default=7, help="the order-flow model's seed (default %(default)s)"
    )
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
    process.add_argument(
        "--kinds",
        help="comma-separated processor kinds to run (NT_PROCESSOR_KINDS; default: every "
        "installed kind, see docs/processors.md)",
    )
    process.set_defaults(func=_cmd_process)

    mcp = sub.add_parser("mcp", help="the read-only MCP server")
    _common(mcp)
    mcp.add_argument("--transport", choices=("stdio", "http"), help="default stdio")
    mcp.add_argument("--host", help="http: default 127.0.0.1 (env CONTEXT8_MCP_HOST)")
    mcp.add_argument("--port", type=int, help="http: default 8765 (env CONTEXT8_MCP_PORT)")
    mcp.set_defaults(func=_cmd_mcp)

    status = sub.add_parser("status", help="the fleet from Redis: nodes, owners, lag, freshness")
    status.add_argument("--symbols", help="show only these symbols (env SYMBOLS)")
    status.add_argument(
        "--redis-url", help="Redis to read (env REDIS_URL; default: the demo's on --data-dir)"
    )
    status.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help="the folder of the demo whose Redis to read (default %(default)s)",
    )
    shown = status.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print one JSON document")
    shown.add_argument("--watch", type=_positive_seconds, metavar="SECONDS",
                       help="redraw the table every SECONDS until Ctrl-C")  # fmt: skip
    status.set_defaults(func=_cmd_status)

    rec = sub.add_parser("record", help="write a capture from a venue (Binance or the simulator)")
    rec.add_argument("--out", required=True, metavar="FILE", help="the capture to write")
    rec.add_argument("--symbols", help="comma-separated symbols (env SYMBOLS)")
    rec.add_argument("--seconds", type=float, help="how long (default: until Ctrl-C)")
    rec.add_argument("--venue-url", help="the venue's REST base URL, e.g. the simulator's "
                     "(env NT_BINANCE_HTTP_URL/_WS_URL; default live Binance)")  # fmt: skip
    rec.add_argument(
        "--trades",
        choices=("trade", "aggTrade"),
        default="trade",
        help="which trade stream to record: every trade, or trades aggregated per "
        "price and taker (default %(default)s)",
    )
    rec.add_argument("--depth-limit", type=int, default=1000, help="levels per snapshot")
    rec.set_defaults(func=_cmd_record)

    rep = sub.add_parser("replay", help="re-fold a capture or a stream range offline; print/diff")
    rep.add_argument("--capture", metavar="FILE", help="replay this capture")
    rep.add_argument("--redis-url", help="Redis holding md:{SYM} (env REDIS_URL)")
    rep.add_argument("--symbol", action="append", help="the stream to replay, or a filter of "
                     "the capture's symbols (repeatable)")  # fmt: skip
    rep.add_argument("--from", dest="start", metavar="ID|TIME", help="first stream id, or "
                     "ms / ISO time")  # fmt: skip
    rep.add_argument("--to", dest="end", metavar="ID|TIME", help="last stream id, or ms / ISO "
                     "time")  # fmt: skip
    rep.add_argument("--at", action="append", default=[], metavar="TIME", help="a report as "
                     "of this event time (ISO or ms; repeatable), not the input's end")  # fmt: skip
    rep.add_argument("--json", action="store_true", help="JSON lines (the report schema)")
    rep.add_argument("--diff", metavar="OTHER", help="compare with another run: a capture, "
                     "a saved --json output, or `stream` (--symbol/--from/--to)")  # fmt: skip
    rep.set_defaults(func=_cmd_replay)

    schema = sub.add_parser("schema", help="write the report's JSON Schema")
    schema.add_argument("--check", action="store_true", help="fail if the file is stale")
    schema.set_defaults(func=_cmd_schema)

    bench = sub.add_parser("bench", help="benchmarks on the real pipeline, printing figures")
    bench.add_argument(
        "name",
        nargs="?",
        default="pipeline",
        choices=("pipeline", "failover", "mcp", "kinds", "analytics"),
        help="pipeline: events/s and report latency end to end; failover: kill -9 takeover "
        "times; mcp: tool latency; kinds: one node running several kinds; analytics: the "
        "fold and the slow cycle alone (default %(default)s; docs/benchmarks.md)",
    )
    bench.add_argument(
        "--seconds", type=float, help="pipeline, kinds: per phase (20); mcp: per measurement (2)"
    )
    bench.add_argument("--rounds", type=int, default=20, help="failover: kill -9 rounds")
    bench.add_argument(
        "--minutes", type=float, default=60.0, help="analytics: event-time minutes folded (60)"
    )
    bench.set_defaults(func=_cmd_bench)
    return parser


def _check_config_file() -> None:
    """A bad config file fails every command at start, naming the setting and the file: a
    bad value of any role or kind, or a key nothing reads."""
    from context8_mcp.config import ENV_NAMES as MCP_NAMES
    from context8_mcp.config import REDIS_URL_ENV
    from processors.runtime.kind import known_variables

    settings = config.load()
    known = {*config.NODE_SETTINGS.values(), *MCP_NAMES.values(), REDIS_URL_ENV}
    config.check_file(known | known_variables(settings, os.environ))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        if args.config:
            # through the environment, so the processes a command starts read the file too
            os.environ[config.CONFIG_ENV] = os.path.abspath(args.config)
        if os.environ.get(config.CONFIG_ENV, "").strip():
            _check_config_file()
        return args.func(args)
    except config.ConfigError as e:
        print(f"context8: bad configuration: {e}", file=sys.stderr)
        return 2
    except config.CannotStart as e:
        print(f"context8: cannot start: {e}", file=sys.stderr)
        return 1
