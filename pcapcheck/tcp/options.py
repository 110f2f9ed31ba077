"""TCP option parsing (RFC 9293 3.2, RFC 7323, RFC 2018).

Only called for packets that need it (handshakes, SACK-bearing ACKs, RSTs), never
for every data segment: the hot path looks at the raw option bytes' length only.
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct
from typing import Final

from pcapcheck.frozen import frozen_maker

EOL: Final = 0
NOP: Final = 1
MSS: Final = 2
WSCALE: Final = 3
SACK_PERM: Final = 4
SACK: Final = 5
TIMESTAMP: Final = 8


@dataclass(frozen=True, slots=True)
class TcpOptions:
    mss: int | None = None
    wscale: int | None = None  # raw shift as sent (may exceed 14; users clamp)
    sack_perm: bool = False
    sack: tuple[tuple[int, int], ...] = ()  # (left, right) edges
    ts_val: int | None = None
    ts_ecr: int | None = None
    malformed: bool = False
    kinds: tuple[int, ...] = ()

    @property
    def has_timestamps(self) -> bool:
        return self.ts_val is not None


NO_OPTIONS: Final = TcpOptions()
_options = frozen_maker(TcpOptions)  # = TcpOptions(all eight fields), at a quarter of the cost


_last: list = [None, NO_OPTIONS]  # the last bytes object parsed and its result


# The options of a Linux SYN or SYN-ACK (MSS, SACK permitted, timestamps, NOP, window scale): most handshakes.
_LINUX_SYN: Final = Struct(">2xH4xII3xB").unpack
_LINUX_SYN_KINDS: Final = (MSS, SACK_PERM, TIMESTAMP, WSCALE)


def parse(raw: bytes) -> TcpOptions:
    # A SYN's options are parsed by four analyzers in turn, from the same bytes object: the last result
    # is kept (by identity; bytes are immutable and the result is frozen).
    if raw is _last[0]:
        return _last[1]
    if not raw:
        return NO_OPTIONS
    if len(raw) == 20 and raw[:2] == b"\x02\x04" and raw[4:8] == b"\x04\x02\x08\x0a" and raw[16:19] == b"\x01\x03\x03":
        # the Linux layout: what _parse gives for it, without the loop (tests/test_tcp_options.py)
        mss, ts_val, ts_ecr, wscale = _LINUX_SYN(raw)
        result = _options(mss, wscale, True, (), ts_val, ts_ecr, False, _LINUX_SYN_KINDS)
    else:
        result = _parse(raw)
    _last[0], _last[1] = raw, result
    return result


def _parse(raw: bytes) -> TcpOptions:
    mss = wscale = ts_val = ts_ecr = None
    sack_perm = malformed = False
    sack: list[tuple[int, int]] = []
    kinds: list[int] = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == EOL:
            break
        if kind == NOP:
            i += 1
            continue
        kinds.append(kind)
        if i + 1 >= n:
            malformed = True
            break
        length = raw[i + 1]
        if length < 2 or i + length > n:
            malformed = True
            break
        body = raw[i + 2 : i + length]
        if kind == MSS and length == 4:
            mss = int.from_bytes(body, "big")
        elif kind == WSCALE and length == 3:
            wscale = body[0]
        elif kind == SACK_PERM and length == 2:
            sack_perm = True
        elif kind == SACK:
            if (length - 2) % 8:
                malformed = True
            for j in range(0, len(body) - 7, 8):
                sack.append((int.from_bytes(body[j : j + 4], "big"), int.from_bytes(body[j + 4 : j + 8], "big")))
        elif kind == TIMESTAMP and length == 10:
            ts_val = int.from_bytes(body[:4], "big")
            ts_ecr = int.from_bytes(body[4:], "big")
        i += length
    return _options(mss, wscale, sack_perm, tuple(sack), ts_val, ts_ecr, malformed, tuple(kinds))
