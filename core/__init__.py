"""The foundations every other package stands on: the event log's schema (``events``), key
names (``keys``), settings (``settings``), the Redis client (``redis_client``), the Lua
scripts (``lua``), logs (``logs``) and metrics (``metrics``). Nothing here imports a package
above it (ingest, coordination, processors, projections, the MCP server, the applications)."""
