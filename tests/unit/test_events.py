import json
from datetime import UTC, datetime
from decimal import Decimal

from engine.domain import Fill, OrderStatus, Side, TradingState
from engine.events import FillReceived, Notice, OrderUpdated, TradingStateChanged, event_payload

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


def test_event_payload_when_each_kind_of_event_then_every_field_plain_and_json_ready() -> None:
    fill = Fill("e1", "c1", "b1", "AAPL", Side.SELL, Decimal(2), Decimal("9.5"), T0)
    events = [
        FillReceived(ts=T0, fill=fill, position_qty=Decimal(-2), realized_pnl=Decimal("1.25")),
        OrderUpdated(
            ts=T0,
            client_order_id="c1",
            symbol="AAPL",
            side=Side.SELL,
            qty=Decimal(2),
            status=OrderStatus.FILLED,
            filled_qty=Decimal(2),
        ),
        TradingStateChanged(
            ts=T0, old=TradingState.ACTIVE, new=TradingState.HALTED, actor="a", reason="r"
        ),
        Notice(ts=T0, kind="report", title="EOD", text="day", fields={"P&L": "$1.00"}),
    ]

    payloads = [json.loads(json.dumps(event_payload(e))) for e in events]

    assert payloads[0] == {
        "ts": str(T0),
        "fill": {
            "execution_id": "e1",
            "client_order_id": "c1",
            "broker_order_id": "b1",
            "symbol": "AAPL",
            "side": "sell",
            "qty": "2",
            "price": "9.5",
            "ts": str(T0),
            "commission": "0",
        },
        "position_qty": "-2",
        "realized_pnl": "1.25",
    }
    assert payloads[1]["status"] == "filled"
    assert payloads[1]["filled_qty"] == "2"
    assert payloads[1]["strategy"] == ""
    assert (payloads[2]["old"], payloads[2]["new"]) == ("ACTIVE", "HALTED")
    assert payloads[3]["fields"] == {"P&L": "$1.00"}
    assert payloads[3]["attachment_name"] == ""
