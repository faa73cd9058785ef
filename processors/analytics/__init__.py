"""The analytics kind: the exact order book and the report (spread, micro-price, depth, flow,
walls, vacuums, volume profile, anomalies, health). ``kind`` declares it to the runtime;
the other modules are its fold, figures, slow cycle, projection and checkpoint."""
