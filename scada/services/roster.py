"""Import and export the office's roster through the configuration's versions.

Households and accounts are configuration, so a roster import is a configuration change like
any other (:mod:`scada.services.config_versions`): :class:`RosterService` reads the roster
(:mod:`billing.roster`), plans it against the running site and the ledger
(:mod:`billing.roster_plan`), writes the plan into the configuration files, loads the result
with the real loader and then either answers the diff summary (a dry run: nothing applied) or
applies it as a new configuration version (hot: billing takes the new accounts and opens them
with their opening balance, once). The files are edited where the items are defined
(:mod:`scada.services.yaml_edit`: only the lines that change):

* a changed household in its building's ``households:`` list; a new household appended there;
* a changed account where it is defined; new accounts in ``roster.yaml`` beside the main file
  (created, and included from the main file, by the first import that adds one).

A household made by a building's ``generate:`` block cannot take the roster's changes (its
area, or the tenant of a flat without an account): such rows are refused with the reason, as
every other bad row, and nothing is imported. The apply is audited by the configuration
manager (``config.apply``, the roster's file name in the comment). The export writes the
roster of the running site (:func:`billing.roster.export_rows`).

Threading: reading, planning, editing and loading run in worker threads; the apply on the
loop (the configuration manager's).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from billing.roster import Roster, RosterError, RosterIssue, export_rows, read_roster, write_roster
from billing.roster_plan import AccountChange, HouseholdChange, RosterPlan, plan_roster
from scada.services.config_versions import ConfigManager, Plan, compare_sites
from scada.services.yaml_edit import YamlEdit

if TYPE_CHECKING:
    from billing.ledger import Ledger
    from scada.config import SiteConfig
    from scada.services.plant import Plant

__all__ = ["ROSTER_FILE", "OfflineApplier", "RosterService", "build_proposal"]

log = logging.getLogger(__name__)

#: The file new accounts go to (relative to the main file), included from the main file.
ROSTER_FILE = "roster.yaml"
_ROSTER_HEADER = (
    "# Prepaid accounts added by roster imports (scada roster import, POST /api/roster/import).\n"
    "# Edit them here or through the next import; docs/billing.md, Roster import and export.\n"
)
#: Key order of a new account (the others follow).
_ACCOUNT_KEYS = ("id", "tenant", "phone", "email", "tariff", "household", "meters")


# ---------------------------------------------------------------------- the proposal


class _Files:
    """The bundle's files, composed on first use, edited in place."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self._editors: dict[str, YamlEdit] = {}

    def editor(self, rel: str) -> YamlEdit:
        if rel not in self._editors:
            self._editors[rel] = YamlEdit(self.files[rel], rel)
        return self._editors[rel]

    def find(self, section: str, item_id: str) -> tuple[YamlEdit, Any] | None:
        """Return the editor and node of the item ``item_id`` of a root list ``section``."""
        for rel, text in self.files.items():
            if f"{section}" not in text or item_id not in text:
                continue  # (no need to compose a file that cannot hold it)
            ed = self.editor(rel)
            node = ed.find(ed.get(ed.root, section), "id", item_id)
            if node is not None:
                return ed, node
        return None

    def changed(self) -> dict[str, str]:
        return {rel: ed.text() for rel, ed in self._editors.items() if ed.changed}


def _account_item(change: AccountChange) -> dict[str, Any]:
    item: dict[str, Any] = {"id": change.id}
    for key in _ACCOUNT_KEYS[1:]:
        if key in change.values:
            item[key] = change.values[key]
    item.update({k: v for k, v in change.values.items() if k not in item})
    return item


def _first_column(change: HouseholdChange) -> str | None:
    for col in ("area_m2", "tenant", "phone", "email"):
        if col in change.values:
            return col
    return None


