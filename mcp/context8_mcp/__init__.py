"""context8's read-only MCP server (import name ``context8_mcp``; ``mcp`` is the SDK).

Entry points live in ``context8_mcp.server`` (``run``, ``serve``, ``create_server``,
``create_http_app``); this package imports nothing on its own, so importing one of its small
modules does not load the SDK's server.

Modules, one job each: ``config`` (settings), ``errors`` (codes), ``models`` (tool inputs,
outputs and their schemas), ``freshness`` (read-time data age and status), ``store`` (Redis
reads), ``summary`` (text), ``tools`` (the MCP tools), ``resources`` (the report resource),
``http`` (plain JSON routes, OpenAPI), ``guard`` (rate limit, bearer token), ``lifespan`` (the
Redis pool's life), ``server`` (wiring and transports). docs/mcp.md is the user's guide.
"""
