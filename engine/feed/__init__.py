"""Market data: the feed contract, CSV bar loading and the replay feed."""

from engine.feed.base import FeedHealth, MarketDataFeed, MarketDataSink
from engine.feed.csv_bars import BarDataError, load_bars_csv
from engine.feed.replay import SAMPLE_BARS_PATH, ReplayFeed

__all__ = [
    "SAMPLE_BARS_PATH",
    "BarDataError",
    "FeedHealth",
    "MarketDataFeed",
    "MarketDataSink",
    "ReplayFeed",
    "load_bars_csv",
]
