"""The processor framework: the kind API (``kind``) and the runtime that runs kinds (``node``:
membership and assignment; ``tenure``: one symbol held under its fenced lease: group,
catch-up, fold, publish, hand-off). It knows no kind: analytics and candles plug in through
the same entry points as a kind of another package (docs/processors.md)."""
