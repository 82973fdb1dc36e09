"""Logging: JSON lines to stdout for the container, readable text in console mode, and never a
secret. The Discord token and Alpaca keys are scrubbed from every line, exception text and
tracebacks included, whoever logged them."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from config import LogSettings, Settings

REDACTED = "[REDACTED]"
# Context a caller can attach with ``log.info(..., extra={"symbol": ..., "order_id": ...})``.
CONTEXT_FIELDS = ("symbol", "order_id", "client_order_id", "actor", "command")


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.discord.token, settings.alpaca.api_key, settings.alpaca.secret_key]
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


class Scrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, scrub: Scrubber, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, component (the logger), message, context."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "component": record.name,
            "msg": self._scrub(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = self._scrub(str(value))
        if record.exc_info:
            entry["exc"] = self._scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class _LogFile(logging.FileHandler):
    """The console's ``trader.log``. A line it cannot write (a full disk, an I/O error) is
    dropped with one line on stderr for the whole outage, not logging's traceback for every
    line (the chaos suite's full-disk run printed 27); the first line written again says how
    many were dropped."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        dropped = self.dropped
        super().emit(record)  # calls handleError on a failure
        if dropped and self.dropped == dropped:
            self.dropped = 0
            sys.stderr.write(f"{self.baseFilename} written again; {dropped} log lines dropped\n")

    def handleError(self, record: logging.LogRecord) -> None:
        if self.dropped == 0:
            failure = sys.exc_info()[1]
            sys.stderr.write(
                f"{self.baseFilename} cannot be written ({failure}): log lines are dropped "
                "until it can\n"
            )
        self.dropped += 1


def configure_logging(
    settings: LogSettings,
    *,
    console: bool,
    log_dir: Path | None,
    secrets: Iterable[str] = (),
) -> None:
    """Console mode keeps the terminal for the trader: warnings to stderr, everything to a file
    in the data dir. Otherwise everything goes to stdout, JSON lines unless LOG_FORMAT=text."""
    scrub = Scrubber(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(settings.level)
    text_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    use_json = settings.format == "json" or (settings.format == "auto" and not console)
    if console:
        err = logging.StreamHandler(sys.stderr)
        err.setLevel(logging.WARNING)
        err.setFormatter(_ScrubbingFormatter(scrub, "%(levelname)s %(name)s: %(message)s"))
        root.addHandler(err)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            file = _LogFile(log_dir / "trader.log")
            file.setFormatter(
                JsonFormatter(scrub) if use_json else _ScrubbingFormatter(scrub, text_format)
            )
            root.addHandler(file)
    else:
        out = logging.StreamHandler(sys.stdout)
        out.setFormatter(
            JsonFormatter(scrub) if use_json else _ScrubbingFormatter(scrub, text_format)
        )
        root.addHandler(out)
    # discord.py logs every gateway event at DEBUG/INFO; keep our own lines readable.
    logging.getLogger("discord").setLevel(max(logging.INFO, root.level))
    logging.getLogger("websockets").setLevel(logging.WARNING)
