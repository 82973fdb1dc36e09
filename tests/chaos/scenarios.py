"""The scenarios: each drives real processes through one kind of fault and returns one row."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import statistics
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.chaos.procs import ChaosError, Engine, Fake, engine_env
from tests.chaos.views import Tally, broker_view, compare, journal_view

SESSION_MINUTES = 390


@dataclass
class Result:
    scenario: str
    runs: int
    tally: Tally = field(default_factory=Tally)
    timing: str = ""
    checks: list[str] = field(default_factory=list)
    """What failed, one line each; empty: passed."""
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.tally.clean and not self.tally.position_diffs and not self.checks

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.checks.append(what)


def speed_for(seconds: float) -> float:
    """A replay speed that makes the fake's trading day last about ``seconds``."""
    return max(60.0, min(1200.0, SESSION_MINUTES * 60 / max(seconds, 1.0)))


async def settle(fake: Fake, data_dir: Path, within: float = 15.0) -> None:
    """Until nothing moves: no open order at the broker, every broker fill journaled, and the
    journal unchanged for half a second."""
    deadline = time.monotonic() + within
    last = -1
    while time.monotonic() < deadline:
        broker = await broker_view(fake)
        journal = journal_view(data_dir)
        if not broker.open_orders and set(broker.fills) <= set(journal.fills):
            if journal.fill_rows == last:
                return
            last = journal.fill_rows
        await asyncio.sleep(0.5)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


# ---- 1. random SIGKILLs while it trades ------------------------------------------------------


async def random_kills(n: int, rng: random.Random, work: Path) -> Result:
    result = Result("SIGKILL while trading", n)
    fake = await Fake.start(speed=speed_for(n * 4.5 + 15))
    data = work / "kills"
    env = engine_env(fake)
    ready: list[float] = []
    try:
        for _ in range(n):
            engine = await _restart_checked(fake, data, env, result, ready)
            await asyncio.sleep(rng.uniform(0.2, 3.0))
            await engine.kill()
            result.check(engine.tracebacks() == 0, "a traceback before the kill")
        engine = await _restart_checked(fake, data, env, result, ready)
        await engine.ask("!halt keep chaos check", lambda s: "HALTED by console" in s)
        await settle(fake, data)
        broker, journal = await broker_view(fake), journal_view(data)
        result.tally.add(compare(journal, broker))
        code = await engine.quit()
        result.check(code == 0, f"exit code {code} after !quit")
        result.check(engine.tracebacks() == 0, "a traceback in the last run")
        result.check(len(broker.fills) > 0, "no fill at all: the strategy never traded")
        result.detail = (
            f"{len(broker.orders)} orders, {len(broker.fills)} fills at the broker; "
            f"restart to ready median {ms(statistics.median(ready))}"
        )
        result.timing = f"ready {ms(statistics.median(ready))} (max {ms(max(ready))})"
    finally:
        await fake.stop()
    return result


async def _restart_checked(
    fake: Fake,
    data: Path,
    env: dict[str, str],
    result: Result,
    ready: list[float],
    *,
    reducing_ok: bool = False,
    logs: Path | None = None,
) -> Engine:
    """Start the engine on ``data``; once ready its journal holds every execution the broker
    made while it was down (its start-up recovery), and nothing the broker did not make."""
    due = set((await broker_view(fake)).fills)
    engine = await Engine.start(data, env, logs=logs)
    ready.append(engine.ready_s)
    journal, broker = journal_view(data), await broker_view(fake)
    result.tally.add(compare(journal, broker, due=due, cash=False))
    if not reducing_ok:  # a flatten a kill interrupted is still REDUCING until finished
        result.check(journal.state != "REDUCING", "came up REDUCING")
    return engine


def money(value: Decimal) -> str:
    return f"${value:,.2f}"


# ---- 2. SIGKILL during a flatten ------------------------------------------------------------

HAND_SYMBOLS = ("AAPL", "MSFT", "SPY")


