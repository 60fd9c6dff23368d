"""Payments from outside: a provider's signed callback posted exactly once; reconciliation.

A tenant pays by phone; the payment provider calls ``POST /api/payments/callback/{provider}``
with a JSON body (:class:`PaymentNotice`) and ``X-Signature: sha256=<hex>``: the HMAC-SHA256 of
the raw body with the secret the provider and the site share (``payments.providers[].secret``,
written ``${ENV}``). :func:`receive_payment` takes it, in this order:

1. the request must be signed and the provider configured (``BadSignature``,
   ``UnknownProvider``), and the signature must be the body's (``BadSignature``): compared in
   constant time, before the body is parsed at all;
2. the body must be a notice (``MalformedPayment``: not JSON, a field missing or unknown, an
   amount that is not money, a time without an offset, a currency not the provider's);
3. the account must be configured and open (``UnknownAccount``; ``AccountClosed`` when it is no
   longer configured but has a ledger; ``AccountNotOpen``);
4. the top-up is posted through :meth:`billing.service.Billing.post_topup` (levels evaluated,
   relays closed, audited ``billing.topup`` by the user ``payment:<provider>``) with the
   provider's transaction id as the idempotency key: :meth:`PaymentStore.record` posts a
   transaction once however many callbacks race (the check and the write are one ledger
   transaction) and answers a repeat with the entry posted first (``repeated``, no audit
   entry); the same transaction id with another account or amount is a ``PaymentConflict``.

A refusal at steps 1 to 3 writes one audit entry ``payments.callback`` (``denied`` for 1,
``failed`` for 2 and 3) and posts nothing; a refusal by the ledger at step 4 is audited by
``Billing`` (``billing.topup``, ``failed``). The REST handler maps the classes to statuses and
rate-limits the refusals of steps 1 and 2 per source address (``max_refused`` in
``refused_window_s``). A posted payment gets its receipt (:func:`issue_receipt`: method
``online``, the transaction id as the reference), so the tenant can print it.

A provider with ``demo: true`` also gets the simulated provider page
(``scada.server.handlers.demo_pay``), which pays through this same callback; with a
``statement_dir`` its daily statements are reconciled by the billing scheduler.

Posted payments are kept in the ledger's file (table ``payments``: provider, transaction id,
account, amount, currency, the provider's ``paid_at``, the entry), append-only like the
entries; :mod:`billing.reconciliation` compares a provider's statement with them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from billing.errors import (
    AccountClosed,
    AccountNotOpen,
    BadAmount,
    BillingError,
    IdempotencyConflict,
    LedgerError,
    UnknownAccount,
)
from billing.money import parse_amount
from configbase.model import ID_PATTERN, ConfigModel, Id
from configbase.secrets import Secret, SecretValue
from tags.model import iso

if TYPE_CHECKING:
    from billing.ledger import Ledger, Posted
    from billing.money import MoneyResult
    from billing.service import Billing

__all__ = [
    "CALLBACK_ACTION",
    "MAX_CALLBACK_BYTES",
    "SIGNATURE_HEADER",
    "TRANSACTION_ID",
    "AccountClosed",
    "BadSignature",
    "MalformedPayment",
    "NotJson",
    "Payment",
    "PaymentConflict",
    "PaymentNotice",
    "PaymentProvider",
    "PaymentRefused",
    "PaymentStore",
    "PaymentsConfig",
    "StoredPayment",
    "UnknownProvider",
    "issue_receipt",
    "payment_user",
    "receive_payment",
    "sign",
    "signature_digest",
    "verify_signature",
]

T = TypeVar("T")

#: The header that carries the body's signature: ``sha256=<64 hex digits>``.
SIGNATURE_HEADER = "X-Signature"
#: The audit action of a refused callback.
CALLBACK_ACTION = "payments.callback"
#: The shortest shared secret accepted (characters).
MIN_SECRET_CHARS = 16
#: Largest callback body read (a notice is a few hundred bytes).
MAX_CALLBACK_BYTES = 64 * 1024
_SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})", re.ASCII)
#: A provider's transaction id: 1 to 128 visible ASCII characters.
TRANSACTION_ID = r"^[!-~]{1,128}$"
_MIN_TS, _MAX_TS = 0.0, 4_102_444_800.0  # 1970 .. 2100


# ---------------------------------------------------------------------- configuration


class PaymentProvider(ConfigModel):
    """A payment provider: its id (in the callback URL), the shared secret, its currency."""

    id: Id
    name: str = ""
    secret: Secret = Field(
        description="HMAC-SHA256 key of the provider's callbacks: ${NAME} or ${file:/path}"
    )
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    demo: bool = Field(
        False,
        description="serve the simulated provider page /demo-pay/<id> (demo sites only): the "
        "tenant page's Pay action goes there and it calls the callback signed with the secret",
    )
    statement_dir: Path | None = Field(
        None,
        description="directory of the provider's daily statements (<id>-YYYY-MM-DD.csv or "
        "YYYY-MM-DD.csv): reconciled with the ledger every day by the billing scheduler",
    )

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, v: SecretValue) -> SecretValue:
        if len(v.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"the secret must have at least {MIN_SECRET_CHARS} characters")
        return v


class PaymentsConfig(ConfigModel):
    """The ``payments:`` section: the providers whose callbacks post top-ups."""

    providers: list[PaymentProvider] = Field(default_factory=list)
    max_refused: int = Field(
        10,
        ge=1,
        le=10_000,
        description="refused callbacks (bad signature, malformed) one source address may send "
        "in refused_window_s before its callbacks are answered 429",
    )
    refused_window_s: float = Field(60.0, gt=0, le=86_400, description="see max_refused")

    @model_validator(mode="after")
    def _unique(self) -> PaymentsConfig:
        ids = [p.id for p in self.providers]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"payment provider {dup[0]!r} is listed twice")
        return self

    def provider(self, provider_id: str) -> PaymentProvider:
        """Return the provider ``provider_id``; ``UnknownProvider`` (a KeyError) if none."""
        for p in self.providers:
            if p.id == provider_id:
                return p
        raise UnknownProvider(f"unknown payment provider {provider_id!r}")


# ---------------------------------------------------------------------- refusals


class PaymentRefused(BillingError):
    """A callback was refused before anything was posted (audited ``payments.callback``)."""


class UnknownProvider(PaymentRefused, KeyError):
    """No provider with that id is configured."""


class BadSignature(PaymentRefused):
    """The ``X-Signature`` header is missing, malformed, or not the body's."""


