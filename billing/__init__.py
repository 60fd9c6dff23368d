"""Heat allocation, electricity tariffs, prepaid accounts and ledger, shared losses, reports."""

__all__: list[str] = []
