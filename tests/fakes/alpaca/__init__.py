"""A local Alpaca: REST v2, historical bars, trade-updates and market-data streams, on
loopback, backed by the simulator. See docs/fake-alpaca.md."""

from tests.fakes.alpaca.knobs import Knobs
from tests.fakes.alpaca.server import FakeAlpaca
from tests.fakes.alpaca.venue import AlwaysOpenCalendar, build_exchange

__all__ = ["AlwaysOpenCalendar", "FakeAlpaca", "Knobs", "build_exchange"]
