#!/usr/bin/env python3
"""Rewrite a classic pcap file (either byte order, usec or nsec magic) in big-endian byte order.

    pcap_to_big_endian.py IN.pcap OUT.pcap

Only the 24-byte file header and the 16-byte record headers are rewritten; packet bytes are
copied unchanged.  pcapng input is refused.
"""
import struct
import sys

MAGICS = {0xA1B2C3D4: "usec", 0xA1B23C4D: "nsec"}


def convert(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise SystemExit("%s: too short for a pcap header" % src)
    for endian in ("<", ">"):
        magic = struct.unpack(endian + "I", data[:4])[0]
        if magic in MAGICS:
            break
    else:
        raise SystemExit("%s: not a classic pcap file (magic %s)" % (src, data[:4].hex()))
    magic, vmaj, vmin, zone, sigfigs, snaplen, network = struct.unpack(endian + "IHHiIII", data[:24])
    out = [struct.pack(">IHHiIII", magic, vmaj, vmin, zone, sigfigs, snaplen, network)]
    off, n = 24, 0
    while off < len(data):
        if off + 16 > len(data):
            raise SystemExit("%s: truncated record header at offset %d" % (src, off))
        sec, frac, incl, orig = struct.unpack(endian + "IIII", data[off:off + 16])
        if off + 16 + incl > len(data):
            raise SystemExit("%s: truncated packet at offset %d" % (src, off))
        out.append(struct.pack(">IIII", sec, frac, incl, orig))
        out.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
        n += 1
    with open(dst, "wb") as f:
        f.write(b"".join(out))
    print("[pcap_to_big_endian] %s -> %s: %d packets, %s, input %s-endian" % (
        src, dst, n, MAGICS[magic], "little" if endian == "<" else "big"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    convert(sys.argv[1], sys.argv[2])
