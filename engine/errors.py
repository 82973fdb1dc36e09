"""Domain errors. Transports (Discord, console) show ``str(error)`` to the trader as is."""

from __future__ import annotations


class DomainError(Exception):
    """An expected failure with a message fit for the trader's screen."""


class InvalidTransition(DomainError):
    """An order was asked to move to a state it cannot reach from where it is."""


class OverfillError(DomainError):
    """A fill would take an order past its quantity."""


class TradingStateError(DomainError):
    """A trading-state change was refused (for example lifting a loss-limit halt)."""


class CommandError(DomainError):
    """A trader command cannot be carried out as asked."""


class BrokerError(DomainError):
    """Base for failures talking to a broker."""


class BrokerRejected(BrokerError):
    """The broker understood the request and refused it (Alpaca 403/422)."""


class DuplicateClientOrderId(BrokerRejected):
    """The broker already has an order with this client_order_id (Alpaca 422)."""


class OrderNotFound(BrokerError):
    """The broker has no such order (Alpaca 404)."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached or answered with a server error; safe to retry later."""


class BrokerTimeout(BrokerUnavailable):
    """A broker call did not finish within its time limit."""


class RateLimited(BrokerUnavailable):
    """The broker asked us to slow down (HTTP 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpen(BrokerUnavailable):
    """Calls are short-circuited because the broker has been failing."""


class JournalWriteError(DomainError):
    """The journal could not commit a write (disk full, read-only file, I/O error...): the row
    is not on disk. ``Journal.writable`` says whether writes work at the moment."""


class JournalOpenError(DomainError):
    """The journal file cannot be opened or created: the message names the file and what to
    do about it."""


class JournalReadError(DomainError):
    """The journal file could not be read (damaged, I/O error)."""
