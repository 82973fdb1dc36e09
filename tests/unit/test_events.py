import json
from datetime import UTC, datetime
from decimal import Decimal

from engine.domain import Fill, Side
from engine.events import FillReceived, Notice, event_payload

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def test_event_payload_when_fill_event_then_json_with_exact_decimals_and_nested_fill() -> None:
    fill = Fill("e1", "c1", "b1", "AAPL", Side.BUY, Decimal("0.5"), Decimal("230.125"), T0)
    event = FillReceived(ts=T0, fill=fill, position_qty=Decimal("0.5"), realized_pnl=Decimal(0))

    payload = json.loads(json.dumps(event_payload(event)))

    assert payload["fill"]["price"] == "230.125"
    assert payload["fill"]["side"] == "buy"
    assert payload["position_qty"] == "0.5"
    assert payload["ts"] == "2026-11-20 15:00:00+00:00"


def test_event_payload_when_notice_has_attachment_then_bytes_left_out() -> None:
    event = Notice(ts=T0, kind="report", title="EOD", text="day", attachment=b"\x89PNG")

    payload = event_payload(event)

    assert "attachment" not in payload
    assert payload["text"] == "day"
    json.dumps(payload)
