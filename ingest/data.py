"""Custom NautilusTrader data the gap-aware Binance client publishes beside the standard
``OrderBookDeltas``, delivered to the ingest actor on the message bus as ``CustomData``.

``DepthUpdateIds`` carries what NT's deltas drop: the venue's first update id ``U`` of each
diff message (the deltas only keep ``u`` as ``sequence``). The client publishes it right before
the diff's deltas through the same data-engine queue, so the actor receives the pair in order
and checks it (``last_update_id == deltas.sequence``).

``IngestStatus`` is a fact about the feed itself (gap, resync, disconnected), carried to the
actor in order with the book data it concerns.
"""

from __future__ import annotations

from nautilus_trader.core.data import Data
from nautilus_trader.model.data import DataType
from nautilus_trader.model.identifiers import InstrumentId

from core.events import StatusKind

__all__ = ["DepthUpdateIds", "IngestStatus", "depth_ids_type", "status_type"]


class _FeedFact(Data):
    """NT's ``Data`` wants ``ts_event``/``ts_init`` properties; the facts below share them."""

    __slots__ = ()

    _ts_event: int
    _ts_init: int

    @property
    def ts_event(self) -> int:
        return self._ts_event

    @property
    def ts_init(self) -> int:
        return self._ts_init


class DepthUpdateIds(_FeedFact):
    """The venue's update-id range of one depth diff message (Binance ``U``..``u``).

    ``has_levels`` is False for a diff that changed no level: NT cannot carry an empty
    ``OrderBookDeltas``, so no deltas follow and the actor records an empty ``BookDelta``.
    """

    __slots__ = (
        "_ts_event",
        "_ts_init",
        "first_update_id",
        "has_levels",
        "instrument_id",
        "last_update_id",
    )

    def __init__(
        self,
        instrument_id: InstrumentId,
        first_update_id: int,
        last_update_id: int,
        has_levels: bool,
        ts_event: int,
        ts_init: int,
    ) -> None:
        self.instrument_id = instrument_id
        self.first_update_id = first_update_id
        self.last_update_id = last_update_id
        self.has_levels = has_levels
        self._ts_event = ts_event
        self._ts_init = ts_init

    def __repr__(self) -> str:
        return (
            f"DepthUpdateIds({self.instrument_id}, U={self.first_update_id}, "
            f"u={self.last_update_id}, has_levels={self.has_levels})"
        )


class IngestStatus(_FeedFact):
    """A feed fact for one instrument: ``gap`` (expected/received update ids), ``resync``
    (a fresh snapshot was just published; received = its lastUpdateId), ``disconnected``."""

    __slots__ = (
        "_ts_event",
        "_ts_init",
        "detail",
        "expected_update_id",
        "instrument_id",
        "received_update_id",
        "status",
    )

    def __init__(
        self,
        instrument_id: InstrumentId,
        status: StatusKind,
        ts_event: int,
        ts_init: int,
        detail: str = "",
        expected_update_id: int | None = None,
        received_update_id: int | None = None,
    ) -> None:
        self.instrument_id = instrument_id
        self.status = status
        self.detail = detail
        self.expected_update_id = expected_update_id
        self.received_update_id = received_update_id
        self._ts_event = ts_event
        self._ts_init = ts_init

    def __repr__(self) -> str:
        return (
            f"IngestStatus({self.instrument_id}, {self.status}, {self.detail!r}, "
            f"expected={self.expected_update_id}, received={self.received_update_id})"
        )


def depth_ids_type(instrument_id: InstrumentId) -> DataType:
    return DataType(DepthUpdateIds, metadata={"instrument_id": instrument_id})


def status_type(instrument_id: InstrumentId) -> DataType:
    return DataType(IngestStatus, metadata={"instrument_id": instrument_id})
