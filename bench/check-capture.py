#!/usr/bin/env python3
"""Independent sanity check of a capture written by bench/make-capture.py.

Parses the pcap with the standard library only, reassembles every TCP
connection (dedupes retransmissions, sorts by sequence number relative to the
SYN's ISN, handles 2^32 wrap) and compares against OUT.truth.json:
connection counts, per mail connection byte counts and SHA-256 of both
directions.  Also validates IPv4 total length/header checksum, that every
ACK only acknowledges bytes that were sent, and that timestamps increase.

    python3 bench/check-capture.py /tmp/x.pcap [--truth /tmp/x.pcap.truth.json]

Meant for files up to a few hundred MB (keeps all payload in memory).
"""

import argparse
import hashlib
import ipaddress
import json
import struct
import sys

M32 = 0xFFFFFFFF


def ip4sum(h):
    s = sum(struct.unpack("!10H", h))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--truth")
    args = ap.parse_args()
    truth = json.load(open(args.truth or args.pcap + ".truth.json"))

    data = open(args.pcap, "rb").read()
    magic, vmaj, vmin, _tz, _sf, snap, link = struct.unpack_from("<IHHiIII", data, 0)
    assert magic == 0xA1B2C3D4 and link == 1, "not a microsecond ethernet pcap"
    off = 24
    errors = []
    frames = 0
    last_ts = -1
    conns = {}  # key (client ip, cport, server ip, sport) -> state
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        off += 16
        frame = memoryview(data)[off:off + incl]
        off += incl
        frames += 1
        ts = sec * 1_000_000 + usec
        if ts <= last_ts:
            errors.append("frame %d: timestamp not increasing" % frames)
        last_ts = ts
        if incl != orig:
            errors.append("frame %d: truncated" % frames)
        p = 12
        et = struct.unpack_from("!H", frame, p)[0]
        if et == 0x8100:
            p += 4
            et = struct.unpack_from("!H", frame, p)[0]
        p += 2
        if et == 0x0800:
            ihl = (frame[p] & 0x0F) * 4
            tl = struct.unpack_from("!H", frame, p + 2)[0]
            if tl != len(frame) - p:
                errors.append("frame %d: IPv4 total length %d != %d" % (frames, tl, len(frame) - p))
            if ip4sum(bytes(frame[p:p + 20])) != 0xFFFF:
                errors.append("frame %d: bad IPv4 checksum" % frames)
            src, dst = bytes(frame[p + 12:p + 16]), bytes(frame[p + 16:p + 20])
            assert frame[p + 9] == 6
            p += ihl
        elif et == 0x86DD:
            plen = struct.unpack_from("!H", frame, p + 4)[0]
            if plen != len(frame) - p - 40:
                errors.append("frame %d: IPv6 payload length wrong" % frames)
            src, dst = bytes(frame[p + 8:p + 24]), bytes(frame[p + 24:p + 40])
            p += 40
        else:
            errors.append("frame %d: ethertype %04x" % (frames, et))
            continue
        sport, dport, seq, ack, doff, flags = struct.unpack_from("!HHIIBB", frame, p)
        payload = frame[p + (doff >> 4) * 4:]
        if flags & 0x02 and not flags & 0x10:  # SYN
            key = (src, sport, dst, dport)
            if key in conns:
                errors.append("frame %d: duplicate SYN / reused 4-tuple" % frames)
            conns[key] = {"isn": [seq, None], "segs": [{}, {}], "fin": [False, False],
                          "maxend": [0, 0], "syn_frame": frames}
            continue
        key = (src, sport, dst, dport)
        d = 0
        if key not in conns:
            key = (dst, dport, src, sport)
            d = 1
            if key not in conns:
                errors.append("frame %d: packet of unknown connection" % frames)
                continue
        c = conns[key]
        if flags & 0x02:  # SYN-ACK
            c["isn"][1] = seq
            if ack != (c["isn"][0] + 1) & M32:
                errors.append("frame %d: bad SYN-ACK ack" % frames)
            continue
        isn = c["isn"][d]
        rel = (seq - isn - 1) & M32
        if flags & 0x10 and c["isn"][1 - d] is not None:
            arel = (ack - c["isn"][1 - d] - 1) & M32
            if arel > c["maxend"][1 - d] + (1 if c["fin"][1 - d] else 0):
                errors.append("frame %d: ACK of unsent data (%d > %d)" % (frames, arel, c["maxend"][1 - d]))
        if payload:
            segs = c["segs"][d]
            prev = segs.get(rel)
            if prev is not None and bytes(prev) != bytes(payload):
                errors.append("frame %d: retransmission with different bytes" % frames)
            segs[rel] = payload
            end = rel + len(payload)
            if end > c["maxend"][d]:
                c["maxend"][d] = end
        if flags & 0x01:
            c["fin"][d] = True
            if rel != c["maxend"][d]:
                errors.append("frame %d: FIN seq not at stream end" % frames)

    # reassemble
    by_key = {}
    for key, c in conns.items():
        out = []
        for d in (0, 1):
            pos = 0
            chunks = []
            for rel in sorted(c["segs"][d]):
                pl = c["segs"][d][rel]
                if rel != pos:
                    errors.append("conn %s: gap/overlap at %d (expected %d)" % (key[1], rel, pos))
                    break
                chunks.append(pl)
                pos += len(pl)
            blob = b"".join(chunks)
            out.append((len(blob), hashlib.sha256(blob).hexdigest()))
        if not all(c["fin"]):
            errors.append("conn %s: not closed by both sides" % key[1])
        by_key[key] = (out, c)

    if len(conns) != truth["tcp_connections"]:
        errors.append("connections: pcap %d, truth %d" % (len(conns), truth["tcp_connections"]))
    if frames != truth["frames"]:
        errors.append("frames: pcap %d, truth %d" % (frames, truth["frames"]))
    checked = 0
    for m in truth["mail"]:
        key = (ipaddress.ip_address(m["client_ip"]).packed, m["client_port"],
               ipaddress.ip_address(m["server_ip"]).packed, m["server_port"])
        if key not in by_key:
            errors.append("mail conn %d missing" % m["id"])
            continue
        (c2s, s2c), c = by_key[key]
        if (c2s[0], s2c[0]) != (m["c2s_bytes"], m["s2c_bytes"]):
            errors.append("mail conn %d: bytes %s/%s vs truth %s/%s" % (m["id"], c2s[0], s2c[0],
                                                                       m["c2s_bytes"], m["s2c_bytes"]))
        if (c2s[1], s2c[1]) != (m["c2s_sha256"], m["s2c_sha256"]):
            errors.append("mail conn %d: sha256 mismatch" % m["id"])
        if c["syn_frame"] != m.get("syn_frame"):
            errors.append("mail conn %d: syn_frame %s vs truth %s" % (m["id"], c["syn_frame"], m.get("syn_frame")))
        checked += 1
    mail_ports = {25, 465, 587, 2525, 110, 995, 143, 993, 585}
    n_mail_port = sum(1 for k in conns if k[3] in mail_ports)
    if n_mail_port != truth["mail_connections"]:
        errors.append("mail-port connections: pcap %d, truth %d" % (n_mail_port, truth["mail_connections"]))

    print("frames %d, connections %d (mail-port %d), mail connections verified %d, errors %d"
          % (frames, len(conns), n_mail_port, checked, len(errors)))
    for e in errors[:50]:
        print("  " + e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
