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
Captures with findings sessions (findings.pcap, sessions[].expect): every session is dissected as its protocol
(with the entry's tshark_decode_as), client/server are its endpoints, each recorded command and reply line is on
the wire (decrypted where TLS), credentials are readable exactly where the manifest says (cleartext or inside
TLS), error-reply is expected exactly where the server bytes hold a 4xx/5xx, -ERR, NO or BAD reply, and each
scenario's facts are checked against the packets (check_findings).
Sessions with "ntlm" (ntlm.pcap): the NTLMSSP messages of the SASL exchange, base64 in the (decrypted) TCP bytes,
are dissected by tshark's ntlmssp dissector (tshark 4.0 has none inside IMAP/POP3; it gets them as DLT_USER0
frames) and, for SMTP, in place with -o smtp.decryption:TRUE; the recorded messages, tshark fields and hashcat
line must match, and the recorded password (and for successful logins only, the lab password) must give the
NTProofStr on the wire (ntlm_facts, ntlm_problems).
Exit status 1 on any failure.
"""
import base64
import binascii
import email
import email.policy
import email.utils
import hashlib
import ipaddress
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
    if mech == "NTLM":  # an AUTHENTICATE message for the user (the password itself never is on the wire)
        for tok in NTLM_B64.findall(cb):
            try:
                m = ntlm_parse(base64.b64decode(tok))
            except (ValueError, binascii.Error):
                continue
            if m["type"] == 3 and m["username"] == cred["username"] and m["domain"] == cred.get("domain", ""):
                return True
        return False
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


def decode_args(decode_as):
    """tshark -d options for a manifest tshark_decode_as: one value or a list of them"""
    if not decode_as:
        return []
    return [a for v in ([decode_as] if isinstance(decode_as, str) else decode_as) for a in ("-d", v)]


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
    base = decode_args(decode_as)
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


# ---------------------------------------------------------------- NTLM in SASL (ntlm.pcap)
# tshark 4.0 dissects NTLMSSP inside SMTP only (with -o smtp.decryption:TRUE; all three messages only when AUTH NTLM
# carries the NEGOTIATE as its initial response, else just the CHALLENGE), never inside IMAP AUTHENTICATE or POP3 AUTH. So the NTLMSSP
# messages are taken from each session's (decrypted) TCP bytes - the base64 tokens starting "TlRMTVNTUA"
# (NTLMSSP\0) - and handed to tshark's own ntlmssp dissector in a pcap of link type DLT_USER0 (147), one frame per
# message; for SMTP with an initial response tshark's in-place dissection must give the same values.
NTLM_B64 = re.compile(rb"TlRMTVNTUA[A-Za-z0-9+/]*={0,2}")
NTLM_USER_DLT = 147
NTLM_USER_DLT_UAT = 'uat:user_dlts:"User 0 (DLT=147)","ntlmssp","0","","0",""'
# what tshark shows of each message (-T fields; bytes as lower-case hex, an empty string as "NULL")
NTLM_TSHARK_FIELDS = {
    1: ["ntlmssp.messagetype", "ntlmssp.negotiateflags"],
    2: ["ntlmssp.messagetype", "ntlmssp.negotiateflags", "ntlmssp.ntlmserverchallenge", "ntlmssp.challenge.target_name",
        "ntlmssp.challenge.target_info.nb_computer_name", "ntlmssp.challenge.target_info.nb_domain_name",
        "ntlmssp.challenge.target_info.dns_computer_name", "ntlmssp.challenge.target_info.dns_domain_name"],
    3: ["ntlmssp.messagetype", "ntlmssp.negotiateflags", "ntlmssp.auth.username", "ntlmssp.auth.domain",
        "ntlmssp.auth.hostname", "ntlmssp.auth.lmresponse", "ntlmssp.auth.ntresponse",
        "ntlmssp.ntlmv2_response.ntproofstr", "ntlmssp.ntlmv2_response.chal"],
}
NTLM_AV_IDS = {1: "nb_computer_name", 2: "nb_domain_name", 3: "dns_computer_name", 4: "dns_domain_name",
               5: "dns_tree_name", 6: "flags", 7: "timestamp", 9: "target_name", 10: "channel_bindings"}


def _md4(data):
    """MD4 (RFC 1320): OpenSSL 3 leaves it to the legacy provider, so hashlib may not have it"""
    def rol(x, n):
        x &= 0xFFFFFFFF
        return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF
    msg = bytearray(data) + b"\x80"
    while len(msg) % 64 != 56:
        msg.append(0)
    msg += (8 * len(data) & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for off in range(0, len(msg), 64):
        x = [int.from_bytes(msg[off + 4 * i:off + 4 * i + 4], "little") for i in range(16)]
        a, b, c, d = h
        f = lambda x_, y, z: (x_ & y) | (~x_ & z)
        g = lambda x_, y, z: (x_ & y) | (x_ & z) | (y & z)
        hh = lambda x_, y, z: x_ ^ y ^ z
        for i in range(16):
            k, s = i, (3, 7, 11, 19)[i % 4]
            a, b, c, d = d, rol(a + f(b, c, d) + x[k], s), b, c
        for i in range(16):
            k, s = (i % 4) * 4 + i // 4, (3, 5, 9, 13)[i % 4]
            a, b, c, d = d, rol(a + g(b, c, d) + x[k] + 0x5A827999, s), b, c
        for i in range(16):
            k, s = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[i], (3, 9, 11, 15)[i % 4]
            a, b, c, d = d, rol(a + hh(b, c, d) + x[k] + 0x6ED9EBA1, s), b, c
        h = [(v + w) & 0xFFFFFFFF for v, w in zip(h, (a, b, c, d))]
    return b"".join(v.to_bytes(4, "little") for v in h)


def ntproofstr(password, user, domain, server_challenge, blob):
    """NTLMv2 (MS-NLMP 3.3.2): HMAC-MD5(NTOWFv2, server challenge + blob), NTOWFv2 = HMAC-MD5(MD4(UTF-16LE
    password), UTF-16LE(upper(user) + domain)); bytes in, hex out"""
    import hmac
    nt_hash = _md4(password.encode("utf-16-le"))
    owf = hmac.new(nt_hash, (user.upper() + domain).encode("utf-16-le"), "md5").digest()
    return hmac.new(owf, server_challenge + blob, "md5").hexdigest()


def ntlm_parse(msg):
    """The fields of an NTLMSSP NEGOTIATE (1), CHALLENGE (2) or AUTHENTICATE (3) message (MS-NLMP 2.2.1)"""
    import struct
    if msg[:8] != b"NTLMSSP\0" or len(msg) < 16:
        raise ValueError("not an NTLMSSP message")
    mtype = struct.unpack_from("<I", msg, 8)[0]

    def field(at):
        ln, _, off = struct.unpack_from("<HHI", msg, at)
        return msg[off:off + ln]

    def text(b, flags):
        return b.decode("utf-16-le") if flags & 1 else b.decode("latin-1")
    out = {"type": mtype}
    if mtype == 1:
        out["flags"] = "0x%08x" % struct.unpack_from("<I", msg, 12)[0]
    elif mtype == 2:
        flags = struct.unpack_from("<I", msg, 20)[0]
        info, avs, pos = field(40), {}, 0
        while pos + 4 <= len(info):
            av_id, av_len = struct.unpack_from("<HH", info, pos)
            val = info[pos + 4:pos + 4 + av_len]
            pos += 4 + av_len
            if av_id == 0:
                break
            name = NTLM_AV_IDS.get(av_id, "av_%d" % av_id)
            avs[name] = (val.decode("utf-16-le") if av_id in (1, 2, 3, 4, 5, 9) else
                         struct.unpack("<I", val)[0] if av_id == 6 else val.hex())
        out.update({"flags": "0x%08x" % flags, "server_challenge": msg[24:32].hex(),
                    "target_name": text(field(12), flags), "target_info": avs})
    elif mtype == 3:
        flags = struct.unpack_from("<I", msg, 60)[0]
        lm, nt = field(12), field(20)
        out.update({"flags": "0x%08x" % flags, "domain": text(field(28), flags), "username": text(field(36), flags),
                    "workstation": text(field(44), flags), "lm_response": lm.hex(), "nt_response": nt.hex(),
                    "session_key": field(52).hex()})
        if len(nt) > 24:  # NTLMv2: NTProofStr, then the blob (1, 1, reserved, timestamp, client challenge, AV pairs)
            out.update({"ntlm_version": "NTLMv2", "ntproofstr": nt[:16].hex(), "blob": nt[16:].hex(),
                        "client_challenge": nt[32:40].hex()})
            if len(lm) == 24:
                out["lmv2_client_challenge"] = lm[16:].hex()
        elif len(nt) == 24:
            out["ntlm_version"] = "NTLMv1"
        else:
            out["ntlm_version"] = None
    return out


def ntlm_messages(cb, sb):
    """[(direction, message bytes)] of the NTLMSSP messages in a SASL exchange, in protocol order: each NEGOTIATE
    and AUTHENTICATE from the client bytes, each CHALLENGE from the server bytes (one exchange per
    NEGOTIATE/CHALLENGE/AUTHENTICATE triple)"""
    client = [base64.b64decode(t) for t in NTLM_B64.findall(cb)]
    server = [base64.b64decode(t) for t in NTLM_B64.findall(sb)]
    out = []
    for i, c in enumerate(client):
        out.append(("client", c))
        if i % 2 == 0 and i // 2 < len(server):
            out.append(("server", server[i // 2]))
    return out


def ntlm_tshark(messages):
    """[{field: value}] what tshark's ntlmssp dissector shows of each message (NTLM_TSHARK_FIELDS), fed to it as
    the frames of a DLT_USER0 pcap"""
    import struct
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "ntlmssp.pcap")
        with open(p, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, NTLM_USER_DLT))
            for i, m in enumerate(messages):
                f.write(struct.pack("<IIII", i, 0, len(m), len(m)) + m)
        fields = sorted({f for fs in NTLM_TSHARK_FIELDS.values() for f in fs})
        args = ["-r", p, "-o", NTLM_USER_DLT_UAT, "-T", "fields", "-E", "occurrence=f"]
        for f in fields:
            args += ["-e", f]
        rows = [l.split("\t") for l in tshark(args).splitlines()]
    out = []
    for m, row in zip(messages, rows):
        vals = dict(zip(fields, row))
        mtype = int(vals.get("ntlmssp.messagetype") or "0", 0)
        out.append({f: vals[f] for f in NTLM_TSHARK_FIELDS.get(mtype, ["ntlmssp.messagetype"])})
    if len(out) != len(messages):
        raise RuntimeError("tshark dissected %d of %d NTLMSSP messages" % (len(out), len(messages)))
    return out


def ntlm_tshark_smtp(path, stream, extra=()):
    """[{field: value}] of the NTLMSSP messages tshark dissects in place in one SMTP stream (-o smtp.decryption:TRUE)"""
    fields = sorted({f for fs in NTLM_TSHARK_FIELDS.values() for f in fs})
    args = ["-r", path] + list(extra) + ["-o", "smtp.decryption:TRUE", "-Y", "tcp.stream == %d && ntlmssp" % stream,
                                         "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        args += ["-e", f]
    out = []
    for line in tshark(args).splitlines():
        vals = dict(zip(fields, line.split("\t")))
        mtype = int(vals.get("ntlmssp.messagetype") or "0", 0)
        out.append({f: vals[f] for f in NTLM_TSHARK_FIELDS.get(mtype, ["ntlmssp.messagetype"])})
    return out


def ntlm_facts(cb, sb, path=None, stream=None, protocol=None, extra=()):
    """One SASL NTLM exchange as the wire shows it: the parsed messages, what tshark's ntlmssp dissector shows of
    them (tshark), for SMTP also what tshark dissects in place (tshark_in_place: [] where it does not), the hashcat
    line (NetNTLMv2: mode 5600, user::domain:challenge:NTProofStr:blob; NetNTLMv1: 5500) and the NTLM version"""
    msgs = ntlm_messages(cb, sb)
    parsed = [ntlm_parse(m) for _, m in msgs]
    types = [p["type"] for p in parsed]
    if types != [1, 2, 3]:
        raise ValueError("NTLMSSP message types %r, wanted one NEGOTIATE, CHALLENGE, AUTHENTICATE" % types)
    neg, chal, auth = parsed
    facts = {"negotiate": neg, "challenge": chal, "authenticate": auth, "ntlm_version": auth["ntlm_version"],
             "tshark": ntlm_tshark([m for _, m in msgs])}
    user, dom, ch = auth["username"], auth["domain"], chal["server_challenge"]
    if auth["ntlm_version"] == "NTLMv2":
        facts["hashcat"] = {"mode": 5600, "format": "NetNTLMv2",
                            "line": "%s::%s:%s:%s:%s" % (user, dom, ch, auth["ntproofstr"], auth["blob"])}
    elif auth["ntlm_version"] == "NTLMv1":
        facts["hashcat"] = {"mode": 5500, "format": "NetNTLMv1",
                            "line": "%s::%s:%s:%s:%s" % (user, dom, auth["lm_response"], auth["nt_response"], ch)}
    if protocol == "smtp" and path:
        facts["tshark_in_place"] = ntlm_tshark_smtp(path, stream, extra)
    return facts


def ntlm_problems(s, f):
    """Differences between a session's recorded NTLM truth (s["ntlm"], s["credentials"]) and the wire (ntlm_facts)"""
    n, p = s["ntlm"], []
    for k in ("negotiate", "challenge", "authenticate", "ntlm_version", "hashcat", "tshark"):
        if n.get(k) != f.get(k):
            p.append("%s recorded %r, on the wire %r" % (k, n.get(k), f.get(k)))
    t = f["tshark"]
    a, c = f["authenticate"], f["challenge"]
    nul = lambda v: v if v else "NULL"  # tshark shows an empty string as NULL
    want = {"ntlmssp.auth.username": nul(a["username"]), "ntlmssp.auth.domain": nul(a["domain"]),
            "ntlmssp.auth.hostname": nul(a["workstation"])}
    if a["ntlm_version"] == "NTLMv2":
        want["ntlmssp.ntlmv2_response.ntproofstr"] = a["ntproofstr"]
    for k, v in want.items():
        if t[2].get(k) != v:
            p.append("tshark %s %r, the AUTHENTICATE message has %r" % (k, t[2].get(k), v))
    if t[1].get("ntlmssp.ntlmserverchallenge") != c["server_challenge"]:
        p.append("tshark server challenge %r, the CHALLENGE message has %r" % (
            t[1].get("ntlmssp.ntlmserverchallenge"), c["server_challenge"]))
    if a["ntlm_version"] == "NTLMv2":  # the hashcat line again, from tshark's fields only
        un = lambda v: "" if v == "NULL" else v
        line = "%s::%s:%s:%s:%s" % (un(t[2].get("ntlmssp.auth.username")), un(t[2].get("ntlmssp.auth.domain")),
                                    t[1].get("ntlmssp.ntlmserverchallenge"), t[2].get("ntlmssp.ntlmv2_response.ntproofstr"),
                                    (t[2].get("ntlmssp.auth.ntresponse") or "")[32:])
        if line != (f.get("hashcat") or {}).get("line"):
            p.append("hashcat line from tshark's fields %r, from the messages %r" % (line, f.get("hashcat")))
    if "tshark_in_place" in f:
        inplace = f["tshark_in_place"]
        if n.get("tshark_in_place") != inplace:
            p.append("tshark_in_place recorded %r, tshark now %r" % (n.get("tshark_in_place"), inplace))
        by_type = {m.get("ntlmssp.messagetype"): m for m in t}
        for m in inplace:
            if by_type.get(m.get("ntlmssp.messagetype")) != m:
                p.append("tshark's SMTP dissection %r differs from its ntlmssp dissector on the message %r" % (
                    m, by_type.get(m.get("ntlmssp.messagetype"))))
        # all three in place only when AUTH NTLM carries the NEGOTIATE (without it tshark 4.0 only finds the CHALLENGE)
        if n.get("sasl_initial_response") and len(inplace) != 3:
            p.append("AUTH NTLM with initial response, but tshark dissects %d NTLMSSP messages in place" % len(inplace))
    cred = [c_ for c_ in s["credentials"] if c_["mechanism"] == "NTLM"]
    if len(cred) != 1:
        return p + ["%d NTLM credentials recorded" % len(cred)]
    cred = cred[0]
    if (cred["username"], cred.get("domain")) != (a["username"], a["domain"]):
        p.append("credentials %r\\%r, AUTHENTICATE has %r\\%r" % (cred.get("domain"), cred["username"], a["domain"],
                                                                  a["username"]))
    if cred.get("ntlm_version") != a["ntlm_version"]:
        p.append("ntlm_version %r, AUTHENTICATE is %r" % (cred.get("ntlm_version"), a["ntlm_version"]))
    if a["ntlm_version"] == "NTLMv2":
        proof = ntproofstr(cred["password"], a["username"], a["domain"], bytes.fromhex(c["server_challenge"]),
                           bytes.fromhex(a["blob"]))
        if proof != a["ntproofstr"]:
            p.append("the recorded password %r does not give the NTProofStr on the wire" % cred["password"])
        if n.get("lab_password") is not None:
            lab = ntproofstr(n["lab_password"], a["username"], a["domain"], bytes.fromhex(c["server_challenge"]),
                             bytes.fromhex(a["blob"])) == a["ntproofstr"]
            if lab != cred["success"]:
                p.append("the lab password %s the NTProofStr, but success is %r" % (
                    "gives" if lab else "does not give", cred["success"]))
    return p