def build_proposal(
    files: dict[str, str], main: str, plan: RosterPlan, roster: Roster
) -> dict[str, str]:
    """Return the changed files ``{relative path: text}`` that carry out ``plan``.

    ``files`` is the running bundle (main file ``main`` among them). Raises ``RosterError`` for
    rows whose household is made by a ``generate:`` block (it has no place for the change).
    """
    bundle = _Files(dict(files))
    issues: list[RosterIssue] = []
    new_households: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in plan.households:
        if change.new:
            new_households[change.building].append({"id": change.id, **change.values})
            continue
        building = bundle.find("buildings", change.building)
        node = None
        if building is not None:
            ed, b = building
            node = ed.find(ed.get(b, "households"), "id", change.id)
        if node is None:
            issues.append(
                roster.issue(
                    change.row,
                    _first_column(change),
                    f"household {change.id} is made by building {change.building}'s generate: "
                    "block: change its area there, or give the flat a meter (an account) for "
                    "its tenant",
                )
            )
            continue
        ed.set_values(node, change.values)
    for building_id, items in new_households.items():
        found = bundle.find("buildings", building_id)
        if found is None:
            raise RuntimeError(f"building {building_id} is in the site but in none of its files")
        ed, b = found
        ed.append_to_key(b, "households", items)
    new_accounts = []
    for account in plan.accounts:
        if account.new:
            new_accounts.append(_account_item(account))
            continue
        where = bundle.find("accounts", account.id)
        if where is None:
            raise RuntimeError(f"account {account.id} is in the site but in none of its files")
        where[0].set_values(where[1], account.values)
    if issues:
        raise RosterError(issues)
    if new_accounts:
        if ROSTER_FILE not in bundle.files:
            bundle.files[ROSTER_FILE] = _ROSTER_HEADER
            main_ed = bundle.editor(main)
            include = main_ed.get(main_ed.root, "include")
            if ROSTER_FILE not in set(main_ed.scalars(include)):
                main_ed.append_to_key(None, "include", [ROSTER_FILE])
        bundle.editor(ROSTER_FILE).append_to_key(None, "accounts", new_accounts)
    return bundle.changed()


def _verify(site: SiteConfig, plan: RosterPlan) -> list[str]:
    """Return what the loaded ``site`` does not hold of ``plan`` (empty: the edit is right)."""
    wrong = []
    households = {h.id: h for h in site.households()}
    accounts = {a.id: a for a in site.accounts}
    for h in plan.households:
        cfg = households.get(h.id)
        for key, value in h.values.items():
            if cfg is None or getattr(cfg, key) != value:
                wrong.append(f"household {h.id}: {key}")
    for a in plan.accounts:
        acct = accounts.get(a.id)
        for key, value in a.values.items():
            have = None if acct is None else getattr(acct, key)
            if key == "meters" and have is not None:
                have = [m.energy for m in have]
            elif have is not None and key in ("opening_balance", "alarm1", "alarm2"):
                have = str(have)
            if acct is None or have != value:
                wrong.append(f"account {a.id}: {key}")
    return wrong


# ---------------------------------------------------------------------- the service


