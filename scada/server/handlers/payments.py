"""Payments from a provider over REST: the signed callback and the reconciliation of a statement.

``POST /api/payments/callback/{provider}`` is public (the provider has no user) but verified:
``X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` with the provider's secret. The
handler hands the raw body to :func:`billing.payments.receive_payment` (which checks, posts the
top-up once per transaction id and audits every refusal) and maps its refusals to statuses:
404 unknown provider or account, 401 a missing or wrong signature, 400 not JSON, 422 not a
notice, 409 an account closed or not open, or a transaction id posted with another account or
amount. A repeated transaction answers 200 with ``repeated: true`` and the entry posted first.

``POST /api/payments/reconcile/{provider}?date=YYYY-MM-DD`` (``payments.reconcile``) takes the
provider's statement of that day (CSV, raw or the file of a form) and answers the missing,
extra and mismatched payments (:mod:`billing.reconciliation`). Loop-thread only.
"""

from __future__ import annotations

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
    "MAX_CALLBACK_BYTES",
    "SIGNATURE",
    "SIGNATURE_HEADER",
    "PaymentCallbackApi",
    "PaymentNotice",
    "PaymentReconcileApi",
]

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

    async def post(self, provider: str) -> None:
        body = self.request.body or b""
        if len(body) > MAX_CALLBACK_BYTES:
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
