#!/usr/bin/env python3
"""Deterministic synthetic pcap generator for the mailscope benchmark.

Writes a classic pcap (LINKTYPE_ETHERNET, microsecond timestamps) of roughly
the requested size, made of many interleaved TCP connections:

  * ~60% of payload bytes are mail: SMTP (25/587/2525) with EHLO/AUTH/MAIL/
    RCPT/DATA (optionally pipelined), dot-stuffed MIME messages with base64
    attachments (2 KB .. 2 MB, log-uniform); POP3 (110) USER/PASS/STAT/LIST/
    UIDL/RETR/DELE; IMAP (143) LOGIN/SELECT/FETCH BODY[] with {n} literals.
  * ~40% background: HTTP on 80, TLS-looking records on 443, opaque bulk on
    random ports.

Every connection has a 3-way handshake, correct seq/ack numbers (ISNs random,
some close to 2^32 so they wrap), MSS 1448 segments, delayed pure ACKs and a
FIN close.  About 1% of data segments are retransmitted (identical bytes),
about 0.5% are reordered (adjacent segments of one flow swapped), ~10% of
connections are IPv6 and ~5% carry an 802.1Q tag.  IPv4 header checksums are
valid; TCP checksums are left 0.

A sidecar JSON (OUT.truth.json) describes what a correct reassembler must find.

Python 3.11 standard library only.  Usage:
    python3 bench/make-capture.py --size-mb 1024 --out /tmp/bench-1g.pcap [--seed 1]
"""

import argparse
import base64
import hashlib
import ipaddress
import json
import math
import os
import random
import struct
import sys
import time

MSS = 1448
M32 = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PSHACK = PSH | ACK
FINACK = FIN | ACK
SYN_OPTS = b"\x02\x04" + struct.pack("!H", MSS) + b"\x01\x01\x04\x02"  # MSS, NOP, NOP, SACK-perm
EMPTY = b""

RETX_P = 0.01      # probability a data segment is sent twice
REORDER_P = 0.005  # per adjacent pair probability of a swap
IPV6_P = 0.10
VLAN_P = 0.05
WRAP_P = 0.10      # ISN chosen close to 2^32

MAIL_PORTS = {25, 465, 587, 2525, 110, 995, 143, 993, 585}

PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
PCAP_REC = struct.Struct("<IIII")
IP4TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")
IP6TCP = struct.Struct("!IHBB16s16sHHIIBBHHH")

START_TS_US = 1705312800 * 1_000_000  # 2024-01-15 10:00:00 UTC

# stats shared with the flow generators: [retransmitted segments, reordered pairs, data segments]
ST = [0, 0, 0]


# --------------------------------------------------------------------------
# payload pools (built once, sliced many times)
# --------------------------------------------------------------------------

class Pools:
    def __init__(self, rng):
        raw = rng.randbytes(24 * 1024 * 1024)
        self.raw = memoryview(raw)
        # base64 attachment lines: 76 chars + CRLF = 78 bytes per line
        enc = base64.b64encode(raw[: 3 * 1024 * 1024])
        enc = enc[: len(enc) - len(enc) % 76]
        self.b64 = b"".join(enc[i:i + 76] + b"\r\n" for i in range(0, len(enc), 76))
        self.b64_lines = len(self.b64) // 78
        # TLS-looking application data records (5-byte header + 16384 bytes)
        rec_hdr = b"\x17\x03\x03" + struct.pack("!H", 16384)
        n = len(raw) // 16384
        self.tls = memoryview(b"".join(rec_hdr + raw[i * 16384:(i + 1) * 16384] for i in range(n)))
        self.tls_rec = 16389


TEXT_LINES = [
    b"Hello team,",
    b"",
    b"Please find the requested report attached to this message.",
    b"The numbers below are preliminary and subject to change.",
    b".hidden line that starts with a single dot",
    b"..this one starts with two dots",
    b".",
    b"A line with trailing spaces   ",
    b"Line with tab\tseparated\tvalues\t1\t2\t3",
    b"From the archive: >From lines are not special in SMTP",
    b"Unicode-ish bytes: caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9",
    b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    b"incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    b"exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.",
    b"--",
    b"Regards,",
    b". final dotted line",
    b"Bench Bot",
]


def make_text_variants(rng, n=12):
    out = []
    for _ in range(n):
        k = rng.randint(6, len(TEXT_LINES))
        lines = [TEXT_LINES[i] for i in sorted(rng.sample(range(len(TEXT_LINES)), k))]
        out.append(b"\r\n".join(lines) + b"\r\n")
    return out


