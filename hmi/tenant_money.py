"""The tenant's money: the balance explained (last top-up, this month's charges) and the ledger.

:func:`balance_story` turns an account's ledger entries into what the tenant reads: the
balance on the 1st of the month, the top-ups and the charges (consumption and shared losses)
since, other entries (refunds, reversals, opening), the balance now, and the last top-up that
was not reversed. :class:`BalancePanel` shows it with the live level (billing's
``acct.<id>.level`` tag) and reloads the ledger when the balance tag moves;
:class:`LedgerPanel` lists the latest entries. Ledger reads run in a worker thread.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.account_statement import kind_label
from billing.ledger import Entry, EntryKind
from billing.tags import Level, balance_tag, level_tag
from hmi.layout import html_div
from hmi.session import HmiSession
from hmi.tenant_labels import money_text
from hmi.timefmt import local_time_text
from i18n import _

if TYPE_CHECKING:
    from billing.accounts import ResolvedAccount

__all__ = ["BalancePanel", "BalanceStory", "LedgerPanel", "balance_story", "kind_text"]

log = logging.getLogger(__name__)

LEDGER_ROWS = 12
CHARGES = frozenset({EntryKind.CONSUMPTION, EntryKind.SHARED_LOSS})
ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class BalanceStory:
    """An account's balance explained for one month (money as Decimal, times epoch s)."""

    month_start_balance: Decimal
    topups: Decimal
    charges: Decimal  # positive: what consumption and shared losses took
    other: Decimal  # refunds, reversals, opening, meter replacements
    balance: Decimal
    last_topup_ts: float | None
    last_topup: Decimal | None


def balance_story(entries: Sequence[Entry], month_start: float) -> BalanceStory:
    """Return the balance story of ``entries`` (one account's, any order) from ``month_start``."""
    balance = sum((e.amount for e in entries), ZERO)
    month = [e for e in entries if e.ts >= month_start]
    topups = sum((e.amount for e in month if e.kind is EntryKind.TOPUP), ZERO)
    charges = -sum((e.amount for e in month if e.kind in CHARGES), ZERO)
    other = sum((e.amount for e in month), ZERO) - topups + charges
    reversed_ = {e.reverses for e in entries if e.reverses is not None}
    last = max(
        (e for e in entries if e.kind is EntryKind.TOPUP and e.seq not in reversed_),
        key=lambda e: (e.ts, e.seq),
        default=None,
    )
    return BalanceStory(
        month_start_balance=balance - sum((e.amount for e in month), ZERO),
        topups=topups,
        charges=charges,
        other=other,
        balance=balance,
        last_topup_ts=last.ts if last else None,
        last_topup=last.amount if last else None,
    )


def kind_text(kind: EntryKind) -> str:
    """Return a ledger entry kind as the tenant reads it (as their statement names it)."""
    return kind_label(kind)


def level_status(level: Level | None) -> str:
    """Return the tenant's status line of a prepaid level."""
    if level is None:
        return _("account not opened")
    texts = {
        Level.OK: _("ok"),
        Level.ALARM1: _("balance low (alarm 1)"),
        Level.ALARM2: _("balance very low (alarm 2), please top up"),
        Level.ARREARS: _("in arrears: power may be cut"),
    }
    return texts[level]


