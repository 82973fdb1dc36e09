"""The process a ``BacktestService`` backtest runs in: ``python -m engine.backtest.child``.

Its input is one frame on stdin (the settings, the request, the report folder: pickled); it
plans the run (reading the data's days), runs it and writes the report. Its output is
frames on stdout: ``("progress", share)`` now and then, then ``("done", metrics, summary
text, chart path, first day, last day)`` or ``("error", one line)``. A frame is a 4-byte
big-endian length and a pickle. Both ends are this program and the service that started it,
so the pickles are trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from config import Settings
from engine.backtest.metrics import compute
from engine.backtest.plan import PlanError, Request, make_plan
from engine.backtest.report import text_summary, write_report
from engine.backtest.runner import BacktestRunner

NICENESS = 10
"""How much lower than the engine's this process's CPU priority is (``os.nice``)."""
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class Payload:
    settings: Settings
    request: Request
    folder: Path


def frame(message: Any) -> bytes:
    data = pickle.dumps(message)
    return _LENGTH.pack(len(data)) + data


async def read_frame(stream: asyncio.StreamReader) -> Any | None:
    """The next frame's message; None at the end of the stream."""
    try:
        header = await stream.readexactly(_LENGTH.size)
        return pickle.loads(await stream.readexactly(_LENGTH.unpack(header)[0]))
    except asyncio.IncompleteReadError:
        return None


def _read(stream: BinaryIO) -> Any:
    (length,) = _LENGTH.unpack(stream.read(_LENGTH.size))
    return pickle.loads(stream.read(length))


def main() -> None:
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    payload: Payload = _read(sys.stdin.buffer)
    out = sys.stdout.buffer
    shown = -1

    def send(message: Any) -> None:
        out.write(frame(message))
        out.flush()

    total = 1

    def progress(read: int) -> None:
        nonlocal shown
        share = min(0.99, read / max(1, total))
        if int(share * 100) > shown:
            shown = int(share * 100)
            send(("progress", share))

    try:
        # Planning reads the data's days (a pass over the files): here, not in the engine.
        plan = make_plan(payload.settings, payload.request)
        total = plan.total_bars
        bars = plan.source.bars(plan.span)
        every = max(1, total // 100)
        result = BacktestRunner(plan.config, progress=progress, progress_every=every).run(bars)
        metrics = compute(result)
        paths = write_report(payload.folder, result, metrics, plan.info)
        text = text_summary(metrics, result)
        send(("done", metrics, text, str(paths["chart"]), plan.info.start, plan.info.end))
    except PlanError as exc:
        send(("error", " ".join(str(exc).split())))
    except Exception as exc:  # the parent answers with this line
        send(("error", f"the backtest failed: {' '.join(str(exc).split())[:300]}"))
        raise


if __name__ == "__main__":
    main()