# ---------------------------------------------------------------- findings (findings.pcap)
TLS_RECORD = re.compile(rb"\x16\x03[\x00-\x04]")


def before_tls(b):
    """the cleartext part of a connection that starts TLS (STARTTLS): up to the first TLS handshake record"""
    mo = TLS_RECORD.search(b)
    return b if mo is None else b[:mo.start()]


def strip_literals(b):
    """IMAP server bytes without the literals' contents (message text must not count as replies)"""
    out, pos = bytearray(), 0
    for mo in re.finditer(rb"\{(\d+)\}\r\n", b):
        if mo.start() < pos:
            continue
        out += b[pos:mo.end()]
        pos = mo.end() + int(mo.group(1))
    return bytes(out + b[pos:])


def error_lines(protocol, sb):
    """the 4xx/5xx (last line of each reply), -ERR, NO and BAD replies in a session's server bytes"""
    if protocol == "smtp":
        return [l for l in sb.split(b"\r\n") if re.match(rb"[45]\d\d( |$)", l)]
    if protocol == "pop3":
        return [l for l in sb.split(b"\r\n") if l.startswith(b"-ERR")]
    return [l for l in strip_literals(sb).split(b"\r\n") if re.match(rb"\S+ (NO|BAD)( |$)", l)]


def data_payloads(cb):
    """{sha256: bytes} of every DATA payload as written (dot-stuffed, with the final .CRLF), and of every tail of
    the client bytes after a DATA line (a payload cut off by a reset)"""
    out = {}
    for mo in re.finditer(rb"(?im)^data\r\n", cb):
        end = cb.find(b"\r\n.\r\n", mo.end() - 2)
        for p in ([cb[mo.end():end + 5]] if end >= 0 else []) + [cb[mo.end():]]:
            out[sha(p)] = p
    return out


