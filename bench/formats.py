"""The benchmark capture in the forms real captures come in: pcapng (dumpcap, Wireshark's capture engine, writes it),
802.1Q-tagged Ethernet (a trunk or SPAN port), IPv6 (a dual-stack network). The same records, times and TCP
segments; only the container or the headers around the segments change, so pcapcheck's results are the same but
for the addresses (tests/test_bench_formats.py checks it).

Two more forms are the same capture as it often arrives damaged (DEGRADED): cut by a snaplen of 200 bytes
(``tcpdump -s 200``: the headers and the first bytes of each payload, the wire length kept), and missing one record
in 20 (a capture that dropped packets under load; the same records every time). They are not the same traffic: the
tools find holes everywhere, which is what they time.

    python bench/formats.py IN.pcap OUT FORM      # FORM: pcapng, vlan, ipv6, snaplen or loss

``bench/run.py --formats N`` times pcapcheck and tshark on the N-packet capture in every form.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import builder as b  # noqa: E402

SAME_TRAFFIC = ("pcapng", "vlan", "ipv6")
DEGRADED = ("snaplen", "loss")
FORMS = SAME_TRAFFIC + DEGRADED
SUFFIX = {"pcapng": ".pcapng", "vlan": ".pcap", "ipv6": ".pcap", "snaplen": ".pcap", "loss": ".pcap"}
SNAPLEN = 200  # the snaplen form's
LOSS = 20  # the loss form misses about one record in LOSS
LOSS_SEED = 1

_FILE_HEADER = struct.Struct("<IHHiIII")  # classic pcap, little-endian (what bench/gen.py writes)
_RECORD = struct.Struct("<IIII")
_MAGICS = {0xA1B2C3D4: 6, 0xA1B23C4D: 9}  # -> if_tsresol (10^-n s)


def records(path: Path) -> tuple[int, int, int, Iterator[tuple[int, int, int, bytes]]]:
    """(linktype, snaplen, if_tsresol, the records as (seconds, fraction, wire length, bytes)) of a little-endian
    classic pcap file."""
    f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    magic, _, _, _, _, snaplen, linktype = _FILE_HEADER.unpack(f.read(_FILE_HEADER.size))
    if magic not in _MAGICS:
        f.close()
        raise ValueError(f"{path}: not a little-endian classic pcap file")

    def read() -> Iterator[tuple[int, int, int, bytes]]:
        with f:
            while head := f.read(_RECORD.size):
                sec, frac, caplen, wirelen = _RECORD.unpack(head)
                yield sec, frac, wirelen, f.read(caplen)

    return linktype, snaplen, _MAGICS[magic], read()


def _vlan(frame: bytes) -> bytes:
    """An 802.1Q tag (VLAN 10) after the MAC addresses of an Ethernet II frame."""
    return frame[:12] + b"\x81\x00\x00\x0a" + frame[12:]


def _ipv6_address(v4: bytes) -> bytes:
    return b"\xfd\x00" + bytes(10) + v4  # fd00::a.b.c.d


def _ipv6(frame: bytes) -> bytes:
    """The IPv4 header of an Ethernet II frame carrying IPv4 (no options, not a fragment) replaced by an IPv6
    header (the addresses mapped into fd00::/96, the TTL as the hop limit); anything else as it is. The TCP
    checksum is left as it was: neither tool checks it by default."""
    if frame[12:14] != b"\x08\x00" or len(frame) < 34 or frame[14] != 0x45 or struct.unpack_from("!H", frame, 20)[0] & 0x3FFF:
        return frame
    total, = struct.unpack_from("!H", frame, 16)
    ip = frame[14:34]
    header = struct.pack("!IHBB", 0x60000000, total - 20, ip[9], ip[8]) + _ipv6_address(ip[12:16]) + _ipv6_address(ip[16:20])
    return frame[:12] + b"\x86\xdd" + header + frame[34:]


def rewrite(src: Path, dst: Path, form: str) -> None:
    """Write ``src`` (a capture of bench/gen.py) to ``dst`` in ``form`` (FORMS)."""
    linktype, snaplen, tsresol, recs = records(src)
    with open(dst, "wb") as out:
        if form == "pcapng":
            # The fixtures' writer encodes the blocks (its section and interface header here); the packet blocks
            # are written as they are made, not held (the writer keeps its blocks in memory: ~1 GB at 1M packets).
            w = b.PcapngWriter()
            w.add_interface(linktype, tsresol=tsresol, snaplen=snaplen)
            out.write(w.to_bytes())
            scale = 10**tsresol
            for sec, frac, wirelen, data in recs:
                ts = sec * scale + frac  # (in the interface's units already)
                out.write(w.block(w.EPB, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), wirelen) + data))
            return
        magic = 0xA1B2C3D4 if tsresol == 6 else 0xA1B23C4D
        if form in DEGRADED:
            out.write(_FILE_HEADER.pack(magic, 2, 4, 0, 0, SNAPLEN if form == "snaplen" else snaplen, linktype))
            missed = random.Random(LOSS_SEED).random  # one draw per record
            for sec, frac, wirelen, data in recs:
                if form == "snaplen":
                    data = data[:SNAPLEN]
                elif missed() * LOSS < 1:
                    continue
                out.write(_RECORD.pack(sec, frac, len(data), wirelen))
                out.write(data)
            return
        change: Callable[[bytes], bytes] = {"vlan": _vlan, "ipv6": _ipv6}[form]
        out.write(_FILE_HEADER.pack(magic, 2, 4, 0, 0, snaplen + 20, linktype))
        for sec, frac, wirelen, data in recs:
            new = change(data)
            out.write(_RECORD.pack(sec, frac, len(new), wirelen + len(new) - len(data)))
            out.write(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="a capture written by bench/gen.py")
    ap.add_argument("output", type=Path)
    ap.add_argument("form", choices=FORMS)
    args = ap.parse_args(argv)
    rewrite(args.source, args.output, args.form)
    return 0


if __name__ == "__main__":
    sys.exit(main())
