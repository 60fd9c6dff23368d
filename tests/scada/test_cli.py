"""The CLI's shape: every subcommand has --help, and --data-dir works before or after a nested action."""

from __future__ import annotations

import pytest

from scada.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["account", "site.yaml", "show", "b1-101"],
        ["alarms", "site.yaml", "list"],
        ["history", "query", "site.yaml", "t", "--from", "2026-01-01", "--to", "2026-01-02"],
        ["run", "site.yaml"],
    ],
)
def test_data_dir_before_or_after_the_action(argv: list[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(argv).data_dir == "var"  # the default
    assert parser.parse_args([*argv, "--data-dir", "/srv/a"]).data_dir == "/srv/a"
    if argv[0] in ("account", "alarms"):  # also accepted on the command itself
        assert parser.parse_args([argv[0], "--data-dir", "/srv/b", *argv[1:]]).data_dir == "/srv/b"


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0
        assert "usage: scada " + name in capsys.readouterr().out