def smtp_reply_bytes(rep):
    lines = rep[1].split("\n")
    return b"".join(b"%d%s%s\r\n" % (rep[0], b" " if i == len(lines) - 1 else b"-", l.encode())
                    for i, l in enumerate(lines))


def on_line(needle, hay):
    """needle (a whole line or more) starts a line of hay"""
    return (b"\n" + needle) in (b"\n" + hay)


def header_addr(msg, name):
    m = email.message_from_bytes(msg, policy=email.policy.default)
    v = m.get(name)
    return email.utils.parseaddr(str(v))[1].lower() if v is not None else None


def tls_wire(path, sessions, extra=()):
    """What tshark dissects as TLS handshake messages and alerts in each findings session whose facts record a TLS
    attempt without a session (facts.client_tls: a failed STARTTLS handshake), {tcp_stream: {"client"|"server":
    {"handshake_types": [...], "alerts": [{"level", "description"}]}}} split by the sender (client_port)."""
    want = {s["tcp_stream"]: s for s in sessions if "client_tls" in s.get("facts", {})}
    if not want:
        return {}
    out = {st: {"client": {"handshake_types": [], "alerts": []}, "server": {"handshake_types": [], "alerts": []}}
           for st in want}
    rows = tshark(["-r", path] + list(extra) + [
        "-Y", "tls.handshake.type || tls.alert_message", "-T", "fields", "-E", "occurrence=a", "-e", "tcp.stream",
        "-e", "tcp.srcport", "-e", "tls.handshake.type", "-e", "tls.alert_message.level",
        "-e", "tls.alert_message.desc"])
    for line in rows.splitlines():
        st, port, hs, lvl, desc = (line.split("\t") + [""] * 5)[:5]
        if not st or int(st) not in want:
            continue
        side = out[int(st)]["client" if int(port) == want[int(st)]["client_port"] else "server"]
        side["handshake_types"] += _ints(hs)
        side["alerts"] += [{"level": l, "description": d} for l, d in zip(_ints(lvl), _ints(desc))]
    return out