class MalformedPayment(PaymentRefused):
    """The body is not a payment notice (a field missing, unknown or of the wrong form)."""


class NotJson(MalformedPayment):
    """The body is not JSON at all."""


class PaymentConflict(IdempotencyConflict):
    """A transaction id was posted before with another account or amount."""


# ---------------------------------------------------------------------- the notice


def sign(secret: str | bytes, body: bytes) -> str:
    """Return the ``X-Signature`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def signature_digest(header: str | None) -> bytes:
    """Return the digest an ``X-Signature`` header carries; ``BadSignature`` if it has none."""
    if header is None or not header.strip():
        raise BadSignature(f"no {SIGNATURE_HEADER} header (sha256=<hex HMAC-SHA256 of the body>)")
    m = _SIGNATURE_RE.fullmatch(header.strip())
    if m is None:
        raise BadSignature(f"{SIGNATURE_HEADER} is not sha256=<64 hex digits>")
    return bytes.fromhex(m.group(1))


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """Raise ``BadSignature`` (with the reason) unless ``header`` signs ``body`` with ``secret``.

    The digests are compared in constant time.
    """
    digest = signature_digest(header)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, digest):
        raise BadSignature(
            "the signature does not match the body (another secret, or the body was changed)"
        )


def _epoch(text: str) -> float:
    """Return epoch seconds of an ISO-8601 date-time with an offset, or of epoch seconds."""
    try:
        value = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"expected an ISO-8601 date-time with an offset, or epoch seconds: {text!r}"
            ) from None
        if dt.tzinfo is None:
            raise ValueError(f"the time needs an offset (Z or +08:00): {text!r}") from None
        value = dt.timestamp()
    if not (math.isfinite(value) and _MIN_TS <= value <= _MAX_TS):
        raise ValueError(f"time out of range (1970 .. 2100): {text!r}")
    return value


class PaymentNotice(BaseModel):
    """A provider's callback body: one payment to one account (money as a string)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transaction_id: str = Field(
        pattern=TRANSACTION_ID,
        description="the provider's id of the payment (1 to 128 visible ASCII characters): "
        "the idempotency key",
    )
    account: str = Field(
        pattern=ID_PATTERN, max_length=200, description="the prepaid or heat account paid into"
    )
    amount: str = Field(
        min_length=1, max_length=16, description='money as a string, at most two decimals: "50.00"'
    )
    currency: str | None = Field(
        None, pattern=r"^[A-Z]{3}$", description="ISO 4217; the provider's currency if left out"
    )
    paid_at: str = Field(
        min_length=1,
        max_length=40,
        description="when the tenant paid: ISO-8601 date-time with an offset, or epoch seconds",
    )

    @field_validator("amount")
    @classmethod
    def _money(cls, v: str) -> str:
        try:
            parse_amount(v, "amount")
        except BadAmount as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("paid_at")
    @classmethod
    def _time(cls, v: str) -> str:
        _epoch(v)
        return v


