"""``scada bench poll`` part 3: a meter-bus scan over a socat pty pair and its wire time (issue 21)."""

from __future__ import annotations

import shutil

import pytest

from scada.bench.poll_meterbus import BITS_PER_CHAR, METERS, _scan, wire_s

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")


def test_wire_time_is_bits_over_baud_plus_gaps() -> None:
    # 100 characters of 11 bits at 2400 baud, 2 requests of 20 ms and 22 bit times each
    assert wire_s(100, 2, 2400, 0.02, 22) == pytest.approx((1100 + 44) / 2400 + 0.04)


async def test_a_cjt188_scan_of_32_meters_over_a_pty() -> None:
    f = await _scan("cjt188", (2400, 9600))
    assert f.online == METERS and f.requests == METERS  # one 901F read per meter
    # every answer came with its FE preamble: the frames are fewer bytes than the wire
    assert 0 < f.frame_bytes < f.bytes_on_wire
    for baud in (2400, 9600):
        assert f.minimum_s[baud] == pytest.approx(
            f.frame_bytes * BITS_PER_CHAR / baud + METERS * 0.020
        )
        assert f.driver_s[baud] > f.minimum_s[baud]
    assert f.driver_s[2400] > f.driver_s[9600]