def tls_records(b):
    """bytes that should start with TLS records -> ([(content_type, payload)], the bytes after the last complete
    record)"""
    out, pos = [], 0
    for _ in range(100000):  # bounded
        if len(b) - pos < 5 or b[pos] not in (20, 21, 22, 23) or b[pos + 1] != 3:
            break
        n = int.from_bytes(b[pos + 3:pos + 5], "big")
        if len(b) - pos - 5 < n:
            break
        out.append((b[pos], b[pos + 5:pos + 5 + n]))
        pos += 5 + n
    return out, b[pos:]


def handshake_types(records):
    """the handshake message types in cleartext handshake records"""
    out = []
    for ct, p in records:
        i = 0
        for _ in range(1000):  # bounded
            if ct != 22 or i + 4 > len(p):
                break
            out.append(p[i])
            i += 4 + int.from_bytes(p[i + 1:i + 4], "big")
    return out


def after_starttls(cb, sb):
    """(client bytes after its STARTTLS line, server bytes after its reply to it, that reply's last line) of a
    cleartext SMTP connection that asked for STARTTLS: the server's reply to it is the one after as many replies as the client wrote lines before
    STARTTLS, plus the greeting"""
    mc = re.search(rb"(?m)^STARTTLS\r\n", cb)
    if mc is None:
        raise ValueError("no STARTTLS line")
    want, pos, n = cb[:mc.end()].count(b"\r\n") + 1, 0, 0
    for _ in range(10000):  # bounded
        eol = sb.find(b"\r\n", pos)
        if eol < 0:
            raise ValueError("no reply to STARTTLS")
        line, pos = sb[pos:eol], eol + 2
        if re.match(rb"\d{3}( |$)", line):
            n += 1
            if n == want:
                return cb[mc.end():], sb[pos:], line
    raise ValueError("no reply to STARTTLS")