@dataclass(frozen=True, slots=True)
class Payment:
    """A verified notice of ``provider``: money as ``Decimal``, ``paid_at`` epoch seconds."""

    provider: str
    transaction_id: str
    account: str
    amount: Decimal
    currency: str
    paid_at: float

    @classmethod
    def parse(cls, provider: PaymentProvider, body: bytes) -> Payment:
        """Return the payment of a (verified) callback body; ``MalformedPayment`` naming the field."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise NotJson(f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedPayment("the body must be a JSON object")
        try:
            notice = PaymentNotice.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(x) for x in first["loc"]) or "body"
            msg = str(first["msg"]).removeprefix("Value error, ")
            raise MalformedPayment(f"{where}: {msg}") from None
        currency = notice.currency or provider.currency
        if currency != provider.currency:
            raise MalformedPayment(
                f"currency: {currency} is not {provider.currency}, the currency of provider "
                f"{provider.id}"
            )
        return cls(
            provider.id,
            notice.transaction_id,
            notice.account,
            parse_amount(notice.amount),
            currency,
            _epoch(notice.paid_at),
        )

    @property
    def key(self) -> str:
        """The idempotency key of its top-up (scoped to the account by the ledger)."""
        return f"{self.provider}:{self.transaction_id}"

    @property
    def user(self) -> str:
        """Who posts it (ledger entry and audit)."""
        return payment_user(self.provider)

    def note(self) -> str:
        return f"{self.provider} payment {self.transaction_id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "transaction_id": self.transaction_id,
            "account": self.account,
            "amount": str(self.amount),
            "currency": self.currency,
            "paid_at": iso(self.paid_at),
        }


def payment_user(provider: str) -> str:
    """Return the user name a provider's payments are posted and audited by."""
    return f"payment:{provider}"


# ---------------------------------------------------------------------- the store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (provider TEXT NOT NULL, transaction_id TEXT NOT NULL,
    account TEXT NOT NULL, amount TEXT NOT NULL, currency TEXT NOT NULL, paid_at REAL NOT NULL,
    seq INTEGER NOT NULL, ts REAL NOT NULL, PRIMARY KEY (provider, transaction_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS payments_paid ON payments(provider, paid_at);
CREATE TRIGGER IF NOT EXISTS payments_no_update BEFORE UPDATE ON payments
    BEGIN SELECT RAISE(ABORT, 'payments are append-only'); END;
CREATE TRIGGER IF NOT EXISTS payments_no_delete BEFORE DELETE ON payments
    BEGIN SELECT RAISE(ABORT, 'payments are append-only'); END;
"""


@dataclass(frozen=True, slots=True)
class StoredPayment:
    """A posted payment: the notice's fields, the top-up entry and whether it was reversed."""

    provider: str
    transaction_id: str
    account: str
    amount: Decimal
    currency: str
    paid_at: float
    seq: int
    ts: float
    reversed_by: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "account": self.account,
            "amount": str(self.amount),
            "currency": self.currency,
            "paid_at": iso(self.paid_at),
            "entry": self.seq,
            "reversed_by": self.reversed_by,
        }


_COLS = "provider, transaction_id, account, amount, currency, paid_at, seq, ts"
_REVERSED = "(SELECT e.seq FROM entries e WHERE e.reverses = p.seq)"


def _stored(row: Any) -> StoredPayment:
    provider, txid, account, amount, currency, paid_at, seq, ts, reversed_by = row
    return StoredPayment(
        provider, txid, account, Decimal(amount), currency, paid_at, seq, ts, reversed_by
    )


