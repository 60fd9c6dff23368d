"""DL/T 645-2007 frame codec against published example frames (issue 21).

Sources of the example frames (public documentation, copied as hex literals):

- [A] "DLT645-2007报文解析", a master/meter exchange log of a meter at address 000000000161
  (read 00010000 forward active energy = 000000.26 kWh; read 02010100 phase A voltage =
  100.1 V), as found in the public document library (search "DLT645-2007报文解析
  68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16").
- [B] "DL/T645-2007 and MODBUS Protocol Parsing and Debugging for Smart Meters",
  https://www.myaiappgames.com/archives/1280: read 00010000 to the wildcard address.
- [C] The read-address request to the wildcard address as printed in DL/T 645-2007
  tutorials and vendors' manuals: 68 AA AA AA AA AA AA 68 13 00 DF 16 (its checksum
  checked by hand: 68 + 6 x AA + 68 + 13 + 00 = 4DF).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from drivers.dlt645 import (
    ChecksumError,
    Control,
    DailyFrozen,
    Frame,
    MalformedFrame,
    RelayAction,
    TruncatedFrame,
    decode_bcd,
    decode_frame,
    decode_value,
    encode_bcd,
    encode_frame,
    encode_value,
    error_text,
    find_frame,
    read_request,
    relay_request,
    time_sync_request,
)

# [A] read forward active energy, with the preamble, and the meter's answer
A_READ_ENERGY = bytes.fromhex("FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16")
A_ENERGY_ANSWER = bytes.fromhex("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16")
# [A] read phase A voltage and the answer
A_READ_VOLTAGE = bytes.fromhex("FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 34 34 35 17 16")
A_VOLTAGE_ANSWER = bytes.fromhex("68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16")
# [B] read forward active energy from whichever meter answers the wildcard address
B_READ_WILDCARD = bytes.fromhex("68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16")
# [C] read the address of the only meter on the bus
C_READ_ADDRESS = bytes.fromhex("68 AA AA AA AA AA AA 68 13 00 DF 16")


def test_requests_encode_to_the_published_frames() -> None:
    assert encode_frame(read_request("000000000161", 0x00010000)) == A_READ_ENERGY
    assert encode_frame(read_request("000000000161", 0x02010100)) == A_READ_VOLTAGE
    assert encode_frame(read_request("AAAAAAAAAAAA", 0x00010000), preamble=False) == B_READ_WILDCARD
    assert (
        encode_frame(Frame("AAAAAAAAAAAA", Control.READ_ADDRESS), preamble=False) == C_READ_ADDRESS
    )


def test_published_answers_decode_with_offset_bcd_and_di() -> None:
    energy = decode_frame(A_ENERGY_ANSWER)
    assert (energy.address, energy.control, energy.is_answer, energy.is_error) == (
        "000000000161",
        0x91,
        True,
        False,
    )
    # +0x33 removed: 33 33 34 33 is DI 00 00 01 00 (least significant byte first)
    assert energy.data == bytes.fromhex("00 00 01 00 26 00 00 00")
    assert energy.di == 0x00010000
    assert decode_value(0x00010000, energy.data[4:]) == pytest.approx(0.26)
    voltage = decode_frame(A_VOLTAGE_ANSWER)
    assert voltage.di == 0x02010100
    assert decode_value(0x02010100, voltage.data[4:]) == pytest.approx(100.1)
    # the answers re-encode byte for byte (without a preamble, as the meter sent them)
    assert encode_frame(energy, preamble=False) == A_ENERGY_ANSWER
    assert encode_frame(voltage, preamble=False) == A_VOLTAGE_ANSWER


def test_requests_decode_and_the_wildcard_address_stays_a_wildcard() -> None:
    req = decode_frame(A_READ_ENERGY)  # preamble skipped
    assert (req.address, req.control, req.di, req.is_answer) == (
        "000000000161",
        0x11,
        0x10000,
        False,
    )
    assert decode_frame(B_READ_WILDCARD).address == "AAAAAAAAAAAA"
    assert decode_frame(C_READ_ADDRESS) == Frame("AAAAAAAAAAAA", 0x13, b"")


def test_checksum_is_the_sum_from_the_first_68_mod_256() -> None:
    body = A_ENERGY_ANSWER[:-2]
    assert sum(body) % 256 == A_ENERGY_ANSWER[-2] == 0x8A
    wrong = A_ENERGY_ANSWER[:-2] + bytes([0x8B, 0x16])
    with pytest.raises(ChecksumError, match="wrong checksum: 8B, frame sums to 8A"):
        decode_frame(wrong)
    # a flipped data byte is caught by the checksum too
    flipped = bytearray(A_ENERGY_ANSWER)
    flipped[14] ^= 0x01
    with pytest.raises(ChecksumError):
        decode_frame(bytes(flipped))


def test_truncated_and_malformed_frames_are_told_apart() -> None:
    with pytest.raises(TruncatedFrame, match="truncated frame: 17 of 20 bytes"):
        decode_frame(A_ENERGY_ANSWER[:-3])
    with pytest.raises(TruncatedFrame):
        decode_frame(A_ENERGY_ANSWER[:8])
    with pytest.raises(MalformedFrame, match="end byte 17"):
        decode_frame(A_ENERGY_ANSWER[:-1] + b"\x17")
    with pytest.raises(MalformedFrame, match="no start byte"):
        decode_frame(b"\x00\x01\x02")
    with pytest.raises(MalformedFrame, match="second start byte"):
        decode_frame(A_ENERGY_ANSWER[:7] + b"\x00" + A_ENERGY_ANSWER[8:])


def test_find_frame_waits_for_the_whole_frame_in_a_stream() -> None:
    stream = b"\xfe\xfe" + A_ENERGY_ANSWER + A_VOLTAGE_ANSWER[:5]
    assert find_frame(stream[:10]) is None
    assert find_frame(stream[: 2 + len(A_ENERGY_ANSWER) - 1]) is None
    start, end = find_frame(stream) or (0, 0)
    assert stream[start:end] == A_ENERGY_ANSWER
    assert find_frame(stream[end:]) is None  # the next frame is not complete yet


def test_an_answer_from_another_address_keeps_its_address() -> None:
    # the driver compares it with the meter it asked (see test_dlt645_driver)
    other = encode_frame(Frame("000000000162", 0x91, bytes.fromhex("00 00 01 00 26 00 00 00")))
    assert decode_frame(other).address == "000000000162"


def test_bcd_values_signs_and_limits() -> None:
    assert encode_bcd(123456, 3) == bytes.fromhex("56 34 12")
    assert decode_bcd(bytes.fromhex("56 34 12")) == 123456
    assert encode_bcd(-1500, 3, signed=True) == bytes.fromhex("00 15 80")
    assert decode_bcd(bytes.fromhex("00 15 80"), signed=True) == -1500
    with pytest.raises(ValueError, match="does not fit"):
        encode_bcd(1_000_000, 3)
    with pytest.raises(ValueError, match="not BCD"):
        decode_bcd(bytes.fromhex("1A"))
    # XXXXXX.XX kWh, XXX.XXX A, XX.XXXX kW
    assert encode_value(0x00000000, 12345.67) == bytes.fromhex("67 45 23 01")
    assert decode_value(0x02020100, encode_value(0x02020100, 5.123)) == pytest.approx(5.123)
    assert decode_value(0x02030000, encode_value(0x02030000, -1.2345)) == pytest.approx(-1.2345)
    # status word 3 is binary: bit 4 set = relay open
    assert decode_value(0x04000503, bytes.fromhex("10 00")) == 16
    with pytest.raises(ValueError, match="not supported"):
        decode_value(0x12345678, b"\x00")
    with pytest.raises(ValueError, match="data bytes"):
        decode_value(0x00000000, b"\x00\x00")


def test_daily_frozen_reading_decodes_time_and_energy() -> None:
    frozen = DailyFrozen(datetime(2026, 12, 7, 0, 0), (1234.56, 100.0, 200.0, 934.56, 0.0))
    stamp, energy = frozen.encode()
    assert stamp == bytes.fromhex("00 00 07 12 26")  # mm hh DD MM YY
    assert DailyFrozen.decode(stamp, energy) == frozen
    assert decode_value(0x05060101, energy) == pytest.approx(1234.56)  # a point reads the total


def test_relay_and_time_sync_requests() -> None:
    until = datetime(2026, 12, 8, 3, 4, 5)
    req = relay_request("000000000161", RelayAction.TRIP, "02123456", "11223344", until)
    assert req.control == 0x1C
    # PA P0 P1 P2 | C0..C3 | N1 N2 | ss mm hh DD MM YY
    assert req.data == bytes.fromhex("02 56 34 12 44 33 22 11 1A 00 05 04 03 08 12 26")
    wire = encode_frame(req)
    assert decode_frame(wire) == req
    with pytest.raises(ValueError, match="8 hex digits"):
        relay_request("000000000161", RelayAction.CLOSE, "secret", "0", until)
    sync = time_sync_request(until)
    assert (sync.address, sync.control, sync.data) == (
        "999999999999",
        0x08,
        bytes.fromhex("05 04 03 08 12 26"),
    )


def test_error_answer_and_its_text() -> None:
    err = decode_frame(encode_frame(Frame("000000000161", 0xD1, b"\x02")))
    assert err.is_error and err.di is None
    assert error_text(err.data[0]) == "meter error 02: no data requested"
    assert error_text(0x04) == "meter error 04: password wrong / unauthorised"


def test_addresses_must_be_twelve_digits() -> None:
    with pytest.raises(ValueError, match="12 digits"):
        encode_frame(read_request("12345", 0))
