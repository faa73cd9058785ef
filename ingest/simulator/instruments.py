"""Symbol specifications and the `exchangeInfo` document built from them.

Known symbols carry Binance's real filters (tick size, step size, minimum notional, as the
venue writes them: eight decimals) and late-2026-ish prices; any other symbol gets a plausible
spec derived from a hash of its name, so a run with any list of symbols is reproducible.

Amounts are kept as integers in units of 1e-8 (Binance Spot never quotes finer), so the order
book works on exact integer ticks and lots and formats back to Binance's strings without floats.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Final

import msgspec

__all__ = [
    "E8",
    "SymbolSpec",
    "exchange_info",
    "fmt_e8",
    "spec_for",
    "symbol_info",
    "to_e8",
    "trade_fees",
]

E8: Final = 100_000_000


class SymbolSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: str
    base: str
    quote: str
    price: str
    """Anchor price the model starts at and mean-reverts to, in quote units."""
    tick_size: str
    step_size: str
    min_notional: str
    max_qty: str
    activity: float
    """Order-flow intensity relative to an average symbol (BTCUSDT is the busiest)."""
    order_notional: float
    """Median resting-order size in quote units."""
    daily_vol: float
    """Standard deviation of the daily log return of the model's fair value."""

    @property
    def tick_e8(self) -> int:
        return to_e8(self.tick_size)

    @property
    def step_e8(self) -> int:
        return to_e8(self.step_size)


def to_e8(value: str) -> int:
    """A decimal string with at most 8 decimals as an integer count of 1e-8."""
    whole, _, frac = value.strip().partition(".")
    frac = frac.rstrip("0")
    if len(frac) > 8:
        raise ValueError(f"{value!r} has more than 8 decimals")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole or "0")) * E8 + int(frac.ljust(8, "0")))


def fmt_e8(value: int) -> str:
    """Binance's eight-decimal form of an amount in units of 1e-8."""
    if value < 0:
        return "-" + fmt_e8(-value)
    return f"{value // E8}.{value % E8:08d}"


_FIELDS: Final = ("symbol", "base", "quote", "price", "tick_size", "step_size", "min_notional",
                  "max_qty", "activity", "order_notional", "daily_vol")  # fmt: skip

# Filters as Binance Spot publishes them; prices are a plausible late-2026 snapshot.
# fmt: off
_TABLE: Final = (
    ("BTCUSDT", "BTC", "USDT", "95000.00", "0.01000000", "0.00001000", "5.00000000",
     "9000.00000000", 2.0, 4000.0, 0.025),
    ("ETHUSDT", "ETH", "USDT", "3500.00", "0.01000000", "0.00010000", "5.00000000",
     "9000.00000000", 1.6, 2500.0, 0.035),
    ("SOLUSDT", "SOL", "USDT", "200.00", "0.01000000", "0.00100000", "5.00000000",
     "9000.00000000", 1.3, 1500.0, 0.05),
    ("DOGEUSDT", "DOGE", "USDT", "0.35000", "0.00001000", "1.00000000", "1.00000000",
     "9000000.00000000", 1.1, 800.0, 0.055),
    ("BNBUSDT", "BNB", "USDT", "700.00", "0.01000000", "0.00100000", "5.00000000",
     "9000.00000000", 1.0, 1200.0, 0.03),
    ("XRPUSDT", "XRP", "USDT", "2.4000", "0.00010000", "0.10000000", "5.00000000",
     "9222449.00000000", 1.2, 1000.0, 0.05),
    ("ADAUSDT", "ADA", "USDT", "0.8500", "0.00010000", "0.10000000", "5.00000000",
     "9000000.00000000", 0.9, 600.0, 0.05),
    ("LTCUSDT", "LTC", "USDT", "110.00", "0.01000000", "0.00100000", "5.00000000",
     "9000.00000000", 0.7, 500.0, 0.045),
    ("LINKUSDT", "LINK", "USDT", "22.00", "0.01000000", "0.01000000", "5.00000000",
     "90000.00000000", 0.7, 500.0, 0.05),
    ("AVAXUSDT", "AVAX", "USDT", "35.00", "0.01000000", "0.01000000", "5.00000000",
     "90000.00000000", 0.7, 500.0, 0.055),
    ("DOTUSDT", "DOT", "USDT", "6.000", "0.00100000", "0.01000000", "5.00000000",
     "90000.00000000", 0.6, 400.0, 0.05),
    ("TRXUSDT", "TRX", "USDT", "0.3000", "0.00010000", "0.10000000", "1.00000000",
     "9000000.00000000", 0.6, 400.0, 0.03),
    ("PEPEUSDT", "PEPE", "USDT", "0.00001200", "0.00000001", "1.00000000", "1.00000000",
     "9000000000.00000000", 1.0, 700.0, 0.07),
    ("ETHBTC", "ETH", "BTC", "0.036840", "0.00001000", "0.00010000", "0.00010000",
     "100000.00000000", 0.6, 0.02, 0.025),
)
# fmt: on
_KNOWN: Final = {row[0]: SymbolSpec(**dict(zip(_FIELDS, row, strict=True))) for row in _TABLE}

