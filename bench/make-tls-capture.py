#!/usr/bin/env python3
"""TLS-heavy benchmark capture: many copies of real TLS mail connections.

Reads the real TLS captures samples/tls-ciphers.pcap (14 sessions: one per
cipher suite on IMAPS/POP3S/SMTPS and STARTTLS on 25; the last one is not in
its key log) and samples/smtp-auth-starttls.pcap (4 STARTTLS submissions on
587) and writes a classic pcap (Ethernet, microsecond timestamps) of roughly
the requested size made of many copies of their TCP connections.

Each copy is a distinct connection: the client's IPv4 address is rewritten to
10.0.0.0 + n (n = 1, 2, ... in order of the copies' first packet; client port,
server address and port as captured).  Copies start at seeded exponential
intervals (mean --mean-gap-us) in rounds that each hold every source
connection once in a seeded random order, and keep their captured relative
timing, so hundreds of connections are in flight at once and their packets
interleave in time order.  IPv4 header checksums and TCP checksums are
recomputed for the new address (both valid; in the loopback source captures
most TCP checksums were offload leftovers and invalid).  Every other byte of
the frames, the TLS bytes included, is unchanged: copies reuse the same client
randoms, so the two sources' key logs concatenated (written as OUT.keys)
decrypt every copy of every keylogged connection.

A sidecar JSON (OUT.truth.json) records what was written: per source
connection its TLS mode, client random, whether it is keylogged and how many
copies were made, and in total `expected_decrypted_sessions`.

Python 3 standard library only, deterministic for a given --seed.  Usage:
    python3 bench/make-tls-capture.py --size-mb 1024 --out /tmp/tls-1g.pcap
"""

import argparse
import heapq
import json
import os
import random
import re
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SOURCES = [
    ("samples/tls-ciphers.pcap", "samples/tls-ciphers.keys"),
    ("samples/smtp-auth-starttls.pcap", "samples/smtp-auth-starttls.keys"),
]
PORT_NAMES = {25: "smtp", 587: "submission", 465: "smtps", 110: "pop3", 995: "pop3s",
              143: "imap", 993: "imaps"}

PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
REC = struct.Struct("<IIII")
H16 = struct.Struct("!H")
START_TS_US = 1767225600 * 1_000_000  # 2026-01-01 00:00:00 UTC
CLIENT_NET = 10 << 24                 # 10.0.0.0/8
TLS_CT = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
CLIENT_HELLO = re.compile(rb"\x16\x03[\x00-\x04][\x00-\xff]{2}\x01", re.S)
SERVER_HELLO = re.compile(rb"\x16\x03[\x00-\x04][\x00-\xff]{2}\x02", re.S)


def die(msg):
    sys.stderr.write("make-tls-capture: %s\n" % msg)
    sys.exit(1)


def wsum(b):
    """Sum of the big-endian 16-bit words of b (zero-padded to even length)."""
    if len(b) & 1:
        b += b"\0"
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


