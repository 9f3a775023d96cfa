#!/usr/bin/env python3
"""Check samples/ against samples/MANIFEST.json with tshark.

    check_samples.py [SAMPLES_DIR] [--only FILE ...]   (default: samples/ next to scripts/)

For every capture: packet count and link type as recorded, no lost segments, one TCP
connection per recorded session, and (unless packets are truncated) the truth data is on
the wire: every sent message (dot-stuffed, followed by ".CRLF") in the client->server bytes,
every fetched message in the server->client bytes, credentials where they are visible, and
each sent message's attachments decode to the recorded file (MIME parts with the email package,
uuencoded blocks line by line with binascii.a2b_uu).
TLS streams are decrypted with the key log (or the secrets embedded in the pcapng); IMAP
sessions with "compress" (COMPRESS=DEFLATE) are inflated after the recorded stream offsets.
Sessions with "keylogged": false must not decrypt.  Captures with "escapes" (hostile-escapes.pcap):
each escape sequence is counted again in the SMTP client bytes and the IMAP server bytes.
Sessions with tshark_decrypted_records (tls-ciphers.pcap, tls-legacy.pcap) are compared with tls_facts():
client random, version, encrypt_then_mac in the ServerHello, key log lines, decrypted record counts,
the sha256 of the decrypted application data against the recorded plaintext, and for TLS 1.0-1.2
resumption (abbreviated handshake: the ServerHello echoes the ClientHello's session ID, no Certificate).
Gzip-compressed captures (.pcap.gz) are read by tshark directly.
Exit status 1 on any failure.
"""
import base64
import binascii
import email
import email.policy
import hashlib
import json
import os
import re
import subprocess
import sys
import zlib

FAILS = []
ATTACHMENTS_CHECKED = [0]


def fail(msg):
    FAILS.append(msg)
    print("FAIL", msg)


