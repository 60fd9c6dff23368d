"""The CLI's shape: every subcommand has --help, one argument order (``scada GROUP [ACTION]
CONFIG ...``), and --data-dir in any position."""

from __future__ import annotations

import pytest

from scada.cli import build_parser

#: One command line per group, in the one order: group, action, CONFIG, the rest.
COMMANDS = [
    ["account", "show", "site.yaml", "b1-101"],
    ["account", "topup", "site.yaml", "b1-101", "5.00", "--user", "ann"],
    ["alarms", "list", "site.yaml"],
    ["alarms", "kpi", "site.yaml", "--since", "-7d"],
    ["audit", "export", "site.yaml", "--since", "today"],
    ["allocate", "heat", "site.yaml", "--from", "-7d", "--to", "now"],
    ["bill", "site.yaml", "--from", "last-month", "--to", "this-month"],
    ["history", "query", "site.yaml", "t", "--from", "2026-01-01", "--to", "2026-01-02"],
    ["report", "energy", "site.yaml", "--period", "this-month"],
    ["user", "list", "site.yaml"],
    ["run", "site.yaml"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_data_dir_in_any_position(argv: list[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(argv).data_dir == "var"  # the default
    assert parser.parse_args([*argv, "--data-dir", "/srv/a"]).data_dir == "/srv/a"
    assert parser.parse_args(["--data-dir", "/srv/b", *argv]).data_dir == "/srv/b"
    assert parser.parse_args([argv[0], "--data-dir", "/srv/c", *argv[1:]]).data_dir == "/srv/c"
    assert parser.parse_args([*argv[:2], "--data-dir", "/srv/d", *argv[2:]]).data_dir == "/srv/d"


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_config_comes_after_the_action(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.config == "site.yaml"


@pytest.mark.parametrize(
    "argv",
    [
        ["alarms", "site.yaml", "list"],  # the order before issue 18
        ["account", "site.yaml", "show", "b1-101"],
        ["report", "site.yaml", "energy", "--period", "2025-11"],
    ],
)
def test_the_old_order_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(argv)
    assert done.value.code == 2
    assert "invalid choice: 'site.yaml'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--from", "--to", "--since", "--until", "--at", "--start"])
def test_a_relative_time_is_a_value_not_an_option(option: str) -> None:
    argv = {
        "--from": ["history", "query", "c", "t", "--from", "-7d", "--to", "now"],
        "--to": ["bill", "c", "--from", "-30d", "--to", "-1.5h"],
        "--since": ["alarms", "history", "--since", "-24h"],
        "--until": ["audit", "export", "--until", "-30m"],
        "--at": ["account", "replace-meter", "c", "a", "--meter", "m", "--old-final", "1",
                 "--new-initial", "0", "--at", "-2h"],
        "--start": ["simulate", "c", "--start", "-2d"],
    }[option]  # fmt: skip
    args = build_parser().parse_args(argv)
    value = argv[argv.index(option) + 1]
    dest = {"--from": "start", "--to": "end"}.get(option, option.lstrip("-"))
    assert getattr(args, dest) == value


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0
        assert "usage: scada " + name in capsys.readouterr().out
