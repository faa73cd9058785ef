"""The applications: the ``context8`` command line (``cli``), the demo, ``status``,
``replay``, the benchmarks (``bench``), and the helpers that run the roles as real processes
on loopback with a private Redis (``procs``, ``redis_server``), which the demo, the
benchmarks and the tests share. Everything below (core, ingest, coordination, processors,
projections, the MCP server) is imported from here, never the other way round."""