async def hold_by_hand(fake: Fake, qty: int = 5) -> None:
    """Positions bought at the broker by hand while the engine is down (its start-up
    reconcile adopts them), so every flatten has something to close."""
    for symbol in HAND_SYMBOLS:
        await fake.post(
            "/v2/orders",
            {
                "symbol": symbol,
                "qty": str(qty),
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
            },
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        broker = await broker_view(fake)
        if not broker.open_orders and all(broker.positions.get(s) for s in HAND_SYMBOLS):
            return
        await asyncio.sleep(0.1)
    raise ChaosError("the hand orders did not fill")


async def flatten_kills(n: int, rng: random.Random, work: Path) -> Result:
    result = Result("SIGKILL during !flatten", n)
    # 50 ms a request: the flatten's three calls take long enough to be hit.
    fake = await Fake.start(speed=speed_for(n * 6 + 20), args=("--latency-ms", "50"))
    data = work / "flatten"
    env = engine_env(fake)
    ready: list[float] = []
    recovered: list[float] = []
    interrupted = done = 0
    try:
        for _ in range(n):
            await hold_by_hand(fake)
            engine = await _restart_checked(fake, data, env, result, ready)
            await engine.send("!flatten")
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            await engine.kill()
            was = journal_view(data).state
            if was != "REDUCING":
                done += 0 if (await broker_view(fake)).positions else 1
            engine = await _restart_checked(fake, data, env, result, ready, reducing_ok=True)
            if was == "REDUCING":
                interrupted += 1
                recovered.append(await _reducing_lifted(data, engine))
                # The alert comes through the alert router (held up to its 1 s window).
                _, line = await engine.out.wait_for(
                    lambda s: "Interrupted flatten finished" in s, within=30
                )
                result.check("finished: flat" in line, f"recovery said: {line}")
            state = await engine.state()
            result.check(state != "REDUCING", "still REDUCING after the restart")
            await engine.kill()
            result.check(engine.tracebacks() == 0, "a traceback")
        result.check(interrupted > 0, "no kill landed inside a flatten")
        result.detail = (
            f"{interrupted} of {n} kills landed inside the flatten (REDUCING persisted), "
            f"{done} after it was flat, {n - interrupted - done} before it began; each "
            "interrupted one was finished flat by the next start, ACTIVE restored, and said so"
        )
        if recovered:
            result.timing = (
                f"ready to flat {ms(statistics.median(recovered))} (max {ms(max(recovered))})"
            )
        engine = await _restart_checked(fake, data, env, result, ready)
        await engine.ask("!halt keep chaos check", lambda s: "HALTED by console" in s)
        await settle(fake, data)
        result.tally.add(compare(journal_view(data), await broker_view(fake)))
        result.check(await engine.quit() == 0, "exit code after !quit")
    finally:
        await fake.stop()
    return result


async def _reducing_lifted(data: Path, engine: Engine, within: float = 30) -> float:
    """Seconds from the engine's ready line until its journal no longer says REDUCING (the
    interrupted flatten confirmed flat and the state before it restored)."""
    ready_at = engine.started + engine.ready_s
    deadline = time.monotonic() + within
    while journal_view(data).state == "REDUCING":
        if time.monotonic() > deadline:
            raise ChaosError(f"still REDUCING {within:g} s after the restart")
        await asyncio.sleep(0.02)
    return time.monotonic() - ready_at


# ---- 3. poisoned trade updates --------------------------------------------------------------


def _poison(order: dict[str, object], now: str) -> list[tuple[str, str]]:
    """(what, frame): fills no book can take, and a frame that cannot be read. Each fill
    moves the order's cumulative filled quantity to a value not seen before, so its
    execution id (order id and cumulative qty) is new and it cannot pass as a repeat of a
    fill already journaled."""
    filled = Decimal(str(order["filled_qty"]))

    def fill(tag: str, cum: Decimal, *, qty: str = "1", price: str = "100", **over: str) -> str:
        # The order grows with it, so the only flaw is the one named.
        size = max(Decimal(str(order["qty"])), cum)
        snapshot = {**order, **over, "filled_qty": str(cum), "qty": str(size)}
        data = {
            "event": "fill",
            "execution_id": f"chaos-{tag}",
            "order": snapshot,
            "price": price,
            "qty": qty,
            "position_qty": str(cum),
            "timestamp": now,
        }
        return json.dumps({"stream": "trade_updates", "data": data})

    return [
        ("negative qty", fill("neg", filled + 1, qty="-5")),
        ("zero price", fill("zero", filled + 2, price="0")),
        ("symbol never traded", fill("sym", filled + 3, symbol="ZZZZ")),
        ("unknown order", fill("ghost", filled, id="chaos-ghost-order", client_order_id="ghost")),
        ("cumulative qty backwards", fill("back", filled / 2)),
        ("damaged frame", '{"stream": "trade_updates", "data": {"event": "fill", "ord'),
    ]


async def poisoned_updates(rng: random.Random, work: Path) -> Result:
    fake = await Fake.start(speed=speed_for(60))
    data = work / "poison"
    env = engine_env(fake)
    ready: list[float] = []
    result = Result("poisoned trade updates", 6)
    try:
        await hold_by_hand(fake)
        engine = await _restart_checked(fake, data, env, result, ready)
        order = next(o for o in (await broker_view(fake)).orders if o.get("status") == "filled")
        now = str(order["filled_at"])
        poison = _poison(order, now)
        rng.shuffle(poison)
        result.runs = len(poison)
        alerted: list[float] = []
        for what, frame in poison:
            mark = len(engine.out.items)
            sent = time.monotonic()
            answer = await fake.post("/_chaos/trade_frame", {"frame": frame})
            result.check(answer.get("sent_to", 0) >= 1, f"{what}: no stream listening")
            try:
                await engine.out.wait_for(lambda s: "quarantined" in s, start=mark, within=15)
                alerted.append(time.monotonic() - sent)
            except ChaosError:
                result.check(False, f"{what}: no quarantine alert")
        state = await engine.state()
        result.check(state == "ACTIVE", f"{state} after the poison")
        deadline = time.monotonic() + 10
        while journal_view(data).quarantined < len(poison) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        journal = journal_view(data)
        result.check(journal.quarantined == len(poison), f"{journal.quarantined} rows quarantined")
        result.check(
            not any(k.startswith("chaos-") for k in journal.fills), "a poisoned fill journaled"
        )
        code = await engine.quit()
        result.check(code == 0, f"exit code {code}")
        result.check(engine.tracebacks() == 0, "a traceback")
        engine = await _restart_checked(fake, data, env, result, ready)
        await engine.ask("!halt keep chaos check", lambda s: "HALTED by console" in s)
        await settle(fake, data)
        result.tally.add(compare(journal_view(data), await broker_view(fake)))
        code = await engine.quit()
        result.check(code == 0 and engine.tracebacks() == 0, "the restart was not clean")
        if alerted:
            result.timing = (
                f"frame to alert {ms(statistics.median(alerted))} (max {ms(max(alerted))})"
            )
        result.detail = (
            f"{len(alerted)} of {len(poison)} refused with a critical alert and quarantined; "
            "engine stayed ACTIVE; restart clean"
        )
    finally:
        await fake.stop()
    return result


# ---- 4. full disk ---------------------------------------------------------------------------


async def _run(*cmd: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace").strip()


def _fill_disk(path: Path) -> int:
    """Write ``path`` until the file system is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                written += f.write(chunk)
        except OSError:
            pass
        # What is left is smaller than a chunk: take it too.
        try:
            while True:
                written += f.write(b"\0" * 512)
        except OSError:
            pass
    return written


def _strategy_buys(orders: list[dict[str, object]]) -> int:
    """Orders of the (long-only) strategy that add risk; its sells only reduce."""
    return sum(
        1
        for o in orders
        if o.get("side") == "buy"
        and o.get("client_order_id")
        and not str(o["client_order_id"]).startswith("flatten")
    )


class _Tmpfs:
    """A full disk for real: the data dir on a small tmpfs, filled by a file."""

    name = "disk full (16 MB tmpfs)"

    def __init__(self, root: Path, size_mb: int = 16) -> None:
        self.root = root
        self.size_mb = size_mb
        self._filler = root / "filler"

    async def setup(self) -> str | None:
        """None when mounted, else why not."""
        self.root.mkdir(parents=True, exist_ok=True)
        opts = f"size={self.size_mb}m"
        code, why = await _run("mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(self.root))
        return None if code == 0 else why or f"mount exited {code}"

    async def fill(self, engine: Engine) -> None:
        await asyncio.to_thread(_fill_disk, self._filler)

    async def free(self, engine: Engine) -> None:
        self._filler.unlink()

    async def teardown(self) -> None:
        await _run("umount", "-l", str(self.root))


class _FileSizeLimit:
    """Where tmpfs cannot be mounted: an injected write failure in the engine's own process.
    Its RLIMIT_FSIZE is set to 1 byte from outside (``prlimit``), so every write that would
    extend a file past it fails (EFBIG; Python ignores SIGXFSZ), its journal's included, as
    on a full disk; the old limit back is the space back."""

    name = "write failure (RLIMIT_FSIZE 1 byte)"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._old: tuple[int, int] | None = None

    async def setup(self) -> str | None:
        self.root.mkdir(parents=True, exist_ok=True)
        return None

    async def fill(self, engine: Engine) -> None:
        import resource

        pid = engine.proc.pid
        self._old = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, self._old[1]))

    async def free(self, engine: Engine) -> None:
        import resource

        if self._old is not None:
            resource.prlimit(engine.proc.pid, resource.RLIMIT_FSIZE, self._old)

    async def teardown(self) -> None:
        return None


async def full_disk(rng: random.Random, work: Path, how: str = "auto") -> Result:
    """``how``: ``tmpfs``, ``fsize`` (an injected write failure) or ``auto`` (tmpfs where it
    can be mounted)."""
    disk: _Tmpfs | _FileSizeLimit = (
        _FileSizeLimit(work / "fsize") if how == "fsize" else _Tmpfs(work / "disk")
    )
    why = await disk.setup()
    if why is not None and how == "auto":
        print(f"    tmpfs refused here ({why}): an injected write failure instead", flush=True)
        disk = _FileSizeLimit(work / "fsize")
        why = await disk.setup()
    result = Result(disk.name, 1)
    if why is not None:
        result.check(False, f"tmpfs refused here ({why}): not run")
        return result
    fake = await Fake.start(speed=speed_for(90))
    data = disk.root / "data"
    ready: list[float] = []
    try:
        await hold_by_hand(fake)
        # SPY is held by hand and not traded by the strategy: there is always a position to
        # flatten with the disk full.
        env = engine_env(fake, STRATEGY_SYMBOLS="AAPL,MSFT")
        engine = await _restart_checked(fake, data, env, result, ready, logs=work)
        await asyncio.sleep(rng.uniform(1.0, 3.0))  # it trades
        mark = len(engine.out.items)
        full_at = time.monotonic()
        await disk.fill(engine)
        _, line = await engine.out.wait_for(
            lambda s: "journal cannot be written" in s, start=mark, within=60
        )
        to_reducing = time.monotonic() - full_at
        state = await engine.state()
        result.check(state == "REDUCING", f"{state} with the disk full")
        before = _strategy_buys((await broker_view(fake)).orders)
        await asyncio.sleep(3.0)
        after = _strategy_buys((await broker_view(fake)).orders)
        result.check(after == before, f"{after - before} new buy orders with the disk full")

        began = time.monotonic()
        flat = await engine.ask(
            "!flatten", lambda s: "Flat in" in s or "Not flat" in s or "Nothing to flatten" in s
        )
        flatten_s = time.monotonic() - began
        result.check(flat.startswith("✅ Flat in"), f"!flatten with the disk full: {flat}")
        positions = (await broker_view(fake)).positions
        result.check(not positions, f"not flat at the broker: {positions}")
        began = time.monotonic()
        await engine.ask(
            "!halt chaos disk full", lambda s: "HALTED by console" in s or "refused" in s
        )
        halt_s = time.monotonic() - began
        result.check(await engine.state() == "HALTED", "!halt with the disk full")

        await disk.free(engine)
        _, line = await engine.out.wait_for(
            lambda s: "journal can be written again" in s, start=mark, within=30
        )
        result.check(line.startswith("[#") and "✅" in line, f"after the disk: {line}")
        await settle(fake, data)
        result.tally.add(compare(journal_view(data), await broker_view(fake)))
        result.check(await engine.quit() == 0, "exit code after !quit")
        full_run_err = list(engine.err.items)
        result.check(journal_view(data).state == "HALTED", "the halt was not written afterwards")
        engine = await _restart_checked(fake, data, env, result, ready, logs=work)
        result.check(await engine.state() == "HALTED", "the halt did not survive a restart")
        code = await engine.quit()
        result.check(code == 0, f"exit code {code} after the restart: {engine.err.tail(5)}")
        result.timing = (
            f"to REDUCING {ms(to_reducing)}; !flatten {ms(flatten_s)}, !halt {ms(halt_s)}"
        )
        logging_errors = sum(1 for ln in full_run_err if ln == "--- Logging error ---")
        result.detail = (
            f"{disk.name} while trading: REDUCING with a critical alert, no new "
            "buy order, !flatten flat and !halt HALTED from memory, written and fills "
            "recovered once space came back"
            + (
                f"; stderr had {logging_errors} '--- Logging error ---' tracebacks (the log "
                "file on the full disk)"
                if logging_errors
                else ""
            )
        )
    finally:
        await fake.stop()
        await disk.teardown()
    return result


# ---- 5. hung broker -------------------------------------------------------------------------

HALT_AFTER_S = 5
BREAKER_RESET_S = 2


def _find_in_file(path: Path, needle: str, start: int) -> str | None:
    if not path.exists():
        return None
    with path.open("rb") as f:
        f.seek(start)
        for raw in f:
            line = raw.decode(errors="replace")
            if needle in line:
                return line.strip()
    return None


async def log_line(path: Path, needle: str, *, start: int, within: float) -> str:
    """The first line of the engine's log file after byte ``start`` containing ``needle``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(_find_in_file, path, needle, start)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise ChaosError(f"{path}: no line with {needle!r} within {within:g} s")


async def hung_broker(n: int, rng: random.Random, work: Path) -> Result:
    result = Result(f"hung broker (SIGSTOP), halt after {HALT_AFTER_S} s", n)
    fake = await Fake.start(speed=speed_for(n * 15 + 30))
    env = engine_env(
        fake,
        ALPACA_OUTAGE_HALT_S=str(HALT_AFTER_S),
        ALPACA_REQUEST_TIMEOUT_S="1",
        ALPACA_BREAKER_RESET_S=str(BREAKER_RESET_S),
    )
    ready: list[float] = []
    halts: list[float] = []
    back: list[float] = []
    try:
        for i in range(n):
            data = work / f"hang-{i}"
            engine = await _restart_checked(fake, data, env, result, ready)
            await asyncio.sleep(rng.uniform(0.5, 2.5))
            mark = len(engine.out.items)
            log_file = data / "trader.log"
            log_mark = log_file.stat().st_size if log_file.exists() else 0
            fake.signal(signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                _, line = await engine.out.wait_for(
                    lambda s: "HALTED" in s and s.startswith("[#"), start=mark, within=20
                )
                halts.append(time.monotonic() - stopped)
                result.check(halts[-1] <= HALT_AFTER_S + 1, f"halt after {halts[-1]:.2f} s: {line}")
                status = await engine.ask("!status", lambda s: s.startswith("Broker:"))
                result.check("ok" not in status.split(":", 1)[1][:10], f"hung but {status}")
            finally:
                fake.signal(signal.SIGCONT)
            resumed = time.monotonic()
            # A reconcile that finds no drift says nothing in the channels: the log has it.
            await log_line(log_file, "broker back after an outage", start=log_mark, within=30)
            back.append(time.monotonic() - resumed)
            status = await engine.ask("!status", lambda s: s.startswith("Broker:"))
            result.check("alpaca ok" in status, f"after SIGCONT: {status}")
            result.check(await engine.state() == "HALTED", "not HALTED after the outage")
            await settle(fake, data)
            result.tally.add(compare(journal_view(data), await broker_view(fake)))
            result.check(await engine.quit() == 0, "exit code after !quit")
            result.check(engine.tracebacks() == 0, "a traceback")
        if halts:
            result.timing = (
                f"to HALT {statistics.median(halts):.2f} s (max {max(halts):.2f} s); "
                f"reconciled {ms(statistics.median(back))} after SIGCONT"
            )
        result.detail = (
            f"ALPACA_OUTAGE_HALT_S={HALT_AFTER_S}, ALPACA_REQUEST_TIMEOUT_S=1, "
            f"ALPACA_BREAKER_RESET_S={BREAKER_RESET_S}: HALTED every time, the broker "
            "healthy and reconciled once it answered again (log: 'broker back after an outage')"
        )
    finally:
        await fake.stop()
    return result


# ---- 6. Discord-transport outage ------------------------------------------------------------


class FlakyDiscord:
    """The alert router's transport seam as ``bot.discord_transport.DiscordTransport`` behaves
    (tests/discord/test_transport.py runs that one on dpytest): ``is_ready`` follows the
    gateway's connect/disconnect/resumed; a post raises ``SendUnavailable`` while the network
    is down; some posts land but their reply is lost (a timeout); Discord posts a nonce once
    (``enforce_nonce``)."""

    name = "discord"

    def __init__(self, rng: random.Random, lose_reply: float) -> None:
        self.network = True
        self.gateway = True
        self.posted: list[tuple[str, str]] = []
        self.by_nonce: set[str] = set()
        self.attempts = 0
        self._rng = rng
        self._lose_reply = lose_reply

    def is_ready(self) -> bool:
        return self.gateway

    def has_channel(self, channel: object) -> bool:
        return True

    async def send(self, channel: object, message: Any, mention: object, nonce: str) -> None:
        from bot.alerts import SendUnavailable

        self.attempts += 1
        await asyncio.sleep(0.005)
        if not self.network:
            raise SendUnavailable("OSError: [Errno 101] Network is unreachable")
        if nonce in self.by_nonce:
            return  # Discord answers with the message it already posted
        self.by_nonce.add(nonce)
        self.posted.append((str(getattr(channel, "value", channel)), message.text))
        if self._rng.random() < self._lose_reply:
            raise SendUnavailable("TimeoutError: the reply never came")


async def discord_outage(
    rng: random.Random, outage_s: float = 8.0, alerts: int = 120, lose_reply: float = 0.1
) -> Result:
    """Fills to #trades and critical errors to #system-alerts, published all along while the
    network and then the gateway go down for ``outage_s``; ``lose_reply`` of the posts land
    but their reply is lost. Each channel must show every alert once, in order."""
    from bot.alerts import AlertRouter
    from bot.messages import AlertMessage, Channel
    from config import ChannelSettings
    from engine.bus import EventBus
    from engine.clock import SystemClock
    from engine.events import Severity

    result = Result(f"Discord outage {outage_s:g} s", alerts)
    link = FlakyDiscord(rng, 0.0)
    router = AlertRouter(
        EventBus(),
        link,
        ChannelSettings(_env_file=None),  # type: ignore[call-arg]
        clock=SystemClock(),
        retry_base_s=0.05,
    )
    await router.start()
    router.publish(AlertMessage(Channel.SYSTEM_ALERTS, Severity.INFO, "🟢 connected", "state"))
    while not link.posted:  # noqa: ASYNC110 - the bot is up and has posted before the outage
        await asyncio.sleep(0.05)
    link._lose_reply = lose_reply
    sent: dict[str, list[str]] = {"trades": [], "system-alerts": []}
    spread_s = outage_s + 4.0
    began = time.monotonic()

    async def outage() -> None:
        await asyncio.sleep(1.0)
        link.network = False  # the network goes first,
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        link.gateway = False  # discord.py notices a heartbeat or two later
        await asyncio.sleep(outage_s)
        link.network = True
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        link.gateway = True  # RESUMED

    cut = asyncio.get_running_loop().create_task(outage())
    for i in range(alerts):
        if rng.random() < 0.1:
            text = f"🚨 engine error {i + 1:04d}"
            message = AlertMessage(Channel.SYSTEM_ALERTS, Severity.CRITICAL, text, "error")
        else:
            text = f"✅ Bought {i + 1} AAPL @ $231.97 · fill {i + 1:04d}"
            message = AlertMessage(Channel.TRADES, Severity.INFO, text, "fill")
        sent[message.channel.value].append(text)
        router.publish(message)
        await asyncio.sleep(spread_s / alerts)
    await cut
    deadline = time.monotonic() + 30
    while router.queued and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await router.stop()
    summaries = [t for _, t in link.posted if t.startswith("📶 Discord was unreachable")]
    hidden = 0
    for channel, texts in sent.items():
        lines = [ln for c, t in link.posted if c == channel for ln in t.split("\n")]
        hidden += sum(int(ln.split()[2]) for ln in lines if ln.startswith("…and "))
        shown = [ln for ln in lines if ln in set(texts)]
        result.tally.duplicates += len(shown) - len(set(shown))
        result.tally.lost += sum(1 for t in texts if t not in set(shown))
        result.check(shown == [t for t in texts if t in set(shown)], f"#{channel} out of order")
    long_ones = [
        s for s in summaries if f"for {int(outage_s)}" in s or f"for {int(outage_s) + 1}" in s
    ]
    result.check(len(long_ones) == 1, f"no summary of the {outage_s:g} s outage: {summaries}")
    result.check(all(s.endswith("None lost.") for s in summaries), f"summary: {summaries}")
    result.check(router.stats.failed == 0, f"{router.stats.failed} given up")
    result.timing = f"all delivered {ms(time.monotonic() - began)} after the first"
    result.detail = (
        f"{alerts} alerts over {spread_s:g} s, network down {outage_s:g} s, "
        f"{lose_reply:.0%} of replies lost: {len(link.posted)} posts, {link.attempts} attempts, "
        f"{hidden} lines folded into '…and N more'; "
        + (long_ones[0] if long_ones else "")
        + (
            f" (+{len(summaries) - len(long_ones)} short summaries after lost replies)"
            if len(summaries) > len(long_ones)
            else ""
        )
    )
    return result