def check_findings(name, path, cap, sessions, plain, tls, extra):
    kinds = set(cap.get("finding_kinds") or [])
    if not kinds:
        fail("%s: no finding_kinds" % name)
    frames = {}  # stream -> [(frame, time, srcport, rst, payload)]
    out = tshark(["-r", path, "-Y", "tcp.len>0 || tcp.flags.reset==1", "-T", "fields", "-e", "frame.number",
                  "-e", "frame.time_epoch", "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tcp.flags.reset",
                  "-e", "tcp.payload"])
    for line in out.splitlines():
        fr, t, st, port, rst, payload = (line.split("\t") + [""] * 6)[:6]
        frames.setdefault(int(st), []).append((int(fr), float(t), int(port), rst in ("1", "True"),
                                               bytes.fromhex(payload.replace(":", ""))))
    protos = {}  # stream -> protocols tshark dissects in it
    for line in tshark(["-r", path] + extra + ["-Y", "smtp || imap || pop", "-T", "fields", "-e", "tcp.stream",
                                               "-e", "frame.protocols"]).splitlines():
        st, fp = (line.split("\t") + [""])[:2]
        protos.setdefault(int(st), set()).update(fp.split(":"))
    by_scen = {}
    data = {}
    for s in sessions:
        st = s["tcp_stream"]
        label = "%s stream %d (%s %s)" % (name, st, s["scenario"], s["client"])
        by_scen.setdefault(s["scenario"], []).append(s)
        for k in s["expect"] + s["incidental"]:
            if k not in kinds:
                fail("%s: unknown finding kind %r" % (label, k))
        if set(s["expect"]) & set(s["incidental"]):
            fail("%s: %r both expected and incidental" % (label, set(s["expect"]) & set(s["incidental"])))
        if s["clean"] and (s["expect"] or s["incidental"]):
            fail("%s: a clean control with findings %r %r" % (label, s["expect"], s["incidental"]))
        if s["client"] != "%s:%d" % (s["client_ip"], s["client_port"]) or \
                s["server"] != "%s:%d" % (s["server_ip"], s["server_port"]):
            fail("%s: client/server %s %s" % (label, s["client"], s["server"]))
        want = {"smtp": "smtp", "imap": "imap", "pop3": "pop"}[s["protocol"]]
        if want not in protos.get(st, set()):
            fail("%s: tshark does not dissect it as %s (%r; -d %r)" % (label, want, protos.get(st),
                                                                       cap.get("tshark_decode_as")))
        cb, sb = plain.get(st, (b"", b""))
        cb0, sb0 = (before_tls(cb), before_tls(sb)) if s.get("tls") else (cb, sb)
        tcb, tsb = tls.get(st, (b"", b"")) if s.get("tls") else (b"", b"")
        cba, sba = cb0 + tcb, sb0 + tsb
        data[st] = (cb0, sb0, tcb, tsb)
        # every recorded command line and payload, every reply
        payloads = data_payloads(cba)
        for c in s["commands"]:
            if isinstance(c, dict):
                if c.get("payload", "").startswith("smtp-data") and c["wire_sha256"] not in payloads:
                    fail("%s: %s payload %s not after a DATA line" % (label, c["payload"], c["wire_sha256"][:16]))
                continue
            line = c.encode("utf-8")
            if not on_line(line if line.endswith(b"\n") else line + b"\r\n", cba):
                fail("%s: command %r not on the wire" % (label, c))
        for r in s["replies"]:
            if isinstance(r, list):
                ok = on_line(smtp_reply_bytes(r), sba)
            elif s["protocol"] == "imap" and re.match(r"\S+ BYE ", r):  # imaplib reports LOGOUT as the untagged BYE
                ok = on_line(b"* BYE " + r.split(" ", 2)[2].encode("utf-8") + b"\r\n", sba)
            else:
                ok = on_line(r.encode("utf-8") + b"\r\n", sba)
            if not ok:
                fail("%s: reply %r not on the wire" % (label, r))
        # error-reply exactly where the server sent one
        errs = error_lines(s["protocol"], sba)
        if bool(errs) != ("error-reply" in s["expect"]) or len(errs) != len(s["facts"].get("error_replies", [])):
            fail("%s: error replies on the wire %r, expect %r, facts %r" % (label, errs, s["expect"],
                                                                          s["facts"].get("error_replies")))
        # credentials readable in the clear exactly when the manifest says so
        for c in s["credentials"]:
            if c.get("inside_tls"):
                if not creds_visible(c, tcb, s["protocol"]) or creds_visible(c, cb0, s["protocol"]):
                    fail("%s: credentials %s not (only) inside TLS" % (label, c["username"]))
            elif not creds_visible(c, cb0, s["protocol"]):
                fail("%s: credentials %s not in the cleartext client bytes" % (label, c["username"]))
        if "cleartext-credentials" in s["expect"] and not any(not c.get("inside_tls") for c in s["credentials"]):
            fail("%s: cleartext-credentials without cleartext credentials" % label)
    wire = {"tls": tls_wire(path, sessions, extra), "syn": {}}  # syn: stream -> time of the client's SYN
    for line in tshark(["-r", path, "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields", "-e", "tcp.stream",
                        "-e", "frame.time_epoch"]).splitlines():
        st, t = line.split("\t")
        wire["syn"][int(st)] = float(t)
    for scen, ss in by_scen.items():
        try:
            check_scenario(name, scen, ss, by_scen, data, frames, wire)
        except (KeyError, IndexError, StopIteration, ValueError, TypeError) as e:
            fail("%s: scenario %s: cannot check: %r" % (name, scen, e))