class RosterService:
    """Roster import (dry run or apply) and export over the configuration manager.

    ``ledger`` returns the ledger (None when billing is not running: opening balances are then
    checked at the next start).
    """

    def __init__(self, config: ConfigManager, ledger: Callable[[], Ledger | None]) -> None:
        self.config = config
        self.ledger = ledger

    @property
    def site(self) -> SiteConfig:
        return self.config.plant.site

    def prepare(self, data: bytes, fmt: str) -> tuple[RosterPlan, dict[str, str]]:
        """Read and plan a roster and edit the files; return the plan and the changed files.

        Blocking (a worker thread). Raises ``RosterError`` (every bad row) or ``ValueError``.
        """
        roster = read_roster(data, fmt, partial=True)  # bad cells and bad rows: one answer
        plan = plan_roster(roster, self.site, self.ledger())
        if plan.empty:
            return plan, {}
        files = self.config.current_files()
        return plan, build_proposal(files, self.config.main_name(), plan, roster)

    def check(
        self, plan: RosterPlan, proposal: dict[str, str]
    ) -> tuple[SiteConfig | None, dict[str, Any]]:
        """Load the proposal with the real loader (blocking); return the site and the result."""
        files = self.config.bundle(proposal)
        site, issues = self.config.load_bundle(files)
        diff = self.config.diff(self.config.current_files(), files)
        if site is not None:
            wrong = _verify(site, plan)
            if wrong:  # the edit put a value elsewhere than planned: never apply that
                raise RuntimeError(f"the roster's edit of the configuration is wrong: {wrong[:5]}")
        return site, {"valid": site is not None, "errors": issues, "diff": diff}

    async def import_roster(
        self,
        user: Any,
        data: bytes,
        fmt: str,
        *,
        dry_run: bool,
        name: str = "roster",
        source: str | None = None,
    ) -> dict[str, Any]:
        """Import a roster (module docstring); return the result (``summary`` of the changes).

        ``{"dry_run", "valid", "version", "summary", "diff", "plan", "errors"}``: ``errors`` are
        configuration errors of the result (``valid`` false, nothing applied); a bad roster
        raises ``RosterError`` (nothing applied). ``PermissionError`` if ``user`` may not
        change the configuration.
        """
        loop = asyncio.get_running_loop()
        plan, proposal = await loop.run_in_executor(None, self.prepare, data, fmt)
        result: dict[str, Any] = {
            "dry_run": dry_run,
            "valid": True,
            "version": self.config.current_version(),
            "summary": plan.summary(),
            "diff": {},
            "plan": None,
            "errors": [],
        }
        if not proposal:
            return result  # the configuration holds the roster already
        site, checked = await loop.run_in_executor(None, self.check, plan, proposal)
        result.update(checked)
        if site is None:
            result["version"] = None
            return result
        result["plan"] = compare_sites(self.site, site).to_json()
        if dry_run:
            result["version"] = None
            return result
        counts = plan.summary()
        comment = (
            f"roster import {name}: households +{len(counts['households']['added'])} "
            f"~{len(counts['households']['changed'])}, accounts "
            f"+{len(counts['accounts']['added'])} ~{len(counts['accounts']['changed'])}"
        )
        applied = await self.config.apply(user, proposal, comment=comment, source=source)
        result.update({k: applied[k] for k in ("valid", "errors", "version", "diff", "plan")})
        if applied["valid"]:
            ledger = self.ledger()
            if ledger is not None:
                result["summary"]["openings"] = await loop.run_in_executor(
                    None, self._openings, ledger, plan
                )
        return result

    @staticmethod
    def _openings(ledger: Ledger, plan: RosterPlan) -> list[dict[str, Any]]:
        """Return the plan's openings with the ledger's entries now (posted or still to post)."""
        from billing.roster import opening_entries

        posted = opening_entries(ledger)
        out = []
        for o in plan.openings:
            doc = o.to_json()
            if o.account in posted:
                doc.update(
                    amount=str(posted[o.account][0]), entry=posted[o.account][1], state="posted"
                )
            out.append(doc)
        return out

    def export(self, fmt: str) -> bytes:
        """Return the running site's roster as ``xlsx`` or ``csv`` (blocking)."""
        return write_roster(export_rows(self.site, self.ledger()), fmt)


# ---------------------------------------------------------------------- offline (the CLI)


class OfflineApplier:
    """Applies a configuration where nothing runs (the CLI): the site, and the ledger's openings.

    New accounts are opened in ``ledger`` with their configured opening balance (once: the
    ledger refuses a second opening), as ``scada run`` does when it applies a configuration.
    """

    def __init__(self, plant: Plant, ledger: Ledger, user: str, note: str) -> None:
        self.plant = plant
        self.ledger = ledger
        self.user = user
        self.note = note

    async def apply(self, site: SiteConfig) -> Plan:
        plan = compare_sites(self.plant.site, site)
        self.plant.site = site
        for account in site.accounts:
            if not self.ledger.is_open(account.id) and not self.ledger.is_closed(account.id):
                self.ledger.open_account(
                    account.id, account.opening_balance, user=self.user, note=self.note
                )
        return plan