class PaymentStore:
    """The posted payments, in the ledger's file (table ``payments``); thread-safe as the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        ledger.ensure_schema("payments", _SCHEMA)

    def record(self, payment: Payment) -> Posted:
        """Post ``payment`` as a top-up once per (provider, transaction id); see the module docstring.

        Returns the ``Posted`` (``repeated`` with the first entry for a repeat). Raises
        ``PaymentConflict`` (another account or amount, or the key was a till's),
        ``AccountNotOpen``.
        """
        from billing.ledger import EntryKind, Posted  # (the site configuration imports this module)

        with self.ledger.transaction() as con:
            done = self.get(payment.provider, payment.transaction_id)
            if done is not None:
                if done.account != payment.account or done.amount != payment.amount:
                    raise PaymentConflict(
                        f"transaction {payment.transaction_id} of {payment.provider} was posted "
                        f"to account {done.account} with {done.amount} (entry {done.seq}), not "
                        f"to {payment.account} with {payment.amount}"
                    )
                entry = self.ledger.entry(done.seq)
                assert entry is not None  # entries are never deleted
                balance = self.ledger.balance(done.account)
                return Posted(entry, True, balance, balance)
            posted = self.ledger.post_cash(
                EntryKind.TOPUP,
                payment.account,
                payment.amount,
                user=payment.user,
                note=payment.note(),
                key=payment.key,
            )
            if posted.repeated:  # a till or API client used this key for a top-up of its own
                raise PaymentConflict(
                    f"account {payment.account}: the idempotency key {payment.key!r} was used by "
                    f"entry {posted.entry.seq}, not by a payment of {payment.provider}"
                )
            con.execute(
                f"INSERT INTO payments ({_COLS}) VALUES (?,?,?,?,?,?,?,?)",
                (
                    payment.provider,
                    payment.transaction_id,
                    payment.account,
                    str(payment.amount),
                    payment.currency,
                    payment.paid_at,
                    posted.entry.seq,
                    time.time(),
                ),
            )
        return posted

    def get(self, provider: str, transaction_id: str) -> StoredPayment | None:
        """Return the posted payment of a transaction, or None."""
        rows = self.ledger.query(
            f"SELECT {_COLS}, {_REVERSED} FROM payments p WHERE provider = ? AND transaction_id = ?",
            (provider, transaction_id),
        )
        return _stored(rows[0]) if rows else None

    def paid_between(self, provider: str, start: float, end: float) -> list[StoredPayment]:
        """Return the payments of ``provider`` paid in ``[start, end)`` (by the provider's time)."""
        rows = self.ledger.query(
            f"SELECT {_COLS}, {_REVERSED} FROM payments p WHERE provider = ? AND paid_at >= ? "
            "AND paid_at < ? ORDER BY paid_at, transaction_id",
            (provider, start, end),
        )
        return [_stored(r) for r in rows]


# ---------------------------------------------------------------------- the callback


async def _run(
    fn: Callable[[], T], offload: Callable[[Callable[[], Any]], Awaitable[Any]] | None
) -> T:
    if offload is None:
        return fn()
    result: T = await offload(fn)
    return result


def _check_account(billing: Billing, account: str) -> None:
    """Raise ``UnknownAccount``, ``AccountClosed`` or ``AccountNotOpen`` unless it can be paid."""
    try:
        billing.require_account(account)
    except UnknownAccount:
        rows = billing.ledger.query("SELECT 1 FROM entries WHERE account = ? LIMIT 1", (account,))
        if rows:
            raise AccountClosed(
                f"account {account} is closed: it is no longer configured (its ledger is kept)"
            ) from None
        raise
    closing = billing.ledger.closed_entry(account)
    if closing is not None:
        raise AccountClosed(
            f"account {account} is closed since {iso(closing.ts)}: it takes no payment"
        )
    if not billing.ledger.is_open(account):
        raise AccountNotOpen(f"account {account} is not open")


async def receive_payment(
    billing: Billing,
    config: PaymentsConfig,
    provider_id: str,
    body: bytes,
    signature: str | None,
    *,
    source: str | None = None,
    offload: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None,
) -> tuple[Payment, MoneyResult]:
    """Take one callback (module docstring); return the payment and the top-up's result.

    Raises the refusals of the module docstring; each is audited once. ``offload`` runs the
    ledger work in a worker thread (the REST server's ``run_blocking``). Event loop only.
    """
    audit = billing.audit
    if audit is None:
        raise RuntimeError("payments need an audit log")
    user = payment_user(provider_id)
    claimed: dict[str, Any] = {
        "provider": provider_id,
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    payment: Payment | None = None
    try:
        signature_digest(signature)  # an unsigned request is 401 whoever it claims to be
        provider = config.provider(provider_id)
        verify_signature(provider.secret.get_secret_value(), body, signature)
        payment = Payment.parse(provider, body)
        await _run(functools.partial(_check_account, billing, payment.account), offload)
    except (PaymentRefused, UnknownAccount, LedgerError) as exc:
        denied = isinstance(exc, UnknownProvider | BadSignature)
        audit.record(
            CALLBACK_ACTION,
            user=user,
            source=source,
            target=provider_id if payment is None else payment.account,
            result="denied" if denied else "failed",
            after=claimed if payment is None else payment.to_json(),
            detail=str(exc),
        )
        raise
    paid = payment
    store = PaymentStore(billing.ledger)
    result = await billing.post_topup(
        paid.account,
        lambda: store.record(paid),
        {"amount": str(paid.amount), "reference": paid.note(), **paid.to_json()},
        user=user,
        source=source,
        offload=offload,
    )
    if result.entry is not None:  # the tenant's receipt (a repeat finds the first one's)
        entry = result.entry
        await _run(functools.partial(issue_receipt, billing.ledger, paid, entry.seq), offload)
    return paid, result


def issue_receipt(ledger: Ledger, payment: Payment, seq: int) -> int:
    """Number the receipt of a provider's payment (method online, its transaction id as the
    reference, issued by ``payment:<provider>``); return its number. Idempotent per entry."""
    from billing.receipts import Method, Receipts

    receipt = Receipts(ledger).issue(seq, Method.ONLINE, payment.user, payment.transaction_id)
    return receipt.number
