"""Wire models of the roster and payment endpoints: the documented answers.

The roster's upload is a table (CSV or xlsx), not JSON; the payment callback's body is the
provider's :class:`billing.payments.PaymentNotice`. :mod:`scada.server.openapi` publishes these
models' JSON schemas. Money is a string; the answers allow extra keys so they can grow.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from scada.server.billing_schemas import MoneyOut

__all__ = ["PaymentOut", "ReconcileOut", "RosterImportOut"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Part(_Out):
    added: list[dict[str, Any]] = Field(description="{row, id, set: {field: value}}")
    changed: list[dict[str, Any]] = Field(description="{row, id, set, before}")
    unchanged: int


class _Summary(_Out):
    rows: int
    households: _Part
    accounts: _Part
    openings: list[dict[str, Any]] = Field(
        description="{account, amount, row, entry, state: posted | to post}: opening balances, "
        "posted once when an account opens"
    )


class RosterImportOut(_Out):
    """What a roster import changes (dry run) or changed (applied as ``version``)."""

    dry_run: bool
    valid: bool
    version: int | None = Field(description="the configuration version applied (null: none)")
    summary: _Summary
    diff: dict[str, str] = Field(description="unified diff per configuration file")
    plan: dict[str, Any] | None = Field(description="what applying changes (tags, devices, ...)")
    errors: list[dict[str, Any]] = Field(description="configuration errors of the result")


class _PaymentPart(_Out):
    provider: str
    transaction_id: str
    account: str
    amount: str
    currency: str
    paid_at: str


class PaymentOut(MoneyOut):
    """The top-up a payment posted (or, ``repeated``, the one its transaction posted first)."""

    payment: _PaymentPart


class ReconcileOut(_Out):
    """A provider's statement of one day against the ledger."""

    provider: str
    date: str
    start: str
    end: str
    statement_lines: int
    matched: int
    ok: bool = Field(description="every payment agrees")
    missing: list[dict[str, Any]] = Field(description="in the statement, not in the ledger")
    extra: list[dict[str, Any]] = Field(
        description="in the ledger (paid that day), not in the statement"
    )
    mismatched: list[dict[str, Any]] = Field(
        description="another amount or account, or the top-up was reversed"
    )
