"""Alpaca order id -> our client order id: FILL activities name only the former."""

from __future__ import annotations

from collections.abc import Iterable

from engine.broker.port import BrokerOrder

KNOWN_IDS = 20_000


class OrderIds:
    """A bounded memory of every order the adapter has seen (oldest forgotten first)."""

    def __init__(self, limit: int = KNOWN_IDS) -> None:
        self._ids: dict[str, str] = {}
        self._limit = limit

    def remember(self, record: BrokerOrder) -> BrokerOrder:
        ids = self._ids
        ids[record.broker_order_id] = record.client_order_id
        if len(ids) > self._limit:
            del ids[next(iter(ids))]
        return record

    def client_id(self, broker_order_id: str) -> str | None:
        return self._ids.get(broker_order_id)

    def unknown(self, broker_order_ids: Iterable[str]) -> set[str]:
        return {i for i in broker_order_ids if i and i not in self._ids}
