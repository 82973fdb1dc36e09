"""Generate the bundled replay data set: engine/feed/data/sample_bars.csv.

Minute bars for AAPL, MSFT and SPY over two regular sessions (Thu 2026-11-19 and Fri
2026-11-20, 09:30-15:59 New York), timestamps in UTC. Prices alternate between trending and
ranging stretches so a 10/30 SMA golden cross fires a few times per symbol per day, in both
directions.

The output is byte-for-byte reproducible: a seeded ``random.Random`` per symbol and integer
cent arithmetic only (no floating-point library functions whose last bit could differ between
platforms). Usage: ``python scripts/make_sample_data.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
SESSIONS = (date(2026, 11, 19), date(2026, 11, 20))
BARS_PER_SESSION = 390
DEFAULT_OUT = (
    Path(__file__).resolve().parent.parent / "engine" / "feed" / "data" / "sample_bars.csv"
)
HEADER = "timestamp,symbol,open,high,low,close,volume"


@dataclass(frozen=True)
class Profile:
    symbol: str
    start_cents: int
    noise_cents: int
    """Largest random move per minute, either way."""
    drift_cents: tuple[int, int]
    """Range of the per-minute drift in a trending stretch."""
    avg_volume: int
    """Average shares per minute over a session."""


PROFILES = (
    Profile("AAPL", 23_015, 10, (3, 6), 120_000),
    Profile("MSFT", 42_040, 20, (7, 13), 50_000),
    Profile("SPY", 59_060, 14, (5, 9), 150_000),
)


@dataclass(frozen=True)
class Row:
    ts: datetime
    symbol: str
    open: int
    high: int
    low: int
    close: int
    volume: int


def session_minutes(day: date) -> list[datetime]:
    start = datetime.combine(day, time(9, 30), tzinfo=NEW_YORK).astimezone(UTC)
    return [start + timedelta(minutes=m) for m in range(BARS_PER_SESSION)]


def _regimes(rng: random.Random, profile: Profile) -> list[int]:
    """Per-minute drift for one session: trending stretches (+/- drift) between ranging
    ones (0 drift, pulled back towards where the range started)."""
    drifts: list[int] = []
    direction = rng.choice((1, -1))
    trending = rng.random() < 0.5
    while len(drifts) < BARS_PER_SESSION:
        if trending:
            drift = direction * rng.randint(*profile.drift_cents)
            drifts.extend([drift] * rng.randint(35, 65))
            # Mostly alternate so the day holds crosses both ways.
            if rng.random() < 0.75:
                direction = -direction
        else:
            drifts.extend([0] * rng.randint(20, 45))
        trending = not trending
    return drifts[:BARS_PER_SESSION]


def _symbol_rows(profile: Profile) -> list[Row]:
    rng = random.Random(f"sample-bars/{profile.symbol}")
    noise = profile.noise_cents
    wick = max(1, noise // 2)
    price = profile.start_cents
    rows: list[Row] = []
    for day in SESSIONS:
        price += rng.randint(-3 * noise, 3 * noise)  # overnight gap
        drifts = _regimes(rng, profile)
        anchor = price
        for minute, (ts, drift) in enumerate(zip(session_minutes(day), drifts, strict=True)):
            if drift == 0:
                pull = (anchor - price) // 6
            else:
                pull = 0
                anchor = price
            open_ = price
            close = max(100, open_ + drift + pull + rng.randint(-noise, noise))
            high = max(open_, close) + rng.randint(0, wick)
            low = max(1, min(open_, close) - rng.randint(0, wick))
            # Intraday U-shape: busy open and close, quiet lunch.
            centre = (minute - 195) / 195
            shape = 0.55 + 1.35 * centre * centre
            volume = int(profile.avg_volume * shape * (0.7 + 0.6 * rng.random()))
            rows.append(Row(ts, profile.symbol, open_, high, low, close, volume))
            price = close
    return rows


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def render() -> str:
    rows = [row for profile in PROFILES for row in _symbol_rows(profile)]
    rows.sort(key=lambda row: (row.ts, row.symbol))
    lines = [HEADER]
    for row in rows:
        stamp = row.ts.strftime("%Y-%m-%dT%H:%M:%SZ")
        prices = ",".join(_cents(v) for v in (row.open, row.high, row.low, row.close))
        lines.append(f"{stamp},{row.symbol},{prices},{row.volume}")
    return "\n".join(lines) + "\n"


def write(path: Path) -> None:
    """Write the data set to ``path`` (UTF-8, ``\\n`` line endings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render().encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the CSV")
    args = parser.parse_args(argv)
    write(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
