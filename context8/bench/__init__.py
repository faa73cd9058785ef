"""``context8 bench``: benchmarks on the real pipeline that print figures (docs/benchmarks.md)."""
