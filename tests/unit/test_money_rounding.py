"""One rounding rule for money shown to the trader: to the cent, half away from zero
(``engine.domain.money``), the same in every message."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot import fmt
from engine.domain import money, settlement, usd
from engine.risk import RejectReason
from tests.unit.test_risk_gate import make_gate, order, passing_ctx

D = Decimal


@pytest.mark.parametrize(
    ("value", "text", "signed"),
    [
        (D("-300.125"), "-$300.13", "-$300.13"),
        (D("300.125"), "$300.13", "+$300.13"),
        (D("0.005"), "$0.01", "+$0.01"),
        (D("-0.004"), "$0.00", "$0.00"),  # no "-$0.00"
        (D("1234567.895"), "$1,234,567.90", "+$1,234,567.90"),
    ],
)
def test_money_text_when_half_a_cent_then_rounds_away_from_zero_everywhere(
    value: Decimal, text: str, signed: str
) -> None:
    assert usd(value) == fmt.money(value) == text
    assert usd(value, signed=True) == fmt.signed_money(value) == signed


def test_settlement_when_notional_ends_in_half_a_cent_then_rounds_like_the_display() -> None:
    assert settlement(D(1), D("0.125")) == money(D("0.125")) == D("0.13")
    assert settlement(D(3), D("0.1235")) == D("0.37")


def test_gate_text_when_day_pnl_has_half_a_cent_then_reads_as_the_display_does() -> None:
    # The gate's texts rounded half-even ("-$300.12") while the renderers rounded half-up
    # ("-$300.13"): the same P&L read differently in two messages.
    gate = make_gate(daily_loss_limit=D(300))

    decision = gate.check(order(), passing_ctx(day_pnl=D("-300.125")))

    assert decision.reason is RejectReason.DAILY_LOSS_LIMIT
    assert f"day P&L is {fmt.money(D('-300.125'))}," in decision.detail
    assert "-$300.13" in decision.detail