def _client_frames(s, frames):
    return [f for f in frames.get(s["tcp_stream"], []) if f[2] == s["client_port"]]


def _msg(cb, rec):
    """the sent message bytes of a messages_sent record, from the client bytes"""
    for p in data_payloads(cb).values():
        m = unstuff(p[:-3]) if p.endswith(b"\r\n.\r\n") else None
        if m is not None and sha(m) == rec["sha256"]:
            return m
    raise ValueError("message %s not in the client bytes" % rec["id"])


def check_scenario(name, scen, ss, by_scen, data, frames, wire):
    def bad(s, what):
        fail("%s stream %d (%s): %s" % (name, s["tcp_stream"], scen, what))

    for s in ss:
        cb0, sb0, tcb, tsb = data[s["tcp_stream"]]
        cba, f = cb0 + tcb, s["facts"]
        ex = s["expect"]
        if scen == "clean-submission":
            m = _msg(cba, s["messages_sent"][0])
            env = re.search(rb"(?im)^mail FROM:<([^>]*)>", tcb).group(1).decode().lower()
            if header_addr(m, "From") != env or header_addr(m, "Reply-To") is not None or max(m) >= 0x80 \
                    or not re.search(rb"(?im)^message-id: <", m) or not s.get("tls"):
                bad(s, "not a clean submission: From %r, MAIL FROM %r" % (header_addr(m, "From"), env))
        if scen in ("clean-imap", "clean-pop3"):
            j = by_scen["clean-submission"][0]["facts"]["journey"]
            if f["fetched_sha256"] != j["imap"]["sha256"] or f["fetched_sha256"] != j["pop3"]["sha256"]:
                bad(s, "journey: fetched %s, journey %r" % (f["fetched_sha256"][:16], j))
        if scen == "cleartext-auth":
            offered = b"250-STARTTLS\r\n" in sb0 if s["protocol"] == "smtp" else b" STARTTLS " in sb0
            if not offered or s.get("tls") or not s["credentials"] or s["credentials"][0].get("inside_tls"):
                bad(s, "STARTTLS offered %r, credentials %r" % (offered, s["credentials"]))
        if scen == "starttls-refused":
            rep = re.search(rb"(?m)^STARTTLS\r\n", cb0)
            if rep is None or b"STARTTLS" in sb0 or not re.search(rb"(?m)^5\d\d ", sb0):
                bad(s, "STARTTLS sent %r, offered %r" % (rep is not None, b"STARTTLS" in sb0))
        if scen == "starttls-injection":
            inj = bytes.fromhex(f["injected_hex"])
            if not any(fr[4] == inj for fr in _client_frames(s, frames)):
                bad(s, "no client segment carries exactly %r" % inj)
            if not sb0.endswith(b"\r\n" + f["reply_before_tls"].encode() + b"\r\n") or not tcb:
                bad(s, "after the injection the server sent more than %r in the clear" % f["reply_before_tls"])
        if scen == "starttls-downgrade":
            leg = s is ss[1]  # ss[0]: client -> proxy, ss[1]: proxy -> Postfix
            has = b"250-STARTTLS\r\n" in sb0
            if has != leg or ("starttls-downgrade" in ex) == leg:
                bad(s, "STARTTLS in the EHLO reply %r on the %s leg" % (has, "proxy" if leg else "client"))
            if sb0.split(b"\r\n", 1)[0] != data[ss[0]["tcp_stream"]][1].split(b"\r\n", 1)[0]:
                bad(s, "the two legs saw different greetings")
        if scen == "smtp-smuggling":
            p = f["payload_after_354"]["text"].encode()
            if sha(p) not in data_payloads(cb0) or not re.search(rb"[^\r]\n\.\r\n", p):
                bad(s, "the smuggling payload is not on the wire")
        if scen == "bare-line-end" and not re.search(rb"\r\nNOOP\n(?!\r)", cb0):
            bad(s, "no NOOP ending in a bare LF")
        if scen == "open-relay":
            if not re.search(rb"(?im)^rcpt TO:<[^>@]+@(?!example\.test>)[^>]+>\r\n", cb0) or \
                    not f["rcpt_reply"].startswith("250"):
                bad(s, "no accepted RCPT to a foreign domain")
        if scen == "relay-denied" and not re.search(rb"(?m)^554 5\.7\.1 .*Relay access denied", sb0):
            bad(s, "no 554 Relay access denied")
        if scen == "bounce-fetch":
            fetched = s["messages_fetched"][0]["received_sha256"]
            lit = next(tsb[mo.end():mo.end() + int(mo.group(1))] for mo in re.finditer(rb"\{(\d+)\}\r\n", tsb)
                       if sha(tsb[mo.end():mo.end() + int(mo.group(1))]) == fetched)
            dsn = email.message_from_bytes(lit, policy=email.policy.default)
            status = [b for p in dsn.walk() if p.get_content_type() == "message/delivery-status"
                      for b in p.get_payload() if b.get("Status")]
            orig = [p.get_payload()[0]["Message-ID"] for p in dsn.walk() if p.get_content_type() == "message/rfc822"]
            relayed = by_scen["open-relay"][0]["messages_sent"][0]["message_id"]
            if dsn.get_content_type() != "multipart/report" or not status or \
                    str(status[0]["Status"]) != f["status"] or str(status[0]["Final-Recipient"]) != \
                    f["final_recipient"] or [str(o) for o in orig] != [relayed]:
                bad(s, "the fetched DSN does not say %r / %r for %s" % (f["status"], f["final_recipient"], relayed))
        if scen == "source-route" and not re.search(rb"(?m)^RCPT TO:<@[^:>]+:[^>]+>\r\n", cb0):
            bad(s, "no source-routed RCPT")
        if scen == "helo-mismatch":
            mo = re.search(rb"(?m)^EHLO \[([0-9.]+)\]\r\n", cb0)
            if mo is None or mo.group(1).decode() == s["client_ip"]:
                bad(s, "no EHLO address literal other than the client's")
        if scen == "spoofed-headers":
            m = _msg(cb0, s["messages_sent"][0])
            env = re.search(rb"(?im)^mail FROM:<([^>]*)>", cb0).group(1).decode().lower()
            msg = email.message_from_bytes(m, policy=email.policy.default)
            rec = msg.get_all("Received")
            dates = [email.utils.parsedate_to_datetime(str(r).rsplit(";", 1)[1].strip()) for r in rec]
            ips = [ipaddress.ip_address(x.decode()) for x in re.findall(rb"(?im)^received: from \[([0-9.]+)\]", m)]
            if header_addr(m, "From") == env or header_addr(m, "Reply-To") in (None, header_addr(m, "From")) or \
                    len(rec) != 2 or not dates[0] < dates[1] or not any(ip.is_private for ip in ips):
                bad(s, "spoofed headers: From %r MAIL FROM %r Reply-To %r Received dates %r private %r" % (
                    header_addr(m, "From"), env, header_addr(m, "Reply-To"), dates, ips))
        if scen == "vrfy-expn" and len(re.findall(rb"(?im)^(vrfy|expn) ", cb0)) < 3:
            bad(s, "fewer than 3 VRFY/EXPN")
        if scen == "recipient-enumeration":
            n = len(re.findall(rb"(?m)^550 ", sb0))
            if n < 5 or n != f["rejected_550"] or any(o["client_ip"] == s["client_ip"] for o in
                                                      (x for v in by_scen.values() for x in v) if o is not s):
                bad(s, "%d RCPTs refused with 550, or other sessions from %s" % (n, s["client_ip"]))
        if scen == "brute-force" and "auth-brute-force" in ex:
            mine = [x for v in by_scen.values() for x in v if x["client_ip"] == s["client_ip"]
                    and x["tcp_stream"] <= s["tcp_stream"]]
            fails = sum(1 for x in mine for c in x["credentials"] if c["success"] is False)
            if fails != 5 or f["failures_from_client_so_far"] != 5:
                bad(s, "%d failed logins from %s up to this session" % (fails, s["client_ip"]))
        if scen == "slow-reply":
            fr = frames[s["tcp_stream"]]
            i = next(i for i, x in enumerate(fr) if x[2] == s["client_port"] and x[4].startswith(b"RCPT TO:"))
            rep = next(x for x in fr[i + 1:] if x[2] != s["client_port"] and x[4])
            dt = rep[1] - fr[i][1]
            if dt < 2.5 or abs(dt - f["delay_s"]) > 0.5:
                bad(s, "the RCPT reply came %.3f s after the RCPT (client measured %.3f s)" % (dt, f["delay_s"]))
        if scen == "no-pipelining":
            if f["variant"] == "pipelined":
                one = b"".join(c.encode() + b"\r\n" for c in f["one_send"])
                if b"PIPELINING" in sb0 or not any(x[4] == one for x in _client_frames(s, frames)):
                    bad(s, "no single segment with %r, or PIPELINING offered" % one)
            elif f["variant"] == "8bit":
                m = _msg(cb0, s["messages_sent"][0])
                mail = re.search(rb"(?im)^mail FROM:[^\r]*", cb0).group(0)
                if b"8BITMIME" in sb0 or max(m) < 0x80 or b"BODY=" in mail.upper():
                    bad(s, "8BITMIME offered, no 8-bit byte, or BODY= in %r" % mail)
            else:
                limit = int(re.search(rb"(?m)^250[ -]SIZE (\d+)\r\n", sb0).group(1))
                m = _msg(cb0, s["messages_sent"][0])
                if len(m) <= limit or not re.search(rb"(?m)^552 ", sb0):
                    bad(s, "%d-byte message against SIZE %d, no 552" % (len(m), limit))
        if scen == "early-talker":
            fr = [x for x in frames[s["tcp_stream"]] if x[4]]
            if not fr or fr[0][2] != s["client_port"] or not fr[0][4].startswith(b"EHLO "):
                bad(s, "the first payload of the connection is not the client's EHLO")
        if scen == "reset-mid-transaction":
            rst = [x for x in frames[s["tcp_stream"]] if x[3] and x[2] == s["client_port"]]
            part = f["partial_body"]
            if not rst or sha(cb0[-part["size"]:]) != part["sha256"] or b"\r\n.\r\n" in cb0[cb0.upper().rfind(
                    b"\r\nDATA\r\n"):]:
                bad(s, "no client RST after a partial DATA payload")
        if scen in ("starttls-failed", "server-injection"):
            # a STARTTLS handshake that never completed: after the 220 the client sent its ClientHello and nothing
            # else; what tshark dissects as handshake messages and alerts is what the facts say
            ctls, stls, rep = after_starttls(cb0, sb0)
            crec, crest = tls_records(ctls)
            if rep.decode() != f["reply_before_tls"] or not rep.startswith(b"220 "):
                bad(s, "STARTTLS answered %r, facts say %r" % (rep, f["reply_before_tls"]))
            if handshake_types(crec) != [1] or len(crec) != 1 or crest or f["tls_completed"] is not False:
                bad(s, "the client sent more than one ClientHello after STARTTLS: %d records, %d bytes more" % (
                    len(crec), len(crest)))
            if ("starttls-failed" in ex) != (not f["tls_completed"]) or s.get("tls") or f["tls_used"]:
                bad(s, "starttls-failed %r, tls_completed %r" % ("starttls-failed" in ex, f["tls_completed"]))
            tw = wire["tls"][s["tcp_stream"]]
            if tw != f["tshark_tls"]:
                bad(s, "tshark sees %r, facts.tshark_tls %r" % (tw, f["tshark_tls"]))
            if tw["client"]["handshake_types"] != [1]:
                bad(s, "tshark: client handshake messages %r" % tw["client"]["handshake_types"])
        if scen == "starttls-failed":
            ctls, stls, rep = after_starttls(cb0, sb0)
            srec, srest = tls_records(stls)
            crec, _ = tls_records(ctls)
            p = crec[0][1]
            sid = 4 + 2 + 32
            i = sid + 1 + p[sid]
            suites = [p[j:j + 2].hex() for j in range(i + 2, i + 2 + int.from_bytes(p[i:i + 2], "big"), 2)]
            alerts = [{"level": r[1][0], "description": r[1][1]} for r in srec if r[0] == 21 and len(r[1]) == 2]
            if suites != f["offered"]["client_hello_cipher_suites"]:
                bad(s, "the ClientHello offers %r, facts %r" % (suites, f["offered"]["client_hello_cipher_suites"]))
            if any(r[0] == 22 for r in srec) or srest or 2 in wire["tls"][s["tcp_stream"]]["server"]["handshake_types"]:
                bad(s, "the server sent a handshake record (a ServerHello?) or more than TLS records after the 220")
            want = [{"level": 2, "description": f["alert"]["description"]}] if f["alert"] else []
            if alerts != want or wire["tls"][s["tcp_stream"]]["server"]["alerts"] != want or \
                    f["tshark_alert_desc"] != (f["alert"]["description"] if f["alert"] else None):
                bad(s, "server alerts on the wire %r, tshark %r, facts %r / %r" % (
                    alerts, wire["tls"][s["tcp_stream"]]["server"]["alerts"], f["alert"], f["tshark_alert_desc"]))
        if scen == "slow-greeting":
            fr = [x for x in frames[s["tcp_stream"]] if x[4]]
            dt = fr[0][1] - wire["syn"][s["tcp_stream"]] if fr else -1
            if not fr or fr[0][2] == s["client_port"] or not fr[0][4].startswith(b"220 ") or dt < 5.0 or \
                    abs(dt - f["greeting_delay_s"]) > 0.5 or f["greeting_delay_s"] < 5.0:
                bad(s, "the greeting came %.3f s after the SYN (client measured %.3f s)" % (dt, f["greeting_delay_s"]))
        if scen == "server-injection":
            leg = s is ss[1]  # ss[0]: client -> proxy, ss[1]: proxy -> Postfix
            other = ss[0] if leg else ss[1]
            inj = bytes.fromhex(f["injected_hex"])
            ctls, stls, rep = after_starttls(cb0, sb0)
            srec, srest = tls_records(stls[len(inj):] if not leg else stls)
            if ss[1]["client_ip"] != ss[0]["server_ip"] or ("starttls-injection" in ex) == leg:
                bad(s, "legs: %s -> %s, %s -> %s; starttls-injection on the %s leg" % (
                    ss[0]["client"], ss[0]["server"], ss[1]["client"], ss[1]["server"], "proxy" if leg else "client"))
            if sb0[:len(sb0) - len(stls)] != data[other["tcp_stream"]][1][:len(sb0) - len(stls)]:
                bad(s, "the two legs differ in the server's cleartext")
            if leg:
                if stls.startswith(inj) or inj in sb0 or srest or \
                        (2 in handshake_types(srec)) != f["server_hello_sent_by_server"]:
                    bad(s, "proxy leg: after the 220 the server sent %r..." % stls[:40])
            else:
                sfr = [x for x in frames[s["tcp_stream"]] if x[2] != s["client_port"] and x[4]]
                i = next((k for k, x in enumerate(sfr) if x[4] == inj), None)
                if i is None or i == 0 or not sfr[i - 1][4].endswith(rep + b"\r\n") or not stls.startswith(inj):
                    bad(s, "client leg: no server segment of exactly %r right after the 220" % inj)
                if srest or (2 in handshake_types(srec)) != f["server_hello_reached_client_leg"]:
                    bad(s, "client leg: after the injected line the server side sent %r..." % stls[len(inj):][:40])


def check_capture(root, name, cap):
    path = os.path.join(root, name)
    keylog = cap.get("keylog")
    extra = ["-o", "tls.keylog_file:" + os.path.join(root, keylog)] if keylog else []
    extra += decode_args(cap.get("tshark_decode_as"))
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
        if "ntlm" in s:  # ntlm.pcap: the NTLM exchange as tshark decodes it, the hashcat line, the password
            try:
                facts = ntlm_facts(cb, sb, path, st, s["protocol"], extra)
            except (ValueError, RuntimeError) as e:
                fail("%s: NTLM exchange: %s" % (label, e))
                continue
            for problem in ntlm_problems(s, facts):
                fail("%s: NTLM: %s" % (label, problem))
    for e in cap.get("escapes", []):
        for leg, want in (("smtp_client", e["in_ehlo_line"] + e["in_sent_message"]),
                          ("imap_server", e["in_imap_literal"])):
            got = escape_count(legs[leg], bytes.fromhex(e["hex"]), e["match"])
            if got != want:
                fail("%s: escape %s: %d in the %s bytes, manifest says %d" % (name, e["python"], got, leg, want))
    if any("expect" in s for s in sessions):
        check_findings(name, path, cap, sessions, plain, tls, extra)
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
