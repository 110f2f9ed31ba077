"""tcp.options.parse: the Linux handshake layout's fast path gives what the general parser gives."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from pcapcheck.tcp import options as o

u16, u32, u8 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 255)


def linux_syn(mss: int, ts_val: int, ts_ecr: int, wscale: int) -> bytes:
    return struct.pack(">BBHBBBBIIBBBB", 2, 4, mss, 4, 2, 8, 10, ts_val, ts_ecr, 1, 3, 3, wscale)


def test_a_linux_syn_parses_to_its_options() -> None:
    raw = linux_syn(1460, 123456, 0, 7)
    got = o.parse(raw)
    assert got == o.TcpOptions(mss=1460, wscale=7, sack_perm=True, ts_val=123456, ts_ecr=0,
                               kinds=(o.MSS, o.SACK_PERM, o.TIMESTAMP, o.WSCALE))
    assert got == o._parse(raw)


@given(u16, u32, u32, u8)
def test_the_linux_layout_gives_what_the_general_parser_gives(mss: int, ts_val: int, ts_ecr: int, ws: int) -> None:
    raw = linux_syn(mss, ts_val, ts_ecr, ws)
    assert o.parse(bytes(raw)) == o._parse(raw)  # (a fresh bytes object: not the last one parsed)


@given(u16, u32, u32, u8, st.integers(0, 19), u8)
def test_any_byte_changed_in_the_layout_still_parses_as_the_general_parser(
        mss: int, ts_val: int, ts_ecr: int, ws: int, at: int, value: int) -> None:
    raw = bytearray(linux_syn(mss, ts_val, ts_ecr, ws))
    raw[at] = value
    assert o.parse(bytes(raw)) == o._parse(bytes(raw))


@given(st.binary(max_size=40))
def test_any_option_bytes_parse_as_the_general_parser(raw: bytes) -> None:
    assert o.parse(bytes(raw)) == o._parse(raw)
