"""The candles kind: OHLCV bars at 1 s, 1 min and 5 min (``kind``)."""