def tshark(args, timeout=300):
    p = subprocess.run(["tshark", "-n"] + args, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("tshark %s: %s" % (args, p.stderr.decode(errors="replace")))
    return p.stdout.decode("utf-8", "replace")


def follow(path, kind, streams, extra=(), server_ports=None, chunks=None):
    """{stream: (client_bytes, server_bytes)} via tshark -z follow,KIND,raw,N.

    tshark calls the first endpoint that sent data "Node 0" (unindented lines); for TLS that can be
    the server, so the direction is fixed up with the session's server port.  With chunks (a dict),
    chunks[stream] = [client, server] counts the hex lines: for follow,tls one line per decrypted
    application-data record (Wireshark's TLS follow tap keeps one entry per record)."""
    if not streams:
        return {}
    args = ["-r", path, "-q"] + list(extra)
    for s in streams:
        args += ["-z", "follow,%s,raw,%d" % (kind, s)]
    out = tshark(args)
    res, node0, lines = {}, {}, {}
    cur = None
    for line in out.splitlines():
        m = re.match(r"Filter: tcp.stream eq (\d+)", line)
        if m:
            cur = int(m.group(1))
            res[cur] = [bytearray(), bytearray()]
            lines[cur] = [0, 0]
            continue
        m = re.match(r"Node 0: .*:(\d+)$", line)
        if m and cur is not None:
            node0[cur] = int(m.group(1))
        if cur is None or not line.strip() or line.startswith(("=", "Follow:", "Node ")):
            continue
        h = line.strip()
        if re.fullmatch(r"[0-9a-f]+", h):
            res[cur][1 if line.startswith("\t") else 0] += bytes.fromhex(h)
            lines[cur][1 if line.startswith("\t") else 0] += 1
    out = {}
    for k, (a, b) in res.items():
        na, nb = lines[k]
        if server_ports and node0.get(k) == server_ports.get(k):
            a, b, na, nb = b, a, nb, na
        out[k] = (bytes(a), bytes(b))
        if chunks is not None:
            chunks[k] = [na, nb]
    return out

def sha(b):
    return hashlib.sha256(b).hexdigest()


def unstuff(b):
    return re.sub(rb"(?m)^\.\.", b".", b)


def smtp_payloads(cb):
    """{sha256: bytes} of every DATA payload the client sent (un-dot-stuffed, incl. the CRLF before the final '.')"""
    out = {}
    for mo in re.finditer(rb"(?im)^data\r\n", cb):
        end = cb.find(b"\r\n.\r\n", mo.end() - 2)
        if end >= 0:
            msg = unstuff(cb[mo.end():end + 2])
            out[sha(msg)] = msg
    return out


def smtp_bdat_payloads(cb):
    """{sha256: bytes} of every message the client sent with BDAT (the chunks up to BDAT n LAST, concatenated).

    Walks the client bytes command by command: a chunk is opaque, and the next command starts right
    after it, which need not be at the start of a line of the message."""
    out, parts, pos = {}, [], 0
    for _ in range(100000):  # bounded
        eol = cb.find(b"\r\n", pos)
        if eol < 0:
            break
        mo = re.fullmatch(rb"(?i)BDAT (\d+)( LAST)?", cb[pos:eol])
        pos = eol + 2
        if mo:
            n = int(mo.group(1))
            parts.append(cb[pos:pos + n])
            pos += n
            if mo.group(2):
                msg = b"".join(parts)
                out[sha(msg)] = msg
                parts = []
    return out


def uudecode(msg, filename):
    """The file of the 'begin MODE filename' ... 'end' block in a message body, each line decoded
    with binascii.a2b_uu. Raises ValueError when there is no such block or a line does not decode."""
    lines = msg.split(b"\r\n")
    for i, line in enumerate(lines):
        m = re.fullmatch(rb"begin [0-7]{3,4} (.+)", line)
        if not m or m.group(1) != filename.encode():
            continue
        out = bytearray()
        for n, body_line in enumerate(lines[i + 1:], i + 2):
            if body_line == b"end":
                return bytes(out)
            try:
                out += binascii.a2b_uu(body_line)
            except binascii.Error as e:
                raise ValueError("line %d does not uudecode: %s" % (n, e))
        raise ValueError("no 'end' line after %r" % line.decode(errors="replace"))
    raise ValueError("no 'begin MODE %s' line" % filename)


def attachment_problems(msg, rec):
    """Each attachment recorded for a sent message, decoded from the message bytes: [problem, ...]"""
    problems = []
    parsed = None
    for att in rec.get("attachments", []):
        name = att["filename"]
        if att.get("encoding") == "uuencode":
            if re.search(rb"(?im)^mime-version:", msg.split(b"\r\n\r\n", 1)[0]):
                problems.append("%s: uuencoded attachment in a MIME message" % name)
            try:
                data = uudecode(msg, name)
            except ValueError as e:
                problems.append("%s: %s" % (name, e))
                continue
        else:
            if parsed is None:
                parsed = email.message_from_bytes(msg, policy=email.policy.default)
            part = next((p for p in parsed.iter_attachments() if p.get_filename() == name), None)
            if part is None:
                problems.append("%s: no MIME attachment of that name" % name)
                continue
            if part.get_content_type() != att["content_type"]:
                problems.append("%s: Content-Type %s, manifest says %s" % (name, part.get_content_type(),
                                                                        att["content_type"]))
            data = part.get_payload(decode=True)
        if sha(data) != att["sha256"] or len(data) != att["size"]:
            problems.append("%s: decodes to %d bytes sha256 %s, manifest says %d bytes %s"
                            % (name, len(data), sha(data)[:16], att["size"], att["sha256"][:16]))
    return problems


def escape_count(data, seq, match):
    """occurrences of an escape sequence (manifest "escapes": match "bytes") or of CRs not followed by LF ("bare-cr")"""
    if match == "bare-cr":
        return len(re.findall(rb"\r(?!\n)", data))
    return data.count(seq)


def pop3_hashes(sb):
    """sha256 of every multi-line POP3 response body (after a +OK line, un-dot-stuffed)"""
    out = set()
    for mo in re.finditer(rb"(?m)^\+OK[^\r\n]*\r\n", sb):
        end = sb.find(b"\r\n.\r\n", mo.end() - 2)
        if end >= 0:
            out.add(sha(unstuff(sb[mo.end():end + 2])))
    return out


def imap_literal_hashes(b, chunks=False):
    """sha256 of every IMAP literal; with chunks, also of the concatenated BODY[]<n> partial literals"""
    out = set()
    parts = []
    for mo in re.finditer(rb"\{(\d+)\}\r\n", b):
        n = int(mo.group(1))
        lit = b[mo.end():mo.end() + n]
        out.add(sha(lit))
        if chunks and re.search(rb"BODY\[\]<\d+> $", b[max(0, mo.start() - 40):mo.start()]):
            parts.append(lit)
    if parts:
        out.add(sha(b"".join(parts)))
    return out


def inflate_after(label, comp, cb, sb):
    """IMAP COMPRESS=DEFLATE (RFC 4978): the bytes of each direction up to the recorded offset are
    plain, the rest one raw deflate stream (wbits -15).  Returns (client, server) bytes with the
    deflated parts inflated; checks that the plain parts end with the COMPRESS command and its OK."""
    co, so = comp["client_offset"], comp["server_offset"]
    tag = comp["command_tag"].encode()
    if not cb[:co].endswith(tag + b" COMPRESS DEFLATE\r\n"):
        fail("%s: client bytes before offset %d do not end with '%s COMPRESS DEFLATE'" % (label, co, comp["command_tag"]))
    if not re.search(rb"(?m)^" + re.escape(tag) + rb" OK [^\r\n]*\r\n\Z", sb[:so]):
        fail("%s: server bytes before offset %d do not end with the tagged OK for %s" % (label, so, comp["command_tag"]))
    out = []
    for side, b, off in (("client", cb, co), ("server", sb, so)):
        if len(b) <= off:
            fail("%s: no %s bytes after the COMPRESS offset %d" % (label, side, off))
            out.append(b)
            continue
        try:
            out.append(b[:off] + zlib.decompressobj(-15).decompress(b[off:]))
        except zlib.error as e:
            fail("%s: %s bytes after offset %d do not inflate: %s" % (label, side, off, e))
            out.append(b)
    return out[0], out[1]


def creds_visible(cred, cb, protocol):
    u, p = cred["username"].encode(), cred["password"].encode()
    mech = cred["mechanism"]
    if mech.startswith("AUTHENTICATE PLAIN") or mech == "PLAIN":
        return base64.b64encode(b"\0" + u + b"\0" + p) in cb
    if mech == "LOGIN" and protocol == "imap":
        return re.search(rb" LOGIN \"?" + re.escape(u) + rb"\"? \"?" + re.escape(p) + rb"\"?\r\n", cb) is not None
    if mech == "LOGIN":
        return base64.b64encode(u) in cb and base64.b64encode(p) in cb
    if mech == "USER/PASS":
        return b"USER " + u + b"\r\n" in cb and b"PASS " + p + b"\r\n" in cb
    if mech == "APOP":
        return re.search(rb"APOP " + re.escape(u) + rb" [0-9a-f]{32}\r\n", cb) is not None
    if mech == "CRAM-MD5":
        return any(base64.b64decode(x).startswith(u + b" ") for x in re.findall(rb"(?m)^([A-Za-z0-9+/=]{20,})\r$", cb))
    return True


# ---------------------------------------------------------------- TLS truth (tls-ciphers.pcap, tls-legacy.pcap)
TLS_VERSIONS = {0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}

def keylog_randoms(path):
    """{client random (hex): sorted labels} of an NSS key log file"""
    out = {}
    if path and os.path.exists(path):
        for line in open(path, "rb").read().decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and not line.startswith("#"):
                out.setdefault(parts[1].lower(), set()).add(parts[0])
    return {k: sorted(v) for k, v in out.items()}


def _ints(field):
    return [int(x, 0) for x in field.split(",") if x]


def tls_facts(path, sessions, keylog_path=None, decode_as=None):
    """What tshark sees of each TLS session, {tcp_stream: facts}:
    client_random and tls_version (ClientHello / ServerHello: "TLSv1.0".."TLSv1.3"), encrypt_then_mac /
    extended_master_secret (extension 22 / 23 in a TLS 1.0-1.2 ServerHello), client_hello_ticket_len (length
    of the session_ticket extension the client offered), client_session_id / server_session_id (hex, the
    legacy session ID of the ClientHello / ServerHello), certificate_messages (Certificate handshake
    messages the server sent in the clear: none in a TLS 1.0-1.2 resumption),
    keylog_labels (key log lines for the client random), decrypted_records (application-data records
    tshark decrypts with the key log: entries of -z follow,tls,raw plus empty_records, the records that
    decrypt to zero bytes, which the follow tap leaves out), inner_app_data_records (records with
    tls.record.content_type 23 when decrypting: the inner type for TLS 1.3), encrypted_records (records
    whose type on the wire is 23, read without keys: TLS 1.2 application data, TLS 1.3 everything
    encrypted) and plaintext (sha256/size of the decrypted application data per direction)."""
    by_stream = {s["tcp_stream"]: s for s in sessions if s.get("tls")}
    if not by_stream:
        return {}
    base = ["-d", decode_as] if decode_as else []
    keys = base + (["-o", "tls.keylog_file:" + keylog_path] if keylog_path else [])
    labels = keylog_randoms(keylog_path)
    facts = {st: {"client_random": None, "tls_version": None, "encrypt_then_mac": None,
                  "extended_master_secret": None, "client_hello_ticket_len": 0, "client_session_id": None,
                  "server_session_id": None, "certificate_messages": 0} for st in by_stream}

    def side(st, port):
        return 0 if port == by_stream[st]["client_port"] else 1

    out = tshark(["-r", path] + base + ["-Y", "tls.handshake.type == 1 || tls.handshake.type == 2", "-T", "fields",
                                        "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tls.handshake.type",
                                        "-e", "tls.handshake.random", "-e", "tls.handshake.extension.type",
                                        "-e", "tls.handshake.extension.len",
                                        "-e", "tls.handshake.extensions.supported_version",
                                        "-e", "tls.handshake.version", "-e", "tls.handshake.session_id"])
    for line in out.splitlines():
        st, port, types, rnd, ext, extlen, sv, hv, sid = (line.split("\t") + [""] * 9)[:9]
        if not st or int(st) not in by_stream:
            continue
        st, f = int(st), facts[int(st)]
        ext, extlen = _ints(ext), _ints(extlen)
        sid = sid.split(",")[0].replace(":", "").lower()
        if side(st, int(port)) == 0 and 1 in _ints(types):
            f["client_random"] = rnd.split(",")[0].replace(":", "").lower()
            f["client_hello_ticket_len"] = sum(l for t, l in zip(ext, extlen) if t == 35)
            f["client_session_id"] = sid
        elif side(st, int(port)) == 1 and 2 in _ints(types):
            # TLS 1.3: supported_versions; before: the ServerHello's version field
            f["tls_version"] = "TLSv1.3" if 0x0304 in _ints(sv) else TLS_VERSIONS.get(_ints(hv)[0], hv)
            f["server_hello_extensions"] = ext
            f["server_session_id"] = sid
            f["encrypt_then_mac"] = (22 in ext) if f["tls_version"] != "TLSv1.3" else None
            f["extended_master_secret"] = (23 in ext) if f["tls_version"] != "TLSv1.3" else None
    out = tshark(["-r", path] + base + ["-Y", "tls.handshake.type == 11", "-T", "fields", "-e", "tcp.stream",
                                        "-e", "tcp.srcport", "-e", "tls.handshake.type"])
    for line in out.splitlines():  # Certificate messages in the clear (TLS 1.3's are encrypted)
        st, port, types = (line.split("\t") + [""] * 3)[:3]
        if st and int(st) in by_stream and side(int(st), int(port)) == 1:
            facts[int(st)]["certificate_messages"] += _ints(types).count(11)
    for st, f in facts.items():
        f["keylog_labels"] = labels.get(f["client_random"] or "-", [])
    # record counts per direction, without and with the key log
    for key, extra in (("wire", base), ("keys", keys)):
        out = tshark(["-r", path] + extra + ["-Y", "tls", "-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport",
                                             "-e", "tls.record.content_type", "-e", "tls.record.opaque_type"])
        for st in facts:
            facts[st]["_" + key] = [[0, 0], [0, 0]]  # [content_type 23, opaque_type 23] x [client, server]
        for line in out.splitlines():
            st, port, ct, ot = (line.split("\t") + [""] * 4)[:4]
            if not st or int(st) not in by_stream:
                continue
            c = facts[int(st)]["_" + key]
            d = side(int(st), int(port))
            c[0][d] += _ints(ct).count(23)
            c[1][d] += _ints(ot).count(23)
    chunks = {}
    data = follow(path, "tls", sorted(by_stream), keys, {st: s["server_port"] for st, s in by_stream.items()}, chunks)
    empty = empty_app_records(path, keys, by_stream) if keylog_path else {}
    for st, f in facts.items():
        w, k = f.pop("_wire"), f.pop("_keys")
        cb, sb = data.get(st, (b"", b""))
        n = chunks.get(st, [0, 0])
        e = empty.get(st, [0, 0])
        # the follow tap lists the records that carry data; empty ones (TLS 1.0 CBC) are decrypted too
        f["empty_records"] = {"client": e[0], "server": e[1]}
        f["decrypted_records"] = {"client": n[0] + e[0], "server": n[1] + e[1]}
        f["inner_app_data_records"] = {"client": k[0][0], "server": k[0][1]}
        f["encrypted_records"] = {"client": w[0][0] + w[1][0], "server": w[0][1] + w[1][1]}
        f["plaintext"] = {"client_sha256": sha(cb), "client_size": len(cb), "server_sha256": sha(sb),
                          "server_size": len(sb)}
    return facts


def empty_app_records(path, keys, by_stream):
    """{tcp_stream: [client, server]} application-data records that decrypt, with a valid MAC, to zero
    bytes, from tshark's TLS debug log (-o tls.debug_file): OpenSSL's TLS 1.0 CBC countermeasure (BEAST) sends
    an empty record before each record with data.  tshark decrypts them (the next record's IV is the last
    ciphertext block of the empty one, its MAC has the next sequence number) but its follow tap lists only
    records with data.  Counted from MAC-then-encrypt records: 'checking mac (len 0, ..., ct 23 ...)'
    followed by 'mac ok', in each frame's first dissection."""
    import tempfile
    streams = {}
    for line in tshark(["-r", path] + list(keys) + ["-Y", "tls", "-T", "fields", "-e", "frame.number",
                                                    "-e", "tcp.stream"]).splitlines():
        fr, st = (line.split("\t") + [""])[:2]
        if fr and st:
            streams[int(fr)] = int(st)
    with tempfile.TemporaryDirectory() as d:
        dbg = os.path.join(d, "tls-debug.txt")
        tshark(["-r", path] + list(keys) + ["-o", "tls.debug_file:" + dbg])
        text = open(dbg, encoding="utf-8", errors="replace").read()
    out = {}
    frame, first, side, pending = None, False, None, None
    for line in text.splitlines():
        m = re.match(r"dissect_ssl enter frame #(\d+) \((first time|already visited)\)", line)
        if m:
            frame, first, side, pending = int(m.group(1)), m.group(2) == "first time", None, None
            continue
        m = re.match(r"decrypt_ssl3_record: using (client|server) decoder", line)
        if m:
            side, pending = (0 if m.group(1) == "client" else 1), None
            continue
        m = re.match(r"checking mac \(len (\d+), version \w+, ct (\d+) seq \d+\)", line)
        if m:
            pending = int(m.group(1)) == 0 and int(m.group(2)) == 23
            continue
        if line.startswith("ssl_decrypt_record: mac ok") and pending and first and side is not None:
            st = streams.get(frame)
            if st in by_stream:
                out.setdefault(st, [0, 0])[side] += 1
            pending = None
    return out


def tls_truth_problems(s, f):
    """Differences between a session's recorded TLS truth and what tshark sees (tls_facts): [problem, ...]"""
    t, p = s["tls"], []
    if f["client_random"] is None or f["tls_version"] is None:
        return ["no ClientHello/ServerHello found"]
    if t.get("client_random", f["client_random"]) != f["client_random"]:
        p.append("client_random %s, ClientHello has %s" % (t.get("client_random"), f["client_random"]))
    if t["version"] != f["tls_version"]:
        p.append("version %s, ServerHello says %s" % (t["version"], f["tls_version"]))
    etm = t.get("encrypt_then_mac")  # null: not applicable (AEAD suite, TLS 1.3) - then never negotiated
    if (etm is None and f["encrypt_then_mac"]) or (etm is not None and etm != f["encrypt_then_mac"]):
        p.append("encrypt_then_mac %r, ServerHello extensions %r" % (etm, f.get("server_hello_extensions")))
    if "extended_master_secret" in t and t["extended_master_secret"] != f["extended_master_secret"]:
        p.append("extended_master_secret %r, ServerHello extensions %r" % (t["extended_master_secret"],
                                                                          f.get("server_hello_extensions")))
    keylogged = bool(f["keylog_labels"])
    if t.get("keylogged") != keylogged:
        p.append("keylogged %r, key log lines for the client random: %r" % (t.get("keylogged"), f["keylog_labels"]))
    if t.get("resumed") and t.get("resumption") == "session ticket" and not f["client_hello_ticket_len"]:
        p.append("resumed by session ticket, but the ClientHello offers no ticket")
    if t.get("resumption") == "session id" and f["client_hello_ticket_len"]:
        p.append("resumed by session ID, but the ClientHello offers a ticket")
    if f["tls_version"] != "TLSv1.3":  # TLS 1.0-1.2: resumption is visible in the clear
        cid, sid = f["client_session_id"], f["server_session_id"]
        if t.get("resumed"):
            if not sid or sid != cid:
                p.append("resumed, but the ServerHello's session ID %r is not the ClientHello's %r" % (sid, cid))
            if f["certificate_messages"]:
                p.append("resumed, but the server sent %d Certificate message(s)" % f["certificate_messages"])
        elif not f["certificate_messages"] or (cid and sid == cid):
            p.append("full handshake expected: %d Certificate message(s), session ID %r echoed from %r" % (
                f["certificate_messages"], sid, cid))
        if t.get("session_id") is not None and t["session_id"] != sid:
            p.append("session_id %s, the ServerHello's is %s" % (t["session_id"], sid))
    dec = f["decrypted_records"]
    if keylogged:
        pt = s.get("plaintext") or {}
        for d in ("client", "server"):
            if pt.get(d + "_sha256") is not None and (pt[d + "_sha256"], pt[d + "_size"]) != (
                    f["plaintext"][d + "_sha256"], f["plaintext"][d + "_size"]):
                p.append("%s plaintext recorded %s/%d bytes, tshark decrypts %s/%d bytes" % (
                    d, pt[d + "_sha256"][:16], pt[d + "_size"], f["plaintext"][d + "_sha256"][:16],
                    f["plaintext"][d + "_size"]))
        # every application-data record decrypted: TLS 1.2 all type-23 records, TLS 1.3 all inner type 23
        want = f["inner_app_data_records"] if f["tls_version"] == "TLSv1.3" else f["encrypted_records"]
        if dec != want or not dec["client"] or not dec["server"]:
            p.append("decrypted records %r, application-data records %r" % (dec, want))
    elif dec["client"] or dec["server"] or f["plaintext"]["client_size"] or f["plaintext"]["server_size"]:
        p.append("tshark decrypts %r records without key log lines" % dec)
    for k in ("decrypted_records", "encrypted_records", "empty_records"):
        if "tshark_" + k in s and s["tshark_" + k] != f[k]:
            p.append("tshark_%s %r, tshark now counts %r" % (k, s["tshark_" + k], f[k]))
    return p


def check_capture(root, name, cap):
    path = os.path.join(root, name)
    keylog = cap.get("keylog")
    extra = ["-o", "tls.keylog_file:" + os.path.join(root, keylog)] if keylog else []
    if cap.get("tshark_decode_as"):
        extra += ["-d", cap["tshark_decode_as"]]
    # basic shape
    out = tshark(["-r", path, "-T", "fields", "-e", "frame.number"])
    n = len(out.split())
    if n != cap["packets"] or n == 0:
        fail("%s: %d packets, manifest says %d" % (name, n, cap["packets"]))
    lost = tshark(["-r", path, "-Y", "tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment"]).strip()
    if lost:
        fail("%s: lost segments:\n%s" % (name, lost))
    sessions = cap.get("sessions", [])
    syns = tshark(["-r", path, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields", "-e", "tcp.stream",
                   "-e", "tcp.srcport"]).split("\n")
    syns = [tuple(map(int, l.split("\t"))) for l in syns if l.strip()]
    if [(s["tcp_stream"], s["client_port"]) for s in sessions] != syns:
        fail("%s: sessions %r != SYNs %r" % (name, [(s["tcp_stream"], s["client_port"]) for s in sessions], syns))
    truncated = "snap120" in name
    # protocol decoding (decrypted where needed)
    dfilter = "smtp || pop || imap"
    decoded = tshark(["-r", path, "-Y", dfilter] + extra).strip().splitlines()
    if not decoded:
        fail("%s: tshark decodes no smtp/pop/imap packets" % name)
    if truncated:
        return len(decoded)
    streams = [s["tcp_stream"] for s in sessions]
    ports = {s["tcp_stream"]: s["server_port"] for s in sessions}
    plain = follow(path, "tcp", streams, server_ports=ports)
    tls = follow(path, "tls", [s["tcp_stream"] for s in sessions if s.get("tls")], extra, ports)
    legs = {"smtp_client": b"", "imap_server": b""}  # hostile-escapes: where the escapes are counted again
    for s in sessions:
        st = s["tcp_stream"]
        cb, sb = plain.get(st, (b"", b""))
        if s["protocol"] == "smtp" and not s.get("tls"):
            legs["smtp_client"] += cb
        if s["protocol"] == "imap" and not s.get("tls"):
            legs["imap_server"] += sb
        label = "%s stream %d (%s %s/%d)" % (name, st, s["client"], s["protocol"], s["server_port"])
        if s.get("tls"):
            tcb, tsb = tls.get(st, (b"", b""))
            if s["tls"].get("keylogged") is False:  # deliberately without key log lines
                if tcb or tsb:
                    fail("%s: decrypted although the key log has no lines for it" % label)
                continue  # nothing after the handshake is readable: no truth to find on the wire
            if not tcb or not tsb:
                fail("%s stream %d: TLS not decrypted" % (name, st))
            cb, sb = cb + tcb, sb + tsb
        if s.get("compress"):
            cb, sb = inflate_after(label, s["compress"], cb, sb)
        sent = {**smtp_payloads(cb), **smtp_bdat_payloads(cb)} if s["protocol"] == "smtp" else {}
        for m in s.get("messages_sent", []):
            if m["sha256"] not in sent:
                fail("%s: sent message %s (sha256 %s) not found in DATA" % (label, m["id"], m["sha256"][:16]))
                continue
            for problem in attachment_problems(sent[m["sha256"]], m):
                fail("%s: sent message %s: attachment %s" % (label, m["id"], problem))
            ATTACHMENTS_CHECKED[0] += len(m.get("attachments", []))
        literals_c = imap_literal_hashes(cb)
        for a in s.get("messages_appended", []):
            if a["sha256"] not in literals_c:
                fail("%s: APPEND literal %s not found" % (label, a["id"]))
        got = pop3_hashes(sb) if s["protocol"] == "pop3" else imap_literal_hashes(sb, chunks=True)
        for f in s.get("messages_fetched", []):
            if not f.get("matches_maildir"):
                fail("%s: %s does not match a Maildir file" % (label, f["command"]))
            if f["kind"] == "full" and f.get("maildir", {}).get("crlf_sha256") != f["received_sha256"]:
                fail("%s: %s received bytes differ from the Maildir file" % (label, f["command"]))
            if f["received_sha256"] not in got:
                fail("%s: fetched %s (sha256 %s) not found in server bytes" % (label, f["command"], f["received_sha256"][:16]))
        for c in s.get("credentials", []):
            if c.get("success") and not creds_visible(c, cb, s["protocol"]):
                fail("%s: credentials %s/%s not visible in (decrypted) client bytes" % (label, c["mechanism"], c["username"]))
    for e in cap.get("escapes", []):
        for leg, want in (("smtp_client", e["in_ehlo_line"] + e["in_sent_message"]),
                          ("imap_server", e["in_imap_literal"])):
            got = escape_count(legs[leg], bytes.fromhex(e["hex"]), e["match"])
            if got != want:
                fail("%s: escape %s: %d in the %s bytes, manifest says %d" % (name, e["python"], got, leg, want))
    if any("tshark_decrypted_records" in s for s in sessions):
        facts = tls_facts(path, sessions, os.path.join(root, keylog) if keylog else None, cap.get("tshark_decode_as"))
        for s in sessions:
            if s.get("tls") and "tshark_decrypted_records" in s:
                for problem in tls_truth_problems(s, facts[s["tcp_stream"]]):
                    fail("%s stream %d (%s %s/%d): %s" % (name, s["tcp_stream"], s["client"], s["protocol"],
                                                          s["server_port"], problem))
        for s in sessions:  # resumption by session ID: the session ID of the session it resumes
            t = s.get("tls") or {}
            if t.get("resumption") == "session id":
                first = sessions[t["resumes_session"]]["tls"]
                if not t.get("session_id") or first.get("session_id") != t["session_id"]:
                    fail("%s stream %d: resumes session %d by session ID %s, that session's is %s" % (
                        name, s["tcp_stream"], t["resumes_session"], t.get("session_id"), first.get("session_id")))
    return len(decoded)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?",
                    default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples"))
    ap.add_argument("--only", action="append", metavar="FILE", help="check only this capture (repeatable)")
    args = ap.parse_args()
    root = args.root
    man = json.load(open(os.path.join(root, "MANIFEST.json")))
    for name in args.only or []:
        if name not in man["captures"]:
            fail("%s: not in %s/MANIFEST.json" % (name, root))
    for name, cap in man["captures"].items():
        if args.only and name not in args.only:
            continue
        path = os.path.join(root, name)
        if hashlib.sha256(open(path, "rb").read()).hexdigest() != cap["sha256"]:
            fail("%s: file sha256 differs from MANIFEST" % name)
        n = check_capture(root, name, cap)
        print("ok  %-40s %6d bytes %4d packets %4d smtp/pop/imap frames, %d sessions" % (
            name, cap["size"], cap["packets"], n, len(cap.get("sessions", []))))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    print("attachments of sent messages decoded and matched: %d" % ATTACHMENTS_CHECKED[0])
    print("total size of %s: %d bytes" % (root, total))
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        sys.exit(1)


if __name__ == "__main__":
    main()
