"""alpaca-py's REST clients made safe to call: a socket timeout, no blocking retries, and
every failure as our ``BrokerError`` family. Used by the broker adapter and the history
client, always on a worker thread."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient

from engine.errors import (
    BrokerError,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderNotFound,
    RateLimited,
)

T = TypeVar("T")


class TimeoutSession(requests.Session):
    """A ``requests.Session`` whose requests time out unless told otherwise."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", (min(self.timeout_s, 5.0), self.timeout_s))
        return super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]


def harden_rest_client(client: RESTClient, timeout_s: float) -> RESTClient:
    """Give an alpaca-py REST client a socket timeout and switch its blocking retries off.

    alpaca-py 0.44 exposes neither: both live in ``RESTClient`` attributes (``_session``,
    ``_retry``). If a new version renames them this fails loudly at start-up instead of
    leaving calls without a bound."""
    for attr in ("_session", "_retry"):
        if not hasattr(client, attr):
            raise RuntimeError(
                f"alpaca-py changed: RESTClient has no {attr}; cannot bound its requests"
            )
    client._session.close()
    client._session = TimeoutSession(timeout_s)
    client._retry = 0
    return client


def guarded(label: str, timeout_s: float, call: Callable[[], T]) -> T:
    """Run one alpaca-py call (on a worker thread), translating its failures."""
    try:
        return call()
    except APIError as exc:
        raise api_error(exc, label) from None
    except requests.Timeout:
        raise BrokerTimeout(f"Alpaca did not answer {label} within {timeout_s:g} s") from None
    except requests.RequestException as exc:
        raise BrokerUnavailable(f"cannot reach Alpaca ({label}): {short(exc)}") from None
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        raise BrokerError(f"unexpected reply from Alpaca ({label}): {exc}") from None


def api_error(exc: APIError, label: str) -> BrokerError:
    """An alpaca-py ``APIError`` as the matching ``BrokerError``."""
    status = exc.status_code
    message = _message(exc)
    if status == 429:
        return RateLimited(
            f"Alpaca rate limit hit ({label}); slowing down", retry_after=_retry_after(exc)
        )
    if status is None or status >= 500:
        return BrokerUnavailable(f"Alpaca server error {status} ({label}): {message}")
    if status == 404:
        return OrderNotFound(f"Alpaca: not found ({label}): {message}")
    if status == 422 and "client_order_id" in message and "unique" in message.lower():
        return DuplicateClientOrderId(f"Alpaca: {message}")
    if status == 401 or (status == 403 and message.strip().lower() == "forbidden"):
        return BrokerRejected(
            f"Alpaca refused the API keys ({status}, {label}): check APCA_API_KEY_ID, "
            "APCA_API_SECRET_KEY and paper versus live"
        )
    return BrokerRejected(f"Alpaca refused {label} ({status}): {message}")


def _message(exc: APIError) -> str:
    text = str(exc)
    try:
        message = exc.message
    except (ValueError, KeyError, TypeError):
        return text[:300]
    return str(message)[:300]


def _retry_after(exc: APIError) -> float | None:
    """How long Alpaca asks us to wait: ``Retry-After`` (seconds or an HTTP date), else its
    ``X-RateLimit-Reset`` (the Unix second the quota has room again), else unknown."""
    response = exc.response
    headers = response.headers if response is not None else {}
    value = headers.get("Retry-After")
    if value:
        return _seconds_or_date(value)
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return None


def _seconds_or_date(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
