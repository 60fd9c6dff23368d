"""The tags benchmark runs and both implementations agree (figures are not asserted)."""

from __future__ import annotations

import argparse
import json

import pytest

from scada.bench import tags as bench


def test_bench_small_run_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--tags", "2000", "--subscribers", "7", "--rounds", "3", "--json"])
    assert bench.run(args) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["results_agree"] is True
    assert figures["tags"] == 2000 and figures["subscribers"] == 7
    fast = figures["tag_database"]
    assert fast["updates"] == 6000
    assert fast["changes"] == 3 * 200, "10% of the values move past the deadband each round"
    assert fast["delivered"] > fast["changes"], "several subscribers see each change"


def test_names_and_patterns() -> None:
    names = bench.tag_names(1234)
    assert len(names) == len(set(names)) == 1234
    assert len(bench.subscriber_patterns(50)) == 50
