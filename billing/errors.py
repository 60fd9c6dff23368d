"""Why billing refused an operation: one exception class per reason, each naming the account.

``BillingError`` is the base. ``LedgerError`` (also a ``ValueError``) and its subclasses are
the ledger's rules; ``UnknownAccount`` and ``UnknownMeter`` (also ``KeyError``) are look-ups
against the configuration. Callers map the classes, not the messages: the REST API answers
``BadAmount`` 400, ``UnknownAccount`` / ``UnknownMeter`` / ``UnknownEntry`` 404 and every
other ``LedgerError`` 409; the CLI prints the message.
"""

from __future__ import annotations

__all__ = [
    "AccountAlreadyOpen",
    "AccountClosed",
    "AccountNotOpen",
    "AlreadyReversed",
    "BadAmount",
    "BillingError",
    "ChargeHeld",
    "IdempotencyConflict",
    "Implausible",
    "InsufficientBalance",
    "LedgerError",
    "MissingReading",
    "NotReversible",
    "UnknownAccount",
    "UnknownEntry",
    "UnknownMeter",
]


class BillingError(Exception):
    """A billing operation was refused; the message says why and names the account."""

    def __str__(self) -> str:
        # KeyError subclasses would otherwise print the message quoted
        return str(self.args[0]) if self.args else self.__class__.__name__


class LedgerError(BillingError, ValueError):
    """A ledger operation is not allowed (names the account and entry)."""


class BadAmount(LedgerError):
    """A money amount is not a positive decimal with at most two decimals below 1e12."""


class AccountNotOpen(LedgerError):
    """The account has no opening entry yet."""


class AccountAlreadyOpen(LedgerError):
    """The account was opened before."""


class AccountClosed(LedgerError):
    """The account is closed (its closing entry, or no longer configured): it takes no entry.

    A closed account is never opened again: the flat's next tenant gets a new account id.
    """


class MissingReading(LedgerError):
    """A closing needs a meter's final reading: none was given and no live value is good."""


class ChargeHeld(LedgerError):
    """The account has a consumption charge held for review: release or discard it first."""


class InsufficientBalance(LedgerError):
    """A refund exceeds the balance."""


class UnknownEntry(LedgerError):
    """The account has no entry with that sequence number."""


class NotReversible(LedgerError):
    """The entry's kind cannot be reversed (consumption follows the readings)."""


class AlreadyReversed(LedgerError):
    """The entry was reversed before."""


class IdempotencyConflict(LedgerError):
    """An idempotency key was used before for another amount."""


class Implausible(LedgerError):
    """A meter reading is not plausible for its meter (not finite, backwards, too far ahead)."""


class UnknownAccount(BillingError, KeyError):
    """No account with that id is configured."""


class UnknownMeter(BillingError, KeyError):
    """The account has no meter with that energy tag."""
