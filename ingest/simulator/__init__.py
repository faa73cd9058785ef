"""The local exchange simulator: Binance Spot's public REST + websocket protocol on loopback,
over an order-flow model or a replayed capture (see server.py for endpoints and faults)."""

from ingest.simulator.server import SimulatorConfig, serve

__all__ = ["SimulatorConfig", "serve"]