# --------------------------------------------------------------------------
# mail message construction
# --------------------------------------------------------------------------

class MsgFactory:
    def __init__(self, rng, pools, seed):
        self.rng = rng
        self.pools = pools
        self.seed = seed
        self.texts = make_text_variants(rng)
        self.counter = 0

    def build(self, target, sender, rcpts):
        """Return (message_bytes, message_id).  len(message) == target exactly
        (target is raised to the minimum possible size if too small)."""
        rng = self.rng
        self.counter += 1
        n = self.counter
        mid = "<%d.%d.bench@mailscope.test>" % (n, self.seed)
        boundary = b"=_mailscope_%d" % n
        sec = n % 3600
        hdr = (
            b"Return-Path: <" + sender.encode() + b">\r\n"
            b"Received: from client.example.org (client.example.org [10.0.0.1])\r\n"
            b"\tby mx1.example.net (Postfix) with ESMTP id %X\r\n"
            b"\tfor <" + rcpts[0].encode() + b">; Mon, 15 Jan 2024 10:%02d:%02d +0000\r\n"
            b"From: \"Bench Sender\" <" + sender.encode() + b">\r\n"
            b"To: " + b", ".join(b"<" + r.encode() + b">" for r in rcpts) + b"\r\n"
            b"Subject: mailscope bench message %d\r\n"
            b"Date: Mon, 15 Jan 2024 10:%02d:%02d +0000\r\n"
            b"Message-ID: " + mid.encode() + b"\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n"
        ) % (n * 7919 & 0xFFFFFF, sec // 60, sec % 60, n, sec // 60, sec % 60)
        part1 = (
            b"\r\nThis is a multi-part message in MIME format.\r\n\r\n--" + boundary + b"\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        ) + self.texts[rng.randrange(len(self.texts))]
        part2 = (
            b"--" + boundary + b"\r\n"
            b"Content-Type: application/octet-stream; name=\"data_%d.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"data_%d.bin\"\r\n\r\n"
        ) % (n, n)
        tail = b"--" + boundary + b"--\r\n"
        fixed = len(hdr) + len(part1) + len(part2) + len(tail)
        # X-Pad header (>= 9 bytes) makes the size exact
        minimum = fixed + 78 + 9
        if target < minimum:
            target = minimum
        nlines = (target - fixed - 9) // 78
        pad = target - fixed - nlines * 78
        padline = b"X-Pad: " + b"x" * (pad - 9) + b"\r\n"
        pl = self.pools
        start = rng.randrange(pl.b64_lines - nlines) * 78
        att = pl.b64[start:start + nlines * 78]
        msg = b"".join((hdr, padline, part1, part2, att, tail))
        assert len(msg) == target, (len(msg), target)
        return msg, mid


def dot_stuff(msg):
    # message never starts with '.', always ends with CRLF
    return msg.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def log_uniform(rng, lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"]
DOMAINS = ["example.org", "example.net", "example.com", "corp.test", "mail.test"]


def addr(rng):
    return "%s%d@%s" % (rng.choice(USERS), rng.randrange(100), rng.choice(DOMAINS))


# --------------------------------------------------------------------------
# session scripts: builders return (script_generator, est_payload, est_turns)
# scripts yield (direction, bytes) with direction 0 = client->server, 1 = server->client
# --------------------------------------------------------------------------

C, S = 0, 1


def msg_sizes(rng, count, cap):
    sizes = []
    left = cap - 1500
    for _ in range(count):
        if left < 4000:
            break
        s = min(log_uniform(rng, 2048, 2 * 1024 * 1024), left - 1000)
        sizes.append(s)
        left -= s + 600
    return sizes


def smtp_builder(rng, mf, rec, cap, port):
    count = rng.choice((1, 1, 1, 1, 2, 2, 3, 4))
    sizes = msg_sizes(rng, count, cap)
    if not sizes:
        return None
    pipelining = rng.random() < 0.3
    auth = port == 587
    rec["messages"] = []
    rec["pipelining"] = pipelining

    def script():
        yield S, b"220 mx1.example.net ESMTP Postfix (mailscope bench)\r\n"
        yield C, b"EHLO client%d.example.org\r\n" % rng.randrange(1000)
        ehlo = [b"mx1.example.net", b"PIPELINING", b"SIZE 52428800", b"8BITMIME", b"ENHANCEDSTATUSCODES"]
        if auth:
            ehlo.append(b"AUTH PLAIN LOGIN")
        ehlo.append(b"SMTPUTF8")
        yield S, b"".join(b"250-" + e + b"\r\n" for e in ehlo[:-1]) + b"250 " + ehlo[-1] + b"\r\n"
        if auth:
            user = rng.choice(USERS)
            yield C, b"AUTH PLAIN " + base64.b64encode(b"\0" + user.encode() + b"\0bench-secret") + b"\r\n"
            yield S, b"235 2.7.0 Authentication successful\r\n"
        for i, size in enumerate(sizes):
            sender = addr(rng)
            rcpts = [addr(rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
            bogus = "nobody%d@%s" % (rng.randrange(1000), rng.choice(DOMAINS)) if rng.random() < 0.15 else None
            msg, mid = mf.build(size, sender, rcpts)
            cmds = [b"MAIL FROM:<" + sender.encode() + b"> SIZE=%d\r\n" % len(msg)]
            resps = [b"250 2.1.0 Ok\r\n"]
            for r in rcpts:
                cmds.append(b"RCPT TO:<" + r.encode() + b">\r\n")
                resps.append(b"250 2.1.5 Ok\r\n")
            if bogus:
                cmds.append(b"RCPT TO:<" + bogus.encode() + b">\r\n")
                resps.append(b"550 5.1.1 <" + bogus.encode() + b">: Recipient address rejected: User unknown\r\n")
            cmds.append(b"DATA\r\n")
            resps.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            if pipelining:
                yield C, b"".join(cmds)
                yield S, b"".join(resps)
            else:
                for c, r in zip(cmds, resps):
                    yield C, c
                    yield S, r
            rec["messages"].append({
                "message_id": mid, "size": len(msg), "sha256": hashlib.sha256(msg).hexdigest(),
                "mail_from": sender, "rcpt_to": rcpts + ([bogus] if bogus else []),
                "rejected_rcpt": [bogus] if bogus else [],
            })
            yield C, dot_stuff(msg)
            del msg
            yield S, b"250 2.0.0 Ok: queued as %010X\r\n" % rng.getrandbits(40)
            if i + 1 < len(sizes) and rng.random() < 0.2:
                yield C, b"RSET\r\n"
                yield S, b"250 2.0.0 Ok\r\n"
        if rng.random() < 0.1:
            yield C, b"NOOP\r\n"
            yield S, b"250 2.0.0 Ok\r\n"
        yield C, b"QUIT\r\n"
        yield S, b"221 2.0.0 Bye\r\n"

    est = sum(sizes) * 1.012 + 400 + 300 * len(sizes)
    turns = 8 + (6 if pipelining else 10) * len(sizes)
    return script(), est, turns


def pop3_builder(rng, mf, rec, cap, port):
    count = rng.choice((1, 1, 2, 2, 3, 4, 5, 6))
    sizes = msg_sizes(rng, count, cap)
    if not sizes:
        return None
    extra = rng.randrange(0, 4)
    total = len(sizes) + extra
    # mailbox: retrieved messages first, then some never-retrieved ones
    all_sizes = sizes + [log_uniform(rng, 2048, 500000) for _ in range(extra)]
    order = list(range(total))
    rng.shuffle(order)
    # order[k] = mailbox index (0-based) of the k-th message in all_sizes
    rec["messages"] = []
    do_uidl = rng.random() < 0.5
    user = rng.choice(USERS)

    def script():
        yield S, b"+OK POP3 server ready <%d.%d@pop.example.net>\r\n" % (rng.randrange(99999), rng.randrange(10**9))
        if rng.random() < 0.3:
            yield C, b"CAPA\r\n"
            yield S, b"+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n.\r\n"
        yield C, b"USER " + user.encode() + b"\r\n"
        yield S, b"+OK\r\n"
        yield C, b"PASS bench-secret\r\n"
        yield S, b"+OK Logged in.\r\n"
        yield C, b"STAT\r\n"
        mbox = [0] * total
        for k, s in enumerate(all_sizes):
            mbox[order[k]] = s
        yield S, b"+OK %d %d\r\n" % (total, sum(mbox))
        yield C, b"LIST\r\n"
        yield S, (b"+OK %d messages (%d octets)\r\n" % (total, sum(mbox))
                  + b"".join(b"%d %d\r\n" % (i + 1, s) for i, s in enumerate(mbox)) + b".\r\n")
        if do_uidl:
            yield C, b"UIDL\r\n"
            yield S, b"+OK\r\n" + b"".join(b"%d %08x%08x\r\n" % (i + 1, i * 7 + 1, 0xBE9C + i) for i in range(total)) + b".\r\n"
        for k, s in enumerate(sizes):
            idx = order[k] + 1
            msg, mid = mf.build(s, addr(rng), [user + "@pop.example.net"])
            rec["messages"].append({"message_id": mid, "size": len(msg),
                                    "sha256": hashlib.sha256(msg).hexdigest(), "index": idx})
            yield C, b"RETR %d\r\n" % idx
            yield S, b"+OK %d octets\r\n" % len(msg) + dot_stuff(msg)
            del msg
            if rng.random() < 0.5:
                yield C, b"DELE %d\r\n" % idx
                yield S, b"+OK Marked to be deleted.\r\n"
        yield C, b"QUIT\r\n"
        yield S, b"+OK Logging out.\r\n"

    est = sum(sizes) * 1.012 + 400 + 40 * total + 100 * len(sizes)
    turns = 12 + 4 * len(sizes)
    return script(), est, turns


IMAP_CAPS = b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN"


def imap_builder(rng, mf, rec, cap, port):
    count = rng.choice((1, 1, 2, 2, 3, 4, 5, 6))
    sizes = msg_sizes(rng, count, cap)
    if not sizes:
        return None
    exists = len(sizes) + rng.randrange(0, 20)
    seqnos = sorted(rng.sample(range(1, exists + 1), len(sizes)))
    use_uid = rng.random() < 0.4
    rec["messages"] = []
    user = rng.choice(USERS)

    def script():
        tagn = [0]

        def tag():
            tagn[0] += 1
            return b"a%03d" % tagn[0]

        yield S, b"* OK [CAPABILITY " + IMAP_CAPS + b"] Dovecot ready.\r\n"
        t = tag()
        yield C, t + b" LOGIN " + user.encode() + b" \"bench-secret\"\r\n"
        yield S, t + b" OK [CAPABILITY " + IMAP_CAPS + b" SORT THREAD=REFERENCES] Logged in\r\n"
        t = tag()
        yield C, t + b" SELECT INBOX\r\n"
        uidnext = 1000 + exists
        yield S, (b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                  b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n"
                  b"* %d EXISTS\r\n* 0 RECENT\r\n"
                  b"* OK [UIDVALIDITY 1705312800] UIDs valid\r\n"
                  b"* OK [UIDNEXT %d] Predicted next UID\r\n" % (exists, uidnext)
                  + t + b" OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n")
        if rng.random() < 0.5:
            t = tag()
            yield C, t + b" FETCH 1:* (FLAGS RFC822.SIZE)\r\n"
            yield S, b"".join(b"* %d FETCH (FLAGS (\\Seen) RFC822.SIZE %d)\r\n" % (i, 2048 + i * 97)
                              for i in range(1, exists + 1)) + t + b" OK Fetch completed.\r\n"
        for seqno, s in zip(seqnos, sizes):
            msg, mid = mf.build(s, addr(rng), [user + "@imap.example.net"])
            rec["messages"].append({"message_id": mid, "size": len(msg),
                                    "sha256": hashlib.sha256(msg).hexdigest(), "seq": seqno})
            t = tag()
            uid = 999 + seqno
            if use_uid:
                yield C, t + b" UID FETCH %d (UID BODY.PEEK[])\r\n" % uid
            else:
                yield C, t + b" FETCH %d BODY[]\r\n" % seqno
            yield S, b"".join((b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (seqno, uid, len(msg)), msg,
                               b")\r\n", t, b" OK Fetch completed.\r\n"))
            del msg
        if rng.random() < 0.3:
            t = tag()
            yield C, t + b" NOOP\r\n"
            yield S, t + b" OK NOOP completed.\r\n"
        t = tag()
        yield C, t + b" LOGOUT\r\n"
        yield S, b"* BYE Logging out\r\n" + t + b" OK Logout completed.\r\n"

    est = sum(sizes) * 1.0 + 900 + 100 * len(sizes) + 60 * exists
    turns = 10 + 2 * len(sizes)
    return script(), est, turns


def http_builder(rng, pools, cap):
    size = log_uniform(rng, 300, 65536) if rng.random() < 0.9 else log_uniform(rng, 65536, 16 * 1024 * 1024)
    size = min(size, cap - 600, len(pools.raw) - 1)
    if size < 100:
        return None
    off = rng.randrange(len(pools.raw) - size)
    body = pools.raw[off:off + size]
    path = b"/static/%d/%x.bin" % (rng.randrange(100), rng.getrandbits(48))
    req = (b"GET " + path + b" HTTP/1.1\r\nHost: www%d.example.com\r\n"
           b"User-Agent: bench-agent/1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n") % rng.randrange(50)
    resp = (b"HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n") % size

    def script():
        yield C, req
        yield S, resp
        yield S, body

    return script(), size + len(req) + len(resp), 3


def tls_builder(rng, pools, cap):
    size = log_uniform(rng, 300, 65536) if rng.random() < 0.9 else log_uniform(rng, 65536, 16 * 1024 * 1024)
    size = min(size, cap - 2000, len(pools.tls) - pools.tls_rec)
    if size < 100:
        return None
    rl = pools.tls_rec
    nfull = size // rl
    rest = size - nfull * rl
    if rest and rest < 6:
        rest += 6
    nrec = len(pools.tls) // rl
    reqlen = rng.randrange(200, 1200)

    def rec(o, n):
        # one TLS application_data record carrying n random bytes from the pool
        return b"\x17\x03\x03" + struct.pack("!H", n) + bytes(pools.raw[o:o + n])

    def script():
        # opaque (already encrypted-looking) exchange, then records from the pool
        o = rng.randrange(len(pools.raw) - 20000)
        yield C, rec(o, 512)
        yield S, rec(o + 512, 1200)
        yield C, rec(o + 1712, reqlen)
        if nfull:
            start = rng.randrange(nrec - nfull + 1) * rl
            yield S, pools.tls[start:start + nfull * rl]
        if rest:
            yield S, rec(o + 3000, rest - 5)

    return script(), nfull * rl + rest + 1727 + reqlen, 5


def opaque_builder(rng, pools, cap):
    total = log_uniform(rng, 500, 65536) if rng.random() < 0.85 else log_uniform(rng, 65536, 8 * 1024 * 1024)
    total = min(total, cap - 100)
    if total < 100:
        return None
    nturns = rng.randrange(1, 8)
    parts = []
    left = total
    for i in range(nturns):
        n = left if i == nturns - 1 else max(1, int(left * rng.uniform(0.05, 0.6)))
        left -= n
        parts.append((i & 1, n))
        if left <= 0:
            break

    def script():
        for d, n in parts:
            if n <= 0:
                continue
            o = rng.randrange(len(pools.raw) - n)
            yield d, pools.raw[o:o + n]

    return script(), total, len(parts)


# --------------------------------------------------------------------------
# endpoints / header builders
# --------------------------------------------------------------------------

def mac_for(ipb, kind):
    return bytes((0x02, kind)) + ipb[-4:]


def header_builder(v6, l2, src, dst, sport, dport, ttl, ipid0):
    """Return mk(seq, ack, flags, plen, opts=b'') -> link+ip+tcp header bytes."""
    if v6:
        pack = IP6TCP.pack
        flow = 0x60000000 | (ipid0 * 2654435761 & 0xFFFFF)

        def mk(seq, ack, flags, plen, opts=EMPTY):
            h = l2 + pack(flow, 20 + len(opts) + plen, 6, ttl, src, dst, sport, dport, seq, ack,
                          (5 + (len(opts) >> 2)) << 4, flags, 64240, 0, 0)
            return h + opts if opts else h
        return mk

    pack = IP4TCP.pack
    base = 0x4500 + 0x4000 + ((ttl << 8) | 6)
    for b in (src, dst):
        base += (b[0] << 8 | b[1]) + (b[2] << 8 | b[3])
    st = [ipid0]

    def mk(seq, ack, flags, plen, opts=EMPTY):
        ipid = st[0] = (st[0] + 1) & 0xFFFF
        tl = 40 + len(opts) + plen
        s = base + tl + ipid
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        h = l2 + pack(0x45, 0, tl, ipid, 0x4000, ttl, 6, ~s & 0xFFFF, src, dst, sport, dport, seq, ack,
                      (5 + (len(opts) >> 2)) << 4, flags, 64240, 0, 0)
        return h + opts if opts else h
    return mk


def flow_gen(rng, mkc, mks, script, rec, hashers, server_closes):
    """Yields bursts: lists of (header_bytes, payload) frames of one connection."""
    rnd = rng.random
    st = ST
    c_isn, s_isn = rec["_isn"]
    yield [(mkc(c_isn, 0, SYN, 0, SYN_OPTS), EMPTY)]
    yield [(mks(s_isn, (c_isn + 1) & M32, SYN | ACK, 0, SYN_OPTS), EMPTY)]
    seqs = [(c_isn + 1) & M32, (s_isn + 1) & M32]
    yield [(mkc(seqs[0], seqs[1], ACK, 0), EMPTY)]
    mk = (mkc, mks)
    cnt = [0, 0]
    unacked = 0
    last_dir = -1
    for d, data in script:
        n = len(data)
        if not n:
            continue
        cnt[d] += n
        if hashers is not None:
            hashers[d].update(data)
        if d != last_dir:
            unacked = 0
            last_dir = d
        snd = mk[d]
        rcv = mk[1 - d]
        base = seqs[d]
        ackv = seqs[1 - d]
        mv = memoryview(data)
        off = 0
        while off < n:
            k = 1 + int(rnd() * 6)
            segs = []
            while k and off < n:
                end = off + MSS
                if end >= n:
                    end = n
                    segs.append(((base + off) & M32, PSHACK, mv[off:end]))
                else:
                    segs.append(((base + off) & M32, ACK, mv[off:end]))
                off = end
                k -= 1
            nseg = len(segs)
            st[2] += nseg
            if nseg > 1 and rnd() < REORDER_P * (nseg - 1):
                j = int(rnd() * (nseg - 1))
                segs[j], segs[j + 1] = segs[j + 1], segs[j]
                st[1] += 1
            burst = []
            for sq, fg, pl in segs:
                burst.append((snd(sq, ackv, fg, len(pl)), pl))
                if rnd() < RETX_P:
                    burst.append((snd(sq, ackv, fg, len(pl)), pl))
                    st[0] += 1
            unacked += nseg
            if unacked >= 2:
                burst.append((rcv(ackv, (base + off) & M32, ACK, 0), EMPTY))
                unacked = 0
            yield burst
        seqs[d] = (base + n) & M32
    c, s = seqs
    if server_closes:
        yield [(mks(s, c, FINACK, 0), EMPTY)]
        yield [(mkc(c, (s + 1) & M32, FINACK, 0), EMPTY)]
        yield [(mks((s + 1) & M32, (c + 1) & M32, ACK, 0), EMPTY)]
    else:
        yield [(mkc(c, s, FINACK, 0), EMPTY)]
        yield [(mks(s, (c + 1) & M32, FINACK, 0), EMPTY)]
        yield [(mkc((c + 1) & M32, (s + 1) & M32, ACK, 0), EMPTY)]
    rec["c2s_bytes"] = cnt[0]
    rec["s2c_bytes"] = cnt[1]
    if hashers is not None:
        rec["c2s_sha256"] = hashers[0].hexdigest()
        rec["s2c_sha256"] = hashers[1].hexdigest()


# --------------------------------------------------------------------------
# generator driver
# --------------------------------------------------------------------------

class Generator:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.target = int(args.size_mb * 1024 * 1024)
        self.pools = Pools(self.rng)
        self.mf = MsgFactory(self.rng, self.pools, args.seed)
        self.used = set()
        self.committed = len(PCAP_GLOBAL)
        self.mail_payload_est = 0.0
        self.bg_payload_est = 0.0
        self.flow_id = 0
        self.mail_recs = []
        self.counts = {"smtp": 0, "pop3": 0, "imap": 0, "http": 0, "tls": 0, "other": 0}
        self.ipv6 = 0
        self.vlan = 0
        self.stopped = False
        self.frames_now = 0
        self.stop_frame = None
        self.drain = {}
        rng = self.rng
        self.mail_servers4 = [bytes((172, 16, rng.randrange(256), rng.randrange(1, 255))) for _ in range(40)]
        self.web_servers4 = [bytes((93, 184, rng.randrange(256), rng.randrange(1, 255))) for _ in range(60)]
        self.mail_servers6 = [ipaddress.IPv6Address("2001:db8:ff::%x" % rng.randrange(1, 0xFFFF)).packed for _ in range(12)]
        self.web_servers6 = [ipaddress.IPv6Address("2001:db8:80::%x" % rng.randrange(1, 0xFFFF)).packed for _ in range(20)]

    def endpoints(self, v6, mail):
        rng = self.rng
        while True:
            if v6:
                cip = ipaddress.IPv6Address((0x20010DB8_0001 << 80) | rng.getrandbits(64)).packed
                sip = rng.choice(self.mail_servers6 if mail else self.web_servers6)
            else:
                cip = bytes((10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)))
                sip = rng.choice(self.mail_servers4 if mail else self.web_servers4)
            cport = rng.randrange(32768, 61000)
            key = (cip, cport, sip)
            if key not in self.used:
                self.used.add(key)
                return cip, cport, sip

    def new_flow(self):
        """Create one connection; returns (gen, rec) or None when the budget is exhausted."""
        if self.stopped:
            return None
        rng = self.rng
        remaining = self.target - self.committed
        # taper flow sizes as the budget runs out so that connections keep
        # starting until close to the end (keeps concurrency high in the tail)
        cap = int(min(remaining * 0.93, remaining * 8 / self.args.concurrency))
        if cap < 8000:
            self.stopped = True
            self.stop_frame = self.frames_now
            return None
        total_est = self.mail_payload_est + self.bg_payload_est
        mail = total_est == 0 or self.mail_payload_est < self.args.mail_share * total_est
        v6 = rng.random() < IPV6_P
        vlan = rng.choice((10, 20, 100, 4000)) if rng.random() < VLAN_P else None
        rec = {}
        hashers = None
        for _attempt in range(3):
            if mail:
                r = rng.random()
                if r < 0.5:
                    proto, builder = "smtp", smtp_builder
                    port = rng.choices((25, 587, 2525), (60, 35, 5))[0]
                elif r < 0.75:
                    proto, builder, port = "pop3", pop3_builder, 110
                else:
                    proto, builder, port = "imap", imap_builder, 143
                res = builder(rng, self.mf, rec, cap, port)
            else:
                r = rng.random()
                if r < 0.45:
                    proto, res, port = "http", http_builder(rng, self.pools, cap), 80
                elif r < 0.8:
                    proto, res, port = "tls", tls_builder(rng, self.pools, cap), 443
                else:
                    proto, res = "other", opaque_builder(rng, self.pools, cap)
                    while True:
                        port = rng.randrange(1024, 30000)
                        if port not in MAIL_PORTS and port not in (80, 443, 8080):
                            break
            if res is not None:
                break
            mail = not mail
        if res is None:
            self.stopped = True
            self.stop_frame = self.frames_now
            return None
        script, est_payload, est_turns = res
        cip, cport, sip = self.endpoints(v6, mail)
        c_isn = (M32 - rng.randrange(0, 4 * 1024 * 1024)) if rng.random() < WRAP_P else rng.getrandbits(32)
        s_isn = (M32 - rng.randrange(0, 4 * 1024 * 1024)) if rng.random() < WRAP_P else rng.getrandbits(32)
        cmac, smac = mac_for(cip, 0), mac_for(sip, 1)
        et = b"\x86\xdd" if v6 else b"\x08\x00"
        tag = (b"\x81\x00" + struct.pack("!H", vlan)) if vlan else EMPTY
        l2c = smac + cmac + tag + et   # client -> server: dst = server mac
        l2s = cmac + smac + tag + et
        mkc = header_builder(v6, l2c, cip, sip, cport, port, 64, rng.getrandbits(16))
        mks = header_builder(v6, l2s, sip, cip, port, cport, 58 if not v6 else 60, rng.getrandbits(16))
        hdr = 14 + len(tag) + (40 if v6 else 20) + 20 + 16
        est_wire = est_payload * (1 + RETX_P) + (est_payload / MSS * 1.25 + est_turns * 1.3 + 7) * hdr
        self.committed += int(est_wire)
        self.flow_id += 1
        self.counts[proto] += 1
        self.ipv6 += v6
        self.vlan += vlan is not None
        rec["_isn"] = (c_isn, s_isn)
        if mail:
            self.mail_payload_est += est_payload
            hashers = (hashlib.sha256(), hashlib.sha256())
            ipfmt = (lambda b: str(ipaddress.IPv6Address(b))) if v6 else (lambda b: str(ipaddress.IPv4Address(b)))
            full = {"id": self.flow_id, "proto": proto, "ip_version": 6 if v6 else 4, "vlan": vlan,
                    "client_ip": ipfmt(cip), "client_port": cport,
                    "server_ip": ipfmt(sip), "server_port": port,
                    "client_isn": c_isn, "server_isn": s_isn}
            rec.update({k: v for k, v in full.items() if k not in rec})
            self.mail_recs.append(rec)
        else:
            self.bg_payload_est += est_payload
        gen = flow_gen(rng, mkc, mks, script, rec, hashers, server_closes=mail)
        return gen, rec

    def run(self, f):
        rng = self.rng
        rnd = rng.random
        pack_rec = PCAP_REC.pack
        out = [PCAP_GLOBAL]
        buffered = len(PCAP_GLOBAL)
        written = 0
        frames = 0
        payload_total = 0
        ts = START_TS_US
        active = []
        fresh = []  # parallel: True until the flow's first burst is written
        for _ in range(self.args.concurrency):
            fl = self.new_flow()
            if fl is None:
                break
            active.append(fl)
            fresh.append(True)
        FLUSH = 16 * 1024 * 1024
        while active:
            i = int(rnd() * len(active))
            gen, rec = active[i]
            try:
                burst = next(gen)
            except StopIteration:
                self.frames_now = frames
                nf = self.new_flow()
                if nf is not None:
                    active[i] = nf
                    fresh[i] = True
                else:
                    if len(active) in (150, 100, 50, 10):
                        self.drain[len(active)] = frames
                    active[i] = active[-1]
                    fresh[i] = fresh[-1]
                    active.pop()
                    fresh.pop()
                continue
            if fresh[i]:
                fresh[i] = False
                if "proto" in rec:
                    rec["syn_frame"] = frames + 1
            for h, pl in burst:
                ts += 1 + int(rnd() * 24)
                n = len(h) + len(pl)
                out.append(pack_rec(ts // 1_000_000, ts % 1_000_000, n, n))
                out.append(h)
                if pl:
                    out.append(pl)
                    payload_total += len(pl)
                buffered += n + 16
                frames += 1
            if buffered >= FLUSH:
                f.write(b"".join(out))
                written += buffered
                out.clear()
                buffered = 0
        f.write(b"".join(out))
        written += buffered
        return written, frames, payload_total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, required=True, help="approximate output size in MiB")
    ap.add_argument("--out", required=True, help="output pcap path")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=200, help="concurrently active connections")
    ap.add_argument("--mail-share", type=float, default=0.6, help="target share of payload bytes that is mail")
    ap.add_argument("--truth", help="truth JSON path (default OUT.truth.json)")
    args = ap.parse_args()

    t0 = time.monotonic()
    g = Generator(args)
    tmp = args.out + ".tmp"
    with open(tmp, "wb", buffering=0) as f:
        written, frames, payload_total = g.run(f)

    mail = []
    for r in g.mail_recs:
        r.pop("_isn", None)
        mail.append(r)
    mail_payload = sum(r["c2s_bytes"] + r["s2c_bytes"] for r in mail)
    truth = {
        "generator": "bench/make-capture.py",
        "seed": args.seed,
        "size_mb_requested": args.size_mb,
        "file_bytes": written,
        "frames": frames,
        "tcp_connections": g.flow_id,
        "mail_connections": len(mail),
        "connections_by_protocol": g.counts,
        "ipv6_connections": g.ipv6,
        "vlan_connections": g.vlan,
        "payload_bytes_on_wire": payload_total,
        "mail_payload_bytes": mail_payload,
        "data_segments": ST[2],
        "retransmitted_segments": ST[0],
        "reordered_pairs": ST[1],
        "mail_messages": sum(len(r.get("messages", ())) for r in mail),
        "last_flow_started_before_frame": g.stop_frame,
        "active_connections_fell_below_at_frame": g.drain,
        "notes": [
            "c2s_bytes/s2c_bytes/sha256 are over the reassembled stream payload (retransmitted copies counted once)",
            "message sha256/size are over the RFC 5322 message as stored (CRLF, not dot-stuffed)",
            "mail connections are closed by the server (FIN from server first); all others by the client",
            "every reordered pair makes tshark flag one tcp.analysis.lost_segment (later one arrives first)",
        ],
        "mail": mail,
    }
    truth_path = args.truth or args.out + ".truth.json"
    with open(truth_path + ".tmp", "w") as tf:
        json.dump(truth, tf, indent=1)
        tf.write("\n")
    os.replace(truth_path + ".tmp", truth_path)
    os.replace(tmp, args.out)  # last, so an existing OUT always has its truth file
    elapsed = time.monotonic() - t0
    sys.stderr.write(
        "wrote %s: %d bytes (%.1f MiB), %d frames, %d connections (%d mail, %d messages), "
        "%d retransmitted, %d reordered pairs in %.1fs (%.1f MiB/s)\n" % (
            args.out, written, written / 1048576, frames, g.flow_id, len(mail), truth["mail_messages"],
            ST[0], ST[1], elapsed, written / 1048576 / max(elapsed, 1e-9)))


if __name__ == "__main__":
    main()
