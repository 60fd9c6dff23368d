"""Money operations' shared parts: the amount rule, the audit sink, the result callers show.

``parse_amount`` is the one rule for money entered by a person or a client (REST, HMI, CLI,
ledger): a string of ASCII digits with at most two decimals (no sign, exponent or spaces), or
a ``Decimal`` / ``int``; above zero, below ``MAX_AMOUNT``; ``BadAmount`` naming the field
otherwise.

``AuditSink`` is what billing needs of the audit log (``scada.services.audit.AuditLog``
implements it; billing never imports scada). ``AuditAction`` holds the audit action names of the
money operations (the REST API, the HMI audit page and the tests look them up).
``MoneyResult`` is what one operation of :class:`billing.service.Billing` did.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from billing.errors import BadAmount

if TYPE_CHECKING:
    from billing.ledger import Entry
    from billing.tags import Level

__all__ = ["MAX_AMOUNT", "AuditAction", "AuditSink", "MoneyResult", "parse_amount"]

#: Amounts must be below this (a typo guard far above any real payment).
MAX_AMOUNT = Decimal("1e12")
_CENT = Decimal("0.01")
#: The text of an amount: ASCII digits, at most two decimals (re.ASCII: no other digits).
_AMOUNT_TEXT = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?", re.ASCII)


def parse_amount(
    value: Decimal | str | int, what: str = "amount", *, zero_ok: bool = False
) -> Decimal:
    """Return ``value`` as money (two decimals); ``BadAmount`` naming ``what`` if it is not.

    A string is ``[0-9]+(.[0-9]{1,2})?`` only (``" 5"``, ``"+5"``, ``"1E+2"``, ``"٥"`` are
    refused). Zero is refused unless ``zero_ok`` (an opening balance). Floats are not money:
    pass a string.
    """
    text = str(value)
    if isinstance(value, str) and value.startswith("-") and _AMOUNT_TEXT.fullmatch(value[1:]):
        least = "zero or a positive amount" if zero_ok else "a positive amount"
        raise BadAmount(f"{what}: must be {least}, got {text!r}")
    if isinstance(value, str) and not _AMOUNT_TEXT.fullmatch(value):
        # Decimal() alone would take " 5", "+5", "1E+2", "٥" and "５"
        raise BadAmount(
            f"{what}: not an amount (digits 0-9, at most two decimals, no sign, exponent "
            f"or spaces): {text!r}"
        )
    try:
        a = value if isinstance(value, Decimal) else Decimal(text)
    except (InvalidOperation, ValueError):
        raise BadAmount(f"{what}: not a decimal number: {text!r}") from None
    if not a.is_finite() or a < 0 or (a == 0 and not zero_ok):
        least = "zero or a positive amount" if zero_ok else "a positive amount"
        raise BadAmount(f"{what}: must be {least}, got {text!r}")
    if a >= MAX_AMOUNT or a != a.quantize(_CENT):
        raise BadAmount(f"{what}: at most two decimals and below 1e12, got {text!r}")
    return a.quantize(_CENT) + 0  # + 0: no negative zero


class AuditSink(Protocol):
    """Appends one audit entry (``scada.services.audit.AuditLog.record``); event loop only.

    ``user`` is a user object (``name``, ``role``) or a name; ``source`` the client address
    (None: ``internal``); ``before`` / ``after`` JSON-serialisable. Returns the entry's number.
    """

    def record(
        self,
        action: str,
        *,
        user: Any = None,
        source: str | None = None,
        target: str | None = None,
        result: str = "ok",
        before: Any = None,
        after: Any = None,
        detail: str | None = None,
    ) -> int: ...


class AuditAction(enum.StrEnum):
    """Audit action names of the money operations (target: the account id)."""

    TOPUP = "billing.topup"
    REFUND = "billing.refund"
    REVERSE = "billing.reverse"
    REPLACE_METER = "billing.replace_meter"
    KEEP_POWER = "billing.keep_power"
    KEEP_HEAT = "billing.keep_heat"
    RESTORE_PREPAID = "billing.restore_prepaid"
    OPEN_ACCOUNT = "billing.open_account"
    CLOSE_ACCOUNT = "billing.close_account"
    RELEASE_HOLD = "billing.release_hold"
    DISCARD_HOLD = "billing.discard_hold"


@dataclass(frozen=True, slots=True)
class MoneyResult:
    """What one money operation did, as its callers show it.

    ``entry``: the ledger entry written (None for keep-power and restore-prepaid), or with
    ``repeated`` the one an earlier request with the same idempotency key posted (then
    nothing was done now: no evaluation, no audit entry, ``level`` None). ``balance_before``
    / ``balance``: around the write. ``level``: after the evaluation (None if the account is
    not open). ``relay_actions`` / ``relay_failures``: the commands this request's evaluation
    sent. ``relays``: each relay of the account, tripped by billing (True) or not, after the
    request. ``keep_power_before`` / ``keep_power``: the account's keep-power setting.
    """

    account: str
    balance_before: Decimal
    balance: Decimal
    entry: Entry | None = None
    repeated: bool = False
    level: Level | None = None
    relay_actions: list[str] = field(default_factory=list)
    relay_failures: list[str] = field(default_factory=list)
    relays: dict[str, bool] = field(default_factory=dict)
    keep_power_before: bool = False
    keep_power: bool = False
