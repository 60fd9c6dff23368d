"""Codec: decode(encode(v)) == v for every type, orders, scaling, block decoding."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.codec import (
    BlockCodec,
    EncodeError,
    Kind,
    PointSpec,
    PointType,
    decode_point,
    encode_point,
)

INT_TYPES = {
    PointType.INT16: (-(2**15), 2**15 - 1),
    PointType.UINT16: (0, 2**16 - 1),
    PointType.INT32: (-(2**31), 2**31 - 1),
    PointType.UINT32: (0, 2**32 - 1),
    PointType.INT64: (-(2**63), 2**63 - 1),
    PointType.UINT64: (0, 2**64 - 1),
}
ORDERS = st.sampled_from(["big", "little"])


@st.composite
def int_case(draw):
    ptype = draw(st.sampled_from(list(INT_TYPES)))
    lo, hi = INT_TYPES[ptype]
    spec = PointSpec(
        address=draw(st.integers(0, 10)),
        type=ptype,
        word_order=draw(ORDERS),
        byte_order=draw(ORDERS),
    )
    return spec, draw(st.integers(lo, hi))


@given(int_case())
def test_int_roundtrip_exact(case):
    spec, value = case
    regs = encode_point(spec, value)
    assert len(regs) == spec.width
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode_point(spec, regs) == value


@given(
    st.sampled_from([PointType.FLOAT32, PointType.FLOAT64]),
    ORDERS,
    ORDERS,
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_float_roundtrip(ptype, wo, bo, value):
    spec = PointSpec(address=0, type=ptype, word_order=wo, byte_order=bo)
    assert decode_point(spec, encode_point(spec, value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float64_roundtrip_full_precision(value):
    spec = PointSpec(address=0, type=PointType.FLOAT64, word_order="little")
    assert decode_point(spec, encode_point(spec, value)) == value


@given(
    st.sampled_from([PointType.INT16, PointType.INT32, PointType.UINT32]),
    st.sampled_from([0.1, 0.01, 0.5, 10.0]),
    st.sampled_from([0.0, -40.0, 273.15]),
    st.data(),
)
def test_scaled_int_roundtrip(ptype, scale, offset, data):
    """An engineering value on the scale grid survives encode → decode (to float tolerance)."""
    lo, hi = INT_TYPES[ptype]
    raw = data.draw(st.integers(max(lo, -(10**6)), min(hi, 10**6)))
    spec = PointSpec(address=0, type=ptype, scale=scale, offset=offset)
    value = raw * scale + offset
    regs = encode_point(spec, value)
    assert decode_point(spec, regs) == pytest.approx(value, rel=1e-12, abs=1e-9)
    # and the registers themselves are exactly the raw integer
    assert encode_point(spec, decode_point(spec, regs)) == regs


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=8), ORDERS)
def test_str_roundtrip(text, bo):
    spec = PointSpec(address=0, type=PointType.STR, count=4, byte_order=bo)
    regs = encode_point(spec, text)
    assert len(regs) == 4
    assert decode_point(spec, regs) == text


@given(st.booleans(), st.integers(0, 15), st.integers(0, 0xFFFF))
def test_bit_roundtrip_keeps_other_bits(on, bit, current):
    spec = PointSpec(address=0, type=PointType.BIT, bit=bit)
    (reg,) = encode_point(spec, on, current=current)
    assert decode_point(spec, [reg]) is on
    assert reg & ~(1 << bit) == current & ~(1 << bit)


@given(st.booleans(), st.sampled_from([Kind.COIL, Kind.DISCRETE, Kind.HOLDING]))
def test_bool_roundtrip(on, kind):
    spec = PointSpec(address=0, kind=kind, type=PointType.BOOL)
    assert decode_point(spec, encode_point(spec, on)) is on


def test_known_layouts():
    """Word and byte order against hand-made frames (the convention in the module doc)."""
    f = struct.pack(">f", 1.5)  # 3f c0 00 00
    big = PointSpec(address=0, type=PointType.FLOAT32)
    assert encode_point(big, 1.5) == [0x3FC0, 0x0000]
    swapped_words = PointSpec(address=0, type=PointType.FLOAT32, word_order="little")
    assert encode_point(swapped_words, 1.5) == [0x0000, 0x3FC0]
    swapped_bytes = PointSpec(address=0, type=PointType.FLOAT32, byte_order="little")
    assert encode_point(swapped_bytes, 1.5) == [0xC03F, 0x0000]
    assert f == bytes.fromhex("3fc00000")
    i16 = PointSpec(address=0, type=PointType.INT16, scale=0.1)
    assert encode_point(i16, -1.5) == [0xFFF1]  # -15
    assert decode_point(i16, [0xFFF1]) == pytest.approx(-1.5)


@pytest.mark.parametrize(
    ("spec", "value", "match"),
    [
        (PointSpec(address=0, type=PointType.INT16), 40000, "range"),
        (PointSpec(address=0, type=PointType.UINT16), -1, "range"),
        (PointSpec(address=0, type=PointType.INT16, scale=0.1), 3276.8, "range"),
        (PointSpec(address=0, type=PointType.FLOAT32), 1e39, "overflows"),
        (PointSpec(address=0, type=PointType.FLOAT32), math.nan, "finite"),
        (PointSpec(address=0, type=PointType.INT32), "12", "number"),
        (PointSpec(address=0, type=PointType.BOOL), 2, "bool"),
        (PointSpec(address=0, type=PointType.STR, count=1), "abc", "does not fit"),
    ],
)
def test_encode_rejects(spec, value, match):
    with pytest.raises(EncodeError, match=match):
        encode_point(spec, value)


def test_encode_rounds_half_even():
    spec = PointSpec(address=0, type=PointType.INT16, scale=0.1)
    assert encode_point(spec, 2.26) == [23]
    assert decode_point(spec, encode_point(spec, 20.04)) == pytest.approx(20.0)


def test_spec_rejects_bad_layout():
    with pytest.raises(ValueError, match="scale"):
        PointSpec(address=0, scale=0)
    with pytest.raises(ValueError, match="bit"):
        PointSpec(address=0, type=PointType.BIT, bit=16)
    with pytest.raises(ValueError, match="coil"):
        PointSpec(address=0, kind=Kind.COIL, type=PointType.INT16)


def test_spec_of_reads_any_object():
    class P:
        address = 3
        kind = "input"
        type = "int32"
        count = None
        bit = None
        word_order = "little"
        byte_order = None
        scale = 0.5
        offset = None

    spec = PointSpec.of(P(), name="x")
    assert (spec.address, spec.kind, spec.type, spec.width, spec.word_order, spec.byte_order) == (
        3,
        Kind.INPUT,
        PointType.INT32,
        2,
        "little",
        "big",
    )
    assert spec.scale == 0.5 and spec.offset == 0.0 and spec.name == "x"


@st.composite
def block_case(draw):
    """A random register layout with values; returns (specs, values, regs)."""
    types = [t for t in PointType if t not in (PointType.BOOL,)]
    specs, values = [], []
    addr = 0
    for i in range(draw(st.integers(1, 12))):
        addr += draw(st.integers(0, 3))
        ptype = draw(st.sampled_from(types))
        kw = dict(
            address=addr, type=ptype, word_order=draw(ORDERS), byte_order=draw(ORDERS), name=f"p{i}"
        )
        if ptype is PointType.STR:
            kw["count"] = draw(st.integers(1, 3))
        if ptype is PointType.BIT:
            kw["bit"] = draw(st.integers(0, 15))
        if ptype in INT_TYPES:
            kw["scale"] = draw(st.sampled_from([1.0, 0.1]))
        spec = PointSpec(**kw)
        if ptype is PointType.STR:
            v = draw(st.text(alphabet="abcXYZ019", max_size=2 * spec.count))
        elif ptype is PointType.BIT:
            v = draw(st.booleans())
        elif ptype in INT_TYPES:
            lo, hi = INT_TYPES[ptype]
            v = draw(st.integers(max(lo, -(2**40)), min(hi, 2**40))) * spec.scale
        else:
            v = draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
        specs.append(spec)
        values.append(v)
        addr = spec.end
    regs = np.zeros(addr + 2, dtype=np.uint16)
    for spec, v in zip(specs, values, strict=True):
        cur = int(regs[spec.address]) if spec.type is PointType.BIT else None
        regs[spec.address : spec.end] = encode_point(spec, v, current=cur)
    return specs, values, regs


@settings(max_examples=200)
@given(block_case())
def test_block_decode_matches_scalar(case):
    specs, values, regs = case
    codec = BlockCodec(specs, 0, len(regs))
    out = codec.decode(regs)
    strings = dict(zip(codec.str_positions, codec.decode_strings(regs), strict=True))
    for i, (spec, v) in enumerate(zip(specs, values, strict=True)):
        if spec.type is PointType.STR:
            assert math.isnan(out[i])
            assert strings[i] == v
        else:
            assert out[i] == pytest.approx(float(v), rel=1e-12, abs=1e-9)
            assert out[i] == pytest.approx(float(decode_point(spec, regs[spec.address : spec.end])))


def test_block_decode_bits_and_short_data():
    specs = [PointSpec(address=a, kind=Kind.COIL, type=PointType.BOOL) for a in (2, 5)]
    codec = BlockCodec(specs, 2)
    assert list(codec.decode([True, False, False, False])) == [1.0, 0.0]
    with pytest.raises(ValueError, match="needs 4"):
        codec.decode([True, False])