class BalancePanel:
    """One account: balance now, level, last top-up, this month's top-ups and charges."""

    def __init__(
        self,
        session: HmiSession,
        account: ResolvedAccount,
        month_start: float,
        name: str,
        redraw: Callable[[], None],
    ) -> None:
        self.session = session
        self.redraw = redraw
        self.account = account
        self.month_start = month_start
        self.title = name
        db = session.services.db
        self.balance_tag = balance_tag(account.id) if balance_tag(account.id) in db else None
        self.level_tag = level_tag(account.id) if level_tag(account.id) in db else None
        unit = db.definition(self.balance_tag).unit if self.balance_tag else ""
        self.currency = unit or None
        self.story: BalanceStory | None = None
        self.error = ""
        self.html = ""
        self._loading = 0

    @property
    def tags(self) -> list[str]:
        """The tags whose changes redraw (and reload) the panel."""
        return [t for t in (self.balance_tag, self.level_tag) if t]

    def load(self) -> None:
        """Read the account's ledger in a worker thread, then redraw."""
        billing = self.session.services.billing
        if billing is None:
            self.render()
            self.redraw()
            return
        self._loading += 1
        token = self._loading

        def done(entries: Any, err: BaseException | None) -> None:
            if token != self._loading:
                return  # a newer load is under way
            if err is not None:
                log.warning("ledger of %s: %s", self.account.id, err)
                self.error = _("the ledger cannot be read now")
            else:
                self.error = ""
                self.story = balance_story(entries, self.month_start)
            self.render()
            self.redraw()

        entries = self.session.in_thread(billing.entries, self.account.id)
        self.session.spawn(entries, done)

    def render(self) -> None:
        """Make the panel's HTML from the live level and the last ledger read."""
        db = self.session.services.db
        level = Level.of(db.read(self.level_tag).value) if self.level_tag else None
        priority = level.info.priority if level is not None else None
        cls = f"pill p{priority}" if priority else "pill"
        s, money = self.story, self._money
        rows = [
            (_("balance now"), money(s.balance if s else self._tag_balance()), "balance"),
            (_("status"), f'<span class="{cls}">{html.escape(level_status(level))}</span>', None),
        ]
        if s is not None:
            rows += [
                (_("last top-up"), self._last_topup(s), "last-topup"),
                (_("balance on the 1st"), money(s.month_start_balance), None),
                (_("top-ups this month"), money(s.topups), "topups"),
                (_("charges this month"), money(-s.charges), "charges"),
            ]
            if s.other:
                rows.append((_("other entries this month"), money(s.other), None))
        body = "".join(
            f"<tr><td>{html.escape(label)}</td>"
            f"<td{f' data-{key}=1' if key else ''}>{value}</td></tr>"
            for label, value, key in rows
        )
        note = f'<p class="u">{html.escape(self.error)}</p>' if self.error else ""
        self.html = (
            f'<div class="tile" data-account="{html.escape(self.account.id)}" data-level="{level}">'
            f"<h2>{html.escape(self.title)}</h2><table>{body}</table>{note}</div>"
        )

    def _money(self, amount: Any) -> str:
        return f'<span class="v">{html.escape(money_text(amount, self.currency))}</span>'

    def _tag_balance(self) -> Any:
        return self.session.services.db.read(self.balance_tag).value if self.balance_tag else None

    def _last_topup(self, s: BalanceStory) -> str:
        if s.last_topup is None:
            return f'<span class="u">{html.escape(_("none yet"))}</span>'
        tz = self.session.services.site.site.timezone
        when = local_time_text(s.last_topup_ts, tz)
        return f'{self._money(s.last_topup)}<br><span class="u">{html.escape(when)}</span>'


class LedgerPanel:
    """The latest ledger entries of the user's accounts: date, what, amount."""

    def __init__(
        self, session: HmiSession, accounts: Sequence[ResolvedAccount], currency: str | None
    ) -> None:
        self.session = session
        self.accounts = list(accounts)
        self.currency = currency
        self.div = html_div("", name="tenant-ledger", sizing_mode="stretch_width")

    def load(self) -> None:
        """Read the entries in a worker thread, then redraw."""
        billing = self.session.services.billing
        if billing is None or not self.accounts:
            text = _("bills and top-ups appear here once billing runs")
            self.div.text = f'<span class="u">{html.escape(text)}</span>'
            return
        ids = [a.id for a in self.accounts]

        def read() -> list[Entry]:
            return sorted((e for a in ids for e in billing.entries(a)), key=lambda e: (e.ts, e.seq))

        self.session.spawn(self.session.in_thread(read), self._render)

    def _render(self, entries: Any, err: BaseException | None) -> None:
        title = html.escape(_("Bills and top-ups"))
        if err is not None:
            log.warning("tenant ledger: %s", err)
            msg = html.escape(_("the ledger cannot be read now"))
            self.div.text = f'<div class="tile"><h2>{title}</h2><p class="u">{msg}</p></div>'
            return
        tz = self.session.services.site.site.timezone
        rows = [
            f"<tr><td>{html.escape(local_time_text(e.ts, tz))}</td>"
            f"<td>{html.escape(kind_text(e.kind))}</td>"
            f"<td>{html.escape(money_text(e.amount, self.currency))}</td></tr>"
            for e in list(entries)[-LEDGER_ROWS:][::-1]
        ]
        self.div.text = f'<div class="tile"><h2>{title}</h2><table>{"".join(rows)}</table></div>'
