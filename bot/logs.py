"""Logging setup: readable text for the console, JSON lines for the container."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from config import LogSettings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: LogSettings, *, console: bool, log_dir: Path | None) -> None:
    """Console mode keeps the terminal for the trader: warnings to stderr, the rest to a file
    in the data dir. Otherwise everything goes to stdout (JSON unless LOG_FORMAT=text)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(settings.level)
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if console:
        err = logging.StreamHandler(sys.stderr)
        err.setLevel(logging.WARNING)
        err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(err)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            file = logging.FileHandler(log_dir / "trader.log", encoding="utf-8")
            file.setFormatter(text)
            root.addHandler(file)
        return
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(JsonFormatter() if settings.format != "text" else text)
    root.addHandler(out)
