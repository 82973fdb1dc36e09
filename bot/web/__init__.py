"""The read-only web surface: a page, a JSON API and Prometheus ``/metrics`` (docs/web.md)."""

from bot.web.server import WebServer

__all__ = ["WebServer"]
