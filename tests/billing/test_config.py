"""The billing sections of a site configuration: the issue's form verbatim, located errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.config import TariffConfig, parse_hours
from scada.config import ConfigError, load_site_text
from tests.billing.conftest import ISSUE_TARIFFS, site_text


def test_issue_form_is_accepted_verbatim() -> None:
    assert ISSUE_TARIFFS in site_text()
    site = load_site_text(site_text())
    tou, tier = site.tariffs
    assert [b.name for b in tou.bands] == ["sharp", "peak", "flat", "valley"]
    assert tou.bands[0].price == Decimal("1.3782")
    assert [t.up_to_kwh for t in tier.tiers] == [240, 400, None]
    shop = site.accounts[0]
    assert (shop.id, shop.tenant, shop.tariff, shop.area_m2) == (
        "shop-101",
        "Shop 101",
        "shop-tou",
        120,
    )
    assert shop.meters[0].energy == "e.101.energy_kwh"
    assert (shop.alarm1, shop.alarm2, shop.keep_power) == (
        Decimal("100.00"),
        Decimal("50.00"),
        False,
    )
    assert site.buildings[0].electricity is not None


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site_text(text, name="site.yaml")
    return [str(i) for i in info.value.issues]


def test_reference_errors_are_located() -> None:
    base = site_text()
    text = base.replace(
        "tariff: home-tier, area_m2: 80, meters: [e.102.energy_kwh]",
        "tariff: home-tire, area_m2: 80, meters: [e.102.energy_kwhh]",
    )
    text += "  - {id: shop-101, tariff: shop-tou, meters: [e.main.energy_kwh]}\n"
    errs = _errors(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "home-tire" in ln)
    assert any(
        e.startswith(f"site.yaml:{line}:")
        and "accounts[1].tariff: unknown tariff 'home-tire' (did you mean 'home-tier'?)" in e
        for e in errs
    ), errs
    assert any(
        f"site.yaml:{line}:" in e and "accounts[1].meters[0]: unknown tag 'e.102.energy_kwhh'" in e
        for e in errs
    ), errs
    assert any("accounts[2].id: duplicate account id 'shop-101'" in e for e in errs), errs


def test_meter_in_two_accounts_and_master_tag() -> None:
    text = site_text() + "  - {id: other, tariff: shop-tou, meters: [e.101.energy_kwh]}\n"
    text = text.replace("master_tag: e.main.energy_kwh", "master_tag: e.mian.energy_kwh")
    errs = _errors(text)
    assert any(
        "accounts[2].meters[0]: meter 'e.101.energy_kwh' already belongs to another account" in e
        for e in errs
    ), errs
    assert any(
        "buildings[0].electricity.master_tag: unknown tag 'e.mian.energy_kwh'" in e for e in errs
    ), errs


@pytest.mark.parametrize(
    ("tariff", "message"),
    [
        (
            {"id": "t", "bands": [{"name": "a", "price": "1", "hours": ["00:00-12:00"]}]},
            "no band covers 12:00-24:00",
        ),
        (
            {
                "id": "t",
                "bands": [
                    {"name": "a", "price": "1", "hours": ["00:00-13:00"]},
                    {"name": "b", "price": "1", "hours": ["12:00-24:00"]},
                ],
            },
            "band 'b' overlaps another band at 12:00",
        ),
        (
            {
                "id": "t",
                "price": "1",
                "bands": [{"name": "a", "price": "1", "hours": ["00:00-24:00"]}],
            },
            "either a flat `price` or `bands`",
        ),
        (
            {"id": "t", "tiers": [{"price": "1"}, {"up_to_kwh": 10, "price": "2"}]},
            "only the last tier may leave out `up_to_kwh`",
        ),
        (
            {
                "id": "t",
                "tiers": [
                    {"up_to_kwh": 10, "price": "1"},
                    {"up_to_kwh": 5, "price": "2"},
                    {"price": "3"},
                ],
            },
            "up_to_kwh must grow",
        ),
        (
            {
                "id": "t",
                "price": "1",
                "tiers": [{"up_to_kwh": 10, "price": "1"}, {"surcharge": "0.1"}],
            },
            "gives `surcharge`, not `price`",
        ),
        ({"id": "t"}, "needs `price`, `bands` or `tiers`"),
        ({"id": "t", "price": "abc"}, "not a decimal number"),
    ],
)
def test_tariff_validation(tariff: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TariffConfig.model_validate(tariff)


def test_hours() -> None:
    assert parse_hours("23:00-07:00") == [(1380, 1440), (0, 420)]
    assert parse_hours("07:00-24:00") == [(420, 1440)]
    for bad in ("7-8", "25:00-26:00", "08:00-08:00", "24:00-01:00"):
        with pytest.raises(ValueError, match="time range"):
            parse_hours(bad)


def test_account_thresholds() -> None:
    text = site_text().replace(
        'alarm1: "100.00", alarm2: "50.00"', 'alarm1: "10.00", alarm2: "50.00"'
    )
    errs = _errors(text)
    assert any("alarm2 (50.00) must not be above alarm1 (10.00)" in e for e in errs), errs
