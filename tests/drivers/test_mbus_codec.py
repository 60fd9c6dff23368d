"""M-Bus (EN 13757-2/-3) codec against published example telegrams (issue 21).

Sources of the example telegrams (public documentation, copied as hex literals):

- [A] The RSP_UD example of the M-Bus documentation (m-bus.com, "The M-Bus: A Documentation",
  chapter 6 "Application layer", example of a variable data structure answer): ident
  12345678, manufacturer PAD, water meter; volume 12.565 m3, maximum volume flow 113 l/h at
  storage 5, energy 218.37 kWh at tariff 2 of subunit 1.
- [B] libmbus test telegram ``test/test-frames/SLB_CF-Compact-Integral-MK-MaXX.hex``
  (https://github.com/rscada/libmbus) and its decoding ``....norm.xml``: a Sontex/SLB CF
  Compact heat meter, ident 11817314; flow 21.8 degC, return 22.0 degC, difference -0.18 K
  (a negative BCD), date 2014-03-13 14:02, volumes 1.23 and 3.21 m3 of subunits 1 and 2.
Both checksums were checked by hand (sum of C..data mod 256: 18 and DB).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from drivers.mbus import (
    ChecksumError,
    CollisionError,
    FixedHeader,
    Frame,
    MalformedFrame,
    Quantity,
    TruncatedFrame,
    decode_bcd,
    decode_frame,
    decode_manufacturer,
    decode_variable,
    encode_bcd,
    encode_frame,
    encode_manufacturer,
    encode_record,
    encode_variable,
    find_frame,
    point_value,
    req_ud2,
    select_secondary,
    snd_nke,
    unit_factor,
)

A_RSP_UD = bytes.fromhex(
    "68 1F 1F 68 08 02 72 78 56 34 12 24 40 01 07 55 00 00 00"
    " 03 13 15 31 00 DA 02 3B 13 01 8B 60 04 37 18 02 18 16"
)
B_RSP_UD = bytes.fromhex(
    "68 5C 5C 68 08 04 72 14 73 81 11 82 4D 06 04 03 00 00 00 0C 78 14 73 81 11 0C 06 00 00"
    " 00 00 0C 14 02 00 00 00 0A 3B 00 00 0B 5A 18 02 00 0B 5E 20 02 00 0B 61 18 00 F0 32 26"
    " 00 00 02 27 98 04 04 6D 02 0E CD 13 84 40 14 7B 00 00 00 84 80 40 14 41 01 00 00 09 FD"
    " 0E 03 09 FD 0F 18 0F 00 16 DB 16"
)


def test_short_frames_and_ack() -> None:
    assert encode_frame(snd_nke(1)) == bytes.fromhex("10 40 01 41 16")
    assert encode_frame(req_ud2(1)) == bytes.fromhex("10 5B 01 5C 16")
    assert encode_frame(req_ud2(1, fcb=True)) == bytes.fromhex("10 7B 01 7C 16")
    assert encode_frame(req_ud2(0xFE)) == bytes.fromhex("10 5B FE 59 16")
    assert decode_frame(b"\xe5").ack
    assert decode_frame(bytes.fromhex("10 7B 01 7C 16")) == Frame(0x7B, 1)


def test_secondary_selection_frame() -> None:
    wire = encode_frame(select_secondary("12345678"))
    assert wire == bytes.fromhex(
        "68 0B 0B 68 53 FD 52 78 56 34 12 FF FF FF FF B2 16"
    )  # CS by hand: 6B2
    frame = decode_frame(wire)
    assert (frame.address, frame.ci, frame.data[:4]) == (0xFD, 0x52, bytes.fromhex("78563412"))
    wildcard = decode_frame(encode_frame(select_secondary("1234FFFF")))
    assert wildcard.data[:4] == bytes.fromhex("FF FF 34 12")
    with pytest.raises(ValueError, match="8 digits"):
        select_secondary("123")


def test_documentation_example_decodes_to_its_values() -> None:
    frame = decode_frame(A_RSP_UD)
    assert (frame.control, frame.address, frame.ci) == (0x08, 0x02, 0x72)
    t = decode_variable(frame.data)
    assert t.header == FixedHeader("12345678", "PAD", 1, 0x07, 0x55, 0x00, 0)
    volume, max_flow, energy = t.records
    assert volume.quantity is Quantity.VOLUME and volume.value == pytest.approx(12.565)
    assert (max_flow.quantity, max_flow.function, max_flow.storage) == (Quantity.VOLUME_FLOW, 1, 5)
    assert max_flow.value == pytest.approx(0.113)
    assert (energy.quantity, energy.tariff, energy.subunit) == (Quantity.ENERGY, 2, 1)
    assert energy.value == pytest.approx(218370.0) and energy.unit == "Wh"
    assert point_value(t, "volume", "l") == pytest.approx(12565.0)


def test_libmbus_heat_meter_decodes_to_its_values() -> None:
    frame = decode_frame(B_RSP_UD)
    t = decode_variable(frame.data)
    assert (t.header.ident, t.header.manufacturer, t.header.version) == ("11817314", "SLB", 6)
    assert (t.header.medium, t.header.access_no) == (0x04, 3)
    assert point_value(t, "energy", "kWh") == 0.0
    assert point_value(t, "volume", "m3") == pytest.approx(0.02)
    assert point_value(t, "volume_flow", "m3/h") == 0.0
    assert point_value(t, "flow_temp", "degC") == pytest.approx(21.8)
    assert point_value(t, "return_temp", "") == pytest.approx(22.0)
    assert point_value(t, "temp_diff", "K") == pytest.approx(-0.18)
    assert point_value(t, "operating_time", "d") == pytest.approx(1176.0)
    stamp = t.find(Quantity.DATETIME)
    assert stamp is not None and stamp.value == datetime(2014, 3, 13, 14, 2)
    sub = [r.value for r in t.records if r.quantity is Quantity.VOLUME and r.subunit]
    assert sub == [pytest.approx(1.23), pytest.approx(3.21)]
    assert t.records[-1].quantity is Quantity.OTHER and not t.more
    with pytest.raises(LookupError, match="no power record"):
        point_value(t, "power", "kW")


def test_round_trip_of_encoded_records() -> None:
    at = datetime(2026, 12, 8, 3, 7)
    records = (
        encode_record(0x04, 12345678, coding=0x04)  # 123456.78 kWh
        + encode_record(0x2E, 12.5, coding=0x05)  # kW, real
        + encode_record(0x59, -512, coding=0x02)  # -5.12 degC
        + encode_record(0x14, 4321, coding=0x0B)  # BCD6, 43.21 m3
        + encode_record(0x04, 1000, coding=0x04, storage=1)
        + encode_record(0x04, 2000, coding=0x04, storage=3, tariff=1)
        + encode_record(0x6D, at)
        + encode_record(0x6C, at, coding=0x02)
    )
    header = FixedHeader("00000042", "SIM", 1, 4, 9, 0)
    wire = encode_frame(Frame(0x08, 5, 0x72, encode_variable(header, records)))
    t = decode_variable(decode_frame(wire).data)
    assert t.header == header
    assert point_value(t, "energy", "kWh") == pytest.approx(123456.78)
    assert point_value(t, "energy", "MWh") == pytest.approx(123.45678)
    assert point_value(t, "energy", "GJ") == pytest.approx(123456.78 * 0.0036)
    assert point_value(t, "power", "kW") == pytest.approx(12.5)
    assert point_value(t, "flow_temp", "degC") == pytest.approx(-5.12)
    assert point_value(t, "volume", "m3") == pytest.approx(43.21)
    assert point_value(t, "energy", "kWh", storage=1) == pytest.approx(10.0)
    assert point_value(t, "energy", "kWh", storage=3, tariff=1) == pytest.approx(20.0)
    dates = [r.value for r in t.records if r.quantity in (Quantity.DATE, Quantity.DATETIME)]
    assert dates == [at, datetime(2026, 12, 8)]


def test_bcd_and_manufacturer() -> None:
    assert encode_bcd(1234, 2) == b"\x34\x12"
    assert decode_bcd(b"\x18\x00\xf0") == -18
    assert decode_bcd(encode_bcd(-18, 3)) == -18
    with pytest.raises(ValueError, match="not BCD"):
        decode_bcd(b"\x1a")
    assert decode_manufacturer(0x4D82) == "SLB"
    assert encode_manufacturer("PAD") == 0x4024


def test_units_are_checked() -> None:
    assert unit_factor("energy", None, "kWh") == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="unit 'kW' is not one of record 'energy'"):
        unit_factor("energy", None, "kW")
    with pytest.raises(ValueError, match="unknown M-Bus record 'heat'"):
        unit_factor("heat", None, "")


def test_wrong_checksum_is_named() -> None:
    bad = A_RSP_UD[:-2] + b"\x19\x16"
    with pytest.raises(ChecksumError, match="wrong checksum: 19, frame sums to 18"):
        decode_frame(bad)
    with pytest.raises(ChecksumError):
        decode_frame(bytes.fromhex("10 5B 01 5D 16"))


def test_truncated_frame_is_named() -> None:
    assert find_frame(A_RSP_UD[:-3]) is None  # more bytes needed
    with pytest.raises(TruncatedFrame, match="truncated frame: 34 of 37 bytes"):
        decode_frame(A_RSP_UD[:-3])
    with pytest.raises(TruncatedFrame):
        decode_frame(bytes.fromhex("10 5B"))
    # a record that runs past the end of the data
    with pytest.raises(MalformedFrame, match="runs past the end"):
        decode_variable(decode_frame(A_RSP_UD).data[:-2])


def test_answer_from_the_wrong_address_decodes_to_that_address() -> None:
    # the codec reports the address; the driver compares it with the one it asked
    assert decode_frame(B_RSP_UD).address == 4
    assert decode_frame(A_RSP_UD).address == 2


def test_collision_garbage_is_named() -> None:
    assert find_frame(b"\x4f\x31") == (0, 2)
    with pytest.raises(CollisionError, match="collision: garbage 4F 31"):
        decode_frame(b"\x4f\x31")
    with pytest.raises(CollisionError, match="length bytes differ"):
        decode_frame(bytes.fromhex("68 1F 2F 68 08"))
    with pytest.raises(CollisionError, match="after the single ack"):
        decode_frame(b"\xe5\xe5")
    with pytest.raises(MalformedFrame, match="stop byte 17"):
        decode_frame(A_RSP_UD[:-1] + b"\x17")
