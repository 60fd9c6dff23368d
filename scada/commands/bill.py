"""``scada bill [electricity|heat] CONFIG --from T --to T``: bills from the historian.

``scada bill electricity CONFIG`` (or ``scada bill CONFIG``): electricity bills per account
and meter, the energy by band and tier, the shared loss and the cost. ``--json`` prints
``{"accounts": [{"id", "energy_kwh", "lines": [{"name", "kwh", "price", "amount"}],
"shared_kwh", "total"}]}``.

``scada bill heat CONFIG``: the heat fees (two-part heat price) of each household of a building
with a heat tariff, from the heat allocation of the window (normally the heating season).
``--json`` prints ``{"start", "end", "households": [{"household", "building", "area_m2",
"heat_kwh", "advance", "basic", "metered", "floor", "cap", "suspended_fee", "total", "paid",
"settlement", "suspended", "suspended_days", ...}]}``; ``--statements DIR`` writes each
household's season statement (``heat-<household>.pdf``, or ``.xlsx`` with ``--format xlsx``).

Money is a string in JSON; ``--xlsx F`` writes the report. Times as in ``scada allocate``
(``--from last-month --to this-month``, ``-7d``, ISO dates); a line on stderr says when the
period lies outside the stored history.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

#: What ``scada bill`` bills when the first word is not one of its kinds (the CONFIG).
DEFAULT_KIND = "electricity"


class _Kinds(Mapping[str, argparse.ArgumentParser]):
    """The kinds of ``bill`` as argparse checks them: any word passes (it may be the CONFIG)."""

    def __init__(self, parsers: dict[str, argparse.ArgumentParser]) -> None:
        self._parsers = parsers

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        return self._parsers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsers)

    def __len__(self) -> int:
        return len(self._parsers)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str)


class _KindOrConfig(argparse._SubParsersAction):
    """Subcommands whose first word may be left out: ``bill CONFIG`` is ``bill electricity``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse checks the first word against ``choices`` before __call__ can default it
        self.choices = _Kinds(self._name_parser_map)  # type: ignore[assignment]

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        words = list(values or [])
        if words and words[0] not in self._name_parser_map:
            words.insert(0, DEFAULT_KIND)
        super().__call__(parser, namespace, words, option_string)


def register(sub: argparse._SubParsersAction) -> None:
    from scada.commands.billing_output import add_common, add_window

    parser = sub.add_parser(
        "bill",
        usage="%(prog)s [electricity | heat] CONFIG --from T --to T [OPTIONS]",
        help="bills: electricity per account (TOU, tiers, shared loss), heat fees per household",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", action=_KindOrConfig)
    kinds.required = True

    elec = kinds.add_parser(
        "electricity",
        help="electricity bills per account (the default: `scada bill CONFIG`)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(elec)
    add_window(elec)
    elec.add_argument("--account", action="append", help="only this account (repeatable)")
    elec.add_argument(
        "--source",
        choices=["historian", "billing"],
        default="historian",
        help="readings: every historian sample (default) or the 30-min billing readings",
    )
    out = elec.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the bills as JSON")
    out.add_argument("--xlsx", metavar="F", help="write an Excel report to F")
    elec.set_defaults(func=run)

    heat = kinds.add_parser(
        "heat",
        help="heat fees per household (area fee, basic + metered, floor / cap, settlement)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(heat)
    add_window(heat)
    heat.add_argument("--building", action="append", help="only this building (repeatable)")
    heat.add_argument("--household", action="append", help="only this household (repeatable)")
    out = heat.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the fees as JSON")
    out.add_argument("--xlsx", metavar="F", help="write an Excel report to F")
    out.add_argument(
        "--statements", metavar="DIR", help="write each household's statement into DIR"
    )
    heat.add_argument(
        "--format",
        choices=["pdf", "xlsx"],
        default="pdf",
        help="statement format with --statements (default pdf)",
    )
    heat.set_defaults(func=run_heat)


def run(args: argparse.Namespace) -> int:
    from scada.commands.billing_output import emit, note_outside_history, open_billing, window

    with open_billing(args) as billing:
        try:
            start, end = window(args, billing.tz)
            bills = billing.bill(start, end, args.account, source=args.source)
        except (ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.source == "historian":
            meters = [m.energy for a in billing.site.accounts for m in a.meters]
            note_outside_history(billing, start, end, meters)
        if emit(args, billing, "bills", start, end, bills):
            return 0
        for a in bills.accounts:
            print(f"{a.id}: {a.energy_kwh:.3f} kWh, shared {a.shared_kwh:.3f} kWh, total {a.total}")
            for m, detail in a.meters.items():
                print(f"  meter {m}: {detail['total']:.3f} kWh")
            for ln in a.lines:
                print(f"  {ln.name:<24} {ln.kwh:>12.3f} kWh x {ln.price:>8} = {ln.amount:>10}")
    return 0


def run_heat(args: argparse.Namespace) -> int:
    from billing.heat_fees import HeatFees
    from scada.commands.billing_output import (
        emit,
        note_outside_history,
        open_billing,
        print_heat_fees,
        window,
    )

    with open_billing(args) as billing:
        try:
            start, end = window(args, billing.tz)
            buildings = args.building
            if args.household and buildings is None:
                buildings = list(
                    dict.fromkeys(billing.site.household_building(h) for h in args.household)
                )
            fees = billing.heat_fees(start, end, buildings)
        except (ValueError, KeyError) as exc:
            print(f"error: {_reason(exc)}", file=sys.stderr)
            return 2
        if args.household:
            fees = [f for f in fees if f.household in set(args.household)]
            missing = sorted(set(args.household) - {f.household for f in fees})
            if missing:
                print(
                    f"error: no heat fee for {', '.join(missing)} (no heat tariff or no valve)",
                    file=sys.stderr,
                )
                return 2
        if not fees:
            print(
                "note: no building has a heat tariff (heat.tariff or heat_tariff)", file=sys.stderr
            )
        valves = [h.valve_tag for h in billing.site.households() if h.valve_tag]
        note_outside_history(billing, start, end, valves)
        if args.statements:
            return _write_statements(args, billing, start, end, [f.household for f in fees])
        if emit(args, billing, "heat_fees", start, end, HeatFees(start, end, fees)):
            return 0
        print_heat_fees(fees)
    return 0


def _reason(exc: Exception) -> str:
    """Return the message of ``exc`` (a KeyError's without the quotes repr adds)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _write_statements(
    args: argparse.Namespace, billing: Any, start: float, end: float, households: list[str]
) -> int:
    """Write one statement file per household into ``--statements DIR``."""
    from billing.statements import statement_pdf, statement_xlsx

    folder = Path(args.statements)
    folder.mkdir(parents=True, exist_ok=True)
    render = statement_pdf if args.format == "pdf" else statement_xlsx
    for st in billing.heat_statements(start, end, households):
        path = folder / st.file_name(args.format)
        path.write_bytes(render(st))
    print(f"wrote {len(households)} statements to {folder}")
    return 0