# Longest first, so FDUSD wins over USD-like tails and USDT over its 3-letter prefix.
_QUOTES: Final = (
    "FDUSD",
    "USDT",
    "USDC",
    "TUSD",
    "BUSD",
    "BTC",
    "ETH",
    "BNB",
    "EUR",
    "TRY",
    "BRL",
    "JPY",
)
_QUOTE_USD: Final = {
    "BTC": 95000.0,
    "ETH": 3500.0,
    "BNB": 700.0,
    "EUR": 1.08,
    "TRY": 0.029,
    "BRL": 0.18,
    "JPY": 0.0067,
}


def _split(symbol: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return (symbol[:-3], symbol[-3:]) if len(symbol) > 3 else (symbol, "USDT")


def _derived(symbol: str) -> SymbolSpec:
    h = int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "big")
    u1, u2, u3 = (((h >> s) & 0xFFFF) / 0xFFFF for s in (0, 16, 32))
    base, quote = _split(symbol)
    quote_usd = _QUOTE_USD.get(quote, 1.0)
    price_usd = 10 ** (-3 + 6 * u1)  # 0.001 .. 1000 USD: the bulk of listed tokens
    price = price_usd / quote_usd
    # Binance's rules of thumb: a tick of ~1e-5..1e-4 of the price, a lot of ~0.1..1 USD.
    tick_exp = max(-8, min(0, math.floor(math.log10(price)) - 4))
    step_exp = max(-8, min(0, math.floor(-math.log10(price_usd))))
    tick = 10**tick_exp
    price_ticks = max(100, round(price / tick))
    return SymbolSpec(
        symbol=symbol,
        base=base,
        quote=quote,
        price=fmt_e8(price_ticks * to_e8(f"{tick:.8f}")),
        tick_size=f"{tick:.8f}",
        step_size=f"{10**step_exp:.8f}",
        min_notional=fmt_e8(round(5 / quote_usd * E8)),
        max_qty="9000000.00000000",
        activity=0.4 + 0.8 * u2,
        order_notional=(200 + 1000 * u3) / quote_usd,
        daily_vol=0.03 + 0.04 * u1 * u2,
    )


def spec_for(symbol: str) -> SymbolSpec:
    """The spec of a symbol: Binance's real filters when known, else derived from the name."""
    symbol = symbol.upper()
    return _KNOWN.get(symbol) or _derived(symbol)


_ORDER_TYPES: Final = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]


def symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    """One `symbols[]` entry of exchangeInfo, in the field set Binance Spot serves today."""
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": list(_ORDER_TYPES),
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": spec.quote in ("USDT", "BTC"),
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": spec.tick_size,
                "maxPrice": fmt_e8(to_e8(spec.price) * 1000),
                "tickSize": spec.tick_size,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": spec.step_size,
                "maxQty": spec.max_qty,
                "stepSize": spec.step_size,
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": spec.max_qty,
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            # NOTIONAL replaced MIN_NOTIONAL on Binance Spot in 2023; NT reads both.
            {
                "filterType": "NOTIONAL",
                "minNotional": spec.min_notional,
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


_RATE_LIMITS: Final = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def exchange_info(symbols: list[dict[str, Any]], server_time_ms: int) -> dict[str, Any]:
    """The top level of `GET /api/v3/exchangeInfo` around ready-made `symbols[]` entries."""
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": _RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": symbols,
    }


def trade_fees(symbols: list[str]) -> list[dict[str, str]]:
    """`GET /sapi/v1/asset/tradeFee`: the default VIP 0 tier for every symbol."""
    return [{"symbol": s, "makerCommission": "0.001", "takerCommission": "0.001"} for s in symbols]
