"""Payments from a provider over REST: the signed callback and the reconciliation of a statement.

``POST /api/payments/callback/{provider}`` is public (the provider has no user) but verified:
``X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` with the provider's secret. The
handler hands the raw body to :func:`billing.payments.receive_payment` (which checks, posts the
top-up once per transaction id and audits every refusal) and maps its refusals to statuses:
404 unknown provider or account, 401 a missing or wrong signature, 400 not JSON, 422 not a
notice, 409 an account closed or not open, or a transaction id posted with another account or
amount. A repeated transaction answers 200 with ``repeated: true`` and the entry posted first.

Refused callbacks that are not a provider's (a missing or wrong signature, a body that is not a
notice, an unknown provider, a body too large) are counted per source address
(:class:`RefusalLimiter`, one per server in the application's settings): past
``payments.max_refused`` in ``payments.refused_window_s`` every callback from that address is
answered 429 with the reason and ``Retry-After`` until the window has moved on; the first 429
of each such block is audited (``payments.callback``, ``denied``). A provider retries a 429.

``POST /api/payments/reconcile/{provider}?date=YYYY-MM-DD`` (``payments.reconcile``) takes the
provider's statement of that day (CSV, raw or the file of a form) and answers the missing,
extra and mismatched payments (:mod:`billing.reconciliation`). Loop-thread only.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from billing.errors import BadAmount, BillingError, UnknownAccount
from billing.payments import (
    CALLBACK_ACTION,
    MAX_CALLBACK_BYTES,
    SIGNATURE_HEADER,
    BadSignature,
    MalformedPayment,
    NotJson,
    Payment,
    PaymentNotice,
    PaymentsConfig,
    PaymentStore,
    UnknownProvider,
    payment_user,
    receive_payment,
)
from billing.periods import parse_period
from billing.reconciliation import StatementError, read_statement, reconcile
from scada.server.handlers.base import ApiError, ApiHandler
from scada.server.handlers.billing import money_json
from scada.server.handlers.roster import read_upload

__all__ = [
    "LIMITER_SETTING",
    "MAX_CALLBACK_BYTES",
    "SIGNATURE",
    "SIGNATURE_HEADER",
    "PaymentCallbackApi",
    "PaymentNotice",
    "PaymentReconcileApi",
    "RefusalLimiter",
]

#: The key of the server's :class:`RefusalLimiter` in the Tornado application's settings.
LIMITER_SETTING = "payments_refusal_limiter"

#: The ``X-Signature`` header's form (the route table documents it).
SIGNATURE = r"^sha256=[0-9a-fA-F]{64}$"

#: HTTP status of a refused callback, by class (the nearest listed base wins; else 409).
_STATUS: dict[type[BillingError], int] = {
    UnknownProvider: 404,
    UnknownAccount: 404,
    BadSignature: 401,
    NotJson: 400,
    MalformedPayment: 422,
    BadAmount: 422,
}


def _status(exc: BillingError) -> int:
    return next((_STATUS[c] for c in type(exc).__mro__ if c in _STATUS), 409)


#: Refusals that count towards the limit: callbacks no configured provider sent.
_COUNTED = (BadSignature, MalformedPayment, UnknownProvider)


@dataclass(slots=True)
class RefusalLimiter:
    """Sliding-window count of refused callbacks per source address (module docstring).

    ``retry_after(source)`` is 0 while the source may send, else the seconds until the oldest
    counted refusal leaves the window. Loop-thread only.
    """

    max_refused: int = 10
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _refused: dict[str, collections.deque[float]] = field(default_factory=dict)
    _audited: dict[str, float] = field(default_factory=dict)  # source -> block's end

    def _trim(self, source: str, now: float) -> collections.deque[float] | None:
        q = self._refused.get(source)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._refused[source]
            return None
        return q

    def count(self, source: str) -> int:
        """Return the refusals of ``source`` in the window."""
        q = self._trim(source, self.clock())
        return 0 if q is None else len(q)

    def retry_after(self, source: str) -> float:
        """Return 0 if ``source`` may send a callback, else the seconds to wait."""
        now = self.clock()
        q = self._trim(source, now)
        if q is None or len(q) < self.max_refused:
            return 0.0
        return max(q[len(q) - self.max_refused] + self.window_s - now, 0.001)

    def refused(self, source: str) -> None:
        """Count one refused callback of ``source``."""
        now = self.clock()
        self._refused.setdefault(source, collections.deque()).append(now)
        if len(self._refused) > 10_000:  # bound memory under a spray of addresses
            for key in [k for k, q in self._refused.items() if q[-1] <= now - self.window_s]:
                del self._refused[key]
            self._audited = {k: t for k, t in self._audited.items() if t > now}

    def first_of_block(self, source: str, wait_s: float) -> bool:
        """True once per blocked period of ``source`` (the 429 to audit)."""
        now = self.clock()
        if self._audited.get(source, 0.0) > now:
            return False
        self._audited[source] = now + wait_s
        return True


def payment_json(payment: Payment, result: Any) -> dict[str, Any]:
    """Return the answer of a callback: the money result and the payment (money as strings)."""
    return {**money_json(result), "payment": payment.to_json()}


class _PaymentsBase(ApiHandler):
    def billing(self) -> Any:
        b = self.ctx.services.billing
        if b is None:
            raise ApiError(503, "billing is not running")
        return b

    def payments(self) -> PaymentsConfig:
        return self.ctx.services.plant.site.payments


class PaymentCallbackApi(_PaymentsBase):
    """``POST /api/payments/callback/{provider}``: a provider's signed payment (module docstring)."""

    def limiter(self) -> RefusalLimiter:
        """The server's limiter, with the configured limits (they follow a config apply)."""
        cfg = self.payments()
        settings = self.application.settings
        limiter = settings.get(LIMITER_SETTING)
        if not isinstance(limiter, RefusalLimiter):
            limiter = settings[LIMITER_SETTING] = RefusalLimiter()
        limiter.max_refused, limiter.window_s = cfg.max_refused, cfg.refused_window_s
        return limiter

    def _limit(self, provider: str, limiter: RefusalLimiter) -> None:
        """Answer 429 (audited once per block) while the source is over its limit."""
        wait = limiter.retry_after(self.source)
        if wait <= 0:
            return
        n, window = limiter.count(self.source), limiter.window_s
        reason = (
            f"too many refused callbacks from {self.source}: {n} in the last {window:g} s "
            f"(a wrong signature or a malformed body); retry after {math.ceil(wait)} s"
        )
        if limiter.first_of_block(self.source, wait):
            self.ctx.audit.record(
                CALLBACK_ACTION,
                user=payment_user(provider),
                source=self.source,
                target=provider,
                result="denied",
                after={"provider": provider, "refused": n, "window_s": window},
                detail=reason,
            )
        raise ApiError(429, reason, headers={"Retry-After": str(math.ceil(wait))})

    async def post(self, provider: str) -> None:
        limiter = self.limiter()
        self._limit(provider, limiter)
        body = self.request.body or b""
        if len(body) > MAX_CALLBACK_BYTES:
            limiter.refused(self.source)
            self.ctx.audit.record(
                CALLBACK_ACTION,
                user=payment_user(provider),
                source=self.source,
                target=provider,
                result="failed",
                after={"provider": provider, "body_bytes": len(body)},
                detail=f"body larger than {MAX_CALLBACK_BYTES} bytes",
            )
            raise ApiError(413, f"body larger than {MAX_CALLBACK_BYTES} bytes")
        billing = self.billing()
        try:
            payment, result = await receive_payment(
                billing,
                self.payments(),
                provider,
                body,
                self.request.headers.get(SIGNATURE_HEADER),
                source=self.source,
                offload=self.ctx.run_blocking,
            )
        except BillingError as exc:
            if isinstance(exc, _COUNTED):
                limiter.refused(self.source)
            status = _status(exc)
            headers = {"WWW-Authenticate": 'HMAC realm="payments"'} if status == 401 else None
            raise ApiError(status, str(exc), headers=headers) from None
        self.reply(payment_json(payment, result))


class PaymentReconcileApi(_PaymentsBase):
    """``POST /api/payments/reconcile/{provider}?date=D``: a statement against the ledger."""

    async def post(self, provider: str) -> None:
        billing = self.billing()
        try:
            cfg = self.payments().provider(provider)
        except UnknownProvider as exc:
            raise ApiError(404, str(exc)) from None
        text = self.arg("date") or ""
        try:
            day = parse_period(text, billing.tz)
        except ValueError as exc:
            raise ApiError(400, f"date: {exc}") from None
        if day.kind != "day":
            raise ApiError(400, f"date: a day (YYYY-MM-DD), got {text!r}")
        upload = read_upload(self, ("csv",))

        def run() -> dict[str, Any]:
            lines = read_statement(upload.data, billing.tz, cfg.currency)
            found = reconcile(
                PaymentStore(billing.ledger), provider, lines, day.start, day.end, billing.tz
            )
            return found.to_json()

        try:
            self.reply(await self.ctx.run_blocking(run))
        except StatementError as exc:
            raise ApiError(422, str(exc), issues=exc.issues) from None