def fold(s):
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def read_pcap(path):
    """Yields (ts_us, frame, orig_len) from a classic pcap with Ethernet link type."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        die("%s: not a classic pcap" % path)
    nsec = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0x0FFFFFFF
    if linktype != 1:
        die("%s: link type %d, only Ethernet (1) is supported" % (path, linktype))
    rec = struct.Struct(end + "IIII")
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, olen = rec.unpack_from(data, off)
        off += 16
        frame = data[off:off + caplen]
        off += caplen
        yield sec * 1_000_000 + (frac // 1000 if nsec else frac), frame, olen


class Packet:
    __slots__ = ("rel", "c2s", "pre", "mid", "post", "caplen", "olen", "sip", "stcp")


class Conn:
    """One source TCP connection, precomputed as a packet template."""

    def __init__(self, source, index, client, server):
        self.source, self.index = source, index
        self.client, self.server = client, server  # (ip bytes, port)
        self.raw = []        # (ts_us, frame, olen, c2s, ipo, ihl, tcpo, totlen, seq, payload)
        self.pkts = []
        self.copies = 0

    def build(self, keylog_randoms):
        t0 = self.raw[0][0]
        streams = {True: {}, False: {}}
        for ts, frame, olen, c2s, ipo, ihl, tcpo, totlen, seq, payload in self.raw:
            p = Packet()
            p.rel, p.c2s, p.caplen, p.olen = ts - t0, c2s, len(frame), olen
            # frame = pre | ip csum | src+dst | mid | tcp csum | post
            p.pre = frame[:ipo + 10]
            p.mid = frame[ipo + 20:tcpo + 16]
            p.post = frame[tcpo + 18:]
            iph = bytearray(frame[ipo:ipo + ihl])
            iph[10:12] = b"\0\0"
            # client address words are added per copy
            iph[12 if c2s else 16:16 if c2s else 20] = b"\0\0\0\0"
            p.sip = wsum(bytes(iph))
            seg = frame[tcpo:ipo + totlen]
            if len(seg) == totlen - ihl:
                seg = bytearray(seg)
                seg[16:18] = b"\0\0"
                p.stcp = wsum(self.server[0]) + 6 + len(seg) + wsum(bytes(seg))
            else:
                p.stcp = None  # truncated frame: keep the captured TCP checksum
                p.mid = frame[ipo + 20:tcpo + 18]
                p.post = frame[tcpo + 18:]
            self.pkts.append(p)
            if payload:
                streams[c2s].setdefault(seq, payload)
        self.packets = len(self.pkts)
        self.bytes = sum(16 + p.caplen for p in self.pkts)
        self.duration_us = self.pkts[-1].rel
        # reassembled payload per direction (sorted by sequence number relative to the
        # first data segment; the sources have no retransmissions or wrap)
        self.tcp_payload = 0
        self.tls = {name: 0 for name in TLS_CT.values()}
        self.mode, self.client_random, self.tls_start = None, None, {}
        for c2s in (True, False):
            segs = streams[c2s]
            data = b"".join(segs[s] for s in sorted(segs))
            self.tcp_payload += len(data)
            m = (CLIENT_HELLO if c2s else SERVER_HELLO).search(data)
            if not m:
                continue
            start = m.start()
            self.tls_start["c2s" if c2s else "s2c"] = start
            if c2s:
                self.mode = "implicit" if start == 0 else "starttls"
                self.client_random = data[start + 11:start + 43].hex()
            i = start
            while i + 5 <= len(data):
                ct, ver, ln = struct.unpack_from("!BHH", data, i)
                if ct not in TLS_CT or ver >> 8 != 3:
                    break
                self.tls[TLS_CT[ct]] += min(5 + ln, len(data) - i)
                i += 5 + ln
        self.keylogged = self.client_random is not None and self.client_random in keylog_randoms

    def frames_for(self, addr):
        """The frames of a copy whose client address is the 32-bit integer addr."""
        ab = addr.to_bytes(4, "big")
        aw = (addr >> 16) + (addr & 0xFFFF)
        c2s_pair = ab + self.server[0]
        s2c_pair = self.server[0] + ab
        out = []
        for p in self.pkts:
            pair = c2s_pair if p.c2s else s2c_pair
            if p.stcp is None:
                out.append(b"".join((p.pre, H16.pack(fold(p.sip + aw)), pair, p.mid, p.post)))
            else:
                out.append(b"".join((p.pre, H16.pack(fold(p.sip + aw)), pair, p.mid,
                                     H16.pack(fold(p.stcp + aw)), p.post)))
        return out

    def describe(self):
        ip = lambda a: ".".join(str(x) for x in a)
        return {
            "source": self.source,
            "tcp_stream": self.index,
            "client": "%s:%d" % (ip(self.client[0]), self.client[1]),
            "server": "%s:%d" % (ip(self.server[0]), self.server[1]),
            "service": PORT_NAMES.get(self.server[1], str(self.server[1])),
            "tls_mode": self.mode,
            "client_random": self.client_random,
            "keylogged": self.keylogged,
            "packets": self.packets,
            "pcap_bytes": self.bytes,
            "tcp_payload_bytes": self.tcp_payload,
            "tls_record_bytes": self.tls,
            "duration_s": round(self.duration_us / 1e6, 6),
            "copies": self.copies,
        }


def load_source(pcap, rel_name):
    conns = {}
    order = []
    skipped = 0
    for ts, frame, olen in read_pcap(pcap):
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            skipped += 1
            continue
        ipo = 14
        vihl = frame[ipo]
        ihl = (vihl & 15) * 4
        totlen = struct.unpack_from("!H", frame, ipo + 2)[0]
        frag = struct.unpack_from("!H", frame, ipo + 6)[0]
        if vihl >> 4 != 4 or frame[ipo + 9] != 6 or frag & 0x3FFF or len(frame) < ipo + ihl + 20:
            skipped += 1
            continue
        tcpo = ipo + ihl
        src, dst = frame[ipo + 12:ipo + 16], frame[ipo + 16:ipo + 20]
        sport, dport, seq = struct.unpack_from("!HHI", frame, tcpo)
        doff = (frame[tcpo + 12] >> 4) * 4
        flags = frame[tcpo + 13]
        payload = frame[tcpo + doff:ipo + totlen]
        key = frozenset(((src, sport), (dst, dport)))
        c = conns.get(key)
        if c is None:
            if flags & 0x12 == 0x02 or dport in PORT_NAMES:  # SYN from the client, or a mail port
                client, server = (src, sport), (dst, dport)
            else:
                client, server = (dst, dport), (src, sport)
            c = conns[key] = Conn(rel_name, len(order), client, server)
            order.append(c)
        c2s = (src, sport) == c.client
        c.raw.append((ts, frame, olen, c2s, ipo, ihl, tcpo, totlen, seq, payload))
    if skipped:
        sys.stderr.write("make-tls-capture: %s: skipped %d non-IPv4/TCP frames\n" % (rel_name, skipped))
    return order


def keylog_randoms(text):
    r = set()
    for line in text.splitlines():
        f = line.split()
        if len(f) == 3 and not line.startswith("#") and f[0] != "RSA":
            r.add(f[1].lower())
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=1024, help="approximate output size in MiB (default 1024)")
    ap.add_argument("--out", required=True, help="output pcap path")
    ap.add_argument("--keys", help="combined key log path (default OUT with .pcap replaced by .keys)")
    ap.add_argument("--truth", help="truth JSON path (default OUT.truth.json)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mean-gap-us", type=float, default=1000,
                    help="mean interval between two copies' first packets (default 1000 us)")
    ap.add_argument("--source", nargs=2, action="append", metavar=("PCAP", "KEYS"),
                    help="source capture and its key log (repeatable; default the two sample captures)")
    args = ap.parse_args()
    t_start = time.monotonic()

    sources = args.source or [(os.path.join(ROOT, p), os.path.join(ROOT, k)) for p, k in DEFAULT_SOURCES]
    keytext = []
    templates = []
    for pcap, keys in sources:
        with open(keys, "r", encoding="ascii") as kf:
            t = kf.read()
        keytext.append(t if t.endswith("\n") else t + "\n")
        templates += load_source(pcap, os.path.relpath(pcap, ROOT))
    randoms = keylog_randoms("".join(keytext))
    for c in templates:
        c.build(randoms)
    if not templates:
        die("no TCP connections in the sources")

    keys_path = args.keys or (args.out[:-5] if args.out.endswith(".pcap") else args.out) + ".keys"
    truth_path = args.truth or args.out + ".truth.json"
    target = int(args.size_mb * 1048576) - len(PCAP_GLOBAL)
    rng = random.Random(args.seed)

    # --- schedule and write: a heap of in-flight copies keyed by their next packet's time
    tmp = args.out + ".tmp"
    heap = []
    seq = 0
    scheduled = 0
    next_start = START_TS_US
    round_ = []
    frames = written = 0
    max_inflight = 0
    last_ts = 0
    buf, buflen = [], 0
    pack = REC.pack
    with open(tmp, "wb") as f:
        f.write(PCAP_GLOBAL)
        written = len(PCAP_GLOBAL)
        while True:
            if next_start is not None and (not heap or next_start <= heap[0][0]):
                if not round_:
                    round_ = templates[:]
                    rng.shuffle(round_)
                    round_.reverse()
                c = round_.pop()
                if seq >= (1 << 24) - 2:
                    die("more than 2^24 copies; client addresses exhausted")
                c.copies += 1
                seq += 1
                scheduled += c.bytes
                fr = c.frames_for(CLIENT_NET + seq)
                heapq.heappush(heap, (next_start, seq, 0, next_start, c.pkts, fr))
                if len(heap) > max_inflight:
                    max_inflight = len(heap)
                if scheduled >= target:
                    next_start = None
                else:
                    next_start += max(1, round(rng.expovariate(1.0 / args.mean_gap_us)))
                continue
            if not heap:
                break
            ts, s, i, base, pkts, fr = heap[0]
            p = pkts[i]
            buf.append(pack(ts // 1_000_000, ts % 1_000_000, p.caplen, p.olen))
            buf.append(fr[i])
            buflen += 16 + p.caplen
            frames += 1
            last_ts = ts
            i += 1
            if i < len(pkts):
                heapq.heapreplace(heap, (base + pkts[i].rel, s, i, base, pkts, fr))
            else:
                heapq.heappop(heap)
            if buflen >= 1 << 22:
                f.write(b"".join(buf))
                written += buflen
                buf, buflen = [], 0
        f.write(b"".join(buf))
        written += buflen

    conns = seq
    keylogged = sum(c.copies for c in templates if c.keylogged)
    tls = {k: sum(c.tls[k] * c.copies for c in templates) for k in TLS_CT.values()}
    tcp_payload = sum(c.tcp_payload * c.copies for c in templates)
    by_service = {}
    for c in templates:
        name = PORT_NAMES.get(c.server[1], str(c.server[1]))
        by_service[name] = by_service.get(name, 0) + c.copies
    truth = {
        "generator": "bench/make-tls-capture.py",
        "seed": args.seed,
        "size_mb_requested": args.size_mb,
        "mean_gap_us": args.mean_gap_us,
        "file_bytes": written,
        "frames": frames,
        "tcp_connections": conns,
        "keylogged_connections": keylogged,
        "expected_decrypted_sessions": keylogged,
        "connections_by_service": by_service,
        "max_connections_in_flight": max_inflight,
        "capture_span_s": round((last_ts - START_TS_US) / 1e6, 6),
        "tcp_payload_bytes": tcp_payload,
        "tls_record_bytes": tls,
        "keylog": keys_path,
        "notes": [
            "copy n (1-based, in order of first packet) has client address 10.0.0.0 + n; everything else as captured",
            "IPv4 header and TCP checksums are recomputed for the new address (valid)",
            "tls_record_bytes count whole records (5-byte header included) per content type, both directions;"
            " TLS 1.3 encrypted handshake messages travel in application_data records too",
            "tcp_stream is the connection's index in its source file, as tshark's tcp.stream numbers it",
        ],
        "templates": [c.describe() for c in templates],
    }
    with open(keys_path + ".tmp", "w", encoding="ascii") as kf:
        kf.write("".join(keytext))
    os.replace(keys_path + ".tmp", keys_path)
    with open(truth_path + ".tmp", "w") as tf:
        json.dump(truth, tf, indent=1)
        tf.write("\n")
    os.replace(truth_path + ".tmp", truth_path)
    os.replace(tmp, args.out)  # last, so an existing OUT always has its keys and truth files

    elapsed = time.monotonic() - t_start
    mib = lambda b: b / 1048576
    print("wrote %s: %d bytes (%.1f MiB), %d frames, %d TCP connections (%d keylogged, %d not) "
          "from %d source connections, up to %d in flight, %.1f s of traffic, in %.1fs (%.1f MiB/s)" % (
              args.out, written, mib(written), frames, conns, keylogged, conns - keylogged,
              len(templates), max_inflight, truth["capture_span_s"], elapsed, mib(written) / max(elapsed, 1e-9)))
    print("  by service: %s" % ", ".join("%s %d" % kv for kv in sorted(by_service.items())))
    print("  TCP payload %.1f MiB (%.1f%% of the file); TLS records: application_data %.1f MiB "
          "(%.1f%% of the file, %.1f%% of TCP payload), handshake %.1f MiB, other %.2f MiB" % (
              mib(tcp_payload), 100 * tcp_payload / written,
              mib(tls["application_data"]), 100 * tls["application_data"] / written,
              100 * tls["application_data"] / max(tcp_payload, 1),
              mib(tls["handshake"]), mib(tls["change_cipher_spec"] + tls["alert"])))
    print("  key log %s (%d client randoms); truth %s" % (keys_path, len(randoms), truth_path))


if __name__ == "__main__":
    main()
