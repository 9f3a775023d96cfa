#!/usr/bin/env python3
"""Real mail-client sessions against the loopback Postfix/Dovecot lab (scripts/lab/).

Used by scripts/make-samples, which starts tcpdump around each `run` step:

    sample_clients.py files     --dir samples/files        # attachment files (deterministic)
    sample_clients.py prepare   SCENARIO --state DIR       # uncaptured: reset + fill mailboxes
    sample_clients.py run       SCENARIO --state DIR [--keylog FILE] [--ipv6]
    sample_clients.py manifest  --state DIR --samples DIR [--merge MANIFEST]  # writes samples/MANIFEST.json

Clients are Python's smtplib/poplib/imaplib, curl, swaks and (tls-ciphers, for TLS 1.3 suites; tls-legacy,
for TLS 1.0/1.1; findings, for a STARTTLS handshake the server refuses) openssl s_client.  Every client connects only to 127.0.0.1 or ::1, except tls-legacy's
s_client, which connects to the openssl s_server this script starts on 127.0.0.2, findings' smtplib
client, which connects to the STARTTLS-stripping proxy this script runs on PROXY4 (127.0.0.3) port 25, findings'
raw SMTP client, which connects to the STARTTLS response-injection proxy this script runs on INJECT_PROXY4
(127.0.0.5) port 25, and ntlm's curl, which connects to the lab's NTLM listeners on NTLM_SERVER (127.0.0.4) ports 25, 110 and 143.
IPv4 clients bind their source address to CLIENT_IP (default 127.0.0.10) so the captures can be filtered to
our own sessions; findings also uses BRUTE_IP (127.0.0.11), ENUM_IP (127.0.0.12), PROXY4 and INJECT_PROXY4 as
sources.

Truth data ("sha256" of a sent message) is always over the exact message bytes the server
receives in DATA / APPEND: CRLF line endings, before dot-stuffing, ending with CRLF (for SMTP
the CRLF before the terminating "." belongs to the message, RFC 5321 4.1.1.4).
"""
import argparse
import base64
import binascii
import contextlib
import datetime
import hashlib
import imaplib
import json
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAB = os.path.join(HERE, "lab")
CA_FILE = os.path.join(LAB, "config", "tls", "server.crt")
USERS_FILE = os.path.join(LAB, "config", "dovecot", "lab-users")
MAIL_ROOT = "/var/mail/lab"
SERVER4 = "127.0.0.1"
SERVER6 = "::1"
SERVER_NAME = "mail.example.test"  # in the lab certificate (also DNS:localhost, IP:127.0.0.1, IP:::1)
CLIENT_IP = os.environ.get("SAMPLES_CLIENT_IP", "127.0.0.10")
EHLO_NAME = "client.example.test"
TIMEOUT = 30
CRLF = b"\r\n"


def load_passwords():
    pw = {}
    with open(USERS_FILE) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, rest = line.split(":", 1)
            m = re.match(r"\{PLAIN\}([^:]*)", rest)
            if m:
                pw[user] = m.group(1)
    return pw


PASSWORDS = load_passwords()

# ---------------------------------------------------------------- network guard + source binding
CONNECTIONS = []  # (server_ip, server_port, client_ip, client_port) in connection order
_orig_create_connection = socket.create_connection
PROXY4 = os.environ.get("SAMPLES_PROXY_IP", "127.0.0.3")  # findings: the STARTTLS-stripping proxy (port 25)
# findings: the STARTTLS response-injection proxy (port 25)
INJECT_PROXY4 = os.environ.get("SAMPLES_INJECT_PROXY_IP", "127.0.0.5")
NTLM_SERVER = "127.0.0.4"  # ntlm: the lab's listeners with SASL NTLM (scripts/lab/README.md)
NTLM_PORTS = (25, 110, 143)
_SOURCE = [CLIENT_IP]  # IPv4 source address of new connections (findings switches it with source_ip())


def _guarded_create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kw):
    host, port = address[0], address[1]
    if host not in (SERVER4, SERVER6) and (host, port) not in ((PROXY4, 25), (INJECT_PROXY4, 25)) and not (
            host == NTLM_SERVER and port in NTLM_PORTS):
        raise RuntimeError("network rule: refusing to connect to %r (only 127.0.0.1 / ::1)" % (host,))
    if source_address is None and host in (SERVER4, PROXY4, INJECT_PROXY4, NTLM_SERVER):
        source_address = (_SOURCE[0], 0)
    sock = _orig_create_connection(address, timeout, source_address, **kw)
    local = sock.getsockname()
    CONNECTIONS.append((host, port, local[0], local[1]))
    return sock


socket.create_connection = _guarded_create_connection


@contextlib.contextmanager
def source_ip(ip):
    """connections made inside bind to this IPv4 source address (findings: 127.0.0.11, 127.0.0.12, ...)"""
    if not ip.startswith("127."):
        raise RuntimeError("network rule: source address %r is not in 127.0.0.0/8" % ip)
    old, _SOURCE[0] = _SOURCE[0], ip
    try:
        yield
    finally:
        _SOURCE[0] = old


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def digest(b):
    return {"sha256": sha256(b), "size": len(b)}


def dot_stuff(msg):
    return re.sub(rb"(?m)^\.", b"..", msg)


def crlf(text):
    """str with \n line ends -> CRLF bytes (utf-8)."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def b64_lines(data, width=76):
    enc = base64.b64encode(data).decode("ascii")
    return "\n".join(enc[i:i + width] for i in range(0, len(enc), width))


def enc_word(text, charset="UTF-8", mode="B"):
    raw = text.encode(charset)
    if mode == "B":
        return "=?%s?B?%s?=" % (charset, base64.b64encode(raw).decode("ascii"))
    out = []
    for byte in raw:
        c = chr(byte)
        if c == " ":
            out.append("_")
        elif c.isalnum() and byte < 128:
            out.append(c)
        else:
            out.append("=%02X" % byte)
    return "=?%s?Q?%s?=" % (charset, "".join(out))


def qp_encode(text):
    import quopri
    return quopri.encodestring(text.encode("utf-8")).decode("ascii").replace("\r\n", "\n")


def client_ctx(keylog=None, max_version=None):
    ctx = ssl.create_default_context(cafile=CA_FILE)
    if keylog:
        ctx.keylog_filename = keylog
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls_info(sock, mode, keylog):
    return {"mode": mode, "version": sock.version(), "cipher": sock.cipher()[0],
            "keylog": os.path.basename(keylog) if keylog else None}


# ---------------------------------------------------------------- attachment files
def prng_bytes(seed, n):
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%s-%d" % (seed, i)).digest()
        i += 1
    return out[:n]


def make_png():
    w, h = 40, 24
    noise = prng_bytes(b"mailscope-noise-png", w * h * 3)
    raw = b"".join(b"\x00" + noise[y * w * 3:(y + 1) * w * 3] for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", b"Comment\x00mailscope sample attachment (random pixels)")
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def make_pdf():
    text = ["mailscope sample report", "Quarterly numbers: 42, 17, 8", "This PDF is generated by scripts/sample_clients.py"]
    ops = ["BT /F1 14 Tf 72 720 Td 18 TL"] + ["(%s) '" % t for t in text] + ["ET"]
    stream = zlib.compress(("\n".join(ops) + "\n").encode("ascii"), 9)
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        # a binary blob so the file is ~1.5 KB and not just text
        b"<< /Length 1024 >>\nstream\n" + prng_bytes(b"pdf-blob", 1024) + b"\nendstream",
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


FILES = {"noise.png": make_png, "report.pdf": make_pdf}


def files_dir():
    return os.path.join(ROOT, "samples", "files")


def read_file(name):
    with open(os.path.join(files_dir(), name), "rb") as f:
        return f.read()


def cmd_files(args):
    os.makedirs(args.dir, exist_ok=True)
    for name, fn in FILES.items():
        p = os.path.join(args.dir, name)
        data = fn()
        if os.path.exists(p):
            with open(p, "rb") as f:
                if f.read() == data:
                    continue
        with open(p, "wb") as f:
            f.write(data)
        print("[files] wrote %s (%d bytes)" % (p, len(data)))


# ---------------------------------------------------------------- messages (all CRLF, fixed dates/ids)
def attachment_info(name, ctype, data):
    return {"filename": name, "content_type": ctype, "source": "samples/files/" + name, **digest(data)}


MSG_DATE = "Thu, 05 Mar 2026 10:%02d:00 +0300"


def msg_cyrillic_attachment():
    """smtp-plain, smtplib: KOI8-R subject, UTF-8 8bit body with dot lines, PNG attachment."""
    png = read_file("noise.png")
    subject = "Отчёт за квартал: проверка"
    b = "=_mailscope_cyr_7f3a"
    text = (
        "Здравствуйте, Алиса!\n"
        "\n"
        "Это тестовое письмо для mailscope (8bit UTF-8).\n"
        ".\n"
        ".Эта строка начинается с точки.\n"
        "..А эта - с двух точек.\n"
        ". точка и пробел\n"
        "Во вложении noise.png (%d байт).\n"
        "\n"
        "-- \n"
        "Иван\n" % len(png))
    body = (
        "From: %s <ivan.petrov@client.example.test>\n"
        "To: Alice <alice@example.test>, Bob <bob@example.test>\n"
        "Cc: nosuchuser@example.test\n"
        "Subject: %s\n"
        "Date: %s\n"
        "Message-ID: <smtp-plain-1@client.example.test>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"%s\"\n"
        "\n"
        "This is a multi-part message in MIME format.\n"
        "\n"
        "--%s\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "%s"
        "\n"
        "--%s\n"
        "Content-Type: image/png; name=\"noise.png\"\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment; filename=\"noise.png\"\n"
        "\n"
        "%s\n"
        "--%s--\n" % (enc_word("Иван Петров"), enc_word(subject, "KOI8-R"), MSG_DATE % 1, b, b, text, b,
                      b64_lines(png), b))
    return crlf(body), {"subject": subject, "subject_raw": enc_word(subject, "KOI8-R"),
                        "attachments": [attachment_info("noise.png", "image/png", png)]}


def msg_simple(msgid, frm, to, subject, text, minute, extra_headers=(), subject_raw=None):
    hdr = [("From", frm), ("To", to), ("Subject", subject_raw or subject), ("Date", MSG_DATE % minute),
           ("Message-ID", "<%s@client.example.test>" % msgid), ("MIME-Version", "1.0")]
    hdr += list(extra_headers)
    if not any(k.lower() == "content-type" for k, _ in hdr):
        hdr += [("Content-Type", "text/plain; charset=UTF-8"), ("Content-Transfer-Encoding", "8bit")]
    body = "\n".join("%s: %s" % kv for kv in hdr) + "\n\n" + text
    return crlf(body), {"subject": subject, "subject_raw": subject_raw or subject, "attachments": []}


def msg_with_attachment(msgid, frm, to, subject, text, fname, ctype, minute, subject_raw=None):
    data = read_file(fname)
    b = "=_mailscope_%s" % msgid
    body = (
        "From: %s\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: <%s@client.example.test>\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=\"%s\"\n\n"
        "--%s\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n%s\n"
        "--%s\nContent-Type: %s; name=\"%s\"\nContent-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment; filename=\"%s\"\n\n%s\n--%s--\n"
        % (frm, to, subject_raw or subject, MSG_DATE % minute, msgid, b, b, text, b, ctype, fname, fname,
           b64_lines(data), b))
    return crlf(body), {"subject": subject, "subject_raw": subject_raw or subject,
                        "attachments": [attachment_info(fname, ctype, data)]}


def msg_alternative(msgid, to, subject, minute):
    b = "=_mailscope_alt_%s" % msgid
    plain = "Hallo Bob,\n\nGrüße aus dem Labor – Ümläute & €uro.\n.\nEnde.\n"
    html = "<html><body><p>Hallo Bob,</p><p>Grüße aus dem Labor – Ümläute &amp; €uro.</p></body></html>\n"
    body = (
        "From: Alice <alice@example.test>\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: <%s@client.example.test>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"%s\"\n\n"
        "--%s\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n%s\n"
        "--%s\nContent-Type: text/html; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n%s\n"
        "--%s--\n" % (to, enc_word(subject, "UTF-8", "Q"), MSG_DATE % minute, msgid, b, b, qp_encode(plain), b,
                      qp_encode(html), b))
    return crlf(body), {"subject": subject, "subject_raw": enc_word(subject, "UTF-8", "Q"), "attachments": []}


def uuencode_file(fname):
    """Output of the real `uuencode samples/files/NAME NAME` (GNU sharutils), LF line ends.
    Returns (command line, output text)."""
    argv = ["uuencode", "samples/files/" + fname, fname]
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), p.returncode, p.stderr.decode(errors="replace")))
    return " ".join(argv), p.stdout.decode("ascii")


def uudecode_lines(lines, fname):
    """the file of the 'begin MODE fname' ... 'end' block in lines (bytes, no line ends), each line
    decoded with binascii.a2b_uu; None if there is no complete block"""
    for i, line in enumerate(lines):
        m = re.fullmatch(rb"begin [0-7]{3,4} (.+)", line)
        if m and m.group(1) == fname.encode():
            out = bytearray()
            for body_line in lines[i + 1:]:
                if body_line == b"end":
                    return bytes(out)
                out += binascii.a2b_uu(body_line)
    return None


def msg_uuencoded(msgid, frm, to, subject, text_before, text_after, fname, minute):
    """Old-style mail without MIME (no MIME-Version / Content-Type): plain text, the output of
    `uuencode` inline in the body, a closing line."""
    data = read_file(fname)
    command, uu = uuencode_file(fname)
    begin = uu.split("\n", 1)[0]
    body = ("From: %s\nTo: %s\nSubject: %s\nDate: %s\nMessage-ID: <%s@client.example.test>\n\n%s%s%s"
            % (frm, to, subject, MSG_DATE % minute, msgid, text_before, uu, text_after))
    msg = crlf(body)
    if uudecode_lines(msg.split(CRLF), fname) != data:  # the block must decode to the file again
        raise RuntimeError("%s: uuencoded %s does not decode to the file" % (msgid, fname))
    att = {**attachment_info(fname, "application/octet-stream", data), "encoding": "uuencode",
           "uuencode_command": command, "uuencode_begin_line": begin,
           "uuencode_lines": uu.count("\n"),
           "note": "no MIME: 'begin MODE NAME' ... 'end' inline in the text/plain body; content_type is "
                   "what a reader would assume (there is no Content-Type header)"}
    return msg, {"subject": subject, "subject_raw": subject, "mime": False, "attachments": [att]}


LONG_TEXT = "".join("Line %02d of a longer body so that TOP n 5 cuts it.\n" % i for i in range(1, 9)) + \
    ".\n.leading dot (POP3 servers dot-stuff this)\n..two leading dots\n" + \
    "".join("Line %02d of a longer body.\n" % i for i in range(12, 21))


# ---------------------------------------------------------------- logging client subclasses
class Log:
    """Records what a client library sent (commands) and the server's final reply lines."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.commands = []
        self.replies = []
        self.pending_literal = None
        self.delays = []      # seconds from each write to the reply that followed (findings only reads them)
        self._t_sent = None

    def wrote(self):
        self._t_sent = time.monotonic()

    def replied(self):
        if self._t_sent is not None:
            self.delays.append(time.monotonic() - self._t_sent)
            self._t_sent = None

    def sent_line(self, line):
        self.commands.append(line.decode("utf-8", "replace") if isinstance(line, bytes) else line)

    def sent_payload(self, kind, data, **extra):
        self.commands.append({"payload": kind, "wire_size": len(data), "wire_sha256": sha256(data), **extra})


class LogSMTPMixin:
    _mlog = None

    def connect(self, host="localhost", port=0, source_address=None):
        self._host = host  # SMTP(host='') + connect() leaves _host empty; starttls needs it for SNI/hostname check
        return super().connect(host, port, source_address)

    def send(self, s):
        if self._mlog is not None:
            b = s.encode("ascii") if isinstance(s, str) else s
            if b.endswith(b"\r\n.\r\n") and b.count(b"\r\n") > 1:
                self._mlog.sent_payload("smtp-data", b)
            else:
                for line in b.split(b"\r\n")[:-1]:
                    self._mlog.sent_line(line)
        r = super().send(s)
        if self._mlog is not None:
            self._mlog.wrote()
        return r

    def getreply(self):
        code, msg = super().getreply()
        if self._mlog is not None:
            self._mlog.replied()
            self._mlog.replies.append([code, msg.decode("utf-8", "replace")])
        return code, msg


class LSMTP(LogSMTPMixin, smtplib.SMTP):
    pass


class LSMTP_SSL(LogSMTPMixin, smtplib.SMTP_SSL):
    pass


class LogPOP3Mixin:
    _mlog = None

    def _putline(self, line):
        self._mlog.sent_line(line)
        r = super()._putline(line)
        self._mlog.wrote()
        return r

    def _getresp(self):
        try:
            resp = super()._getresp()
        except poplib.error_proto as e:  # -ERR: logged too (poplib raises it)
            self._mlog.replied()
            self._mlog.replies.append(e.args[0].decode("utf-8", "replace") if isinstance(e.args[0], bytes)
                                      else str(e.args[0]))
            raise
        self._mlog.replied()
        self._mlog.replies.append(resp.decode("utf-8", "replace"))
        return resp


def pop3_class(base, log):
    return type("LogPOP3", (LogPOP3Mixin, base), {"_mlog": log})


class LogIMAPMixin:
    _mlog = None

    def send(self, data):
        log = self._mlog
        if log.pending_literal is not None and len(data) == log.pending_literal:
            log.sent_payload("imap-literal", data)
            log.pending_literal = None
        elif data == CRLF:
            pass  # end of the command line after a literal
        else:
            for line in data.split(CRLF):
                if line:
                    log.sent_line(line)
            m = re.search(rb"\{(\d+)\}\r\n$", data)
            if m:
                log.pending_literal = int(m.group(1))
        r = super().send(data)
        log.wrote()
        return r

    def _command_complete(self, name, tag):
        typ, dat = super()._command_complete(name, tag)
        self._mlog.replied()
        txt = dat[-1].decode("utf-8", "replace") if dat and isinstance(dat[-1], bytes) else str(dat)
        self._mlog.replies.append("%s %s %s" % (tag.decode(), typ, txt))
        return typ, dat


def imap_class(base, log):
    return type("LogIMAP", (LogIMAPMixin, base), {"_mlog": log})


# ---------------------------------------------------------------- Maildir truth
def maildir_snapshot(user):
    """{base filename (without :2,flags): info} for every message of the user."""
    root = os.path.join(MAIL_ROOT, user, "Maildir")
    out = {}
    if not os.path.isdir(root):
        return out
    folders = [("INBOX", root)]
    for d in sorted(os.listdir(root)):
        if d.startswith(".") and os.path.isdir(os.path.join(root, d, "cur")):
            folders.append((d[1:], os.path.join(root, d)))
    for mbox, path in folders:
        uids = {}
        ul = os.path.join(path, "dovecot-uidlist")
        if os.path.exists(ul):
            with open(ul, "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines()[1:]:
                    if " :" in line:
                        uid, name = line.split(" ", 1)[0], line.split(" :", 1)[1]
                        uids[name.split(":2,")[0]] = int(uid)
        for sub in ("new", "cur"):
            sd = os.path.join(path, sub)
            if not os.path.isdir(sd):
                continue
            for fn in sorted(os.listdir(sd)):
                with open(os.path.join(sd, fn), "rb") as f:
                    data = f.read()
                wire = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                base = fn.split(":2,")[0]
                out[base] = {"user": user, "mailbox": mbox,
                             "file": os.path.relpath(os.path.join(sd, fn), MAIL_ROOT),
                             "uid": uids.get(base), "sha256": sha256(data), "size": len(data),
                             "crlf_sha256": sha256(wire), "crlf_size": len(wire), "_wire": wire}
    return out


class Truth:
    def __init__(self, users):
        self.users = users
        self.index = {}
        self.refresh()

    def refresh(self):
        for u in self.users:
            for k, v in maildir_snapshot(u).items():
                self.index[k] = v  # newest path (flags may have changed the file name)

    def describe(self, command, received, kind="full", **extra):
        """Match bytes a client received with the Maildir file Dovecot stored."""
        self.refresh()
        rec = {"command": command, "kind": kind, "received_sha256": sha256(received),
               "received_size": len(received), **extra}
        for base, info in self.index.items():
            w = info["_wire"]
            if (kind == "full" and w == received) or (kind != "full" and w.startswith(received)):
                rec["maildir"] = {k: v for k, v in info.items() if not k.startswith("_")}
                rec["matches_maildir"] = "equal" if w == received else "prefix"
                break
        else:
            rec["matches_maildir"] = False
        return rec

    def gone(self):
        """mark files that no longer exist (deleted via POP3 DELE)"""
        for info in self.index.values():
            info["deleted"] = not os.path.exists(os.path.join(MAIL_ROOT, info["file"]))


def wait_for_messages(user, count, mailbox="INBOX", timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = sum(1 for v in maildir_snapshot(user).values() if v["mailbox"] == mailbox)
        if n >= count:
            return n
        time.sleep(0.2)
    raise RuntimeError("timeout waiting for %d messages in %s/%s" % (count, user, mailbox))


def reset_mailbox(user):
    assert re.fullmatch(r"[a-z]+", user) and user in PASSWORDS
    subprocess.run(["doveadm", "kick", user], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    path = os.path.join(MAIL_ROOT, user)
    if os.path.isdir(path):
        shutil.rmtree(path)


def deliver(msg, rcpts, mail_from="sender@client.example.test"):
    """Uncaptured helper delivery over SMTP port 25 (scenario filters exclude port 25)."""
    with smtplib.SMTP(SERVER4, 25, local_hostname="prep.example.test", timeout=TIMEOUT) as s:
        refused = s.sendmail(mail_from, rcpts, msg)
    if refused:
        raise RuntimeError("prep delivery refused: %r" % refused)


# ---------------------------------------------------------------- session bookkeeping
SESSIONS = []


def new_session(client, protocol, port, server=SERVER4, **kw):
    s = {"client": client, "protocol": protocol, "server_ip": server, "server_port": port,
         "client_ip": CLIENT_IP if server == SERVER4 else SERVER6, "client_port": None, "tls": None,
         "credentials": [], "commands": [], "replies": [], **kw}
    SESSIONS.append(s)
    return s


def py_client(mod):
    return "Python %s %s" % (sys.version.split()[0], mod)


def tool_version(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.splitlines()[0]
    except Exception:
        return "?"


CURL = "curl %s" % (tool_version(["curl", "--version"]).split()[1] if shutil.which("curl") else "?")
SWAKS = "swaks %s" % (tool_version(["swaks", "--version"]).split()[-1] if shutil.which("swaks") else "?")


def finish(sess, log, conn_before):
    sess["commands"] = log.commands
    sess["commands_note"] = ("exact lines the client library wrote (its send hooked), without CRLF; "
                             "DATA / literal payloads summarised")
    sess["replies"] = log.replies
    if len(CONNECTIONS) > conn_before:
        sess["client_port"] = CONNECTIONS[conn_before][3]
        sess["client_ip"] = CONNECTIONS[conn_before][2]


def message_record(mid, msg, meta, mail_from, rcpts, accepted=None, rejected=None, client_input=None, **extra):
    rec = {"id": mid, **digest(msg), "envelope_from": mail_from, "rcpt_to": rcpts,
           "accepted": accepted if accepted is not None else rcpts, "rejected": rejected or {},
           "wire": {"dot_stuffed_size": len(dot_stuff(msg)), "dot_stuffed_sha256": sha256(dot_stuff(msg)),
                    "stuffed_lines": len(re.findall(rb"(?m)^\.", msg))}, **meta, **extra}
    if client_input is not None and client_input != msg:
        rec["client_input"] = {**digest(client_input),
                               "note": "bytes handed to the client; the client appended CRLF before the final '.'"}
    return rec


def run_curl(sess, args, keylog=None, outputs=(), ok=(0,), trace=None):
    """curl -v with ARGS; commands/replies/tls from its trace.  ok: the exit codes that are not a failure;
    trace: a list that gets every server line of the trace ("< " lines, without the marker)."""
    env = dict(os.environ)
    env.pop("SSLKEYLOGFILE", None)
    if keylog:
        env["SSLKEYLOGFILE"] = keylog
    argv = ["curl", "-v", "-sS", "--max-time", "60", "--interface", CLIENT_IP, "--cacert", CA_FILE] + args
    p = subprocess.run(argv, capture_output=True, env=env, timeout=90)
    err = p.stderr.decode("utf-8", "replace")
    sess["argv"] = ["curl"] + args
    sess["exit_code"] = p.returncode
    raw = []
    for line in err.splitlines():
        if line.startswith("> "):
            sess["commands"].append(line[2:])
        elif line.startswith("< "):
            raw.append(line[2:])
        m = re.search(r"SSL connection using (\S+) / (\S+)", line)
        if m:
            sess["tls"] = {"version": m.group(1), "cipher": m.group(2),
                           "keylog": os.path.basename(keylog) if keylog else None}
    if sess["protocol"] == "smtp":
        sess["replies"] = group_smtp_replies(raw)
    elif sess["protocol"] == "pop3":
        sess["replies"] = [r for r in raw if r.startswith(("+OK", "-ERR"))]
    else:
        sess["replies"] = [r for r in raw if re.match(r"^A\d+ ", r)]
    if p.returncode == 0:
        sess["commands_note"] = ("from curl -v; curl also sends %s while closing the connection, which its "
                                 "trace does not show" % ("LOGOUT" if sess["protocol"] == "imap" else "QUIT"))
    else:
        # seen on the wire: after a refused login curl closes the connection without a QUIT or LOGOUT
        sess["commands_note"] = "from curl -v; curl exited %d and closed the connection without %s" % (
            p.returncode, "LOGOUT" if sess["protocol"] == "imap" else "QUIT")
    if trace is not None:
        trace.extend(raw)
    if p.returncode not in ok:
        raise RuntimeError("curl failed (%d): %s" % (p.returncode, err[-2000:]))
    return p.stdout


def group_smtp_replies(lines):
    """['250-a', '250 b', '354 x'] -> [[250, 'a\nb'], [354, 'x']]"""
    out, cur = [], []
    for line in lines:
        m = re.match(r"^(\d{3})([ -])(.*)$", line)
        if not m:
            continue
        cur.append(m.group(3))
        if m.group(2) == " ":
            out.append([int(m.group(1)), "\n".join(cur)])
            cur = []
    return out


def queued_reply(sess):
    return next(("%d %s" % (c, t) for c, t in sess["replies"] if "queued as" in t), None)


def run_swaks(sess, args):
    argv = ["swaks", "--server", SERVER4, "--local-interface", CLIENT_IP, "--timeout", "30"] + args
    p = subprocess.run(argv, capture_output=True, timeout=90)
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    sess["argv"] = ["swaks", "--server", SERVER4] + args
    sess["exit_code"] = p.returncode
    in_data = False
    data_lines = 0
    raw = []
    for line in out.splitlines():
        if line.startswith(" -> ") or line.startswith(" ~> ") or line == " -> ":
            txt = line[4:]
            if in_data:
                if txt == ".":
                    sess["commands"].append({"payload": "smtp-data", "lines": data_lines})
                    in_data = False
                else:
                    data_lines += 1
                continue
            sess["commands"].append(txt)
        elif line.startswith("<-  ") or line.startswith("<~  ") or line.startswith("<** "):
            r = line[4:]
            raw.append(r)
            if r.startswith("354"):
                in_data, data_lines = True, 0
    sess["replies"] = group_smtp_replies(raw)
    sess["commands_note"] = "from swaks' transcript (lines marked ' -> '); DATA lines summarised"
    if p.returncode != 0:
        raise RuntimeError("swaks failed (%d): %s" % (p.returncode, out[-2000:]))


# ---------------------------------------------------------------- scenarios
def smtp_session_smtplib(sess, conn, mid, msg, meta, mail_from, rcpts, mail_options=()):
    refused = {}
    try:
        refused = conn.sendmail(mail_from, rcpts, msg, mail_options=list(mail_options))
    except smtplib.SMTPRecipientsRefused as e:
        refused = e.recipients
    queued = "%d %s" % tuple(conn._mlog.replies[-1]) if conn._mlog.replies else None
    rej = {r: [c, m.decode("utf-8", "replace")] for r, (c, m) in refused.items()}
    sess.setdefault("messages_sent", []).append(
        message_record(mid, msg, meta, mail_from, rcpts, [r for r in rcpts if r not in refused], rej,
                       server_reply=queued, mail_options=list(mail_options)))


def open_smtplib(port, server=SERVER4, starttls=False, keylog=None):
    """A logged smtplib session: connect and EHLO; with starttls also STARTTLS, then EHLO again.
    Returns (sess, log, conn, n); pass log and n to finish() when the session is over."""
    log = Log("smtp")
    sess = new_session(py_client("smtplib"), "smtp", port, server=server)
    n = len(CONNECTIONS)
    conn = LSMTP(local_hostname=EHLO_NAME, timeout=TIMEOUT)
    conn._mlog = log
    conn.connect(server, port)
    conn.ehlo()
    if starttls:
        conn.starttls(context=client_ctx(keylog))
        sess["tls"] = tls_info(conn.sock, "starttls", keylog)
        conn.ehlo()
    return sess, log, conn, n


def scenario_smtp_plain(args):
    # 1) Python smtplib, port 25, cleartext: EHLO, VRFY, HELP, unknown command, NOOP, MAIL/RCPT x3/DATA, RSET, QUIT
    sess, log, conn, n = open_smtplib(25)
    extra = {}
    for cmd, arg in (("VRFY", "alice"), ("VRFY", "nobody@example.test"), ("HELP", ""), ("XYZZY", "plugh"),
                     ("NOOP", "")):
        code, text = conn.docmd(cmd, arg)
        extra["%s %s" % (cmd, arg) if arg else cmd] = [code, text.decode("utf-8", "replace")]
    msg, meta = msg_cyrillic_attachment()
    smtp_session_smtplib(sess, conn, "smtp-plain-1", msg, meta, "ivan.petrov@client.example.test",
                         ["alice@example.test", "bob@example.test", "nosuchuser@example.test"],
                         mail_options=["BODY=8BITMIME"])
    conn.rset()
    conn.quit()
    sess["extra_commands"] = extra
    finish(sess, log, n)

    # 2) swaks with PIPELINING, two recipients
    sess = new_session(SWAKS, "smtp", 25, pipelining=True)
    msg, meta = msg_simple("smtp-plain-2", "Swaks Tester <tester@client.example.test>",
                           "alice@example.test, bob@example.test", "Pipelined mail – привет",
                           "Sent by swaks with --pipeline.\n.\n.Leading dot line.\nBye.\n", 2,
                           subject_raw=enc_word("Pipelined mail – привет", "UTF-8", "Q"))
    path = os.path.join(args.state, "swaks-msg.eml")
    client_input = msg[:-2]  # swaks adds CRLF before the final "." itself
    with open(path, "wb") as f:
        f.write(client_input)
    run_swaks(sess, ["--port", "25", "--ehlo", "swaks.example.test", "--pipeline",
                     "--from", "tester@client.example.test", "--to", "alice@example.test,bob@example.test",
                     "--data", "@" + path])
    sess.setdefault("messages_sent", []).append(
        message_record("smtp-plain-2", msg, meta, "tester@client.example.test",
                       ["alice@example.test", "bob@example.test"], client_input=client_input,
                       server_reply=queued_reply(sess)))

    # 3) curl smtp:// upload, one accepted and one refused recipient (--mail-rcpt-allowfails)
    sess = new_session(CURL, "smtp", 25)
    msg, meta = msg_simple("smtp-plain-3", "curl user <curl@client.example.test>", "bob@example.test",
                           "Uploaded with curl", "Hello Bob,\n\ncurl --upload-file sent this.\n.\n..end\n", 3)
    path = os.path.join(args.state, "curl-msg.eml")
    with open(path, "wb") as f:
        f.write(msg)
    run_curl(sess, ["smtp://127.0.0.1:25/curl.example.test", "--mail-from", "curl@client.example.test",
                    "--mail-rcpt", "bob@example.test", "--mail-rcpt", "ghost@example.test",
                    "--mail-rcpt-allowfails", "--upload-file", path])
    rej = {t.split("<")[1].split(">")[0]: [c, t] for c, t in sess["replies"] if c == 550}
    sess.setdefault("messages_sent", []).append(
        message_record("smtp-plain-3", msg, meta, "curl@client.example.test", ["bob@example.test", "ghost@example.test"],
                       ["bob@example.test"], rej,
                       server_reply=queued_reply(sess)))


def scenario_smtp_auth_starttls(args):
    keylog = args.keylog
    # 1) smtplib STARTTLS + AUTH PLAIN (alice)
    for i, (user, mech, rcpts, mk) in enumerate([
        ("alice", "PLAIN", ["bob@example.test", "carol@example.test"],
         lambda: msg_alternative("submission-1", "Bob <bob@example.test>, carol@example.test",
                                 "Grüße – submission über STARTTLS", 11)),
        ("bob", "LOGIN", ["alice@example.test"],
         lambda: msg_with_attachment("submission-2", "Bob <bob@example.test>", "Alice <alice@example.test>",
                                     "Report attached (AUTH LOGIN)", "Hi Alice,\n\nthe report is attached.\n",
                                     "report.pdf", "application/pdf", 12)),
    ], 1):
        sess, log, conn, n = open_smtplib(587, starttls=True, keylog=keylog)
        pw = PASSWORDS[user]
        if mech == "PLAIN":
            conn.login(user, pw)  # smtplib picks PLAIN (CRAM-MD5 is not offered)
        else:
            conn.user, conn.password = user, pw
            code, resp = conn.auth("LOGIN", conn.auth_login)
        sess["credentials"].append({"mechanism": mech, "username": user, "password": pw,
                                    "success": True})
        msg, meta = mk()
        smtp_session_smtplib(sess, conn, "submission-%d" % i, msg, meta, "%s@example.test" % user, rcpts)
        conn.quit()
        finish(sess, log, n)

    # 3) failed AUTH (wrong password) then QUIT
    sess, log, conn, n = open_smtplib(587, starttls=True, keylog=keylog)
    try:
        conn.login("alice", "wrong-password")
        ok = True
    except smtplib.SMTPAuthenticationError:
        ok = False
    # smtplib.login() tries every offered mechanism it knows: PLAIN fails (535), then LOGIN fails (535)
    for mech in ("PLAIN", "LOGIN"):
        if any(isinstance(c, str) and c.upper().startswith("AUTH " + mech) for c in log.commands):
            sess["credentials"].append({"mechanism": mech, "username": "alice", "password": "wrong-password",
                                        "success": ok})
    conn.quit()
    finish(sess, log, n)

    # 4) curl: STARTTLS (--ssl-reqd), curl's own AUTH choice, key log via SSLKEYLOGFILE
    sess = new_session(CURL, "smtp", 587)
    msg, meta = msg_simple("submission-3", "Carol <carol@example.test>", "alice@example.test",
                           "curl over submission", "Sent by curl after STARTTLS and AUTH.\n.\nbye\n", 13)
    path = os.path.join(args.state, "curl-sub.eml")
    with open(path, "wb") as f:
        f.write(msg)
    run_curl(sess, ["smtp://127.0.0.1:587/curl.example.test", "--ssl-reqd", "-u", "carol:" + PASSWORDS["carol"],
                    "--mail-from", "carol@example.test", "--mail-rcpt", "alice@example.test",
                    "--upload-file", path], keylog=keylog)
    if sess["tls"]:
        sess["tls"]["mode"] = "starttls"
    mech = next((c.split()[1] for c in sess["commands"] if c.upper().startswith("AUTH ")), None)
    sess["credentials"].append({"mechanism": mech, "username": "carol", "password": PASSWORDS["carol"],
                                "success": True})
    sess.setdefault("messages_sent", []).append(
        message_record("submission-3", msg, meta, "carol@example.test", ["alice@example.test"],
                       server_reply=queued_reply(sess)))


# -- cleartext AUTH on port 2525 (no TLS offered), CHUNKING (BDAT) and PIPELINING
CLEARTEXT_PORT = 2525


class RawSMTP:
    """Scripted SMTP client on a plain socket: writes exactly the bytes it is given and waits for each
    reply.  Logs every line written (commands, without CRLF), every payload (summarised), every
    reply, and which commands went out in which single send() (writes)."""

    def __init__(self, server=SERVER4, port=CLEARTEXT_PORT):
        self.commands, self.replies, self.writes = [], [], []
        self.buf = b""
        self.sock = socket.create_connection((server, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one send() -> one segment
        self.greeting = self.reply()

    def _readline(self):
        for _ in range(1000):  # bounded
            i = self.buf.find(CRLF)
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("server closed the connection")
            self.buf += data
        raise RuntimeError("no complete reply line")

    def reply(self):
        lines = []
        for _ in range(100):  # bounded
            line = self._readline().decode("utf-8", "replace")
            m = re.match(r"^(\d{3})([ -])(.*)$", line)
            if not m:
                raise RuntimeError("not an SMTP reply line: %r" % line)
            lines.append(m.group(3))
            if m.group(2) == " ":
                rep = [int(m.group(1)), "\n".join(lines)]
                self.replies.append(rep)
                return rep
        raise RuntimeError("reply with more than 100 lines")

    def write(self, *parts):
        """one send(): str parts are command lines (CRLF appended), (kind, bytes) parts are payloads"""
        data, idx = b"", []
        for p in parts:
            idx.append(len(self.commands))
            if isinstance(p, str):
                data += p.encode("utf-8") + CRLF
                self.commands.append(p)
            else:
                kind, payload = p
                data += payload
                self.commands.append({"payload": kind, "wire_size": len(payload), "wire_sha256": sha256(payload)})
        self.sock.sendall(data)
        self.writes.append({"size": len(data), "commands": idx})

    def cmd(self, line, expect):
        self.write(line)
        return self.expect(expect)

    def expect(self, code):
        rep = self.reply()
        if rep[0] not in ((code,) if isinstance(code, int) else code):
            raise RuntimeError("expected %d after %r, got %r" % (code, self.commands[-1], rep))
        return rep

    def close(self):
        self.sock.close()


def b64s(s):
    return base64.b64encode(s.encode("utf-8") if isinstance(s, str) else s).decode("ascii")


def cleartext_cred(mech, user, pw, reply, **extra):
    return {"mechanism": mech, "username": user, "password": pw, "success": reply[0] == 235,
            "reply": "%d %s" % tuple(reply), **extra}


def scenario_smtp_auth_cleartext(args):
    port = CLEARTEXT_PORT
    # 1) smtplib AUTH PLAIN (alice), 8BITMIME mail with a UTF-8 (RFC 2047) Cyrillic subject and dot lines
    sess, log, conn, n = open_smtplib(port)
    user, pw = "alice", PASSWORDS["alice"]
    rep = conn.login(user, pw)  # smtplib picks PLAIN with an initial response (CRAM-MD5 is not offered)
    sess["credentials"].append(cleartext_cred("PLAIN", user, pw, [rep[0], rep[1].decode()]))
    subject = "Привет без TLS: AUTH PLAIN"
    msg, meta = msg_simple("cleartext-1", "Alice <alice@example.test>", "Bob <bob@example.test>", subject,
                           "Привет, Боб!\n\nЭто письмо отправлено после AUTH PLAIN без TLS.\n"
                           ".Эта строка начинается с точки.\n.\nАлиса\n", 14,
                           subject_raw=enc_word(subject, "UTF-8", "B"))
    smtp_session_smtplib(sess, conn, "cleartext-1", msg, meta, "alice@example.test", ["bob@example.test"],
                         mail_options=["BODY=8BITMIME"])
    sess["messages_sent"][-1]["transfer"] = "DATA"
    conn.quit()
    finish(sess, log, n)

    # 2) smtplib AUTH LOGIN (bob) without initial response: user and password each after a 334; PDF attachment
    sess, log, conn, n = open_smtplib(port)
    user, pw = "bob", PASSWORDS["bob"]
    conn.user, conn.password = user, pw
    rep = conn.auth("LOGIN", conn.auth_login, initial_response_ok=False)
    sess["credentials"].append(cleartext_cred("LOGIN", user, pw, [rep[0], rep[1].decode()]))
    msg, meta = msg_with_attachment("cleartext-2", "Bob <bob@example.test>", "Alice <alice@example.test>",
                                    "Report attached (cleartext AUTH LOGIN)",
                                    "Hi Alice,\n\nthe report again, this time without TLS.\n",
                                    "report.pdf", "application/pdf", 15)
    smtp_session_smtplib(sess, conn, "cleartext-2", msg, meta, "bob@example.test", ["alice@example.test"])
    sess["messages_sent"][-1]["transfer"] = "DATA"
    conn.quit()
    finish(sess, log, n)

    # 3) raw socket, scripted: failed AUTH LOGIN, malformed AUTH PLAIN response, AUTH PLAIN (carol) with an
    #    initial response, BDAT in two chunks, then MAIL/RCPT/RCPT/DATA pipelined in one write, RSET, QUIT
    sess = new_session("Python %s socket (scripted raw SMTP client)" % sys.version.split()[0], "smtp", port)
    n = len(CONNECTIONS)
    c = RawSMTP()
    c.cmd("EHLO raw.example.test", 250)
    ehlo = c.replies[-1][1].split("\n")
    for kw in ("PIPELINING", "CHUNKING", "AUTH PLAIN LOGIN"):
        if kw not in ehlo:
            raise RuntimeError("server does not offer %s on port %d: %r" % (kw, port, ehlo))
    user, pw, bad = "carol", PASSWORDS["carol"], "wrong-password"
    c.cmd("AUTH LOGIN", 334)
    c.cmd(b64s(user), 334)
    rep = c.cmd(b64s(bad), 535)
    sess["credentials"].append(cleartext_cred("LOGIN", user, bad, rep, auth_lines=c.commands[-3:]))
    c.cmd("AUTH PLAIN", 334)
    # Postfix with Dovecot SASL answers 535 5.7.8 "Invalid base64 data in continued response" (Postfix
    # with Cyrus SASL would say 501 5.5.2 "Cannot decode response"); either is recorded as it came
    rep = c.cmd("!!!notbase64", (535, 501))
    sess["credentials"].append(cleartext_cred("PLAIN", None, None, rep, malformed=True, auth_lines=c.commands[-2:],
                                              note="the response to the empty 334 challenge is not base64"))
    rep = c.cmd("AUTH PLAIN " + b64s("\0%s\0%s" % (user, pw)), 235)
    sess["credentials"].append(cleartext_cred("PLAIN", user, pw, rep, initial_response=True,
                                              auth_lines=c.commands[-1:]))

    # CHUNKING: the first chunk ends in the middle of a line; the body has a lone "." line (no
    # dot-stuffing with BDAT, it is no end marker)
    subject = "BDAT в двух частях"
    msg, meta = msg_simple("cleartext-3", "Carol <carol@example.test>", "Alice <alice@example.test>", subject,
                           "Hello Alice,\n\nthis message travels in two BDAT chunks; the first one ends in the "
                           "middle of this line.\n.\nThe line above is a single dot: BDAT does not dot-stuff, "
                           "so it ends nothing.\n..Two dots stay two dots.\nCarol\n", 16,
                           subject_raw=enc_word(subject, "UTF-8", "B"))
    cut = msg.index(b"in the mid") + len(b"in the mid")
    chunks = [msg[:cut], msg[cut:]]
    mail_from, rcpt = "carol@example.test", "alice@example.test"
    c.cmd("MAIL FROM:<%s> BODY=8BITMIME" % mail_from, 250)
    c.cmd("RCPT TO:<%s>" % rcpt, 250)
    c.write("BDAT %d" % len(chunks[0]), ("smtp-bdat-chunk", chunks[0]))  # command + chunk in one write
    c.expect(250)
    c.write("BDAT %d LAST" % len(chunks[1]))  # command and chunk in two writes
    c.write(("smtp-bdat-chunk", chunks[1]))
    queued = c.expect(250)
    rec = message_record("cleartext-3", msg, meta, mail_from, [rcpt], server_reply="%d %s" % tuple(queued),
                         mail_options=["BODY=8BITMIME"], transfer="BDAT")
    rec["wire"] = {"bdat_chunks": [{"command": "BDAT %d%s" % (len(ch), " LAST" if i == len(chunks) - 1 else ""),
                                    **digest(ch)} for i, ch in enumerate(chunks)],
                   "note": "BDAT: no dot-stuffing, no terminating '.'; sha256/size are of the concatenated chunks"}
    sess.setdefault("messages_sent", []).append(rec)

    # PIPELINING: MAIL, RCPT (accepted), RCPT (unknown user, 550) and DATA in one write, then the 4 replies
    msg, meta = msg_simple("cleartext-4", "Carol <carol@example.test>", "Bob <bob@example.test>",
                           "Pipelined DATA after BDAT",
                           "Hi Bob,\n\nMAIL, two RCPTs and DATA went out in one write.\n.\n.leading dot\n"
                           "..two leading dots\nCarol\n", 17)
    rcpts = ["bob@example.test", "nosuch@example.test"]
    c.write("MAIL FROM:<%s>" % mail_from, *["RCPT TO:<%s>" % r for r in rcpts], "DATA")
    reps = [c.reply() for _ in range(4)]
    if [r[0] for r in reps] != [250, 250, 550, 354]:
        raise RuntimeError("pipelined replies: %r" % reps)
    c.write(("smtp-data", dot_stuff(msg) + b".\r\n"))
    queued = c.expect(250)
    sess["messages_sent"].append(
        message_record("cleartext-4", msg, meta, mail_from, rcpts, [rcpts[0]], {rcpts[1]: reps[2]},
                       server_reply="%d %s" % tuple(queued), transfer="DATA", pipelined=True))
    c.cmd("RSET", 250)
    c.cmd("QUIT", 221)
    c.close()
    sess["commands"], sess["replies"], sess["writes"] = c.commands, c.replies, c.writes
    sess["commands_note"] = ("exact lines written to the socket, without CRLF; BDAT chunks and the DATA payload "
                             "(dot-stuffed, with the final '.CRLF') summarised as wire_size/wire_sha256")
    sess["writes_note"] = "one entry per send() (TCP_NODELAY): its size and the indexes into commands it carried"
    sess["client_port"], sess["client_ip"] = CONNECTIONS[n][3], CONNECTIONS[n][2]

    # 4) swaks AUTH LOGIN (dave) in the clear
    sess = new_session(SWAKS, "smtp", port)
    user, pw = "dave", PASSWORDS["dave"]
    msg, meta = msg_simple("cleartext-5", "Dave <dave@example.test>", "alice@example.test",
                           "swaks AUTH LOGIN without TLS", "Sent by swaks --auth LOGIN on port 2525.\n.\nDave\n", 18)
    path = os.path.join(args.state, "swaks-cleartext.eml")
    client_input = msg[:-2]  # swaks adds CRLF before the final "." itself
    with open(path, "wb") as f:
        f.write(client_input)
    run_swaks(sess, ["--port", str(port), "--ehlo", "swaks.example.test", "--auth", "LOGIN",
                     "--auth-user", user, "--auth-password", pw,
                     "--from", "dave@example.test", "--to", "alice@example.test", "--data", "@" + path])
    auth = next((r for r in sess["replies"] if r[0] in (235, 535)), [0, "no AUTH reply"])
    sess["credentials"].append(cleartext_cred("LOGIN", user, pw, auth))
    sess.setdefault("messages_sent", []).append(
        message_record("cleartext-5", msg, meta, "dave@example.test", ["alice@example.test"],
                       client_input=client_input, server_reply=queued_reply(sess), transfer="DATA"))

    # 5) smtplib AUTH PLAIN (alice), an old-style non-MIME mail: report.pdf uuencoded in the text body
    sess, log, conn, n = open_smtplib(port)
    user, pw = "alice", PASSWORDS["alice"]
    rep = conn.login(user, pw)
    sess["credentials"].append(cleartext_cred("PLAIN", user, pw, [rep[0], rep[1].decode()]))
    msg, meta = msg_uuencoded("cleartext-6", "Alice <alice@example.test>", "Bob <bob@example.test>",
                              "Report, uuencoded the old way",
                              "Hi Bob,\n\nhere is the report as a uuencoded block (no MIME); save this mail\n"
                              "and run uudecode on it to get report.pdf back.\n\n",
                              "\nRegards,\nAlice\n", "report.pdf", 19)
    smtp_session_smtplib(sess, conn, "cleartext-6", msg, meta, "alice@example.test", ["bob@example.test"])
    sess["messages_sent"][-1]["transfer"] = "DATA"
    conn.quit()
    finish(sess, log, n)


# -- POP3
POP3_MESSAGES = [
    lambda: msg_simple("pop3-1", "Alice <alice@example.test>", "Dave <dave@example.test>", "First message for Dave",
                       "Hi Dave,\n\nthis is message one.\n", 21),
    lambda: msg_with_attachment("pop3-2", "Bob <bob@example.test>", "Dave <dave@example.test>", "Report for Dave",
                                "Dave, see the attached PDF.\n", "report.pdf", "application/pdf", 22),
    lambda: msg_simple("pop3-3", "Иван <ivan.petrov@client.example.test>", "dave@example.test",
                       "Длинное письмо", LONG_TEXT, 23, subject_raw=enc_word("Длинное письмо", "KOI8-R")),
]


def prepare_mailbox(user, builders, state, name):
    reset_mailbox(user)
    recs = []
    for i, mk in enumerate(builders, 1):
        msg, meta = mk()
        deliver(msg, ["%s@example.test" % user])
        wait_for_messages(user, i)  # one at a time, so that message numbers / UIDs follow this order
        recs.append({**digest(msg), "subject": meta["subject"], "attachments": meta["attachments"], "_msg": msg})
    time.sleep(0.3)
    snap = maildir_snapshot(user)
    for rec in recs:
        msg = rec.pop("_msg")
        for info in snap.values():  # LMTP prepends Return-Path/Delivered-To/Received and stores LF line ends
            if info["_wire"].endswith(msg):
                rec["stored"] = {k: v for k, v in info.items() if not k.startswith("_")}
        if "stored" not in rec:
            raise RuntimeError("prepared message %r not found in %s's Maildir" % (rec["subject"], user))
    order = [r["stored"]["uid"] for r in recs]
    if order != sorted(order):
        raise RuntimeError("prepared messages stored out of order: %r" % order)
    with open(os.path.join(state, "prepared-%s-%s.json" % (name, user)), "w") as f:
        json.dump({"user": user, "delivered_via": "SMTP port 25 (not captured) -> Postfix -> Dovecot LMTP",
                   "messages": recs}, f, indent=1)


def pop_lines(lines):
    return b"".join(l + CRLF for l in lines)


def scenario_pop3(args):
    truth = Truth(["dave"])
    user, pw = "dave", PASSWORDS["dave"]
    # 1) poplib USER/PASS
    log = Log("pop3")
    sess = new_session(py_client("poplib"), "pop3", 110)
    n = len(CONNECTIONS)
    conn = pop3_class(poplib.POP3, log)(SERVER4, 110, timeout=TIMEOUT)
    sess["greeting"] = conn.getwelcome().decode()
    conn.capa()
    conn.user(user)
    conn.pass_(pw)
    sess["credentials"].append({"mechanism": "USER/PASS", "username": user, "password": pw,
                                "success": True})
    fetched = []
    sess["stat"] = list(conn.stat())
    sess["list"] = [l.decode() for l in conn.list()[1]]
    sess["uidl"] = [l.decode() for l in conn.uidl()[1]]
    _, lines, _ = conn.retr(1)
    fetched.append(truth.describe("RETR 1", pop_lines(lines)))
    _, lines, _ = conn.retr(3)
    fetched.append(truth.describe("RETR 3", pop_lines(lines), note="body has lines starting with '.', dot-stuffed by the server"))
    _, lines, _ = conn.top(2, 5)
    fetched.append(truth.describe("TOP 2 5", pop_lines(lines), kind="top"))
    conn.noop()
    conn.dele(1)
    sess["deleted"] = ["1"]
    conn.quit()
    sess["messages_fetched"] = fetched
    finish(sess, log, n)
    truth.gone()

    # 2) curl pop3:// : curl picks SASL itself (CRAM-MD5 is advertised); LIST then RETR 1 on one connection
    sess = new_session(CURL, "pop3", 110)
    out1, out2 = os.path.join(args.state, "curl-pop-list"), os.path.join(args.state, "curl-pop-retr")
    run_curl(sess, ["-u", "%s:%s" % (user, pw), "pop3://127.0.0.1:110/", "-o", out1,
                    "pop3://127.0.0.1:110/1", "-o", out2])
    mech = next((c.split()[1] for c in sess["commands"] if c.upper().startswith("AUTH ")), "USER/PASS")
    sess["credentials"].append({"mechanism": mech, "username": user, "password": pw,
                                "success": True})
    with open(out2, "rb") as f:
        sess["messages_fetched"] = [truth.describe("RETR 1", f.read())]
    with open(out1, "rb") as f:
        sess["list"] = f.read().decode().split("\r\n")[:-1]

    # 3) poplib APOP
    log = Log("pop3")
    sess = new_session(py_client("poplib"), "pop3", 110)
    n = len(CONNECTIONS)
    conn = pop3_class(poplib.POP3, log)(SERVER4, 110, timeout=TIMEOUT)
    sess["greeting"] = conn.getwelcome().decode()
    conn.apop(user, pw)
    sess["credentials"].append({"mechanism": "APOP", "username": user, "password": pw,
                                "success": True})
    sess["stat"] = list(conn.stat())
    conn.quit()
    finish(sess, log, n)


# -- IMAP
IMAP_MESSAGES = [
    lambda: msg_simple("imap-1", "Alice <alice@example.test>", "Erin <erin@example.test>", "Welcome, Erin",
                       "Hello Erin,\n\nthis is the first message.\n.\nCheers\n", 31),
    lambda: msg_with_attachment("imap-2", "Bob <bob@example.test>", "Erin <erin@example.test>", "Noise picture",
                                "Erin, a PNG full of noise is attached.\n", "noise.png", "image/png", 32),
    lambda: msg_simple("imap-3", "Иван <ivan.petrov@client.example.test>", "erin@example.test",
                       "Привет, Эрин", "Третье письмо, UTF-8.\n", 33, subject_raw=enc_word("Привет, Эрин")),
]


def literal_of(data):
    return [p[1] for p in data if isinstance(p, tuple)]


def scenario_imap(args):
    truth = Truth(["erin"])
    user, pw = "erin", PASSWORDS["erin"]
    log = Log("imap")
    sess = new_session(py_client("imaplib"), "imap", 143)
    n = len(CONNECTIONS)
    conn = imap_class(imaplib.IMAP4, log)(SERVER4, 143, timeout=TIMEOUT)
    sess["greeting"] = conn.welcome.decode()
    conn.login(user, pw)
    sess["credentials"].append({"mechanism": "LOGIN", "username": user, "password": pw,
                                "success": True})
    conn.capability()
    conn.list()
    typ, data = conn.select("INBOX")
    sess["select_exists"] = int(data[0])
    conn.fetch("1:*", "(FLAGS)")
    fetched = []
    # UID of message 1
    typ, data = conn.fetch("1", "(UID)")
    uid1 = int(re.search(rb"UID (\d+)", data[0]).group(1))
    typ, data = conn.uid("FETCH", str(uid1), "(BODY[])")
    fetched.append(truth.describe("UID FETCH %d (BODY[])" % uid1, literal_of(data)[0]))
    typ, data = conn.fetch("2", "(BODY.PEEK[HEADER])")
    fetched.append(truth.describe("FETCH 2 (BODY.PEEK[HEADER])", literal_of(data)[0], kind="header"))
    # Thunderbird-style chunked download of message 2
    typ, data = conn.fetch("2", "(UID RFC822.SIZE)")
    m = re.search(rb"UID (\d+) RFC822.SIZE (\d+)", data[0])
    uid2, size2 = int(m.group(1)), int(m.group(2))
    chunks, off, chunk = [], 0, 1000
    for _ in range(100):  # bounded
        typ, data = conn.uid("FETCH", str(uid2), "(UID BODY.PEEK[]<%d.%d>)" % (off, chunk))
        part = literal_of(data)[0]
        chunks.append(part)
        off += len(part)
        if len(part) < chunk or off >= size2:
            break
    if len(chunks) < 3:
        raise RuntimeError("message 2 should be the big one (got %d bytes)" % size2)
    fetched.append(truth.describe("UID FETCH %d (UID BODY.PEEK[]<0.1000>) ... <%d.1000> (%d chunks)"
                                  % (uid2, (len(chunks) - 1) * chunk, len(chunks)), b"".join(chunks),
                                  chunks=[len(c) for c in chunks]))
    # APPEND with a literal to Sent
    amsg, ameta = msg_simple("imap-append-1", "Erin <erin@example.test>", "Alice <alice@example.test>",
                             "Saved copy (APPEND)", "This copy was stored with IMAP APPEND.\n.\nErin\n", 34)
    idate = imaplib.Time2Internaldate(datetime.datetime(2026, 3, 5, 10, 34, 0,
                                                        tzinfo=datetime.timezone(datetime.timedelta(hours=3))))
    typ, data = conn.append("Sent", "(\\Seen)", idate, amsg)
    appended = {"id": "imap-append-1", "mailbox": "Sent", "flags": "(\\Seen)", "internaldate": idate,
                **digest(amsg), **ameta, "server_reply": data[-1].decode() if data else None}
    # IDLE: a new message is delivered (SMTP port 25, outside this capture's filter) while idling
    tag = conn._new_tag()
    conn.send(tag + b" IDLE\r\n")
    cont = conn.readline()
    dmsg, dmeta = IMAP_MESSAGES_IDLE()
    before = sum(1 for v in maildir_snapshot(user).values() if v["mailbox"] == "INBOX")
    deliver(dmsg, ["erin@example.test"])
    wait_for_messages(user, before + 1)
    time.sleep(1.0)
    conn.send(b"DONE\r\n")
    idle_lines = []
    for _ in range(50):  # bounded
        line = conn.readline()
        if not line:
            break
        idle_lines.append(line.rstrip(b"\r\n").decode())
        if line.startswith(tag):
            break
    log.replies.append(idle_lines[-1] if idle_lines else None)
    sess["idle"] = {"tag": tag.decode(), "continuation": cont.rstrip(b"\r\n").decode(),
                    "untagged_during_idle": idle_lines[:-1],
                    "delivered_during_idle": {**digest(dmsg), "subject": dmeta["subject"]}}
    typ, data = conn.fetch("4", "(ENVELOPE RFC822.SIZE)")
    conn.logout()
    truth.refresh()
    appended["stored"] = next(({k: v for k, v in i.items() if not k.startswith("_")}
                               for i in truth.index.values() if i["mailbox"] == "Sent" and i["_wire"] == amsg), None)
    sess["messages_fetched"] = fetched
    sess["messages_appended"] = [appended]
    finish(sess, log, n)

    # curl imap:// : AUTHENTICATE PLAIN with SASL-IR, LIST, then SELECT + UID FETCH BODY[]
    sess = new_session(CURL, "imap", 143)
    out1, out2 = os.path.join(args.state, "curl-imap-list"), os.path.join(args.state, "curl-imap-fetch")
    run_curl(sess, ["-u", "%s:%s" % (user, pw), "--login-options", "AUTH=PLAIN",
                    "imap://127.0.0.1:143/", "-o", out1, "imap://127.0.0.1:143/INBOX;UID=%d" % uid2, "-o", out2])
    sess["credentials"].append({"mechanism": "AUTHENTICATE PLAIN (SASL-IR)", "username": user, "password": pw,
                                "success": True})
    with open(out2, "rb") as f:
        sess["messages_fetched"] = [truth.describe("UID FETCH %d BODY[]" % uid2, f.read())]


def IMAP_MESSAGES_IDLE():
    return msg_simple("imap-4", "Carol <carol@example.test>", "erin@example.test", "Arrived during IDLE",
                      "This message was delivered while the client was in IDLE.\n", 35)


# -- IMAP COMPRESS=DEFLATE (RFC 4978): scripted raw-socket client
IMAP_COMPRESS_MESSAGES = [IMAP_MESSAGES[0], IMAP_MESSAGES[1]]


class RawIMAP:
    """Scripted IMAP client on a plain socket.  After enable_deflate() every write is raw deflate
    (wbits -15) ended by a Z_SYNC_FLUSH, and everything read is inflated (RFC 4978).  Counts the TCP
    payload bytes in each direction so the stream offsets where compression starts can be recorded."""

    def __init__(self, server=SERVER4, port=143):
        self.commands, self.replies, self.writes = [], [], []
        self.buf = b""            # server bytes (inflated once deflate is on) not consumed yet
        self.sent = self.received = 0   # TCP payload bytes on the wire, each direction
        self.comp = self.decomp = None
        self.sock = socket.create_connection((server, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.greeting = self.readline().decode("utf-8", "replace")

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise RuntimeError("server closed the connection")
        self.received += len(data)
        self.buf += self.decomp.decompress(data) if self.decomp else data

    def readline(self):
        for _ in range(100000):  # bounded
            i = self.buf.find(CRLF)
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()
        raise RuntimeError("no complete line")

    def read(self, n):
        for _ in range(100000):  # bounded
            if len(self.buf) >= n:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            self._fill()
        raise RuntimeError("short literal")

    def _send(self, data):
        wire = self.comp.compress(data) + self.comp.flush(zlib.Z_SYNC_FLUSH) if self.comp else data
        self.sock.sendall(wire)
        self.sent += len(wire)
        self.writes.append({"size": len(data), "wire_size": len(wire), "deflated": self.comp is not None})

    def write_line(self, line):
        self.commands.append(line)
        self._send(line.encode("utf-8") + CRLF)

    def write_literal(self, payload):
        """the literal and the CRLF that ends the command line, in one write"""
        self.commands.append({"payload": "imap-literal", "wire_size": len(payload), "wire_sha256": sha256(payload)})
        self._send(payload + CRLF)

    def response(self, tag):
        """read up to the tagged reply: (tagged line, untagged lines, literals)"""
        untagged, literals = [], []
        for _ in range(10000):  # bounded
            line = self.readline()
            for _ in range(100):  # literals inside this response line
                m = re.search(rb"\{(\d+)\}$", line)
                if not m:
                    break
                lit = self.read(int(m.group(1)))
                literals.append(lit)
                line = line + b"<literal %d bytes>" % len(lit) + self.readline()
            text = line.decode("utf-8", "replace")
            if text.startswith(tag + " "):
                self.replies.append(text)
                if not text.startswith(tag + " OK"):
                    raise RuntimeError("IMAP %s failed: %s" % (tag, text))
                return text, untagged, literals
            untagged.append(text)
        raise RuntimeError("no tagged reply for %s" % tag)

    def command(self, tag, rest):
        self.write_line("%s %s" % (tag, rest))
        return self.response(tag)

    def enable_deflate(self):
        if self.buf:
            raise RuntimeError("unexpected bytes after the COMPRESS reply: %r" % self.buf[:40])
        self.comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.decomp = zlib.decompressobj(-15)
        return self.sent, self.received

    def close(self):
        self.sock.close()


def scenario_imap_compress(args):
    truth = Truth(["erin"])
    user, pw = "erin", PASSWORDS["erin"]
    with open(os.path.join(args.state, "prepared-imap-compress-erin.json")) as f:
        uid = json.load(f)["messages"][-1]["stored"]["uid"]  # the one with the PNG attachment
    sess = new_session("scripted raw-socket IMAP client (Python %s socket + zlib)" % sys.version.split()[0],
                       "imap", 143)
    n = len(CONNECTIONS)
    c = RawIMAP()
    sess["greeting"] = c.greeting
    c.command("a1", 'LOGIN %s "%s"' % (user, pw))
    sess["credentials"].append({"mechanism": "LOGIN", "username": user, "password": pw, "success": True})
    _, untagged, _ = c.command("a2", "CAPABILITY")
    caps = next((u for u in untagged if u.startswith("* CAPABILITY ")), "")
    if "COMPRESS=DEFLATE" not in caps.split():
        raise RuntimeError("server does not offer COMPRESS=DEFLATE: %r" % caps)
    sess["capability"] = caps
    c.command("a3", "COMPRESS DEFLATE")
    client_off, server_off = c.enable_deflate()
    sess["compress"] = {"command_tag": "a3", "mechanism": "DEFLATE", "client_offset": client_off,
                        "server_offset": server_off,
                        "note": "offsets count TCP payload bytes of each direction from the start of the "
                                "connection: everything from there on is one raw deflate stream (RFC 1951, no "
                                "zlib header; zlib wbits=-15); the client ends each write with Z_SYNC_FLUSH"}
    _, untagged, _ = c.command("a4", "SELECT INBOX")
    sess["select_exists"] = next(int(u.split()[1]) for u in untagged if u.endswith(" EXISTS"))
    cmd = "UID FETCH %d (BODY[])" % uid
    _, _, lits = c.command("a5", cmd)
    fetched = [truth.describe(cmd, lits[0])]
    amsg, ameta = msg_simple("imap-compress-append-1", "Erin <erin@example.test>", "Alice <alice@example.test>",
                             "Saved copy (APPEND inside DEFLATE)",
                             "This copy was stored with IMAP APPEND after COMPRESS DEFLATE.\n.\nErin\n", 36)
    c.write_line('a6 APPEND Sent (\\Seen) "05-Mar-2026 10:36:00 +0300" {%d}' % len(amsg))
    cont = c.readline().decode("utf-8", "replace")
    if not cont.startswith("+"):
        raise RuntimeError("no continuation for APPEND: %r" % cont)
    c.write_literal(amsg)
    tagged, _, _ = c.response("a6")
    appended = {"id": "imap-compress-append-1", "mailbox": "Sent", "flags": "(\\Seen)",
                "internaldate": '"05-Mar-2026 10:36:00 +0300"', **digest(amsg), **ameta,
                "continuation": cont, "server_reply": tagged.split(" ", 2)[2]}
    c.command("a7", "NOOP")
    _, untagged, _ = c.command("a8", "LOGOUT")
    c.close()
    sess["compress"]["client_wire_bytes"], sess["compress"]["server_wire_bytes"] = c.sent, c.received
    truth.refresh()
    appended["stored"] = next(({k: v for k, v in i.items() if not k.startswith("_")}
                               for i in truth.index.values() if i["mailbox"] == "Sent" and i["_wire"] == amsg), None)
    sess["messages_fetched"] = fetched
    sess["messages_appended"] = [appended]
    sess["commands"] = c.commands
    sess["commands_note"] = ("exact lines the client wrote, without CRLF; from a4 on they are inside the client's "
                             "deflate stream (each write compressed and Z_SYNC_FLUSHed); the literal summarised")
    sess["writes"] = c.writes
    sess["replies"] = c.replies
    sess["client_port"], sess["client_ip"] = CONNECTIONS[n][3], CONNECTIONS[n][2]


# -- IMAP: a ~10 MB message APPENDed and fetched back (imaplib)
LARGE_ZEROS = 7500000  # base64 -> 10,000,000 characters


def msg_large():
    data = bytes(LARGE_ZEROS)
    b = "=_mailscope_large"
    body = ("From: Erin <erin@example.test>\nTo: Erin <erin@example.test>\nSubject: Large message (10 MB)\n"
            "Date: %s\nMessage-ID: <imap-large-1@client.example.test>\nMIME-Version: 1.0\n"
            "Content-Type: multipart/mixed; boundary=\"%s\"\n\n"
            "--%s\nContent-Type: text/plain; charset=UTF-8\n\nA large attachment of zero bytes follows.\n\n"
            "--%s\nContent-Type: application/octet-stream; name=\"zeros.bin\"\nContent-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=\"zeros.bin\"\n\n%s\n--%s--\n"
            % (MSG_DATE % 37, b, b, b, b64_lines(data), b))
    att = {"filename": "zeros.bin", "content_type": "application/octet-stream",
           "source": "generated: %d zero bytes (not in samples/files)" % LARGE_ZEROS, **digest(data)}
    return crlf(body), {"subject": "Large message (10 MB)", "subject_raw": "Large message (10 MB)",
                        "attachments": [att]}


def scenario_imap_large(args):
    truth = Truth(["erin"])
    user, pw = "erin", PASSWORDS["erin"]
    log = Log("imap")
    sess = new_session(py_client("imaplib"), "imap", 143)
    n = len(CONNECTIONS)
    conn = imap_class(imaplib.IMAP4, log)(SERVER4, 143, timeout=TIMEOUT)
    sess["greeting"] = conn.welcome.decode()
    conn.login(user, pw)
    sess["credentials"].append({"mechanism": "LOGIN", "username": user, "password": pw, "success": True})
    typ, data = conn.select("INBOX")
    amsg, ameta = msg_large()
    idate = imaplib.Time2Internaldate(datetime.datetime(2026, 3, 5, 10, 37, 0,
                                                        tzinfo=datetime.timezone(datetime.timedelta(hours=3))))
    typ, data = conn.append("INBOX", None, idate, amsg)
    reply = data[-1].decode() if data else ""
    m = re.search(r"APPENDUID \d+ (\d+)", reply)
    if typ != "OK" or not m:
        raise RuntimeError("APPEND of the large message failed: %s %r" % (typ, data))
    uid = int(m.group(1))
    appended = {"id": "imap-large-1", "mailbox": "INBOX", "flags": None, "internaldate": idate,
                **digest(amsg), **ameta, "server_reply": reply}
    conn.noop()
    cmd = "UID FETCH %d (BODY[])" % uid
    typ, data = conn.uid("FETCH", str(uid), "(BODY[])")
    lit = literal_of(data)[0]
    fetched = [truth.describe(cmd, lit)]
    conn.logout()
    truth.refresh()
    appended["stored"] = next(({k: v for k, v in i.items() if not k.startswith("_")}
                               for i in truth.index.values() if i["mailbox"] == "INBOX" and i["_wire"] == amsg), None)
    sess["messages_fetched"] = fetched
    sess["messages_appended"] = [appended]
    finish(sess, log, n)


# -- TLS mixed
def scenario_tls_mixed(args):
    keylog = args.keylog
    truth = Truth(["dave", "erin"])
    # 1) SMTPS 465, TLS 1.3, AUTH PLAIN
    log = Log("smtp")
    sess = new_session(py_client("smtplib"), "smtp", 465)
    n = len(CONNECTIONS)
    conn = LSMTP_SSL(local_hostname=EHLO_NAME, timeout=TIMEOUT, context=client_ctx(keylog))
    conn._mlog = log
    conn.connect(SERVER4, 465)
    sess["tls"] = tls_info(conn.sock, "implicit", keylog)
    conn.ehlo()
    conn.login("carol", PASSWORDS["carol"])
    sess["credentials"].append({"mechanism": "PLAIN", "username": "carol", "password": PASSWORDS["carol"],
                                "success": True})
    msg, meta = msg_simple("tls-1", "Carol <carol@example.test>", "alice@example.test", "Über SMTPS",
                           "Sent over implicit TLS on port 465.\n.\n", 41,
                           subject_raw=enc_word("Über SMTPS", "UTF-8", "Q"))
    smtp_session_smtplib(sess, conn, "tls-1", msg, meta, "carol@example.test", ["alice@example.test"])
    conn.quit()
    finish(sess, log, n)

    # 2) IMAPS 993, TLS 1.3
    log = Log("imap")
    sess = new_session(py_client("imaplib"), "imap", 993)
    n = len(CONNECTIONS)
    conn = imap_class(imaplib.IMAP4_SSL, log)(SERVER4, 993, ssl_context=client_ctx(keylog), timeout=TIMEOUT)
    sess["tls"] = tls_info(conn.sock, "implicit", keylog)
    conn.login("erin", PASSWORDS["erin"])
    sess["credentials"].append({"mechanism": "LOGIN", "username": "erin", "password": PASSWORDS["erin"],
                                "success": True})
    conn.select("INBOX")
    typ, data = conn.uid("FETCH", "1", "(BODY.PEEK[])")
    sess["messages_fetched"] = [truth.describe("UID FETCH 1 (BODY.PEEK[])", literal_of(data)[0])]
    conn.logout()
    finish(sess, log, n)

    # 3) POP3S 995, forced TLS 1.2
    log = Log("pop3")
    sess = new_session(py_client("poplib"), "pop3", 995)
    n = len(CONNECTIONS)
    conn = pop3_class(poplib.POP3_SSL, log)(SERVER4, 995, context=client_ctx(keylog, ssl.TLSVersion.TLSv1_2),
                                            timeout=TIMEOUT)
    sess["tls"] = tls_info(conn.sock, "implicit", keylog)
    conn.user("dave")
    conn.pass_(PASSWORDS["dave"])
    sess["credentials"].append({"mechanism": "USER/PASS", "username": "dave", "password": PASSWORDS["dave"],
                                "success": True})
    sess["stat"] = list(conn.stat())
    _, lines, _ = conn.retr(1)
    sess["messages_fetched"] = [truth.describe("RETR 1", pop_lines(lines))]
    conn.quit()
    finish(sess, log, n)

    # 4) IMAP 143 STARTTLS
    log = Log("imap")
    sess = new_session(py_client("imaplib"), "imap", 143)
    n = len(CONNECTIONS)
    conn = imap_class(imaplib.IMAP4, log)(SERVER4, 143, timeout=TIMEOUT)
    conn.starttls(ssl_context=client_ctx(keylog))
    sess["tls"] = tls_info(conn.sock, "starttls", keylog)
    conn.login("erin", PASSWORDS["erin"])
    sess["credentials"].append({"mechanism": "LOGIN", "username": "erin", "password": PASSWORDS["erin"],
                                "success": True})
    conn.list()
    conn.status("INBOX", "(MESSAGES UIDNEXT UNSEEN)")
    conn.logout()
    finish(sess, log, n)

    # 5) POP3 110 STLS
    log = Log("pop3")
    sess = new_session(py_client("poplib"), "pop3", 110)
    n = len(CONNECTIONS)
    conn = pop3_class(poplib.POP3, log)(SERVER4, 110, timeout=TIMEOUT)
    conn.capa()
    conn.stls(context=client_ctx(keylog))
    sess["tls"] = tls_info(conn.sock, "starttls", keylog)
    conn.user("dave")
    conn.pass_(PASSWORDS["dave"])
    sess["credentials"].append({"mechanism": "USER/PASS", "username": "dave", "password": PASSWORDS["dave"],
                                "success": True})
    conn.uidl()
    _, lines, _ = conn.top(1, 0)
    sess["messages_fetched"] = [truth.describe("TOP 1 0", pop_lines(lines), kind="top")]
    conn.quit()
    finish(sess, log, n)

    # 6) curl imaps:// with SSLKEYLOGFILE
    sess = new_session(CURL, "imap", 993)
    out = os.path.join(args.state, "curl-imaps-fetch")
    run_curl(sess, ["-u", "erin:" + PASSWORDS["erin"], "--login-options", "AUTH=PLAIN",
                    "imaps://127.0.0.1:993/INBOX;UID=1", "-o", out], keylog=keylog)
    if sess["tls"]:
        sess["tls"]["mode"] = "implicit"
    sess["credentials"].append({"mechanism": "AUTHENTICATE PLAIN (SASL-IR)", "username": "erin",
                                "password": PASSWORDS["erin"], "success": True})
    with open(out, "rb") as f:
        sess["messages_fetched"] = [truth.describe("UID FETCH 1 BODY[]", f.read())]


TLS_MIXED_DAVE = [lambda: msg_simple("tls-dave-1", "Alice <alice@example.test>", "dave@example.test",
                                     "Secret for Dave", "Read me over TLS 1.2.\n", 42)]
TLS_MIXED_ERIN = [lambda: msg_simple("tls-erin-1", "Alice <alice@example.test>", "erin@example.test",
                                     "Secret for Erin", "Read me over IMAPS.\n", 43)]


# -- TLS cipher coverage (tls-ciphers.pcap)
# TLS 1.2 sessions: Python ssl with maximum_version TLSv1_2 and set_ciphers(); TLS 1.3 suites cannot be
# chosen from Python, so those sessions are `openssl s_client -tls1_3 -ciphersuites ...` driven through
# its stdin/stdout.  Every session records the exact application data the client wrote to and read from
# the TLS layer (sessions[].plaintext); the manifest step checks it against tshark's decryption.
SSL_OP_NO_ENCRYPT_THEN_MAC = 0x80000  # OpenSSL 3 ssl.h: SSL_OP_BIT(19); Python's ssl does not name it
OPENSSL = "OpenSSL %s s_client" % (tool_version(["openssl", "version"]).split()[1]
                                   if shutil.which("openssl") else "?")
TLS_CIPHERS_PORTS = (25, 465, 993, 995)


class RecordingSSLSocket(ssl.SSLSocket):
    """SSLSocket that keeps every application-data byte written to (send) and read from (read) TLS.
    smtplib/imaplib/poplib write with sendall() -> send() and read through makefile() -> recv_into()
    -> read(), so this sees exactly what the client library exchanged over TLS."""

    def app_data(self):
        d = self.__dict__  # SSLSocket objects are made by _create(), not __init__
        if "_app_out" not in d:
            d["_app_out"], d["_app_in"] = bytearray(), bytearray()
        return d["_app_out"], d["_app_in"]

    def send(self, data, flags=0):
        tls = self._sslobj is not None
        n = super().send(data, flags)
        if tls:
            self.app_data()[0].extend(bytes(data[:n]))
        return n

    def read(self, len=1024, buffer=None):
        r = super().read(len, buffer)
        if buffer is not None:
            self.app_data()[1].extend(bytes(memoryview(buffer)[:r]))
        else:
            self.app_data()[1].extend(r)
        return r


def tls_version_name(v):
    """Python ssl / OpenSSL call TLS 1.0 "TLSv1"; the manifest writes "TLSv1.0" (the tests map "TLSv1.x"
    to "TLS1.x"); "TLSv1.1".."TLSv1.3" are kept"""
    return "TLSv1.0" if v == "TLSv1" else v


def plaintext_record(client_bytes, server_bytes, how):
    return {"client_sha256": sha256(client_bytes), "client_size": len(client_bytes),
            "server_sha256": sha256(server_bytes), "server_size": len(server_bytes), "recorded_by": how}


def py_tls_ctx(keylog, ciphers=None, no_etm=False, max_version=ssl.TLSVersion.TLSv1_2, no_ticket=False):
    ctx = client_ctx(keylog, max_version)
    config = {"library": "Python %s ssl (%s)" % (sys.version.split()[0], ssl.OPENSSL_VERSION),
              "maximum_version": max_version.name if max_version else None, "set_ciphers": ciphers,
              "keylog_filename": bool(keylog)}
    if ciphers:
        ctx.set_ciphers(ciphers)
    if no_etm:
        ctx.options |= SSL_OP_NO_ENCRYPT_THEN_MAC
        config["options_added"] = "0x80000 SSL_OP_NO_ENCRYPT_THEN_MAC"
    if no_ticket:  # no session_ticket extension: a later connection can only resume by session ID
        ctx.options |= ssl.OP_NO_TICKET
        config["options_added"] = "0x%x ssl.OP_NO_TICKET" % ssl.OP_NO_TICKET
    ctx.sslsocket_class = RecordingSSLSocket
    return ctx, config


def py_tls_info(sock, ctx, keylog, config):
    info = tls_info(sock, "implicit", keylog)
    aead = next((c["aead"] for c in ctx.get_ciphers() if c["name"] == info["cipher"]), None)
    # expectation, checked against the ServerHello's extensions by the manifest step:
    # OpenSSL offers and accepts encrypt_then_mac (RFC 7366) for CBC suites unless told not to
    etm = (None if info["version"] != "TLSv1.2" or aead
           else "NO_ENCRYPT_THEN_MAC" not in (config.get("options_added") or ""))
    info.update({"encrypt_then_mac": etm, "resumed": bool(sock.session_reused), "keylogged": bool(keylog),
                 "client_config": config})
    return info


def py_tls_finish(sess, log, n, sock):
    finish(sess, log, n)
    out, inp = sock.app_data()
    sess["plaintext"] = plaintext_record(bytes(out), bytes(inp),
                                         "Python: ssl.SSLSocket subclass recording send() and read()")


def tls_imaps_py(truth, keylog, ciphers=None, no_etm=False, max_version=ssl.TLSVersion.TLSv1_2):
    ctx, config = py_tls_ctx(keylog, ciphers, no_etm, max_version)
    log = Log("imap")
    sess = new_session(py_client("imaplib"), "imap", 993)
    n = len(CONNECTIONS)
    conn = imap_class(imaplib.IMAP4_SSL, log)(SERVER4, 993, ssl_context=ctx, timeout=TIMEOUT)
    sock = conn.sock
    sess["tls"] = py_tls_info(sock, ctx, keylog, config)
    sess["greeting"] = conn.welcome.decode()
    conn.login("erin", PASSWORDS["erin"])
    sess["credentials"].append({"mechanism": "LOGIN", "username": "erin", "password": PASSWORDS["erin"],
                                "success": True})
    conn.select("INBOX")
    typ, data = conn.uid("FETCH", "1", "(BODY.PEEK[])")
    sess["messages_fetched"] = [truth.describe("UID FETCH 1 (BODY.PEEK[])", literal_of(data)[0])]
    conn.logout()
    py_tls_finish(sess, log, n, sock)
    return sess


def tls_pop3s_py(truth, keylog, ciphers, no_etm=False):
    ctx, config = py_tls_ctx(keylog, ciphers, no_etm)
    log = Log("pop3")
    sess = new_session(py_client("poplib"), "pop3", 995)
    n = len(CONNECTIONS)
    conn = pop3_class(poplib.POP3_SSL, log)(SERVER4, 995, context=ctx, timeout=TIMEOUT)
    sock = conn.sock
    sess["tls"] = py_tls_info(sock, ctx, keylog, config)
    sess["greeting"] = conn.getwelcome().decode()
    conn.user("dave")
    conn.pass_(PASSWORDS["dave"])
    sess["credentials"].append({"mechanism": "USER/PASS", "username": "dave", "password": PASSWORDS["dave"],
                                "success": True})
    sess["stat"] = list(conn.stat())
    _, lines, _ = conn.retr(1)
    sess["messages_fetched"] = [truth.describe("RETR 1", pop_lines(lines))]
    conn.quit()
    py_tls_finish(sess, log, n, sock)
    return sess


class LSMTP_SSL_Session(LSMTP_SSL):
    """SMTP_SSL that offers a saved TLS session (ticket / session id) for resumption."""
    tls_session = None

    def _get_socket(self, host, port, timeout):
        raw = smtplib.SMTP._get_socket(self, host, port, timeout)
        return self.context.wrap_socket(raw, server_hostname=self._host, session=self.tls_session)


def tls_smtps_py(keylog, ciphers, mail=None, resume=None, no_ticket=False):
    """SMTPS 465: EHLO, with mail=(mid, minute) AUTH PLAIN + one mail, else NOOP; QUIT.
    resume=(session index, ssl.SSLSession, SSLContext, config) offers that session with the context
    that made it; no_ticket: the context sets OP_NO_TICKET (resumption by session ID only).
    Returns (sess, SSLSession, SSLContext, config)."""
    # resumption needs the same SSLContext
    ctx, config = resume[2:] if resume else py_tls_ctx(keylog, ciphers, no_ticket=no_ticket)
    log = Log("smtp")
    sess = new_session(py_client("smtplib"), "smtp", 465)
    n = len(CONNECTIONS)
    conn = LSMTP_SSL_Session(local_hostname=EHLO_NAME, timeout=TIMEOUT, context=ctx)
    conn._mlog = log
    if resume:
        conn.tls_session = resume[1]
    conn.connect(SERVER4, 465)
    sock = conn.sock
    sess["tls"] = py_tls_info(sock, ctx, keylog, config)
    if resume:
        sess["tls"]["resumes_session"] = resume[0]
        sess["tls"]["offered_session_has_ticket"] = resume[1].has_ticket
        if not resume[1].has_ticket:
            sess["tls"]["offered_session_id"] = resume[1].id.hex()
    saved = sock.session
    conn.ehlo()
    if mail:
        mid, minute = mail
        conn.login("carol", PASSWORDS["carol"])
        sess["credentials"].append({"mechanism": "PLAIN", "username": "carol", "password": PASSWORDS["carol"],
                                    "success": True})
        msg, meta = msg_simple(mid, "Carol <carol@example.test>", "alice@example.test",
                               "Cipher check %s" % config["set_ciphers"],
                               "Sent over SMTPS with %s.\n.\n" % sess["tls"]["cipher"], minute)
        smtp_session_smtplib(sess, conn, mid, msg, meta, "carol@example.test", ["alice@example.test"])
    else:
        conn.noop()
    conn.quit()
    py_tls_finish(sess, log, n, sock)
    return sess, saved, ctx, config


class SClient:
    """`openssl s_client -quiet` as a scripted client: we write its stdin (the application data it
    sends) and read its stdout (with -quiet exactly the application data it received)."""

    def __init__(self, port, args, keylog, server=SERVER4):
        # the certificate names 127.0.0.1 (checked with -verify_ip) and mail.example.test (checked, and sent
        # as SNI, for tls-legacy's openssl s_server on another loopback address)
        verify = (["-verify_ip", SERVER4] if server == SERVER4 else
                  ["-servername", SERVER_NAME, "-verify_hostname", SERVER_NAME])
        argv = ["openssl", "s_client", "-connect", "%s:%d" % (server, port), "-bind", "%s:0" % CLIENT_IP,
                "-CAfile", CA_FILE, "-verify_return_error"] + verify + [
                "-quiet", "-brief", "-nocommands"] + list(args)
        self.args = list(args)
        if keylog:
            argv += ["-keylogfile", keylog]
        self._start(argv)

    def _start(self, argv):
        self.argv = argv
        self.sent = bytearray()
        self.buf = bytearray()
        self.err = bytearray()
        self.pos = 0
        self.commands, self.replies = [], []
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        import threading
        self.threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.buf), daemon=True),
                        threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _pump(f, into):
        for _ in range(1000000):  # bounded; ends at EOF
            b = os.read(f.fileno(), 65536)
            if not b:
                break
            into.extend(b)

    def expect(self, pattern, timeout=20):
        """wait until the received bytes after the last match match pattern (bytes regex)"""
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            m = rx.search(bytes(self.buf), self.pos)
            if m:
                self.pos = m.end()
                return m
            if self.p.poll() is not None and not any(t.is_alive() for t in self.threads[:1]):
                m = rx.search(bytes(self.buf), self.pos)
                if m:
                    self.pos = m.end()
                    return m
                break
            time.sleep(0.02)
        raise RuntimeError("%s: no %r within %ds; got %r; stderr %r" % (
            self.argv[1], pattern, timeout, bytes(self.buf[self.pos:])[-300:], bytes(self.err)[-500:]))

    def write(self, line):
        b = line.encode("utf-8") + CRLF
        self.commands.append(line)
        self.sent += b
        self.p.stdin.write(b)
        self.p.stdin.flush()

    def established(self, timeout=20):
        """wait for -brief's "CONNECTION ESTABLISHED" on stderr (the handshake is over)"""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if b"CONNECTION ESTABLISHED" in self.err:
                return
            if self.p.poll() is not None and not self.threads[1].is_alive():
                break
            time.sleep(0.02)
        raise RuntimeError("s_client: no handshake within %ds: %r" % (timeout, bytes(self.err)[-500:]))

    def close(self, timeout=20):
        """close stdin; the server closes the connection after LOGOUT/QUIT and s_client exits"""
        self.p.stdin.close()
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()  # our own child, by its Popen handle
            self.p.wait(timeout=10)
            raise RuntimeError("s_client did not exit: %r" % bytes(self.err)[-500:])
        for t in self.threads:
            t.join(timeout=10)
        err = self.err.decode("utf-8", "replace")
        m1 = re.search(r"Protocol version: (\S+)", err)
        m2 = re.search(r"Ciphersuite: (\S+)", err)
        if not (m1 and m2) or "verify error" in err.lower():
            raise RuntimeError("s_client: no handshake summary / verify error: %s" % err[-1000:])
        return m1.group(1), m2.group(1), self.p.returncode

    def fill(self, sess, mode, keylog, encrypt_then_mac=None):
        """encrypt_then_mac: the expectation for a TLS 1.0-1.2 CBC suite (null: TLS 1.3 / AEAD)"""
        version, cipher, rc = self.close()
        sess["argv"] = [a.replace(ROOT + "/", "") for a in self.argv]  # cmd_run writes $STATE for the state dir
        sess["exit_code"] = rc
        sess["tls"] = {"mode": mode, "version": tls_version_name(version), "cipher": cipher,
                       "keylog": os.path.basename(keylog) if keylog else None,
                       "encrypt_then_mac": encrypt_then_mac, "resumed": False, "keylogged": bool(keylog),
                       "client_config": {"library": OPENSSL, "tls_args": self.args}}
        sess["commands"] = self.commands
        sess["commands_note"] = "lines written to s_client's stdin (each + CRLF), all sent inside TLS"
        sess["replies"] = self.replies
        sess["plaintext"] = plaintext_record(bytes(self.sent), bytes(self.buf),
                                             "openssl s_client -quiet: bytes fed to its stdin / read from its stdout")


def tls_imaps_sclient(truth, keylog, suite):
    sess = new_session(OPENSSL, "imap", 993)
    c = SClient(993, ["-tls1_3", "-ciphersuites", suite], keylog)
    sess["greeting"] = c.expect(rb"\* OK [^\r\n]*\r\n").group(0).decode().rstrip()
    for tag, cmd in (("a1", 'LOGIN erin "%s"' % PASSWORDS["erin"]), ("a2", "SELECT INBOX"),
                     ("a3", "UID FETCH 1 (BODY.PEEK[])"), ("a4", "LOGOUT")):
        start = c.pos
        c.write("%s %s" % (tag, cmd))
        m = c.expect(rb"(?m)^" + tag.encode() + rb" (OK|NO|BAD)[^\r\n]*\r\n")
        c.replies.append(m.group(0).decode().rstrip())
        if m.group(1) != b"OK":
            raise RuntimeError("s_client IMAP %s failed: %r" % (cmd, m.group(0)))
        if tag == "a3":
            resp = bytes(c.buf[start:m.start()])
            lm = re.search(rb"\{(\d+)\}\r\n", resp)
            lit = resp[lm.end():lm.end() + int(lm.group(1))]
            sess["messages_fetched"] = [truth.describe("UID FETCH 1 (BODY.PEEK[])", lit)]
    sess["credentials"].append({"mechanism": "LOGIN", "username": "erin", "password": PASSWORDS["erin"],
                                "success": True})
    c.fill(sess, "implicit", keylog)
    return sess


def tls_pop3s_sclient(truth, keylog, suite):
    sess = new_session(OPENSSL, "pop3", 995)
    c = SClient(995, ["-tls1_3", "-ciphersuites", suite], keylog)
    sess["greeting"] = c.expect(rb"\+OK [^\r\n]*\r\n").group(0).decode().rstrip()
    for cmd in ("USER dave", "PASS " + PASSWORDS["dave"], "STAT", "RETR 1", "QUIT"):
        c.write(cmd)
        m = c.expect(rb"(?m)^(\+OK|-ERR)[^\r\n]*\r\n")
        c.replies.append(m.group(0).decode().rstrip())
        if m.group(1) != b"+OK":
            raise RuntimeError("s_client POP3 %s failed: %r" % (cmd, m.group(0)))
        if cmd == "STAT":
            sess["stat"] = [int(x) for x in m.group(0).split()[1:3]]
        if cmd == "RETR 1":
            body = c.expect(rb"\r\n\.\r\n")
            raw = bytes(c.buf[m.end():body.start() + 2])
            sess["messages_fetched"] = [truth.describe("RETR 1", re.sub(rb"(?m)^\.\.", b".", raw))]
    sess["credentials"].append({"mechanism": "USER/PASS", "username": "dave", "password": PASSWORDS["dave"],
                                "success": True})
    c.fill(sess, "implicit", keylog)
    return sess


def tls_smtp_starttls_sclient(keylog):
    sess = new_session(OPENSSL, "smtp", 25)
    c = SClient(25, ["-starttls", "smtp", "-name", EHLO_NAME, "-tls1_3"], keylog)
    for cmd in ("EHLO " + EHLO_NAME, "QUIT"):
        c.write(cmd)
        m = c.expect(rb"(?m)^(\d{3}) [^\r\n]*\r\n")
        c.replies.append(m.group(0).decode().rstrip())
    c.fill(sess, "starttls", keylog)
    sess["replies"] = group_smtp_replies(bytes(c.buf).decode("utf-8", "replace").split("\r\n"))
    sess["cleartext_note"] = ("before the handshake s_client itself reads the 220 greeting and sends "
                              "'EHLO %s' and 'STARTTLS' in cleartext (not in commands/plaintext)" % EHLO_NAME)
    return sess


def scenario_tls_ciphers(args):
    keylog = args.keylog
    os.environ.pop("SSLKEYLOGFILE", None)  # create_default_context() would log every context to it
    truth = Truth(["dave", "erin"])
    # TLS 1.2, Python ssl, one suite each
    tls_imaps_py(truth, keylog, "ECDHE-RSA-AES128-GCM-SHA256")
    tls_pop3s_py(truth, keylog, "ECDHE-RSA-CHACHA20-POLY1305")
    tls_smtps_py(keylog, "ECDHE-RSA-AES128-SHA256", mail=("ciphers-1", 44))        # CBC, encrypt_then_mac
    tls_imaps_py(truth, keylog, "ECDHE-RSA-AES256-SHA", no_etm=True)               # CBC HMAC-SHA1, MAC-then-encrypt
    tls_pop3s_py(truth, keylog, "ECDHE-RSA-AES256-SHA384")                         # CBC HMAC-SHA384, SHA384 PRF
    tls_imaps_py(truth, keylog, "AES128-CCM")                                      # RSA key exchange, CCM
    tls_pop3s_py(truth, keylog, "AES128-CCM8")                                     # RSA key exchange, CCM 8-byte tag
    # TLS 1.2 resumption: a full handshake, then a second connection offering its ticket
    first, saved, ctx, config = tls_smtps_py(keylog, "ECDHE-RSA-AES256-GCM-SHA384")
    second = tls_smtps_py(keylog, None, resume=(len(SESSIONS) - 1, saved, ctx, config))[0]
    if not second["tls"]["resumed"] or first["tls"]["resumed"]:
        raise RuntimeError("TLS 1.2 resumption on 465 did not happen: %r" % second["tls"])
    # TLS 1.3 suites, openssl s_client
    tls_imaps_sclient(truth, keylog, "TLS_AES_128_GCM_SHA256")
    tls_pop3s_sclient(truth, keylog, "TLS_CHACHA20_POLY1305_SHA256")
    tls_imaps_sclient(truth, keylog, "TLS_AES_128_CCM_SHA256")
    tls_smtp_starttls_sclient(keylog)
    # TLS 1.3 without key log: no secrets for this client random
    tls_imaps_py(truth, None, None, max_version=None)
    for s in SESSIONS:  # each client offered one suite (or the defaults): it must be the negotiated one
        cc = s["tls"]["client_config"]
        args = cc.get("tls_args", [])
        asked = cc.get("set_ciphers") or (args[args.index("-ciphersuites") + 1] if "-ciphersuites" in args else None)
        if asked and asked != s["tls"]["cipher"]:
            raise RuntimeError("asked for %s, negotiated %s" % (asked, s["tls"]["cipher"]))


# -- TLS 1.0 / 1.1 and TLS 1.2 resumption by session ID (tls-legacy.pcap)
# The lab's Dovecot and Postfix accept TLS 1.2+ only (and OpenSSL 3 allows TLS 1.0/1.1 only at security
# level 0), so the TLS 1.0 / 1.1 sessions run against `openssl s_server` with the lab certificate on
# another loopback address (127.0.0.2, ports 993/995, which mailscope and tshark read as IMAPS/POP3S),
# both ends scripted through stdin/stdout.  The TLS 1.2 pair resumes by session ID against the real
# Postfix on 465: make-samples turns on Postfix's TLS session cache (smtpd_tls_session_cache_database)
# for this capture only; without it Postfix resumes by ticket only.
LEGACY_SERVER = "127.0.0.2"
OPENSSL_SERVER = OPENSSL.replace("s_client", "s_server")


class SServer(SClient):
    """`openssl s_server -quiet -no_ign_eof -naccept 1` as a scripted server: we write its stdin (the
    application data it sends, one SSL_write per read of its stdin) and read its stdout (with -quiet
    exactly the application data it received).  Closing its stdin makes it send close_notify, close
    the connection and exit."""

    def __init__(self, port, args):
        key = os.path.join(LAB, "config", "tls", "server.key")
        self.args = list(args)
        self.addr = (LEGACY_SERVER, port)
        if self._listening():
            raise RuntimeError("%s:%d is already in use" % self.addr)
        self._start(["openssl", "s_server", "-accept", "%s:%d" % self.addr, "-naccept", "1",
                     "-cert", CA_FILE, "-key", key, "-quiet", "-no_ign_eof"] + self.args)
        deadline = time.time() + 10
        while not self._listening():
            if self.p.poll() is not None or time.time() > deadline:
                self.close_failed()
                raise RuntimeError("s_server did not listen on %s:%d: %r" % (self.addr + (bytes(self.err)[-500:],)))
            time.sleep(0.05)

    def _listening(self):
        out = subprocess.run(["ss", "-Hltn", "src", "%s:%d" % self.addr], capture_output=True, text=True,
                             timeout=10).stdout
        return bool(out.strip())

    def close_failed(self):
        if self.p.poll() is None:
            self.p.kill()  # our own child, by its Popen handle
            self.p.wait(timeout=10)

    def close(self, timeout=20):
        """close stdin: s_server sends close_notify, closes the connection and exits (-naccept 1)"""
        self.p.stdin.close()
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close_failed()
            raise RuntimeError("s_server did not exit: %r" % bytes(self.err)[-500:])
        for t in self.threads:
            t.join(timeout=10)
        if self.p.returncode != 0:
            raise RuntimeError("s_server exit code %d: %r" % (self.p.returncode, bytes(self.err)[-500:]))
        return self.p.returncode


def tls_legacy_sclient(protocol, port, version_arg, cipher, keylog, server_no_etm, user, password):
    """TLS 1.0/1.1: openssl s_client against openssl s_server on LEGACY_SERVER:port, both scripted; a
    small IMAP (993) or POP3 (995) dialogue.  With server_no_etm the server declines encrypt_then_mac
    (MAC-then-encrypt, the classic CBC record); else OpenSSL negotiates it (RFC 7366)."""
    tls_args = [version_arg, "-cipher", cipher + ":@SECLEVEL=0"]
    srv_args = tls_args + (["-no_etm"] if server_no_etm else [])
    if protocol == "imap":
        dialogue = [("S", "* OK legacy server ready"), ("C", 'a1 LOGIN %s "%s"' % (user, password)),
                    ("S", "a1 OK LOGIN completed"), ("C", "a2 LOGOUT"), ("S", "* BYE logging out"),
                    ("S", "a2 OK LOGOUT completed")]
        cred = "LOGIN"
    else:
        dialogue = [("S", "+OK legacy POP3 server ready"), ("C", "USER " + user), ("S", "+OK"),
                    ("C", "PASS " + password), ("S", "+OK logged in"), ("C", "STAT"), ("S", "+OK 0 0"),
                    ("C", "QUIT"), ("S", "+OK bye")]
        cred = "USER/PASS"
    srv = SServer(port, srv_args)
    try:
        sess = new_session(OPENSSL, protocol, port, server=LEGACY_SERVER, client_ip=CLIENT_IP)
        c = SClient(port, tls_args, keylog, server=LEGACY_SERVER)
        c.established()
        for who, line in dialogue:
            wire = re.escape(line.encode("utf-8") + CRLF)
            if who == "S":
                srv.write(line)
                c.expect(wire)
                if "greeting" in sess:
                    c.replies.append(line)
                else:
                    sess["greeting"] = line
            else:
                c.write(line)
                srv.expect(wire)
        srv.close()
    except BaseException:
        srv.close_failed()
        raise
    sess["credentials"].append({"mechanism": cred, "username": user, "password": password, "success": True,
                                "note": "the scripted server accepts any password"})
    c.fill(sess, "implicit", keylog, encrypt_then_mac=not server_no_etm)
    # the server's own record of the application data must be the client's, crossed over
    if (bytes(srv.buf), bytes(srv.sent)) != (bytes(c.sent), bytes(c.buf)):
        raise RuntimeError("s_server received %r / sent %r, s_client sent %r / received %r" % (
            bytes(srv.buf), bytes(srv.sent), bytes(c.sent), bytes(c.buf)))
    sess["plaintext"]["server_side"] = ("equal to the bytes fed to openssl s_server's stdin (server_*) and read "
                                        "from its stdout (client_*)")
    sess["server"] = {"software": OPENSSL_SERVER, "scripted": True,
                      "argv": [a.replace(ROOT + "/", "") for a in srv.argv], "exit_code": srv.p.returncode}
    sess["tls"]["server_config"] = {"library": OPENSSL_SERVER, "tls_args": srv_args}
    return sess


def scenario_tls_legacy(args):
    keylog = args.keylog
    os.environ.pop("SSLKEYLOGFILE", None)  # create_default_context() would log every context to it
    # 1) TLS 1.0, CBC IV chained from record to record; the server declines encrypt_then_mac
    tls_legacy_sclient("imap", 993, "-tls1", "ECDHE-RSA-AES128-SHA", keylog, True, "erin", "legacy-pass")
    # 2) TLS 1.1, explicit per-record IV, RSA key exchange; encrypt_then_mac negotiated
    tls_legacy_sclient("pop3", 995, "-tls1_1", "AES256-SHA", keylog, False, "dave", "legacy-pass")
    # 3) TLS 1.2 on Postfix 465 without session tickets: a full handshake, then a second connection
    #    offering its session ID, resumed (abbreviated handshake, no Certificate)
    first, saved, ctx, config = tls_smtps_py(keylog, "ECDHE-RSA-AES128-GCM-SHA256", no_ticket=True)
    if saved.has_ticket or not saved.id:
        raise RuntimeError("first TLS 1.2 session: ticket %r, session id %r" % (saved.has_ticket, saved.id.hex()))
    second, again = tls_smtps_py(keylog, None, mail=("legacy-1", 47), resume=(len(SESSIONS) - 1, saved, ctx, config))[:2]
    if first["tls"]["resumed"] or not second["tls"]["resumed"] or again.id != saved.id:
        raise RuntimeError("TLS 1.2 resumption by session ID on 465 did not happen (is Postfix's "
                           "smtpd_tls_session_cache_database set?): %r" % second["tls"])
    for s in SESSIONS:  # each client asked for one suite: it must be the negotiated one
        cc = s["tls"]["client_config"]
        args_ = cc.get("tls_args", [])
        asked = cc.get("set_ciphers") or (args_[args_.index("-cipher") + 1].split(":")[0]
                                          if "-cipher" in args_ else None)
        if asked and asked != s["tls"]["cipher"]:
            raise RuntimeError("asked for %s, negotiated %s" % (asked, s["tls"]["cipher"]))
    want = ["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.2"]
    if [s["tls"]["version"] for s in SESSIONS] != want:
        raise RuntimeError("versions %r, wanted %r" % ([s["tls"]["version"] for s in SESSIONS], want))


TLS_CIPHERS_DAVE = [lambda: msg_simple("ciphers-dave-1", "Alice <alice@example.test>", "dave@example.test",
                                       "Cipher suites for Dave", "Read me over many TLS cipher suites.\n.\n", 45)]
TLS_CIPHERS_ERIN = [lambda: msg_simple("ciphers-erin-1", "Alice <alice@example.test>", "erin@example.test",
                                       "Cipher suites for Erin", "Read me over IMAPS, TLS 1.2 and 1.3.\n", 46)]


# -- variants: one small SMTP session
def scenario_small(args):
    server = SERVER6 if args.ipv6 else SERVER4
    sess, log, conn, n = open_smtplib(25, server=server)
    mid = "small-ipv6" if args.ipv6 else "small-1"
    msg, meta = msg_simple(mid, "Small <small@client.example.test>", "alice@example.test",
                           "Small capture" + (" over IPv6" if args.ipv6 else ""),
                           "A small SMTP session for the format variants.\n.\nend\n", 51)
    smtp_session_smtplib(sess, conn, mid, msg, meta, "small@client.example.test", ["alice@example.test"])
    conn.quit()
    finish(sess, log, n)


# -- hostile-escapes: terminal escape sequences in the SMTP dialogue and the message, fetched again over IMAP
ESC_CLEAR = "\x1b[2J"                      # CSI 2 J: erase the whole screen
ESC_HOME = "\x1b[H"                        # CSI H: cursor to row 1, column 1
OSC_TITLE = "\x1b]0;pwned\x07"             # OSC 0: set the window/icon title, ended by BEL
OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"   # OSC 52: write base64("echo pwned") to the clipboard
RLO = "\u202e"                             # RIGHT-TO-LEFT OVERRIDE (UTF-8 e2 80 ae)
SGR_RED = "\x1b[31m"                       # CSI 31 m: red foreground
SGR_RESET = "\x1b[0m"                      # CSI 0 m: reset attributes
BARE_CR = "\r"                             # CR not followed by LF: the terminal returns to column 1
HOSTILE_EHLO = "evil" + ESC_CLEAR + OSC_TITLE + ".example.test"
HOSTILE_SUBJECT = "Invoice " + ESC_CLEAR + ESC_HOME + OSC_TITLE + OSC52 + "March " + RLO + "fdp.exe"
HOSTILE_FILENAME = ".." + SGR_RED + "/evil.txt"
HOSTILE_ATTACHMENT = b"The name of this attachment holds ESC [31m and a '/' after '..'.\n"
HOSTILE_FROM = "mallory@client.example.test"
HOSTILE_RCPT = "erin@example.test"

# name, the string, where the client sends it, "bytes" (count the UTF-8 bytes) or "bare-cr" (CR not before LF)
HOSTILE_ESCAPES = [
    ("clear screen (CSI 2 J)", ESC_CLEAR, ["EHLO", "Subject", "body"], "bytes"),
    ("cursor home (CSI H)", ESC_HOME, ["Subject", "body"], "bytes"),
    ("window title (OSC 0 ... BEL)", OSC_TITLE, ["EHLO", "Subject", "body"], "bytes"),
    ("clipboard write (OSC 52 ... BEL)", OSC52, ["Subject", "body"], "bytes"),
    ("right-to-left override U+202E", RLO, ["Subject", "body"], "bytes"),
    ("red foreground (CSI 31 m)", SGR_RED, ["attachment filename (Content-Type name, Content-Disposition filename)",
                                            "body"], "bytes"),
    ("reset attributes (CSI 0 m)", SGR_RESET, ["body"], "bytes"),
    ("bare CR (0d not followed by 0a)", BARE_CR, ["body"], "bare-cr"),
]


def escape_count(data, text, match):
    """occurrences of one escape in bytes: its UTF-8 bytes, or CRs not followed by LF"""
    if match == "bare-cr":
        return len(re.findall(rb"\r(?!\n)", data))
    return data.count(text.encode("utf-8"))


def msg_hostile():
    """hostile-escapes: raw (unencoded) escapes in Subject, body and attachment filename; 8bit UTF-8"""
    b = "=_mailscope_hostile"
    text = ("Hello Erin,\n"
            "\n" +
            ESC_CLEAR + ESC_HOME + "This line starts with clear screen (ESC [2J) and cursor home (ESC [H).\n" +
            OSC_TITLE + "This line starts with a window title change to 'pwned' (OSC 0, BEL).\n" +
            OSC52 + "This line starts with a clipboard write of 'echo pwned' (OSC 52, BEL).\n" +
            RLO + "This line starts with a right-to-left override (U+202E).\n" +
            "Amount due: 100 EUR" + BARE_CR + "Amount due: 999 EUR (after a bare CR)\n" +
            SGR_RED + "This text is red" + SGR_RESET + ", this is not.\n"
            "\n"
            "-- \n"
            "Mallory\n")
    body = ("From: Mallory <%s>\n"
            "To: Erin <%s>\n"
            "Subject: %s\n"
            "Date: %s\n"
            "Message-ID: <hostile-escapes-1@client.example.test>\n"
            "MIME-Version: 1.0\n"
            "Content-Type: multipart/mixed; boundary=\"%s\"\n"
            "\n"
            "--%s\n"
            "Content-Type: text/plain; charset=UTF-8\n"
            "Content-Transfer-Encoding: 8bit\n"
            "\n"
            "%s"
            "\n"
            "--%s\n"
            "Content-Type: text/plain; name=\"%s\"\n"
            "Content-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=\"%s\"\n"
            "\n"
            "%s\n"
            "--%s--\n" % (HOSTILE_FROM, HOSTILE_RCPT, HOSTILE_SUBJECT, MSG_DATE % 52, b, b, text, b,
                          HOSTILE_FILENAME, HOSTILE_FILENAME, b64_lines(HOSTILE_ATTACHMENT), b))
    msg = crlf(body)
    if msg.count(b"\r") - msg.count(b"\r\n") != 1:
        raise RuntimeError("hostile message: expected exactly one bare CR")
    att = {"filename": HOSTILE_FILENAME, "content_type": "text/plain",
           "source": "HOSTILE_ATTACHMENT in scripts/sample_clients.py", **digest(HOSTILE_ATTACHMENT)}
    return msg, {"subject": HOSTILE_SUBJECT, "subject_raw": HOSTILE_SUBJECT,
                 "subject_python": ascii(HOSTILE_SUBJECT), "subject_raw_hex": HOSTILE_SUBJECT.encode("utf-8").hex(),
                 "raw_8bit_headers": True, "attachments": [att]}


def header_lines(block):
    """b'A: x\\r\\n y\\r\\nB: z\\r\\n' -> ['A: x\\r\\n y', 'B: z'] (unfolded only by keeping continuations)"""
    out = []
    for line in block.split(CRLF):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += "\r\n" + line.decode("utf-8", "replace")
        else:
            out.append(line.decode("utf-8", "replace"))
    return out


def stored_changes(sent, stored):
    """bytes of the sent message that differ in the stored one (CRLF form), both aligned at their end; the
    servers only prepend header lines, so the stored bytes before the sent message's length are not compared"""
    if len(stored) < len(sent):
        raise RuntimeError("stored message shorter than the sent one")
    tail = stored[len(stored) - len(sent):]
    out = []
    for i, (a, b) in enumerate(zip(sent, tail)):
        if a != b:
            line = sent.count(CRLF, 0, i) + 1
            out.append({"offset_in_sent": i, "line_in_sent": line, "sent_hex": "%02x" % a, "stored_hex": "%02x" % b})
    if len(out) > 20:
        raise RuntimeError("stored message differs from the sent one in %d bytes" % len(out))
    return out


def scenario_hostile_escapes(args):
    user, pw = "erin", PASSWORDS["erin"]
    # 1) smtplib, port 25: the EHLO name carries escapes (smtplib only refuses CR and LF in commands)
    log = Log("smtp")
    sess = new_session(py_client("smtplib"), "smtp", 25)
    n = len(CONNECTIONS)
    conn = LSMTP(local_hostname=HOSTILE_EHLO, timeout=TIMEOUT)
    conn._mlog = log
    conn.connect(SERVER4, 25)
    code, text = conn.ehlo()
    ehlo = {"name": HOSTILE_EHLO, "name_python": ascii(HOSTILE_EHLO), "name_hex": HOSTILE_EHLO.encode().hex(),
            "reply": [code, text.decode("utf-8", "replace")], "accepted": code == 250}
    if code != 250:  # keep the refusal on the wire, go on with a clean name
        code, text = conn.ehlo(EHLO_NAME)
        ehlo["then"] = {"name": EHLO_NAME, "reply": [code, text.decode("utf-8", "replace")]}
        if code != 250:
            raise RuntimeError("EHLO %s refused too: %r" % (EHLO_NAME, (code, text)))
    sess["ehlo"] = ehlo
    msg, meta = msg_hostile()
    smtp_session_smtplib(sess, conn, "hostile-escapes-1", msg, meta, HOSTILE_FROM, [HOSTILE_RCPT],
                         mail_options=["BODY=8BITMIME"])
    rec = sess["messages_sent"][-1]
    conn.quit()
    finish(sess, log, n)
    if rec["accepted"] != [HOSTILE_RCPT] or not (rec["server_reply"] or "").startswith("250"):
        raise RuntimeError("hostile message not accepted: %r %r" % (rec["rejected"], rec["server_reply"]))

    # what Postfix + Dovecot LMTP stored (uncaptured: the Maildir file)
    wait_for_messages(user, 1)
    time.sleep(0.3)
    snap = [v for v in maildir_snapshot(user).values() if v["mailbox"] == "INBOX"]
    if len(snap) != 1:
        raise RuntimeError("expected exactly one message in %s's INBOX, found %d" % (user, len(snap)))
    info = snap[0]
    wire = info["_wire"]
    stored = {k: v for k, v in info.items() if not k.startswith("_")}
    stored["ends_with_sent_message"] = wire.endswith(msg)
    stored["changes"] = stored_changes(msg, wire)
    stored["prepended_headers"] = header_lines(wire[:len(wire) - len(msg)])
    pf = next((h for h in stored["prepended_headers"] if "(Postfix)" in h), "")
    m = re.match(r"Received: from (\S+) ", pf)
    stored["postfix_received_helo"] = m.group(1) if m else None  # the EHLO name as Postfix wrote it
    stored["escapes_in_stored_message"] = {name: escape_count(wire, t, m) for name, t, _, m in HOSTILE_ESCAPES}
    stored["note"] = ("the Maildir file in its CRLF form (crlf_*), aligned at its end with the sent message: "
                      "changes lists the bytes that differ, prepended_headers what Postfix and Dovecot LMTP added")
    rec["stored"] = stored

    # 2) imaplib, port 143: LOGIN, SELECT, UID FETCH (BODY[]), LOGOUT; the escapes come back as an IMAP literal
    truth = Truth([user])
    log = Log("imap")
    sess = new_session(py_client("imaplib"), "imap", 143)
    n = len(CONNECTIONS)
    conn = imap_class(imaplib.IMAP4, log)(SERVER4, 143, timeout=TIMEOUT)  # imaplib sends CAPABILITY itself
    sess["greeting"] = conn.welcome.decode()
    conn.login(user, pw)
    sess["credentials"].append({"mechanism": "LOGIN", "username": user, "password": pw, "success": True})
    typ, data = conn.select("INBOX")
    sess["select_exists"] = int(data[0])
    uidnext = conn.response("UIDNEXT")[1]
    truth.refresh()
    uid = next(v["uid"] for v in truth.index.values() if v["mailbox"] == "INBOX")
    if uidnext and uidnext[0] and int(uidnext[0]) != uid + 1:
        raise RuntimeError("UIDNEXT %r, Maildir uid %r" % (uidnext, uid))
    cmd = "UID FETCH %d (BODY[])" % uid
    typ, data = conn.uid("FETCH", str(uid), "(BODY[])")
    lit = literal_of(data)[0]
    fetched = truth.describe(cmd, lit)
    fetched["ends_with_sent_message"] = lit.endswith(msg)
    fetched["changes"] = stored_changes(msg, lit)
    fetched["escapes_in_literal"] = {name: escape_count(lit, t, m) for name, t, _, m in HOSTILE_ESCAPES}
    conn.logout()
    sess["messages_fetched"] = [fetched]
    finish(sess, log, n)


def hostile_escapes_field(sessions):
    """manifest "escapes": each sequence as a Python literal and as hex (UTF-8), where the client put it, and how
    often its bytes occur on each leg: the EHLO line and the message as sent (SMTP client bytes), the message as
    stored (Maildir file, CRLF form) and as fetched (the IMAP literal)"""
    msg = msg_hostile()[0]
    smtp = next(s for s in sessions if s["protocol"] == "smtp")
    sent = smtp["messages_sent"][0]
    if sent["sha256"] != sha256(msg):
        raise SystemExit("hostile-escapes: the message the session sent is not msg_hostile()")
    ehlo = ("EHLO %s\r\n" % HOSTILE_EHLO).encode("utf-8")
    stored = sent["stored"]["escapes_in_stored_message"]
    fetched = next(s for s in sessions if s["protocol"] == "imap")["messages_fetched"][0]["escapes_in_literal"]
    return [{"name": name, "python": ascii(text), "hex": text.encode("utf-8").hex(), "match": match,
             "sent_in": where, "in_ehlo_line": escape_count(ehlo, text, match),
             "in_sent_message": escape_count(msg, text, match), "in_stored_message": stored[name],
             "in_imap_literal": fetched[name]} for name, text, where, match in HOSTILE_ESCAPES]


def hostile_server_handling(sessions):
    """manifest "server_handling": what Postfix and Dovecot did with the escapes, written from the sessions' truth"""
    smtp = next(s for s in sessions if s["protocol"] == "smtp")
    imap = next(s for s in sessions if s["protocol"] == "imap")
    ehlo, sent = smtp["ehlo"], smtp["messages_sent"][0]
    st, fe = sent["stored"], imap["messages_fetched"][0]
    out = ["EHLO %s: %d %s%s" % (ehlo["name_python"], ehlo["reply"][0], "accepted" if ehlo["accepted"] else "refused",
                                 "" if ehlo["accepted"] else "; then EHLO %s: %d" % (ehlo["then"]["name"],
                                                                                     ehlo["then"]["reply"][0])),
           "Postfix's Received header names the client by the EHLO name as %s" % ascii(st["postfix_received_helo"]),
           "message (raw escapes in Subject, body and attachment filename): %s%s"
           % (sent["server_reply"], "; refused: %r" % sent["rejected"] if sent["rejected"] else "")]
    if st["changes"]:
        out.append("stored (Maildir, CRLF form) after %d prepended header lines, with %d changed byte(s): %s; every "
                   "other byte as sent" % (len(st["prepended_headers"]), len(st["changes"]), ", ".join(
                       "line %d offset %d %s -> %s" % (c["line_in_sent"], c["offset_in_sent"], c["sent_hex"],
                                                      c["stored_hex"]) for c in st["changes"])))
    else:
        out.append("stored (Maildir, CRLF form) byte for byte as sent after %d prepended header lines"
                   % len(st["prepended_headers"]))
    out.append("IMAP %s: literal %s the stored Maildir file (CRLF form)" % (
        fe["command"], "equal to" if fe["matches_maildir"] == "equal" else "NOT equal to"))
    return out


# -- findings: security and health findings over SMTP, POP3 and IMAP sessions (findings.pcap)
# Each session records the scenario it belongs to, client and server as "ip:port", the finding kinds it is
# built to raise (expect; [] and clean: true for the controls), and facts: what the client did and what the
# server answered, as the client read it.  expect also lists error-reply whenever the client read a 4xx/5xx,
# -ERR, NO or BAD reply (computed from the replies, not assumed) and unanswered-command where a command got
# no reply.  incidental lists kinds a broader reading would also raise although the session is not built for
# them (see CAPTURE_NOTES["findings.pcap"]).
FINDING_KINDS = (
    "cleartext-credentials", "auth-before-starttls", "starttls-not-used", "starttls-refused", "starttls-failed",
    "starttls-injection", "starttls-downgrade", "smtp-smuggling", "bare-line-end", "open-relay", "error-reply",
    "bounce", "source-route", "helo-mismatch", "sender-mismatch", "reply-to-mismatch", "received-private",
    "received-time-order", "vrfy-expn", "recipient-enumeration", "auth-brute-force", "slow-reply",
    "pipelining-without-capability", "8bit-without-8bitmime", "size-exceeded", "early-talker",
    "reset-mid-transaction", "unanswered-command",
)
BRUTE_IP = os.environ.get("SAMPLES_BRUTE_IP", "127.0.0.11")
ENUM_IP = os.environ.get("SAMPLES_ENUM_IP", "127.0.0.12")
# extra Postfix listeners (scripts/lab/config/postfix/master.cf), not mail ports to mailscope or tshark by default
PORT_AUTH_BEFORE_TLS, PORT_OPEN_RELAY, PORT_SLOW, PORT_LIMITS, PORT_SLOW_GREETING = 2526, 2527, 2528, 2529, 2530
FINDINGS_EXTRA_PORTS = (PORT_AUTH_BEFORE_TLS, PORT_OPEN_RELAY, PORT_SLOW, PORT_LIMITS, PORT_SLOW_GREETING)
FINDINGS_DATE = "Fri, 06 Mar 2026 11:%02d:00 +0300"
RAW_SMTP = "Python %s socket (scripted raw SMTP client)" % sys.version.split()[0]
PROXY_SOFTWARE = ("STARTTLS-stripping proxy in scripts/sample_clients.py (Python %s socket; listens on %s:25, "
                  "connects from %s to %s:25)" % (sys.version.split()[0], PROXY4, PROXY4, SERVER4))
INJECT_PROXY_SOFTWARE = ("STARTTLS response-injection proxy in scripts/sample_clients.py (Python %s socket; listens "
                         "on %s:25, connects from %s to %s:25)" % (sys.version.split()[0], INJECT_PROXY4,
                                                                   INJECT_PROXY4, SERVER4))
INJECTED_REPLY = b"250 injected-before-tls\r\n"   # what the injection proxy adds after the server's 220 to STARTTLS
SLOW_GREETING_MIN = 5.0       # seconds: the slow-greeting session's 220 must come at least this late
SLOW_REPLY_INCIDENTAL = 1.0   # seconds: a reply this late is listed as incidental slow-reply (see notes)
RELAY_RCPT = "someone@foreign.example"
ENUM_USERS = ["admin", "info", "sales", "support", "test", "webmaster"]   # none is a lab user or alias


def f_session(scenario, protocol, port, software, expect, server=SERVER4, clean=False):
    s = {"scenario": scenario, "client": None, "server": "%s:%d" % (server, port), "expect": list(expect),
         "clean": clean, "incidental": [], "facts": {}, "client_software": software, "protocol": protocol,
         "server_ip": server, "server_port": port, "client_ip": None, "client_port": None, "tls": None,
         "credentials": [], "commands": [], "replies": []}
    if port in FINDINGS_EXTRA_PORTS:  # not a mail port to mailscope by default (2525 is)
        s["facts"]["mailscope_args"] = ["--port", "smtp=%d" % port]
    if port in FINDINGS_EXTRA_PORTS or port == CLEARTEXT_PORT:  # tshark dissects neither as SMTP by default
        s["facts"]["tshark_decode_as"] = "tcp.port==%d,smtp" % port
    SESSIONS.append(s)
    return s


def f_bound(sess, sock):
    ip, port = sock.getsockname()[:2]
    sess["client_ip"], sess["client_port"], sess["client"] = ip, port, "%s:%d" % (ip, port)


def f_log(sess, log):
    sess["commands"], sess["replies"] = log.commands, log.replies
    sess["commands_note"] = ("exact lines the client library wrote (its send hooked), without CRLF; "
                             "DATA / literal payloads summarised")
    sess["facts"]["max_reply_delay_s"] = round(max(log.delays), 3) if log.delays else None


def f_raw(sess, c):
    sess["commands"], sess["replies"], sess["writes"] = c.commands, c.replies, c.writes
    sess["commands_note"] = ("exact lines written to the socket, without CRLF (a line ending in a bare LF keeps "
                             "its \\n); payloads summarised as wire_size/wire_sha256")
    sess["writes_note"] = "one entry per send() (TCP_NODELAY): its size and the indexes into commands it carried"
    sess["facts"]["max_reply_delay_s"] = round(max(c.delays), 3) if c.delays else None


def reply_line(rep):
    """[250, 'a\\nb'] -> '250 b' (the last line of a multi-line SMTP reply, as on the wire)"""
    return "%d %s" % (rep[0], rep[1].split("\n")[-1])


def ehlo_keywords(rep):
    return [l.split()[0].upper() for l in rep[1].split("\n")[1:] if l.strip()]


def error_replies(sess):
    """the 4xx/5xx, -ERR, NO and BAD replies the client read"""
    out = []
    for r in sess["replies"]:
        if isinstance(r, list):
            if r[0] >= 400:
                out.append(reply_line(r))
        elif isinstance(r, str) and (r.startswith("-ERR") or re.match(r"^\S+ (NO|BAD)\b", r)):
            out.append(r)
    return out


class FRawSMTP(RawSMTP):
    """RawSMTP for findings: any port and source, the greeting read or not (early talker), how long each reply
    took after the write before it, reading every reply that arrives until the server is quiet, an in-place
    TLS upgrade, and an abort with a TCP RST."""

    def __init__(self, port=25, server=SERVER4, read_greeting=True, first=None):
        """first: a command line written right after connect, before anything is read (the greeting is not)"""
        self.commands, self.replies, self.writes, self.delays = [], [], [], []
        self.buf = b""
        self.t_write = None
        self.sock = socket.create_connection((server, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if first is not None:
            self.write(first)
        self.greeting = self.reply() if read_greeting and first is None else None

    def write(self, *parts):
        """as RawSMTP.write; bytes parts are written as they are: command lines with their own line ends
        (logged without CRLF; a line ending in a bare LF keeps its \\n)"""
        data, idx = b"", []
        for p in parts:
            if isinstance(p, bytes):
                data += p
                for line in re.findall(rb"[^\n]*\n|[^\n]+$", p):
                    idx.append(len(self.commands))
                    line = line[:-2] if line.endswith(CRLF) else line
                    self.commands.append(line.decode("utf-8", "replace"))
                continue
            idx.append(len(self.commands))
            if isinstance(p, str):
                data += p.encode("utf-8") + CRLF
                self.commands.append(p)
            else:
                kind, payload = p
                data += payload
                self.commands.append({"payload": kind, "wire_size": len(payload), "wire_sha256": sha256(payload)})
        self.sock.sendall(data)
        self.t_write = time.monotonic()
        self.writes.append({"size": len(data), "commands": idx})

    def reply(self):
        rep = super().reply()
        if self.t_write is not None:
            self.delays.append(time.monotonic() - self.t_write)
            self.t_write = None
        return rep

    def drain(self, quiet=2.0, limit=20):
        """every reply that arrives until nothing came for `quiet` seconds"""
        got = []
        self.sock.settimeout(quiet)
        try:
            for _ in range(limit):
                got.append(self.reply())
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(TIMEOUT)
        return got

    def starttls(self, keylog):
        if self.buf:
            raise RuntimeError("unexpected bytes after the STARTTLS reply: %r" % self.buf[:60])
        self.sock = client_ctx(keylog).wrap_socket(self.sock, server_hostname=SERVER_NAME)
        return self.sock

    def abort(self):
        """close with SO_LINGER {on, 0}: the kernel sends a RST instead of a FIN"""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def f_smtplib(scenario, port, expect, server=SERVER4, starttls=False, keylog=None, ehlo_name=EHLO_NAME,
              clean=False):
    log = Log("smtp")
    sess = f_session(scenario, "smtp", port, py_client("smtplib"), expect, server=server, clean=clean)
    conn = LSMTP(local_hostname=ehlo_name, timeout=TIMEOUT)
    conn._mlog = log
    code, msg = conn.connect(server, port)
    f_bound(sess, conn.sock)
    sess["facts"]["greeting"] = "%d %s" % (code, msg.decode("utf-8", "replace"))
    conn.ehlo()
    sess["facts"]["ehlo_keywords"] = ehlo_keywords(log.replies[-1])
    if starttls:
        conn.starttls(context=client_ctx(keylog))
        sess["tls"] = tls_info(conn.sock, "starttls", keylog)
        conn.ehlo()
        sess["facts"]["ehlo_keywords_after_tls"] = ehlo_keywords(log.replies[-1])
    return sess, log, conn


def f_raw_session(scenario, port, expect, read_greeting=True, first=None):
    sess = f_session(scenario, "smtp", port, RAW_SMTP, expect)
    c = FRawSMTP(port, read_greeting=read_greeting, first=first)
    f_bound(sess, c.sock)
    if read_greeting:
        sess["facts"]["greeting"] = reply_line(c.greeting)
    return sess, c


def f_message(mid, headers, body, minute):
    """CRLF message bytes: headers [(name, value)] in order, then Date and Message-ID unless given"""
    hdr = list(headers)
    names = [k.lower() for k, _ in hdr]
    if "date" not in names:
        hdr.append(("Date", FINDINGS_DATE % minute))
    if "message-id" not in names:
        hdr.append(("Message-ID", "<%s@client.example.test>" % mid))
    text = "\n".join("%s: %s" % kv for kv in hdr) + "\n\n" + body
    return crlf(text)


def f_message_id(msg):
    m = re.search(rb"(?im)^message-id:\s*(<[^>\r\n]+>)", msg)
    return m.group(1).decode() if m else None


def f_sent(sess, mid, msg, mail_from, rcpts, accepted, rejected, server_reply, **extra):
    subj = re.search(rb"(?im)^subject: ?([^\r\n]*)", msg)
    meta = {"subject": subj.group(1).decode("utf-8", "replace") if subj else None, "attachments": []}
    rec = message_record(mid, msg, meta, mail_from, rcpts, accepted, rejected, server_reply=server_reply,
                         message_id=f_message_id(msg), **extra)
    sess.setdefault("messages_sent", []).append(rec)
    return rec


def reply_to(log, verb, nth=0):
    """the reply smtplib read for the nth command starting with verb (the greeting is replies[0])"""
    hits = [i for i, c in enumerate(log.commands) if isinstance(c, str) and c.upper().startswith(verb.upper())]
    return log.replies[hits[nth] + 1]


def smtplib_send(sess, conn, mid, msg, mail_from, rcpts, mail_options=()):
    """sendmail; records the message with what the server answered"""
    refused = {}
    try:
        refused = conn.sendmail(mail_from, rcpts, msg, mail_options=list(mail_options))
    except smtplib.SMTPRecipientsRefused as e:
        refused = e.recipients
    rej = {r: [c, m.decode("utf-8", "replace")] for r, (c, m) in refused.items()}
    last = conn._mlog.replies[-1]
    return f_sent(sess, mid, msg, mail_from, rcpts, [r for r in rcpts if r not in refused], rej,
                  "%d %s" % tuple(last), mail_options=list(mail_options))


def raw_transaction(c, mail_from, rcpt, msg, expect_end=250):
    """MAIL, RCPT, DATA and the dot-stuffed message, each waiting for its reply: the end-of-data reply"""
    c.cmd("MAIL FROM:<%s>" % mail_from, 250)
    c.cmd("RCPT TO:<%s>" % rcpt, 250)
    c.cmd("DATA", 354)
    c.write(("smtp-data", dot_stuff(msg) + b".\r\n"))
    return c.expect(expect_end)


def wait_maildir(user, pred, timeout=60):
    """the first Maildir message of user for which pred(bytes) holds, waiting (bounded) for it"""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for info in maildir_snapshot(user).values():
            if pred(info["_wire"]):
                return info
        time.sleep(0.2)
    return None


# ---- the STARTTLS-stripping proxy (starttls-downgrade)
class StripTLSProxy(threading.Thread):
    """Accepts one connection on PROXY4:25, connects from PROXY4 to Postfix on 127.0.0.1:25 and relays both
    directions; in every multi-line 250 reply it deletes the STARTTLS line and fixes the continuation marks
    (the last remaining line gets "250 "). Everything else passes unchanged."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((PROXY4, 25))
        self.lsock.listen(1)
        self.lsock.settimeout(30)
        self.error = None
        self.client_bytes = bytearray()      # what the client wrote (forwarded unchanged)
        self.server_bytes = bytearray()      # what Postfix wrote
        self.to_client = bytearray()         # what the proxy wrote to the client
        self.stripped = []                   # the reply lines it deleted
        self.upstream = None
        self.delays = []

    def run(self):
        try:
            self._serve()
        except Exception as e:  # reported by the scenario
            self.error = e
        finally:
            self.lsock.close()

    @staticmethod
    def _strip(lines):
        keep = [l for l in lines if l[4:].strip().upper() != b"STARTTLS"]
        if len(keep) == len(lines):
            return lines, []
        out = [l[:3] + b"-" + l[4:] for l in keep[:-1]] + [keep[-1][:3] + b" " + keep[-1][4:]]
        return out, [l for l in lines if l not in keep]

    def _serve(self):
        import select
        cl, _ = self.lsock.accept()
        cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = socket.create_connection((SERVER4, 25), timeout=TIMEOUT, source_address=(PROXY4, 0))
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream = up.getsockname()[:2]
        pending, reply = b"", []   # server bytes not yet a complete line; lines of the reply being read
        open_ends = {cl, up}
        for _ in range(10000):  # bounded
            if not open_ends:
                break
            r, _, _ = select.select(list(open_ends), [], [], 30)
            if not r:
                raise RuntimeError("proxy: nothing for 30 s")
            for s in r:
                data = s.recv(65536)
                if s is cl:
                    if not data:
                        up.shutdown(socket.SHUT_WR)
                        open_ends.discard(cl)
                        continue
                    self.client_bytes += data
                    up.sendall(data)
                    continue
                if not data:
                    cl.shutdown(socket.SHUT_WR)
                    open_ends.discard(up)
                    continue
                self.server_bytes += data
                pending += data
                for _ in range(1000):  # complete lines
                    i = pending.find(CRLF)
                    if i < 0:
                        break
                    line, pending = pending[:i], pending[i + 2:]
                    reply.append(line)
                    if line[3:4] != b"-":  # last line of the reply
                        out, gone = self._strip(reply) if len(reply) > 1 and reply[0][:3] == b"250" else (reply, [])
                        self.stripped += gone
                        wire = b"".join(l + CRLF for l in out)
                        self.to_client += wire
                        cl.sendall(wire)
                        reply = []
        cl.close()
        up.close()


def smtp_client_lines(data):
    """client bytes -> command lines (without CRLF) with each DATA payload summarised"""
    out, pos = [], 0
    for _ in range(10000):  # bounded
        if pos >= len(data):
            break
        eol = data.find(CRLF, pos)
        if eol < 0:
            out.append({"partial_line": data[pos:].decode("utf-8", "replace")})
            break
        line = data[pos:eol]
        out.append(line.decode("utf-8", "replace"))
        pos = eol + 2
        if line.upper() == b"DATA":
            end = data.find(b"\r\n.\r\n", pos - 2)
            if end < 0:
                break
            payload = data[pos:end + 5]
            out.append({"payload": "smtp-data", "wire_size": len(payload), "wire_sha256": sha256(payload)})
            pos = end + 5
    return out


def smtp_server_replies(data):
    return group_smtp_replies(data.decode("utf-8", "replace").split("\r\n"))


# ---- the scenarios, in capture order
def findings_journey(keylog, truth_dave):
    # 1) clean-submission: 587, STARTTLS, AUTH PLAIN, one plain 7-bit message to dave, QUIT
    sess, log, conn = f_smtplib("clean-submission", 587, [], starttls=True, keylog=keylog, clean=True)
    sess_s = sess
    user, pw = "alice", PASSWORDS["alice"]
    rep = conn.login(user, pw)
    sess["credentials"].append({"mechanism": "PLAIN", "username": user, "password": pw, "success": rep[0] == 235,
                                "reply": "%d %s" % (rep[0], rep[1].decode())})
    msg = f_message("findings-journey-1", [
        ("From", "Alice <alice@example.test>"), ("To", "Dave <dave@example.test>"),
        ("Subject", "Minutes of the Thursday meeting"), ("Date", FINDINGS_DATE % 1),
        ("Message-ID", "<findings-journey-1@client.example.test>"), ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"), ("Content-Transfer-Encoding", "7bit")],
        "Hi Dave,\n\nthe minutes: nothing to report, all items closed.\n\nAlice\n", 1)
    rec = smtplib_send(sess, conn, "findings-journey-1", msg, "alice@example.test", ["dave@example.test"])
    conn.quit()
    f_log(sess, log)
    if rec["accepted"] != ["dave@example.test"] or not rec["server_reply"].startswith("250"):
        raise RuntimeError("clean-submission: message not accepted: %r" % rec)
    sess["facts"].update({
        "auth": "AUTH PLAIN (alice) inside TLS: %s" % sess["credentials"][0]["reply"],
        "message_id": rec["message_id"], "envelope_from": "alice@example.test", "header_from": "alice@example.test",
        "reply_to": None, "content_transfer_encoding": "7bit", "all_bytes_7bit": max(msg) < 0x80,
        "queued": rec["server_reply"]})

    info = wait_maildir("dave", lambda w: b"Message-ID: <findings-journey-1@" in w)
    if info is None:
        raise RuntimeError("clean-submission: the message never reached dave's Maildir")
    time.sleep(0.3)
    truth_dave.refresh()
    uid = next(v["uid"] for v in truth_dave.index.values() if b"<findings-journey-1@" in v["_wire"])

    # 2) clean-imap: 143, STARTTLS, LOGIN, SELECT INBOX, UID FETCH BODY.PEEK[] of that message, LOGOUT
    log = Log("imap")
    sess = f_session("clean-imap", "imap", 143, py_client("imaplib"), [], clean=True)
    conn = imap_class(imaplib.IMAP4, log)(SERVER4, 143, timeout=TIMEOUT)
    f_bound(sess, conn.sock)
    sess["facts"]["greeting"] = conn.welcome.decode()
    conn.starttls(ssl_context=client_ctx(keylog))
    sess["tls"] = tls_info(conn.sock, "starttls", keylog)
    conn.login("dave", PASSWORDS["dave"])
    sess["credentials"].append({"mechanism": "LOGIN", "username": "dave", "password": PASSWORDS["dave"],
                                "success": True})
    typ, data = conn.select("INBOX")
    sess["facts"]["select_exists"] = int(data[0])
    cmd = "UID FETCH %d (BODY.PEEK[])" % uid
    typ, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
    lit = literal_of(data)[0]
    fetched_imap = truth_dave.describe(cmd, lit)
    conn.logout()
    sess["messages_fetched"] = [fetched_imap]
    f_log(sess, log)

    # 3) clean-pop3: 110, CAPA, STLS, USER/PASS, STAT, RETR 1, QUIT (dave has only this message)
    log = Log("pop3")
    sess_p = f_session("clean-pop3", "pop3", 110, py_client("poplib"), [], clean=True)
    conn = pop3_class(poplib.POP3, log)(SERVER4, 110, timeout=TIMEOUT)
    f_bound(sess_p, conn.sock)
    sess_p["facts"]["greeting"] = conn.getwelcome().decode()
    sess_p["facts"]["capa"] = sorted(conn.capa())
    conn.stls(context=client_ctx(keylog))
    sess_p["tls"] = tls_info(conn.sock, "starttls", keylog)
    conn.user("dave")
    conn.pass_(PASSWORDS["dave"])
    sess_p["credentials"].append({"mechanism": "USER/PASS", "username": "dave", "password": PASSWORDS["dave"],
                                  "success": True})
    stat = conn.stat()
    sess_p["facts"]["stat"] = list(stat)
    if stat[0] != 1:
        raise RuntimeError("clean-pop3: dave should have exactly one message, STAT says %r" % (stat,))
    _, lines, _ = conn.retr(1)
    fetched_pop = truth_dave.describe("RETR 1", pop_lines(lines))
    conn.quit()
    sess_p["messages_fetched"] = [fetched_pop]
    f_log(sess_p, log)

    stored = maildir_snapshot("dave")
    headers = next((v["_wire"].split(b"\r\n\r\n", 1)[0] for v in stored.values()
                    if b"<findings-journey-1@" in v["_wire"]), b"")
    received = [h for h in header_lines(headers + CRLF) if h.lower().startswith("received:")]
    journey = {"message_id": rec["message_id"], "sent_sha256": rec["sha256"], "sent_size": rec["size"],
               "recipient": "dave@example.test",
               "imap": {"command": cmd, "sha256": fetched_imap["received_sha256"],
                        "size": fetched_imap["received_size"]},
               "pop3": {"command": "RETR 1", "sha256": fetched_pop["received_sha256"],
                        "size": fetched_pop["received_size"]},
               "same_bytes_imap_pop3": fetched_imap["received_sha256"] == fetched_pop["received_sha256"],
               "fetched_ends_with_sent": lit.endswith(msg),
               "received_headers_added_by_servers": received,
               "note": "the fetched bytes are the Maildir file (CRLF form): the sent message after the Return-Path, "
                       "Delivered-To and Received headers Postfix and Dovecot LMTP prepended"}
    if not journey["same_bytes_imap_pop3"] or not journey["fetched_ends_with_sent"]:
        raise RuntimeError("journey: IMAP and POP3 fetched different bytes, or not the sent message: %r" % journey)
    sess_s["facts"]["journey"] = journey
    for s, f in ((sess, fetched_imap), (sess_p, fetched_pop)):
        s["facts"].update({"message_id": rec["message_id"], "fetched_command": f["command"],
                           "fetched_sha256": f["received_sha256"], "fetched_size": f["received_size"],
                           "same_bytes_imap_pop3": True, "journey": "see the clean-submission session's "
                                                                   "facts.journey"})
    return journey


def findings_cleartext_auth(keylog):
    # 4a) SMTP on 2526: STARTTLS offered, AUTH PLAIN in the clear anyway, QUIT
    kinds = ["cleartext-credentials", "auth-before-starttls", "starttls-not-used"]
    sess, log, conn = f_smtplib("cleartext-auth", PORT_AUTH_BEFORE_TLS, kinds)
    kw = sess["facts"]["ehlo_keywords"]
    if "STARTTLS" not in kw or "AUTH" not in kw:
        raise RuntimeError("port %d should offer STARTTLS and AUTH: %r" % (PORT_AUTH_BEFORE_TLS, kw))
    user, pw = "alice", PASSWORDS["alice"]
    rep = conn.login(user, pw)  # smtplib picks PLAIN (PLAIN and LOGIN are offered)
    reply = "%d %s" % (rep[0], rep[1].decode())
    sess["credentials"].append(cleartext_cred("PLAIN", user, pw, [rep[0], rep[1].decode()]))
    conn.quit()
    f_log(sess, log)
    auth_line = next(c for c in log.commands if c.upper().startswith("AUTH "))
    sess["facts"].update({"starttls_offered": True, "tls_used": False,
                          "auth_line": auth_line, "auth_reply": reply,
                          "decoded": "\\0%s\\0%s" % (user, pw)})

    # 4b) IMAP on 143: STARTTLS in the greeting's capabilities, LOGIN in the clear, LOGOUT
    log = Log("imap")
    sess = f_session("cleartext-auth", "imap", 143, py_client("imaplib"), kinds)
    conn = imap_class(imaplib.IMAP4, log)(SERVER4, 143, timeout=TIMEOUT)
    f_bound(sess, conn.sock)
    sess["facts"]["greeting"] = conn.welcome.decode()
    caps = " ".join(conn.capabilities)
    user, pw = "erin", PASSWORDS["erin"]
    try:
        typ, data = conn.login(user, pw)
        ok, reply = True, data[-1].decode()
    except imaplib.IMAP4.error as e:
        ok, reply = False, str(e)
    sess["credentials"].append({"mechanism": "LOGIN", "username": user, "password": pw, "success": ok,
                                "reply": reply})
    conn.logout()
    f_log(sess, log)
    sess["facts"].update({"capabilities_before_login": caps, "starttls_offered": "STARTTLS" in conn.capabilities,
                          "tls_used": False, "login_reply": log.replies[-2] if len(log.replies) >= 2 else reply,
                          "dovecot": "disable_plaintext_auth = no in scripts/lab/config/dovecot/dovecot.conf: "
                                     "cleartext LOGIN is allowed"})
    if not sess["facts"]["starttls_offered"] or not ok:
        raise RuntimeError("cleartext IMAP LOGIN: STARTTLS offered %r, login %r %r"
                           % (sess["facts"]["starttls_offered"], ok, reply))


def findings_starttls_refused():
    # 5) 2525 (no TLS at all): STARTTLS although not offered -> error reply, QUIT
    sess, log, conn = f_smtplib("starttls-refused", CLEARTEXT_PORT, ["starttls-refused"])
    offered = "STARTTLS" in sess["facts"]["ehlo_keywords"]
    code, text = conn.docmd("STARTTLS")
    conn.quit()
    f_log(sess, log)
    sess["facts"].update({"starttls_offered": offered, "starttls_reply": "%d %s" % (code, text.decode()),
                          "port_note": "port 2525: the lab's cleartext-AUTH listener (smtpd_tls_security_level=none)"})
    if offered or code < 400:
        raise RuntimeError("starttls-refused: offered %r, reply %d" % (offered, code))


def findings_starttls_injection(keylog):
    # 6) 25: EHLO, then STARTTLS and RSET in one send(); 220; TLS; EHLO; QUIT
    sess, c = f_raw_session("starttls-injection", 25, ["starttls-injection"])
    ehlo = c.cmd("EHLO %s" % EHLO_NAME, 250)
    injected = b"STARTTLS\r\nRSET\r\n"
    c.write(injected)
    injected_write = len(c.writes) - 1
    rep = c.expect(220)
    early = c.drain(quiet=1.0)  # an answer to RSET in the clear would arrive here
    if early:
        raise RuntimeError("starttls-injection: Postfix answered the injected command in the clear: %r" % early)
    tls = c.starttls(keylog)
    sess["tls"] = tls_info(tls, "starttls", keylog)
    ehlo2 = c.cmd("EHLO %s" % EHLO_NAME, 250)
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    sess["expect"].append("unanswered-command")
    sess["facts"].update({
        "ehlo_keywords": ehlo_keywords(ehlo), "starttls_offered": "STARTTLS" in ehlo_keywords(ehlo),
        "injected_bytes": injected.decode(), "injected_hex": injected.hex(), "injected_in_one_send": True,
        "injected_write": injected_write,
        "reply_before_tls": reply_line(rep), "replies_in_clear_after_starttls": 1,
        "injected_command": "RSET", "injected_command_answered": False,
        "server_behaviour": "Postfix answered STARTTLS with 220 and discarded the pipelined RSET (no reply to it "
                            "in the clear or inside TLS): the RSET is an unanswered command",
        "ehlo_keywords_after_tls": ehlo_keywords(ehlo2)})
    return sess


def findings_downgrade(direct):
    # 7) smtplib through the STARTTLS-stripping proxy: EHLO (no STARTTLS), one message in the clear, QUIT
    proxy = StripTLSProxy()
    proxy.start()
    sess, log, conn = f_smtplib("starttls-downgrade", 25, ["starttls-downgrade"], server=PROXY4)
    sess["facts"]["starttls_offered"], sess["facts"]["tls_used"] = False, False
    leg = f_session("starttls-downgrade", "smtp", 25, PROXY_SOFTWARE, ["starttls-not-used"])  # its SYN is second
    msg = f_message("findings-downgrade-1", [
        ("From", "Carol <carol@example.test>"), ("To", "Erin <erin@example.test>"),
        ("Subject", "Quarterly figures (sent through the proxy)"), ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"), ("Content-Transfer-Encoding", "7bit")],
        "Erin,\n\nthe figures are attached in the next mail. This one went out without TLS.\n\nCarol\n", 2)
    rec = smtplib_send(sess, conn, "findings-downgrade-1", msg, "carol@example.test", ["erin@example.test"])
    conn.quit()
    f_log(sess, log)
    proxy.join(30)
    if proxy.is_alive() or proxy.error:
        raise RuntimeError("proxy: %r (alive %r)" % (proxy.error, proxy.is_alive()))
    leg["client_ip"], leg["client_port"] = proxy.upstream
    leg["client"] = "%s:%d" % proxy.upstream
    leg["commands"] = smtp_client_lines(bytes(proxy.client_bytes))
    leg["replies"] = smtp_server_replies(bytes(proxy.server_bytes))
    leg["commands_note"] = "the client's bytes, forwarded unchanged; DATA payload summarised"
    leg["messages_sent"] = [dict(rec)]
    if bytes(proxy.to_client) != b"".join(
            (b"%d%s%s\r\n" % (r[0], b"-" if i < len(r[1].split("\n")) - 1 else b" ", l.encode()))
            for r in sess["replies"] for i, l in enumerate(r[1].split("\n"))):
        raise RuntimeError("proxy: the client's replies are not what the proxy wrote")
    server_ehlo = next(r for r in leg["replies"] if r[0] == 250 and "\n" in r[1])
    client_ehlo = next(r for r in sess["replies"] if r[0] == 250 and "\n" in r[1])
    greeting = leg["replies"][0]
    facts = {
        "greeting_client_leg": sess["facts"]["greeting"], "greeting_proxy_leg": reply_line(greeting),
        "same_greeting": sess["facts"]["greeting"] == reply_line(greeting),
        "server_hostname": greeting[1].split()[0],
        "ehlo_keywords_client_leg": ehlo_keywords(client_ehlo), "ehlo_keywords_proxy_leg": ehlo_keywords(server_ehlo),
        "stripped_lines": [l.decode() for l in proxy.stripped],
        "direct_session_offering_starttls": direct["client"] + " -> " + direct["server"],
        "direct_session_ehlo_keywords": direct["facts"]["ehlo_keywords"],
        "message_id": rec["message_id"], "queued": rec["server_reply"],
        "proxy": PROXY_SOFTWARE,
        "legs": "client leg: %s -> %s:25 (the proxy); proxy leg: %s -> %s:25 (Postfix)" % (
            sess["client"], PROXY4, leg["client"], SERVER4)}
    if "STARTTLS" in facts["ehlo_keywords_client_leg"] or "STARTTLS" not in facts["ehlo_keywords_proxy_leg"] \
            or not facts["same_greeting"]:
        raise RuntimeError("downgrade: %r" % facts)
    sess["facts"].update(facts)
    leg["facts"].update(facts)
    leg["facts"]["starttls_offered"], leg["facts"]["tls_used"] = True, False


def findings_smuggling():
    # 8a) 25: a DATA body with "\n.\r\n" (bare LF before the dot) followed by a second transaction
    sess, c = f_raw_session("smtp-smuggling", 25, ["smtp-smuggling"])
    ehlo = c.cmd("EHLO %s" % EHLO_NAME, 250)
    c.cmd("MAIL FROM:<carol@example.test>", 250)
    c.cmd("RCPT TO:<erin@example.test>", 250)
    c.cmd("DATA", 354)
    outer = (b"From: Carol <carol@example.test>\r\nTo: erin@example.test\r\nSubject: a\r\n"
             b"Message-ID: <findings-smuggling-outer@client.example.test>\r\n\r\nhello\n")
    smuggled_cmds = b"MAIL FROM:<smuggled@evil.example>\r\nRCPT TO:<erin@example.test>\r\nDATA\r\n"
    smuggled_msg = (b"From: smuggled@evil.example\r\nTo: erin@example.test\r\nSubject: smuggled\r\n"
                    b"Message-ID: <findings-smuggling-inner@evil.example>\r\n\r\nsmuggled\r\n")
    payload = outer + b".\r\n" + smuggled_cmds + smuggled_msg + b".\r\n"
    c.write(("smtp-data", payload))
    got = c.drain(quiet=2.0)
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    inner = wait_maildir("erin", lambda w: b"<findings-smuggling-inner@" in w, timeout=10)
    outer_stored = wait_maildir("erin", lambda w: b"<findings-smuggling-outer@" in w, timeout=10)
    sess["facts"].update({
        "ehlo_keywords": ehlo_keywords(ehlo), "starttls_offered": "STARTTLS" in ehlo_keywords(ehlo), "tls_used": False,
        "payload_after_354": {"sha256": sha256(payload), "size": len(payload), "text": payload.decode(),
                              "note": "written in one send() after the 354; the only CRLF.CRLF is its end"},
        "smuggling_sequence": "\\n.\\r\\n (bare LF, dot, CRLF) at offset %d" % payload.index(b"\n.\r\n"),
        "smuggled_commands": smuggled_cmds.decode().split("\r\n")[:-1],
        "replies_after_payload": [reply_line(r) for r in got],
        "server_behaviour": ("Postfix (smtpd_forbid_bare_newline = no, the 3.7 default) took the bare-LF dot as the "
                             "end of the first message and ran the smuggled MAIL/RCPT/DATA as commands: %d replies "
                             "to one payload" % len(got)) if len(got) > 1 else
                            "one reply to the payload: the smuggled commands were message text",
        "delivered_to_erin": {"outer_message": outer_stored is not None, "smuggled_message": inner is not None}})


def findings_bare_lf():
    # 8b) 25: a command line ending in a bare LF
    sess, c = f_raw_session("bare-line-end", 25, ["bare-line-end"])
    ehlo = c.cmd("EHLO %s" % EHLO_NAME, 250)
    c.write(b"NOOP\n")
    got = c.drain(quiet=2.0, limit=1)
    answered = bool(got)
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    if not answered:
        sess["expect"].append("unanswered-command")
    sess["facts"].update({"ehlo_keywords": ehlo_keywords(ehlo), "starttls_offered": "STARTTLS" in ehlo_keywords(ehlo),
                          "tls_used": False, "bare_lf_line": "NOOP\\n", "bare_lf_hex": b"NOOP\n".hex(),
                          "reply": reply_line(got[0]) if got else None})


def findings_relay(keylog):
    # 9a) open relay on 2527: unauthenticated, MAIL FROM a lab user, RCPT to a foreign domain accepted, DATA
    sess, log, conn = f_smtplib("open-relay", PORT_OPEN_RELAY, ["open-relay"])
    msg = f_message("findings-relay-1", [
        ("From", "Carol <carol@example.test>"), ("To", "<%s>" % RELAY_RCPT),
        ("Subject", "Relayed through an open relay"), ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"), ("Content-Transfer-Encoding", "7bit")],
        "This message goes to a foreign domain through port %d without AUTH.\n" % PORT_OPEN_RELAY, 3)
    rec = smtplib_send(sess, conn, "findings-relay-1", msg, "carol@example.test", [RELAY_RCPT])
    conn.quit()
    f_log(sess, log)
    rcpt = reply_to(log, "RCPT")
    sess["facts"].update({"authenticated": False, "mail_from": "carol@example.test",
                          "rcpt": "RCPT TO:<%s>" % RELAY_RCPT, "rcpt_reply": reply_line(rcpt),
                          "message_id": rec["message_id"], "queued": rec["server_reply"],
                          "then": "default_transport = error: Postfix bounces it; the DSN goes to carol "
                                  "(see scenario bounce-fetch)"})
    if rec["accepted"] != [RELAY_RCPT]:
        raise RuntimeError("open-relay: RCPT refused: %r" % rec["rejected"])
    # 9b) relay-denied: the same RCPT on 25 -> 554 Relay access denied
    sess, log, conn = f_smtplib("relay-denied", 25, [])
    code, text = conn.mail("carol@example.test")
    code, text = conn.rcpt(RELAY_RCPT)
    conn.quit()
    f_log(sess, log)
    sess["facts"].update({"ehlo_keywords": sess["facts"]["ehlo_keywords"], "authenticated": False,
                          "rcpt": "RCPT TO:<%s>" % RELAY_RCPT, "rcpt_reply": "%d %s" % (code, text.decode()),
                          "starttls_offered": "STARTTLS" in sess["facts"]["ehlo_keywords"], "tls_used": False})
    return rec


def findings_source_route():
    # 10) 25: RCPT TO with a source route to a lab user
    sess, c = f_raw_session("source-route", 25, ["source-route"])
    ehlo = c.cmd("EHLO %s" % EHLO_NAME, 250)
    c.cmd("MAIL FROM:<carol@example.test>", 250)
    rcpt = "RCPT TO:<@relay.example.test:erin@example.test>"
    c.write(rcpt)
    rep = c.reply()
    c.cmd("RSET", 250)
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    sess["facts"].update({"ehlo_keywords": ehlo_keywords(ehlo), "starttls_offered": "STARTTLS" in ehlo_keywords(ehlo),
                          "tls_used": False, "rcpt": rcpt, "source_route": "@relay.example.test",
                          "final_address": "erin@example.test", "rcpt_reply": reply_line(rep),
                          "server_behaviour": "Postfix strips the source route (RFC 5321 C) and accepts the "
                                              "address after it" if rep[0] == 250 else "refused"})


def findings_helo():
    # 11) 25: EHLO with an address literal that is not the client's address
    sess, c = f_raw_session("helo-mismatch", 25, ["helo-mismatch"])
    rep = c.cmd("EHLO [10.1.2.3]", 250)
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    sess["facts"].update({"ehlo": "EHLO [10.1.2.3]", "ehlo_address": "10.1.2.3", "client_address": sess["client_ip"],
                          "ehlo_reply": "%d %s" % (rep[0], rep[1].split("\n")[0]), "ehlo_keywords": ehlo_keywords(rep),
                          "starttls_offered": "STARTTLS" in ehlo_keywords(rep), "tls_used": False})


SPOOF_RECEIVED = [
    # written by the client at the top of the message: the upper (later) hop is dated an hour before the lower one
    ("Received", "from mx1.lists.example.org (mx1.lists.example.org [198.51.100.25])\n\tby relay.example.net "
                 "(Postfix) with ESMTPS id 4F1A2B3C4D\n\tfor <erin@example.test>; Fri, 06 Mar 2026 07:05:00 +0000"),
    ("Received", "from [10.20.30.40] (unknown [10.20.30.40])\n\tby mx1.lists.example.org with ESMTP id 9Z8Y7X6W\n"
                 "\tfor <erin@example.test>; Fri, 06 Mar 2026 08:05:00 +0000"),
]


def findings_spoofed():
    # 12) 25: envelope sender, From and Reply-To all differ; two forged Received headers
    sess, log, conn = f_smtplib("spoofed-headers", 25,
                                ["sender-mismatch", "reply-to-mismatch", "received-private", "received-time-order"])
    msg = f_message("findings-spoofed-1", SPOOF_RECEIVED + [
        ("From", "Alice <alice@example.com>"), ("Reply-To", "collect@evil.example.net"),
        ("To", "Erin <erin@example.test>"), ("Subject", "Invoice 2026-031 overdue"),
        ("Date", "Fri, 06 Mar 2026 08:00:00 +0000"), ("Message-ID", "<findings-spoofed-1@lists.example.org>"),
        ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=us-ascii"),
        ("Content-Transfer-Encoding", "7bit")],
        "Dear Erin,\n\nplease pay invoice 2026-031 today; reply to this mail for the bank details.\n\nAlice\n", 4)
    rec = smtplib_send(sess, conn, "findings-spoofed-1", msg, "bounces@lists.example.org", ["erin@example.test"])
    conn.quit()
    f_log(sess, log)
    sess["facts"].update({
        "envelope_from": "bounces@lists.example.org", "header_from": "alice@example.com",
        "reply_to": "collect@evil.example.net", "message_id": rec["message_id"], "queued": rec["server_reply"],
        "received_headers_sent": ["%s: %s" % (k, v.replace("\n", "\r\n")) for k, v in SPOOF_RECEIVED],
        "received_order": "top first: the upper header is the later hop",
        "received_dates": ["Fri, 06 Mar 2026 07:05:00 +0000", "Fri, 06 Mar 2026 08:05:00 +0000"],
        "received_time_order": "the upper (later) hop is dated 3600 s before the lower one",
        "private_addresses": ["10.20.30.40"],
        "other_addresses": {"198.51.100.25": "TEST-NET-2 documentation range (RFC 5737), not RFC 1918 private"},
        "starttls_offered": "STARTTLS" in sess["facts"]["ehlo_keywords"], "tls_used": False})
    if rec["accepted"] != ["erin@example.test"]:
        raise RuntimeError("spoofed-headers: not accepted: %r" % rec)


def findings_vrfy():
    # 13) 25: VRFY a lab user, VRFY an unknown one, EXPN
    sess, log, conn = f_smtplib("vrfy-expn", 25, ["vrfy-expn"])
    out = []
    for verb, arg in (("VRFY", "erin"), ("VRFY", "nosuchuser"), ("EXPN", "postmaster")):
        code, text = conn.verify(arg) if verb == "VRFY" else conn.expn(arg)
        out.append({"command": log.commands[-1], "reply": "%d %s" % (code, text.decode())})
    conn.quit()
    f_log(sess, log)
    sess["facts"].update({"probes": out, "starttls_offered": "STARTTLS" in sess["facts"]["ehlo_keywords"],
                          "tls_used": False,
                          "server_behaviour": "Postfix answers VRFY (disable_vrfy_command = no) and does not "
                                              "implement EXPN"})


def findings_enumeration():
    # 14) from ENUM_IP: one session, 6 RCPTs to local users that do not exist
    with source_ip(ENUM_IP):
        sess, log, conn = f_smtplib("recipient-enumeration", 25, ["recipient-enumeration"])
    code, text = conn.mail("scanner@enum.example")
    probes = []
    for u in ENUM_USERS:
        code, text = conn.rcpt("%s@example.test" % u)
        probes.append({"rcpt": log.commands[-1], "reply": "%d %s" % (code, text.decode())})
    conn.rset()
    conn.quit()
    f_log(sess, log)
    rejected = sum(1 for p in probes if p["reply"].startswith("550"))
    sess["facts"].update({"probes": probes, "rejected_550": rejected, "client_address": ENUM_IP,
                          "aggregate": "per client: the only session from %s" % ENUM_IP,
                          "starttls_offered": "STARTTLS" in sess["facts"]["ehlo_keywords"], "tls_used": False})
    if rejected != len(ENUM_USERS):
        raise RuntimeError("recipient-enumeration: %r" % probes)


def findings_brute_force(keylog):
    # 15) from BRUTE_IP: 3 IMAP sessions (STARTTLS) and 3 cleartext POP3 sessions, one wrong password each
    attempts = []
    with source_ip(BRUTE_IP):
        for i, user in enumerate(["alice", "bob", "dave"], 1):
            log = Log("imap")
            sess = f_session("brute-force", "imap", 143, py_client("imaplib"), [])
            conn = imap_class(imaplib.IMAP4, log)(SERVER4, 143, timeout=60)
            f_bound(sess, conn.sock)
            sess["facts"]["greeting"] = conn.welcome.decode()
            conn.starttls(ssl_context=client_ctx(keylog))
            sess["tls"] = tls_info(conn.sock, "starttls", keylog)
            pw = "wrong-imap-%d" % i
            t0 = time.monotonic()
            try:
                conn.login(user, pw)
                ok = True
            except imaplib.IMAP4.error:
                ok = False
            delay = time.monotonic() - t0
            sess["credentials"].append({"mechanism": "LOGIN", "username": user, "password": pw, "success": ok,
                                        "reply": log.replies[-1]})
            conn.logout()
            f_log(sess, log)
            attempts.append((sess, user, ok, delay, log.replies[-2]))
        for i, user in enumerate(["alice", "bob", "dave"], 1):
            log = Log("pop3")
            sess = f_session("brute-force", "pop3", 110, py_client("poplib"), ["cleartext-credentials"])
            conn = pop3_class(poplib.POP3, log)(SERVER4, 110, timeout=60)
            f_bound(sess, conn.sock)
            sess["facts"]["greeting"] = conn.getwelcome().decode()
            conn.user(user)
            pw = "wrong-pop3-%d" % i
            t0 = time.monotonic()
            try:
                conn.pass_(pw)
                ok = True
            except poplib.error_proto:
                ok = False
            delay = time.monotonic() - t0
            sess["credentials"].append({"mechanism": "USER/PASS", "username": user, "password": pw, "success": ok,
                                        "reply": log.replies[-1]})
            conn.quit()
            f_log(sess, log)
            attempts.append((sess, user, ok, delay, log.replies[-2]))
    failures = 0
    for n, (sess, user, ok, delay, reply) in enumerate(attempts, 1):
        if ok:
            raise RuntimeError("brute-force: %s logged in with a wrong password" % user)
        failures += 1
        if failures == 5:
            sess["expect"].insert(0, "auth-brute-force")
        sess["facts"].update({
            "attempt": n, "failures_from_client_so_far": failures, "username": user,
            "password": sess["credentials"][0]["password"], "reply": reply,
            "reply_delay_s": round(delay, 3), "client_address": BRUTE_IP,
            "inside_tls": sess["tls"] is not None})
    summary = {"client_address": BRUTE_IP, "failures": failures, "usernames": [a[1] for a in attempts],
               "sessions": [a[0]["client"] for a in attempts], "fifth_failure_in": attempts[4][0]["client"],
               "delays_s": [round(a[3], 3) for a in attempts],
               "server_behaviour": "Dovecot answers a failed login after auth_failure_delay (2 s); its per-IP auth "
                                   "penalty can add up to 15 s (it grew from 2 s to 15 s in some runs and stayed "
                                   "at 0 in others: anvil does not count a user/password pair it has recently "
                                   "seen fail); delays_s is what the client measured in this run"}
    for a in attempts:
        a[0]["facts"]["brute_force"] = summary


def findings_slow():
    # 16) 2528: the RCPT reply comes after Postfix's "sleep 3" restriction
    sess, c = f_raw_session("slow-reply", PORT_SLOW, ["slow-reply"])
    c.cmd("EHLO %s" % EHLO_NAME, 250)
    c.cmd("MAIL FROM:<carol@example.test>", 250)
    t0 = time.monotonic()
    rep = c.cmd("RCPT TO:<erin@example.test>", 250)
    delay = time.monotonic() - t0
    c.cmd("RSET", 250)
    c.cmd("NOOP", 250)
    c.cmd("NOOP", 250)
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    sess["facts"].update({"slow_command": "RCPT TO:<erin@example.test>", "slow_reply": reply_line(rep),
                          "delay_s": round(delay, 3),
                          "reply_delays_s": [[cmd, round(d, 3)] for cmd, d in zip(
                              ["EHLO", "MAIL", "RCPT", "RSET", "NOOP", "NOOP", "QUIT"], c.delays)],
                          "server_config": "smtpd_recipient_restrictions = sleep 3, reject_unauth_destination "
                                           "(port %d)" % PORT_SLOW})
    if delay < 2.5:
        raise RuntimeError("slow-reply: RCPT answered after %.2f s" % delay)


def findings_limits():
    # 17) 2529: no PIPELINING / 8BITMIME announced, SIZE 4000
    # a) MAIL, RCPT and DATA in one send()
    sess, c = f_raw_session("no-pipelining", PORT_LIMITS, ["pipelining-without-capability"])
    ehlo = c.cmd("EHLO %s" % EHLO_NAME, 250)
    kw = ehlo_keywords(ehlo)
    if "PIPELINING" in kw or "8BITMIME" in kw or "SIZE" not in kw:
        raise RuntimeError("port %d EHLO: %r" % (PORT_LIMITS, kw))
    msg = f_message("findings-pipelined-1", [
        ("From", "Carol <carol@example.test>"), ("To", "erin@example.test"),
        ("Subject", "Pipelined without PIPELINING"), ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"), ("Content-Transfer-Encoding", "7bit")],
        "MAIL, RCPT and DATA went out in one write although the server does not offer PIPELINING.\n", 5)
    c.write("MAIL FROM:<carol@example.test>", "RCPT TO:<erin@example.test>", "DATA")
    reps = [c.reply() for _ in range(3)]
    c.write(("smtp-data", dot_stuff(msg) + b".\r\n"))
    queued = c.expect(250)
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    f_sent(sess, "findings-pipelined-1", msg, "carol@example.test", ["erin@example.test"], ["erin@example.test"], {},
           reply_line(queued), pipelined=True)
    sess["facts"].update({"variant": "pipelined", "ehlo_keywords": kw, "pipelining_offered": False,
                          "one_send": ["MAIL FROM:<carol@example.test>", "RCPT TO:<erin@example.test>", "DATA"],
                          "one_send_write": 1, "replies": [reply_line(r) for r in reps],
                          "queued": reply_line(queued),
                          "server_behaviour": "Postfix accepted the pipelined commands "
                                              "(smtpd_forbid_unauth_pipelining = no, the 3.7 default)"})
    if [r[0] for r in reps] != [250, 250, 354]:
        raise RuntimeError("pipelined replies: %r" % reps)

    # b) smtplib: a body with raw UTF-8 bytes, no BODY=8BITMIME (the server does not offer 8BITMIME)
    sess, log, conn = f_smtplib("no-pipelining", PORT_LIMITS, ["8bit-without-8bitmime"])
    msg = f_message("findings-8bit-1", [
        ("From", "Carol <carol@example.test>"), ("To", "erin@example.test"), ("Subject", "Grusse (8-bit body)"),
        ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=UTF-8"),
        ("Content-Transfer-Encoding", "8bit")],
        "Grüße aus dem Labor – naïve café, 10 €.\nThe server never offered 8BITMIME.\n", 6)
    rec = smtplib_send(sess, conn, "findings-8bit-1", msg, "carol@example.test", ["erin@example.test"])
    conn.quit()
    f_log(sess, log)
    mail = next(c for c in log.commands if isinstance(c, str) and c.upper().startswith("MAIL"))
    sess["facts"].update({"variant": "8bit", "eightbitmime_offered": "8BITMIME" in sess["facts"]["ehlo_keywords"],
                          "mail_command": mail, "body_parameter": None,
                          "bytes_8bit": sum(1 for b in msg if b >= 0x80),
                          "first_8bit_offset": next(i for i, b in enumerate(msg) if b >= 0x80),
                          "queued": rec["server_reply"]})
    if "BODY=" in mail.upper():
        raise RuntimeError("8bit: smtplib sent a BODY parameter: %r" % mail)

    # c) a 6000-byte message against SIZE 4000 (no SIZE= parameter): 552 after the end of data
    sess, c = f_raw_session("no-pipelining", PORT_LIMITS, ["size-exceeded"])
    ehlo = c.cmd("EHLO %s" % EHLO_NAME, 250)
    size_limit = int(next(l.split()[1] for l in ehlo[1].split("\n") if l.upper().startswith("SIZE ")))
    head = f_message("findings-oversize-1", [
        ("From", "Carol <carol@example.test>"), ("To", "erin@example.test"), ("Subject", "Too big for SIZE 4000"),
        ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=us-ascii"),
        ("Content-Transfer-Encoding", "7bit")], "", 7)
    line = b"0123456789" * 7 + b"\r\n"
    body = b""
    for i in range(200):  # bounded
        if len(head) + len(body) + len(line) > 6000:
            break
        body += line
    msg = head + body + b"x" * (6000 - len(head) - len(body) - 2) + b"\r\n"
    if len(msg) != 6000:
        raise RuntimeError("oversize message is %d bytes" % len(msg))
    rep = raw_transaction(c, "carol@example.test", "erin@example.test", msg, expect_end=(552, 250))
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    f_sent(sess, "findings-oversize-1", msg, "carol@example.test", ["erin@example.test"], [],
           {"erin@example.test": list(rep)}, reply_line(rep))
    sess["facts"].update({"variant": "oversize", "size_offered": size_limit, "message_size": len(msg),
                          "mail_command": "MAIL FROM:<carol@example.test>", "size_parameter": None,
                          "end_of_data_reply": reply_line(rep)})
    if rep[0] != 552:
        raise RuntimeError("oversize message not refused: %r" % rep)


class RaceLost(Exception):
    """a timing race the scenario needs to win was lost: cmd_run exits 75 and make-samples captures again"""


POSTFIX_LOG = "/var/log/mail-lab/postfix.log"  # maillog_file in scripts/lab/config/postfix/main.cf


def postfix_log_since(offset, pattern, timeout=5):
    """the first line Postfix logged after byte offset that matches pattern, waiting (bounded) for it"""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(POSTFIX_LOG, "rb") as f:
            f.seek(offset)
            for line in f.read().decode("utf-8", "replace").splitlines():
                if re.search(pattern, line):
                    return line
        time.sleep(0.2)
    return None


def smtpd_processes(service="smtp"):
    """pids of the running smtpd processes of a master.cf service (argv: smtpd -n SERVICE ...)"""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[:3] == [b"smtpd", b"-n", service.encode()]:
                out.append(int(pid))
    return out


@contextlib.contextmanager
def busy_smtpds():
    """Uncaptured helper connections (from 127.0.0.1, outside the capture filter) to port 25, each held open after
    its greeting, until there are as many as running smtpd processes of the port-25 service (each serves one
    connection at a time): while they last, a new connection finds no idle smtpd, and Postfix's master has to
    start one before anything is greeted. Bounded by 90 (default_process_limit is 100)."""
    holders = []
    try:
        for _ in range(90):
            if len(holders) >= len(smtpd_processes()):
                break
            h = _orig_create_connection((SERVER4, 25), TIMEOUT)
            if not h.recv(4096).startswith(b"220"):
                raise RuntimeError("busy_smtpds: no greeting")
            holders.append(h)
        yield len(holders)
    finally:
        for h in holders:
            try:
                h.sendall(b"QUIT\r\n")
                h.recv(4096)
            except OSError:
                pass
            h.close()


def findings_early_talker():
    # 18) 25: EHLO written right after connect, before the greeting. An smtpd process that is already waiting
    # greets a client from mynetworks (no anvil round trip) within microseconds, so the race was lost about
    # half the time in a test; busy_smtpds() keeps every running smtpd busy, so that the connection waits for a
    # new one. Postfix's own log line "improper command pipelining after CONNECT" is the proof that the EHLO
    # came first; without it the race was lost and make-samples captures everything again (exit 75).
    offset = os.path.getsize(POSTFIX_LOG)
    with busy_smtpds() as held:
        sess, c = f_raw_session("early-talker", 25, ["early-talker"], read_greeting=False,
                                first="EHLO early.example")
        greeting = c.reply()
    ehlo = c.reply()
    c.cmd("QUIT", 221)
    c.close()
    f_raw(sess, c)
    line = postfix_log_since(offset, r"improper command pipelining after CONNECT from [^\[ ]*\[%s\]: EHLO "
                                     r"early\.example" % re.escape(sess["client_ip"]))
    if line is None:
        raise RaceLost("early-talker: Postfix greeted before the EHLO arrived (no 'improper command pipelining "
                       "after CONNECT' in %s)" % POSTFIX_LOG)
    sess["facts"].update({"sent_before_greeting": "EHLO early.example", "greeting": reply_line(greeting),
                          "ehlo_reply_code": ehlo[0], "ehlo_keywords": ehlo_keywords(ehlo),
                          "starttls_offered": "STARTTLS" in ehlo_keywords(ehlo), "tls_used": False,
                          "server_log": line.split(": ", 1)[1] if ": " in line else line,
                          "helper_connections": "%d uncaptured connections from 127.0.0.1 kept the running smtpd "
                                                "processes busy meanwhile" % held,
                          "server_behaviour": "Postfix smtpd (no postscreen) saw the EHLO before its greeting "
                                              "(server_log, from %s), greeted, and answered the EHLO" % POSTFIX_LOG})


def findings_reset():
    # 19) 25: DATA, part of a body, then close with SO_LINGER 0: a TCP RST in the middle of the message
    sess, c = f_raw_session("reset-mid-transaction", 25, ["reset-mid-transaction"])
    ehlo = c.cmd("EHLO %s" % EHLO_NAME, 250)
    c.cmd("MAIL FROM:<carol@example.test>", 250)
    c.cmd("RCPT TO:<erin@example.test>", 250)
    c.cmd("DATA", 354)
    part = (b"From: Carol <carol@example.test>\r\nTo: erin@example.test\r\nSubject: never finished\r\n"
            b"Message-ID: <findings-reset-1@client.example.test>\r\n\r\n"
            b"This message is cut off by a TCP RST in the mid")
    c.write(("smtp-data-partial", part))
    time.sleep(0.3)
    c.abort()
    f_raw(sess, c)
    sess["facts"].update({"ehlo_keywords": ehlo_keywords(ehlo), "starttls_offered": "STARTTLS" in ehlo_keywords(ehlo),
                          "tls_used": False, "partial_body": {"sha256": sha256(part), "size": len(part)},
                          "end_of_data_sent": False, "closed_by": "client RST (SO_LINGER on, 0 s, then close)"})


def findings_bounce(keylog, relay_rec):
    # bounce-fetch: the DSN for the relayed message, fetched by IMAP (STARTTLS) as carol
    mid = relay_rec["message_id"].encode()
    info = wait_maildir("carol", lambda w: mid in w and b"multipart/report" in w, timeout=60)
    if info is None:
        raise RuntimeError("bounce-fetch: no DSN for %s in carol's Maildir after 60 s" % relay_rec["message_id"])
    time.sleep(0.3)
    truth = Truth(["carol"])
    uid = next(v["uid"] for v in truth.index.values() if mid in v["_wire"] and b"multipart/report" in v["_wire"])
    log = Log("imap")
    sess = f_session("bounce-fetch", "imap", 143, py_client("imaplib"), ["bounce"])
    conn = imap_class(imaplib.IMAP4, log)(SERVER4, 143, timeout=TIMEOUT)
    f_bound(sess, conn.sock)
    sess["facts"]["greeting"] = conn.welcome.decode()
    conn.starttls(ssl_context=client_ctx(keylog))
    sess["tls"] = tls_info(conn.sock, "starttls", keylog)
    conn.login("carol", PASSWORDS["carol"])
    sess["credentials"].append({"mechanism": "LOGIN", "username": "carol", "password": PASSWORDS["carol"],
                                "success": True})
    conn.select("INBOX")
    cmd = "UID FETCH %d (BODY.PEEK[])" % uid
    typ, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
    lit = literal_of(data)[0]
    fetched = truth.describe(cmd, lit)
    conn.logout()
    sess["messages_fetched"] = [fetched]
    f_log(sess, log)
    import email
    import email.policy
    dsn = email.message_from_bytes(lit, policy=email.policy.default)
    fields, original_id = [], None
    for part in dsn.walk():
        ct = part.get_content_type()
        if ct == "message/delivery-status":
            for block in part.get_payload():
                fields.append({k: str(v) for k, v in block.items()})
        elif ct in ("message/rfc822", "text/rfc822-headers") and original_id is None:
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) else inner
            if isinstance(inner, str):
                inner = email.message_from_string(inner, policy=email.policy.default)
            original_id = str(inner["Message-ID"]) if inner["Message-ID"] else None
    rcpt_fields = next((f for f in fields if "Final-Recipient" in f), {})
    sess["facts"].update({
        "dsn_from": str(dsn["From"]), "dsn_subject": str(dsn["Subject"]), "dsn_content_type": dsn.get_content_type(),
        "report_type": dsn.get_param("report-type"), "return_path": str(dsn["Return-Path"]),
        "original_message_id": original_id, "relayed_message_id": relay_rec["message_id"],
        "final_recipient": rcpt_fields.get("Final-Recipient"), "action": rcpt_fields.get("Action"),
        "status": rcpt_fields.get("Status"), "diagnostic_code": rcpt_fields.get("Diagnostic-Code"),
        "parsed_with": "Python email.message_from_bytes(policy=email.policy.default) on the fetched literal"})
    if original_id != relay_rec["message_id"] or not (rcpt_fields.get("Status") or "").startswith("5"):
        raise RuntimeError("bounce-fetch: DSN does not match: %r" % sess["facts"])


# ---- failed STARTTLS handshakes, a slow greeting, and a STARTTLS response-injection proxy
TLS_ALERT_NAMES = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
                   40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
                   44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
                   47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
                   51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
                   86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
                   110: "unsupported_extension", 112: "unrecognized_name", 116: "certificate_required",
                   120: "no_application_protocol"}
TLS_HANDSHAKE_NAMES = {1: "client_hello", 2: "server_hello", 4: "new_session_ticket", 8: "encrypted_extensions",
                       11: "certificate", 12: "server_key_exchange", 13: "certificate_request",
                       14: "server_hello_done", 15: "certificate_verify", 16: "client_key_exchange", 20: "finished"}


def tls_records(b):
    """bytes that should start with TLS records -> ([(content_type, payload)], the bytes after the last complete
    record: garbage that is no TLS record, or a cut-off one)"""
    out, pos = [], 0
    for _ in range(100000):  # bounded
        if len(b) - pos < 5 or b[pos] not in (20, 21, 22, 23) or b[pos + 1] != 3:
            break
        n = struct.unpack(">H", b[pos + 3:pos + 5])[0]
        if len(b) - pos - 5 < n:
            break
        out.append((b[pos], b[pos + 5:pos + 5 + n]))
        pos += 5 + n
    return out, b[pos:]


def tls_summary(b):
    """what one side sent as TLS, read from its bytes without keys: the cleartext handshake messages by name,
    the cleartext alerts, how many ChangeCipherSpec and encrypted (type 23) records, and how many bytes at the
    start parse as no TLS record at all (first_bytes_not_tls)"""
    recs, rest = tls_records(b)
    out = {"bytes": len(b), "records": len(recs), "handshake": [], "alerts": [], "change_cipher_spec": 0,
           "encrypted_records": 0, "unparsed_bytes": len(rest)}
    for ct, p in recs:
        if ct == 22:
            i = 0
            for _ in range(1000):  # bounded: the handshake messages in one record
                if i + 4 > len(p):
                    break
                out["handshake"].append(TLS_HANDSHAKE_NAMES.get(p[i], str(p[i])))
                i += 4 + int.from_bytes(p[i + 1:i + 4], "big")
        elif ct == 21 and len(p) == 2:
            out["alerts"].append({"level": {1: "warning", 2: "fatal"}.get(p[0], str(p[0])), "description": p[1],
                                  "name": TLS_ALERT_NAMES.get(p[1], str(p[1]))})
        elif ct == 20:
            out["change_cipher_spec"] += 1
        else:
            out["encrypted_records"] += 1
    return out


def tls_flight(summary):
    """a tls_summary() in words: 'ServerHello, 1 ChangeCipherSpec and 4 encrypted records'"""
    parts = ["".join(w.capitalize() for w in n.split("_")) for n in summary["handshake"]]
    if summary["change_cipher_spec"]:
        parts.append("%d ChangeCipherSpec" % summary["change_cipher_spec"])
    if summary["encrypted_records"]:
        parts.append("%d encrypted records" % summary["encrypted_records"])
    parts += ["a %s %s alert" % (a["level"], a["name"]) for a in summary["alerts"]]
    if not parts:
        return "nothing"
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def client_hello_suites(b):
    """the cipher suites (hex) of the ClientHello that starts b"""
    recs, _ = tls_records(b)
    if not recs or recs[0][0] != 22 or recs[0][1][:1] != b"\x01":
        return None
    p = recs[0][1]
    i = 4 + 2 + 32                              # handshake header, legacy_version, random
    i += 1 + p[i]                               # session id
    n = struct.unpack(">H", p[i:i + 2])[0]
    return [p[j:j + 2].hex() for j in range(i + 2, i + 2 + n, 2)]


def postfix_log_lines(offset, ip, timeout=10):
    """what the smtpd process that logged the first "connect from ...[ip]" after byte offset logged, from that line
    to its "disconnect from" line (waiting, bounded, for it), without the syslog prefix"""
    deadline = time.time() + timeout
    out = []
    while time.time() < deadline:
        with open(POSTFIX_LOG, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace").splitlines()
        tag, out = None, []
        for l in text:
            m = re.search(r" (postfix/\S*smtpd\[\d+\]): (.*)$", l)
            if not m:
                continue
            if tag is None and re.match(r"connect from [^\[ ]*\[%s\]" % re.escape(ip), m.group(2)):
                tag = m.group(1)
            if tag is not None and m.group(1) == tag:
                out.append(m.group(2))
                if m.group(2).startswith("disconnect from"):
                    return out
        time.sleep(0.2)
    return out


def sclient_debug_io(lines):
    """`openssl s_client -debug` stdout lines [(monotonic time, bytes line)] -> [{"dir": "r"/"w", "data", "t"}]:
    every socket read (r) and write (w) it dumped, in order (a read of 0 bytes, EOF, as data b"")"""
    ios, cur = [], None
    for t, raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        m = re.match(r"^(read from|write to) 0x[0-9a-f]+ \[0x[0-9a-f]+\] \(\d+ bytes => (-?\d+)", line)
        if m:
            n = int(m.group(2))
            cur = {"dir": "r" if m.group(1) == "read from" else "w", "n": n, "data": bytearray(), "t": t}
            if n >= 0:
                ios.append(cur)
            continue
        if cur is not None and re.match(r"^[0-9a-f]{4} - ", line):
            if "<SPACES/NULS>" in line:  # BIO_dump left out trailing spaces / NULs
                raise RuntimeError("s_client -debug: truncated dump %r" % line)
            cur["data"] += bytes.fromhex(line[7:55].replace("-", " "))
            continue
        cur = None
    for io in ios:
        if len(io["data"]) != io["n"]:
            raise RuntimeError("s_client -debug: %d bytes dumped of %d" % (len(io["data"]), io["n"]))
    return ios


def run_sclient_debug(argv, timeout=60):
    """runs openssl s_client (stdin /dev/null) with its stdout unbuffered (stdbuf -o0), so that each -debug line is
    timestamped when s_client writes it: (stdout lines [(t, line)], stderr text, exit code, t_start)"""
    t_start = time.monotonic()
    p = subprocess.Popen(["stdbuf", "-o0"] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    lines, err = [], bytearray()

    def pump_out():
        for _ in range(1000000):  # bounded; ends at EOF
            line = p.stdout.readline()
            if not line:
                break
            lines.append((time.monotonic(), line))

    def pump_err():
        for _ in range(1000000):
            b = os.read(p.stderr.fileno(), 65536)
            if not b:
                break
            err.extend(b)

    threads = [threading.Thread(target=pump_out, daemon=True), threading.Thread(target=pump_err, daemon=True)]
    for t in threads:
        t.start()
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()  # our own child, by its Popen handle
        p.wait(timeout=10)
        raise RuntimeError("s_client did not exit within %d s: %r" % (timeout, bytes(err)[-500:]))
    for t in threads:
        t.join(timeout=10)
    return lines, err.decode("utf-8", "replace"), p.returncode, t_start


def smtp_split_cleartext(client_bytes, server_bytes):
    """(client cleartext, server cleartext) of an SMTP STARTTLS connection: the client's bytes up to and with its
    STARTTLS line, the server's up to and with its reply to it (the reply after as many replies as the client wrote
    lines before it, plus the greeting)"""
    m = re.search(rb"(?im)^STARTTLS\r\n", client_bytes)
    if m is None:
        return client_bytes, server_bytes
    nlines = client_bytes[:m.end()].count(CRLF)
    pos, replies = 0, 0
    for _ in range(10000):  # bounded
        eol = server_bytes.find(CRLF, pos)
        if eol < 0:
            break
        line, pos = server_bytes[pos:eol], eol + 2
        if re.match(rb"^\d{3}( |$)", line):
            replies += 1
            if replies == nlines + 1:
                break
    return client_bytes[:m.end()], server_bytes[:pos]


def findings_starttls_failed():
    # 20) 25: openssl s_client -starttls smtp offering only TLS 1.2 NULL-SHA256: Postfix answers STARTTLS with 220,
    # finds no shared cipher and sends a handshake_failure alert instead of a ServerHello
    sess = f_session("starttls-failed", "smtp", 25, OPENSSL, ["starttls-failed"])
    tls_args = ["-tls1_2", "-cipher", "NULL-SHA256:@SECLEVEL=0"]
    # s_client does not tell its source port: it binds to a port picked here (a free one the kernel chose)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((CLIENT_IP, 0))
        cport = probe.getsockname()[1]
    argv = ["openssl", "s_client", "-connect", "%s:25" % SERVER4, "-bind", "%s:%d" % (CLIENT_IP, cport),
            "-starttls", "smtp",
            "-name", EHLO_NAME] + tls_args + ["-CAfile", CA_FILE, "-verify_return_error", "-verify_ip", SERVER4,
                                              "-brief", "-debug"]
    offset = os.path.getsize(POSTFIX_LOG)
    lines, err, rc, t_start = run_sclient_debug(argv)
    m = re.match(rb"CONNECTED\(", lines[0][1]) if lines else None
    if m is None:
        raise RuntimeError("starttls-failed: s_client did not connect: %r %r" % (lines[:3], err[-500:]))
    ios = sclient_debug_io(lines)
    cb = b"".join(bytes(io["data"]) for io in ios if io["dir"] == "w")
    sb = b"".join(bytes(io["data"]) for io in ios if io["dir"] == "r")
    cb0, sb0 = smtp_split_cleartext(cb, sb)
    log = postfix_log_lines(offset, CLIENT_IP)
    sess["client_ip"], sess["client_port"], sess["client"] = CLIENT_IP, cport, "%s:%d" % (CLIENT_IP, cport)
    sess["commands"] = [l.decode() for l in cb0.split(CRLF)[:-1]]
    sess["replies"] = smtp_server_replies(sb0)
    sess["commands_note"] = ("the lines s_client wrote in cleartext (from its -debug dump of the socket writes); "
                             "then its TLS ClientHello (facts.client_tls)")
    sess["argv"] = [a.replace(ROOT + "/", "") for a in argv]
    sess["exit_code"] = rc
    delays, reply_delays = [], []
    for i, io in enumerate(ios):
        if io["dir"] == "w":
            nxt = next((x for x in ios[i + 1:] if x["dir"] == "r"), None)
            if nxt is not None:
                d = nxt["t"] - io["t"]
                delays.append(d)
                what = bytes(io["data"]).split(CRLF)[0].decode("latin-1") if io["data"][:1] != b"\x16" else \
                    "TLS ClientHello"
                reply_delays.append([what, round(d, 3)])
    client_tls, server_tls = tls_summary(cb[len(cb0):]), tls_summary(sb[len(sb0):])
    ehlo = sess["replies"][1]
    alert = server_tls["alerts"][0] if server_tls["alerts"] else None
    error = [l for l in err.splitlines() if ":error:" in l]
    sess["facts"].update({
        "greeting": reply_line(sess["replies"][0]), "ehlo_keywords": ehlo_keywords(ehlo),
        "starttls_offered": "STARTTLS" in ehlo_keywords(ehlo), "tls_used": False,
        "client_command": " ".join(sess["argv"]),
        "client_command_note": "run as `stdbuf -o0 openssl s_client ...` with stdin /dev/null (unbuffered stdout: "
                               "each -debug dump is timestamped as s_client writes it, for the reply delays); the "
                               "-bind port is a free one picked just before (s_client does not report its own)",
        "reply_before_tls": reply_line(sess["replies"][-1]),
        "offered": {"tls_args": tls_args, "client_hello_cipher_suites": client_hello_suites(cb[len(cb0):])},
        "client_tls": client_tls, "server_tls": server_tls,
        "server_hello_received": "server_hello" in server_tls["handshake"],
        "tls_completed": False,
        "alert": dict(alert, sender="server") if alert else None,
        "sclient_error": error[0] if error else err.strip()[-300:], "exit_code": rc,
        "max_reply_delay_s": round(max(delays), 3) if delays else None, "reply_delays_s": reply_delays,
        "reply_delays_note": "from each socket write s_client dumped to the next read it dumped (stdout timestamps)",
        "server_log": log,
        "server_behaviour": "Postfix (smtpd_tls_protocols >=TLSv1.2, smtpd_tls_ciphers = medium) answered STARTTLS "
                            "with 220, found no cipher it shares with a client offering only NULL-SHA256 and sent "
                            "a fatal alert instead of a ServerHello; the connection then closed"})
    if sess["facts"]["reply_before_tls"] != "220 2.0.0 Ready to start TLS" or \
            sess["facts"]["server_hello_received"] or "server_hello" in server_tls["handshake"] or \
            client_tls["handshake"] != ["client_hello"] or rc == 0:
        raise RuntimeError("starttls-failed: not a failed handshake after 220: %r" % sess["facts"])


class TimedLSMTP(LSMTP):
    """LSMTP that notes when its TCP connect returned (t_connected), to time the greeting from it"""
    t_connected = None

    def _get_socket(self, host, port, timeout):
        s = super()._get_socket(host, port, timeout)
        self.t_connected = time.monotonic()
        return s


def findings_slow_greeting():
    # 21) 2530: the 220 greeting comes 6 s after the connect (Postfix runs "sleep 6" from smtpd_client_restrictions
    # at connect time, smtpd_delay_reject = no); smtplib EHLO, QUIT
    log = Log("smtp")
    sess = f_session("slow-greeting", "smtp", PORT_SLOW_GREETING, py_client("smtplib"), ["slow-reply"])
    conn = TimedLSMTP(local_hostname=EHLO_NAME, timeout=TIMEOUT)
    conn._mlog = log
    code, msg = conn.connect(SERVER4, PORT_SLOW_GREETING)
    delay = time.monotonic() - conn.t_connected
    f_bound(sess, conn.sock)
    sess["facts"]["greeting"] = "%d %s" % (code, msg.decode("utf-8", "replace"))
    conn.ehlo()
    kw = ehlo_keywords(log.replies[-1])
    conn.quit()
    f_log(sess, log)
    sess["facts"].update({
        "ehlo_keywords": kw, "starttls_offered": "STARTTLS" in kw, "tls_used": False,
        "greeting_delay_s": round(delay, 3),
        "greeting_delay_note": "measured by the client from its TCP connect returning (smtplib's socket."
                               "create_connection) to smtplib having read the 220 greeting. max_reply_delay_s is, "
                               "as in every session, from each write to the reply that followed (EHLO, QUIT): no "
                               "write comes before the greeting",
        "reply_delays_s": [["greeting (from the connect)", round(delay, 3)]] + [
            [c.split()[0].upper(), round(d, 3)] for c, d in zip(log.commands, log.delays)],
        "server_config": "smtpd_delay_reject = no, smtpd_client_restrictions = sleep 6 (port %d): the client "
                         "restrictions run when the client connects, before the greeting" % PORT_SLOW_GREETING})
    if code != 220 or delay < SLOW_GREETING_MIN:
        raise RuntimeError("slow-greeting: %d after %.2f s" % (code, delay))


class InjectTLSProxy(threading.Thread):
    """Accepts one connection on INJECT_PROXY4:25, connects from INJECT_PROXY4 to Postfix on 127.0.0.1:25 and relays
    both directions unchanged (server bytes as complete lines until the upgrade); right after it has written the
    server's 220 reply to the client's STARTTLS to the client, it writes `injected` to the client in a send() of its
    own (TCP_NODELAY: a segment of its own), then relays raw bytes (TLS) both ways. When one side goes away it
    half-closes the other and reads it to its end; what it could not write to a client that was gone is counted in
    dropped_to_client."""

    def __init__(self, injected=INJECTED_REPLY):
        super().__init__(daemon=True)
        self.injected = injected
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((INJECT_PROXY4, 25))
        self.lsock.listen(1)
        self.lsock.settimeout(30)
        self.error = None
        self.client_bytes = bytearray()      # what the client wrote (forwarded unchanged)
        self.server_bytes = bytearray()      # what Postfix wrote
        self.to_client = bytearray()         # what the proxy wrote to the client
        self.sends_to_client = []            # [what, size] per send() to the client
        self.injected_at = None              # offset in to_client of the injected bytes
        self.server_split = None             # offset in server_bytes after the 220 to STARTTLS
        self.dropped_to_client = bytearray() # server bytes that arrived when the client was gone
        self.client_gone = False
        self.events = []
        self.upstream = None

    def run(self):
        try:
            self._serve()
        except Exception as e:  # reported by the scenario
            self.error = e
        finally:
            self.lsock.close()

    def _send_client(self, cl, data, what):
        if self.client_gone:
            self.dropped_to_client += data
            return
        try:
            cl.sendall(data)
        except OSError as e:
            self.events.append("writing %d bytes (%s) to the client failed: %s" % (len(data), what, e))
            self.client_gone = True
            self.dropped_to_client += data
            return
        self.to_client += data
        self.sends_to_client.append([what, len(data)])

    def _serve(self):
        import select
        cl, _ = self.lsock.accept()
        cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = socket.create_connection((SERVER4, 25), timeout=TIMEOUT, source_address=(INJECT_PROXY4, 0))
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream = up.getsockname()[:2]
        pending = b""   # server bytes not yet a complete line (before the upgrade)
        open_ends = {cl, up}
        for _ in range(10000):  # bounded
            if not open_ends:
                break
            r, _, _ = select.select(list(open_ends), [], [], 30)
            if not r:
                raise RuntimeError("injection proxy: nothing for 30 s")
            for s in (x for x in (cl, up) if x in r):
                side = "client" if s is cl else "server"
                try:
                    data = s.recv(65536)
                except OSError as e:
                    self.events.append("%s: %s" % (side, e))
                    data = b""
                if s is cl:
                    if not data:
                        self.events.append("the client's side ended (%d bytes from the client in all)"
                                           % len(self.client_bytes))
                        self.client_gone = True
                        open_ends.discard(cl)
                        if up in open_ends:
                            up.shutdown(socket.SHUT_WR)
                            self.events.append("the proxy half-closed its connection to the server (FIN)")
                        continue
                    self.client_bytes += data
                    up.sendall(data)
                    continue
                if not data:
                    self.events.append("the server closed its connection (%d bytes from the server in all)"
                                       % len(self.server_bytes))
                    open_ends.discard(up)
                    if cl in open_ends and not self.client_gone:
                        cl.shutdown(socket.SHUT_WR)
                        self.events.append("the proxy half-closed its connection to the client (FIN)")
                    continue
                self.server_bytes += data
                if self.injected_at is not None:
                    self._send_client(cl, data, "server bytes")
                    continue
                pending += data
                out = b""
                for _ in range(1000):  # complete lines
                    i = pending.find(CRLF)
                    if i < 0:
                        break
                    line, pending = pending[:i + 2], pending[i + 2:]
                    out += line
                    if line.startswith(b"220 ") and re.search(rb"(?im)^STARTTLS\r\n", bytes(self.client_bytes)):
                        self._send_client(cl, out, "server lines, the last the 220 to STARTTLS")
                        out = b""
                        self.server_split = len(self.server_bytes) - len(pending)
                        self.injected_at = len(self.to_client)
                        self._send_client(cl, self.injected, "injected")
                        if pending:
                            self._send_client(cl, pending, "server bytes")
                            pending = b""
                        break
                if out:
                    self._send_client(cl, out, "server lines")
        cl.close()
        up.close()


def smtp_reply_exact(c):
    """read one SMTP reply without taking a byte past its last CRLF from the socket (MSG_PEEK, then a recv of exactly
    its length): like a client that hands the socket to its TLS library right after the 220, whatever follows the
    reply stays in the kernel's buffer and is read by the TLS layer"""
    if c.buf:
        raise RuntimeError("unexpected bytes before the reply: %r" % c.buf[:60])
    for _ in range(3000):  # bounded: ~30 s
        peek = c.sock.recv(65536, socket.MSG_PEEK)
        if not peek:
            raise RuntimeError("server closed the connection")
        m = re.match(rb"(?:\d{3}-[^\r\n]*\r\n)*\d{3} [^\r\n]*\r\n", peek)
        if m:
            data = b""
            for _ in range(100):  # bounded
                if len(data) >= m.end():
                    break
                data += c.sock.recv(m.end() - len(data))
            c.buf = data
            return c.reply()
        time.sleep(0.01)
    raise RuntimeError("no complete reply")


def findings_server_injection(keylog):
    # 22) the STARTTLS response-injection proxy on INJECT_PROXY4:25: a raw client sends EHLO and STARTTLS, reads the
    # 220 exactly, then starts TLS (Python ssl, key log); the proxy wrote "250 injected-before-tls" right after the
    # 220, so the client's TLS layer reads it as its first record. Both legs are sessions.
    proxy = InjectTLSProxy()
    proxy.start()
    offset = os.path.getsize(POSTFIX_LOG)
    sess = f_session("server-injection", "smtp", 25, RAW_SMTP, ["starttls-injection"], server=INJECT_PROXY4)
    c = FRawSMTP(25, server=INJECT_PROXY4)
    f_bound(sess, c.sock)
    sess["facts"]["greeting"] = reply_line(c.greeting)
    leg = f_session("server-injection", "smtp", 25, INJECT_PROXY_SOFTWARE, [])  # its SYN is second
    ehlo = c.cmd("EHLO %s" % EHLO_NAME, 250)
    c.write("STARTTLS")
    rep = smtp_reply_exact(c)
    if rep[0] != 220:
        raise RuntimeError("server-injection: STARTTLS answered %r" % rep)
    tls = client_ctx(keylog).wrap_socket(c.sock, server_hostname=SERVER_NAME, do_handshake_on_connect=False)
    t0 = time.monotonic()
    err = None
    try:
        tls.do_handshake()
    except (ssl.SSLError, OSError) as e:
        err = e
    handshake_s = time.monotonic() - t0
    if err is None:
        version = tls.version()
        tls.close()
        raise RuntimeError("server-injection: the TLS handshake completed (%s) although the injected line came "
                           "first: the scenario needs another look" % version)
    tls.close()   # the rest of the injected line is still unread: the kernel answers with a RST
    c.sock = None
    proxy.join(30)
    if proxy.is_alive() or proxy.error:
        raise RuntimeError("injection proxy: %r (alive %r)" % (proxy.error, proxy.is_alive()))
    f_raw(sess, c)
    server_log = postfix_log_lines(offset, INJECT_PROXY4)
    cbytes, sbytes = bytes(proxy.client_bytes), bytes(proxy.server_bytes)
    cb0, sb0 = smtp_split_cleartext(cbytes, sbytes)
    if len(sb0) != proxy.server_split:
        raise RuntimeError("injection proxy: split the server bytes at %r, expected %d" % (proxy.server_split,
                                                                                           len(sb0)))
    leg["client_ip"], leg["client_port"] = proxy.upstream
    leg["client"] = "%s:%d" % proxy.upstream
    leg["commands"] = smtp_client_lines(cb0)
    leg["replies"] = smtp_server_replies(sb0)
    leg["commands_note"] = "the client's cleartext lines, forwarded unchanged; then its TLS ClientHello"
    to_client = bytes(proxy.to_client)
    inj_end = proxy.injected_at + len(proxy.injected)
    if to_client[proxy.injected_at:inj_end] != proxy.injected or to_client[:proxy.injected_at] != sb0:
        raise RuntimeError("injection proxy: wrote %r around the injection" % to_client[:inj_end][-80:])
    client_tls = tls_summary(cbytes[len(cb0):])
    server_tls = tls_summary(sbytes[len(sb0):])
    forwarded = tls_summary(to_client[inj_end:])
    completed = client_tls["change_cipher_spec"] or client_tls["encrypted_records"] or \
        client_tls["handshake"] != ["client_hello"]
    if completed:
        raise RuntimeError("server-injection: the client sent more than its ClientHello: %r" % client_tls)
    reason = getattr(err, "reason", None)
    common = {
        "greeting_client_leg": sess["facts"]["greeting"], "greeting_proxy_leg": reply_line(leg["replies"][0]),
        "ehlo_keywords": ehlo_keywords(ehlo), "starttls_offered": "STARTTLS" in ehlo_keywords(ehlo),
        "tls_used": False, "reply_before_tls": reply_line(rep),
        "injected_bytes": proxy.injected.decode(), "injected_hex": proxy.injected.hex(),
        "injected_by": "the proxy, in a send() of its own right after writing the server's 220 to the client",
        "proxy_sends_to_client": proxy.sends_to_client,
        "client_tls": client_tls, "server_tls_proxy_leg": server_tls,
        "server_hello_sent_by_server": "server_hello" in server_tls["handshake"],
        "forwarded_to_client_after_injection": forwarded,
        "server_hello_reached_client_leg": "server_hello" in forwarded["handshake"],
        "dropped_by_proxy": {"size": len(proxy.dropped_to_client),
                             "tls": tls_summary(bytes(proxy.dropped_to_client)),
                             "note": "server bytes that arrived after the client had gone: not written to it"},
        "client_handshake_error": str(err), "client_handshake_error_reason": reason,
        "handshake_s": round(handshake_s, 3), "tls_completed": False,
        "proxy_events": proxy.events, "server_log": server_log,
        "proxy": INJECT_PROXY_SOFTWARE,
        "legs": "client leg: %s -> %s:25 (the proxy); proxy leg: %s -> %s:25 (Postfix)" % (
            sess["client"], INJECT_PROXY4, leg["client"], SERVER4)}
    sess["facts"].update(common)
    sess["facts"].update({
        "leg": "client",
        "client_read": "the 220 exactly (MSG_PEEK, then a recv of its length): every byte after it went to the TLS "
                       "layer, which read the injected line where it expected the first TLS record header",
        "server_behaviour": "Postfix answered STARTTLS with 220 2.0.0 Ready to start TLS; the proxy added %r in a "
                            "segment of its own; the client's TLS layer took it for a record header (%s), gave up "
                            "without an alert and closed with the rest of the line unread" % (
                                proxy.injected.decode(), reason)})
    sess["expect"].append("starttls-failed")
    leg["facts"].update(common)
    leg["facts"].update({
        "leg": "proxy",
        "server_behaviour": "Postfix answered STARTTLS with 220 and, after the client's ClientHello, sent %s; the "
                            "client never answered it: the proxy half-closed the connection when the client had "
                            "gone and Postfix ended the handshake" % tls_flight(server_tls)})
    leg["expect"].append("starttls-failed")
    if not sess["facts"]["starttls_offered"] or reply_line(rep) != "220 2.0.0 Ready to start TLS" or \
            common["greeting_client_leg"] != common["greeting_proxy_leg"]:
        raise RuntimeError("server-injection: %r" % common)


def findings_prepare():
    """uncaptured: the extra listeners are up, and Dovecot's per-IP auth penalty of our client addresses is reset
    by one successful login each (a failure from an earlier run would delay every login from that address)"""
    for port in FINDINGS_EXTRA_PORTS + (CLEARTEXT_PORT,):
        try:
            _orig_create_connection((SERVER4, port), 10).close()
        except OSError as e:
            raise SystemExit("findings: nothing listens on %s:%d (%s): run scripts/lab/setup.sh with the current "
                             "scripts/lab/config" % (SERVER4, port, e))
    for ip in (CLIENT_IP, BRUTE_IP):
        with source_ip(ip):
            t0 = time.monotonic()
            conn = imaplib.IMAP4(SERVER4, 143, timeout=60)
            conn.login("carol", PASSWORDS["carol"])
            conn.logout()
            print("[prepare] findings: Dovecot login from %s took %.1f s (auth penalty reset)"
                  % (ip, time.monotonic() - t0))


def scenario_findings(args):
    keylog = args.keylog
    truth_dave = Truth(["dave"])
    findings_journey(keylog, truth_dave)
    findings_cleartext_auth(keylog)
    findings_starttls_refused()
    direct = findings_starttls_injection(keylog)
    findings_downgrade(direct)
    findings_smuggling()
    findings_bare_lf()
    relay_rec = findings_relay(keylog)
    findings_source_route()
    findings_helo()
    findings_spoofed()
    findings_vrfy()
    findings_enumeration()
    findings_brute_force(keylog)
    findings_slow()
    findings_limits()
    findings_early_talker()
    findings_reset()
    findings_bounce(keylog, relay_rec)
    findings_starttls_failed()
    findings_slow_greeting()
    findings_server_injection(keylog)
    findings_finish()


def findings_finish():
    """error-reply from the replies each client read; incidental kinds; checks on the expectations"""
    for s in SESSIONS:
        f = s["facts"]
        f["tls_used"] = s["tls"] is not None
        if s["protocol"] == "smtp" and "ehlo_keywords" not in f:  # the first multi-line 250: the EHLO reply
            ehlo = next((r for r in s["replies"] if r[0] == 250 and "\n" in r[1]), None)
            if ehlo is not None:
                f["ehlo_keywords"] = ehlo_keywords(ehlo)
        if "starttls_offered" not in f:  # as the client saw it: EHLO keywords, IMAP greeting, POP3 CAPA
            if s["protocol"] == "smtp" and "ehlo_keywords" in f:
                f["starttls_offered"] = "STARTTLS" in f["ehlo_keywords"]
            elif s["protocol"] == "imap" and "greeting" in f:
                f["starttls_offered"] = re.search(r"\bSTARTTLS\b", f["greeting"]) is not None
            elif s["protocol"] == "pop3" and "capa" in f:
                f["starttls_offered"] = "STLS" in f["capa"]
            else:
                f["starttls_offered"] = None  # the client did not ask (POP3 without CAPA)
        errs = error_replies(s)
        s["facts"]["error_replies"] = errs
        if s["tls"] and not f["starttls_offered"] and s["tls"]["mode"] == "starttls":
            raise RuntimeError("%s: STARTTLS used but not seen offered" % s["scenario"])
        if errs and "error-reply" not in s["expect"]:
            s["expect"].append("error-reply")
        if not errs and "error-reply" in s["expect"]:
            raise RuntimeError("%s: error-reply expected but no error reply read" % s["scenario"])
        if f.get("starttls_offered") and not s["tls"] and "starttls-not-used" not in s["expect"]:
            s["incidental"].append("starttls-not-used")
        delay = f.get("max_reply_delay_s")
        if delay is not None and delay >= SLOW_REPLY_INCIDENTAL and "slow-reply" not in s["expect"]:
            s["incidental"].append("slow-reply")
        unknown = [k for k in s["expect"] + s["incidental"] if k not in FINDING_KINDS]
        if unknown:
            raise RuntimeError("%s: unknown finding kinds %r" % (s["scenario"], unknown))
        if s["clean"] and (s["expect"] or s["incidental"]):
            raise RuntimeError("clean session %s raises %r %r" % (s["scenario"], s["expect"], s["incidental"]))
        if None in (s["client_ip"], s["client_port"]):
            raise RuntimeError("%s: client address unknown" % s["scenario"])


# -- SASL NTLM (ntlm.pcap): IMAP AUTHENTICATE NTLM, POP3 AUTH NTLM and SMTP AUTH NTLM with curl
# Dovecot 2.3.13 dropped its own NTLM; the lab's second Dovecot instance (scripts/lab/config/dovecot/dovecot-ntlm.conf)
# gets NTLM from Samba's winbind (ntlm_auth + winbindd, scripts/lab/config/samba/smb.conf, the users and passwords of
# lab-users) and listens on NTLM_SERVER:143 and :110, Postfix on NTLM_SERVER:25 takes its SASL from it. The standard
# ports on another loopback address keep the main instance's CAPABILITY / SASL lines as they are and let mailscope and
# tshark read the sessions as IMAP / POP3 / SMTP without options. curl sends NTLMv2 (+ LMv2): Samba's CHALLENGE
# carries target info.
NTLM_NETBIOS = "MAIL"      # netbios name in config/samba/smb.conf: the NTLM domain a client may send
NTLM_USER = "bob"          # no other scenario reads bob's mailbox; prepare empties it
NTLM_WRONG_PASSWORD = "bob-Wrong-pass"
NTLM_SERVER_INFO = {
    "address": NTLM_SERVER,
    "imap_pop3": "a second Dovecot instance (scripts/lab/config/dovecot/dovecot-ntlm.conf) on %s:143 and :110: "
                 "AUTH=PLAIN AUTH=LOGIN AUTH=NTLM, STARTTLS/STLS; NTLM through Samba's winbind (auth_use_winbind: "
                 "ntlm_auth --helper-protocol=squid-2.5-ntlmssp, winbindd checking Samba's passdb)" % NTLM_SERVER,
    "smtp": "Postfix on %s:25 (scripts/lab/config/postfix/master.cf): AUTH PLAIN LOGIN NTLM from that instance's "
            "SASL socket, STARTTLS offered, AUTH allowed without it" % NTLM_SERVER,
    "ntlm_target": "Samba standalone server (scripts/lab/config/samba/smb.conf): NetBIOS name %s, NTLMv2 only; the "
                   "CHALLENGE's target info also names the host (DNS computer name)" % NTLM_NETBIOS,
    "users": "the users and passwords of scripts/lab/config/dovecot/lab-users, in Samba's passdb (setup.sh)",
}
NTLM_MESSAGES = [lambda: msg_simple("ntlm-bob-1", "Alice <alice@example.test>", "Bob <bob@example.test>",
                                    "Fetched after an NTLM login",
                                    "Bob,\n\nIMAP and POP3 fetch this message after AUTH NTLM.\n", 55)]


def ntlm_prepare():
    """uncaptured: the NTLM listeners are up, and the NTLM instance's per-IP auth penalty (the failed logins of an
    earlier run) is reset by one successful login from CLIENT_IP"""
    for port in NTLM_PORTS:
        try:
            _orig_create_connection((NTLM_SERVER, port), 10).close()
        except OSError as e:
            raise SystemExit("ntlm: nothing listens on %s:%d (%s): run scripts/lab/setup.sh with the current "
                             "scripts/lab/config" % (NTLM_SERVER, port, e))
    t0 = time.monotonic()
    conn = imaplib.IMAP4(NTLM_SERVER, 143, timeout=60)
    conn.login(NTLM_USER, PASSWORDS[NTLM_USER])
    conn.logout()
    print("[prepare] ntlm: Dovecot (NTLM instance) login from %s took %.1f s (auth penalty reset)"
          % (CLIENT_IP, time.monotonic() - t0))


def ntlm_session(scenario, protocol, port, password, domain, success, args, path="/", sasl_ir=False,
                 starttls=False, extra=(), out=None):
    """one curl session with --login-options AUTH=NTLM against NTLM_SERVER; records the NTLM exchange as curl's
    trace shows it (the manifest step adds what tshark decodes and checks both against the packets)"""
    sys.path.insert(0, HERE)
    import check_samples
    sess = {"scenario": scenario, "client": None, "server": "%s:%d" % (NTLM_SERVER, port), "client_software": CURL,
            "protocol": protocol, "server_ip": NTLM_SERVER, "server_port": port, "client_ip": None,
            "client_port": None, "tls": None, "credentials": [], "commands": [], "replies": []}
    SESSIONS.append(sess)
    login = "%s\\%s" % (domain, NTLM_USER) if domain else NTLM_USER
    a = ["--resolve", "%s:%d:%s" % (SERVER_NAME, port, NTLM_SERVER), "-u", "%s:%s" % (login, password),
         "--login-options", "AUTH=NTLM"] + (["--sasl-ir"] if sasl_ir else []) + (["--ssl-reqd"] if starttls else [])
    a += list(extra) + ["%s://%s%s" % (protocol, SERVER_NAME, path)]
    if out:
        a += ["-o", out]
    a += ["-w", "%{local_ip} %{local_port}\\n"]
    trace = []
    stdout = run_curl(sess, a, keylog=args.keylog if starttls else None, ok=(0,) if success else (67,), trace=trace)
    ip, port_ = stdout.decode().strip().split("\n")[-1].split()
    sess["client_ip"], sess["client_port"], sess["client"] = ip, int(port_), "%s:%s" % (ip, port_)
    if starttls:
        if not sess["tls"]:
            raise RuntimeError("%s: no TLS in curl's trace" % scenario)
        sess["tls"]["mode"] = "starttls"
    # the exchange as curl's trace shows it: the NEGOTIATE (on the AUTH line with an initial response), the
    # server's CHALLENGE, the AUTHENTICATE, then the server's verdict
    cb = "\r\n".join(c for c in sess["commands"] if isinstance(c, str)).encode()
    sb = "\r\n".join(trace).encode()
    msgs = check_samples.ntlm_messages(cb, sb)
    parsed = [check_samples.ntlm_parse(m) for _, m in msgs]
    if [p["type"] for p in parsed] != [1, 2, 3]:
        raise RuntimeError("%s: NTLMSSP messages %r in curl's trace" % (scenario, [p["type"] for p in parsed]))
    neg, chal, auth = parsed
    auth_line = next(c for c in sess["commands"] if isinstance(c, str) and re.match(r"^(\S+ )?AUTH(ENTICATE)? NTLM\b", c, re.I))
    neg_token, chal_token = check_samples.NTLM_B64.findall(cb)[0].decode(), check_samples.NTLM_B64.findall(sb)[0].decode()
    i = next(i for i, l in enumerate(trace) if chal_token in l)
    verdict = next((l for l in trace[i + 1:] if re.match(r"^(A\d+ |\+OK|-ERR|\d{3} )", l)), None)
    ok = bool(verdict) and bool(re.match(r"^(A\d+ OK|\+OK|235 )", verdict))
    if ok != success:
        raise RuntimeError("%s: server said %r, wanted success=%r" % (scenario, verdict, success))
    if (auth["username"], auth["domain"]) != (NTLM_USER, domain) or auth["ntlm_version"] != "NTLMv2":
        raise RuntimeError("%s: AUTHENTICATE for %r\\%r, %r" % (scenario, auth["domain"], auth["username"],
                                                              auth["ntlm_version"]))
    proof = lambda pw: check_samples.ntproofstr(pw, auth["username"], auth["domain"],
                                                bytes.fromhex(chal["server_challenge"]), bytes.fromhex(auth["blob"]))
    lab_ok = proof(PASSWORDS[NTLM_USER]) == auth["ntproofstr"]
    if proof(password) != auth["ntproofstr"] or lab_ok != success:
        raise RuntimeError("%s: the NTProofStr does not follow from the password" % scenario)
    sess["credentials"].append({"mechanism": "NTLM", "username": NTLM_USER, "password": password, "domain": domain,
                                "success": success, "ntlm_version": auth["ntlm_version"]})
    sess["ntlm"] = {
        "sasl_initial_response": neg_token in auth_line, "auth_command": auth_line.split(" TlRM")[0],
        "server_reply": verdict,
        "negotiate": neg, "challenge": chal, "authenticate": auth, "ntlm_version": auth["ntlm_version"],
        "lm_response_kind": "LMv2" if "lmv2_client_challenge" in auth else None,
        "hashcat": {"mode": 5600, "format": "NetNTLMv2",
                    "line": "%s::%s:%s:%s:%s" % (auth["username"], auth["domain"], chal["server_challenge"],
                                                 auth["ntproofstr"], auth["blob"])},
        "lab_password": PASSWORDS[NTLM_USER], "password_gives_ntproofstr": True,
        "lab_password_gives_ntproofstr": lab_ok,
    }
    return sess


def scenario_ntlm(args):
    truth = Truth([NTLM_USER])
    pw = PASSWORDS[NTLM_USER]
    # 1) IMAP, clear, empty domain: the server offers SASL-IR, so curl sends the NEGOTIATE with AUTHENTICATE;
    #    then SELECT INBOX and UID FETCH 1 BODY[]
    out = os.path.join(args.state, "curl-ntlm-imap-fetch")
    s = ntlm_session("imap-ntlm", "imap", 143, pw, "", True, args, path="/INBOX;UID=1", out=out)
    with open(out, "rb") as f:
        s["messages_fetched"] = [truth.describe("UID FETCH 1 BODY[]", f.read())]
    # 2) POP3, clear, domain MAIL (the server's NetBIOS name): AUTH NTLM without initial response ("+ " first),
    #    then RETR 1 of the same message
    out = os.path.join(args.state, "curl-ntlm-pop3-retr")
    s = ntlm_session("pop3-ntlm", "pop3", 110, pw, NTLM_NETBIOS, True, args, path="/1", out=out)
    with open(out, "rb") as f:
        s["messages_fetched"] = [truth.describe("RETR 1", f.read())]
    # 3) IMAP STARTTLS (TLS 1.3, key log), empty domain: SELECT INBOX, SEARCH ALL
    out = os.path.join(args.state, "curl-ntlm-imap-search")
    s = ntlm_session("imap-ntlm-starttls", "imap", 143, pw, "", True, args, path="/INBOX?ALL", starttls=True,
                     out=out)
    with open(out, "rb") as f:
        s["search_result"] = f.read().decode().strip()
    # 4) SMTP, clear, domain MAIL, --sasl-ir: AUTH NTLM with the NEGOTIATE as initial response (the only form tshark
    #    4.0 dissects in SMTP), then one message to bob
    msg, meta = msg_simple("ntlm-smtp-1", "Bob <bob@example.test>", "bob@example.test", "Sent after SMTP AUTH NTLM",
                           "Sent by curl after AUTH NTLM on 127.0.0.4:25.\n", 56)
    path = os.path.join(args.state, "curl-ntlm-msg.eml")
    with open(path, "wb") as f:
        f.write(msg)
    s = ntlm_session("smtp-ntlm", "smtp", 25, pw, NTLM_NETBIOS, True, args, path="/client.example.test",
                     sasl_ir=True, extra=["--mail-from", "bob@example.test", "--mail-rcpt", "bob@example.test",
                                          "--upload-file", path])
    s.setdefault("messages_sent", []).append(
        message_record("ntlm-smtp-1", msg, meta, "bob@example.test", ["bob@example.test"],
                       server_reply=queued_reply(s)))
    # 5) IMAP, clear, a wrong password: NO [AUTHENTICATIONFAILED], curl exits 67
    ntlm_session("imap-ntlm-wrong-password", "imap", 143, NTLM_WRONG_PASSWORD, "", False, args, path="/INBOX")
    # 6) SMTP, clear, domain MAIL, a wrong password, no initial response ("334 " first): 535, curl exits 67
    ntlm_session("smtp-ntlm-wrong-password", "smtp", 25, NTLM_WRONG_PASSWORD, NTLM_NETBIOS, False, args,
                 path="/client.example.test",
                 extra=["--mail-from", "bob@example.test", "--mail-rcpt", "bob@example.test", "--upload-file", path])


def ntlm_session_truth(path, keylog_path, sess):
    """ntlm: add what tshark decodes of each NTLM exchange (check_samples.ntlm_facts) and stop if it contradicts
    what curl's trace showed"""
    sys.path.insert(0, HERE)
    import check_samples
    ports = {s["tcp_stream"]: s["server_port"] for s in sess}
    plain = check_samples.follow(path, "tcp", sorted(ports), server_ports=ports)
    extra = ["-o", "tls.keylog_file:" + keylog_path] if keylog_path else []
    tls = check_samples.follow(path, "tls", [s["tcp_stream"] for s in sess if s["tls"]], extra, ports)
    for s in sess:
        st = s["tcp_stream"]
        cb, sb = plain.get(st, (b"", b""))
        if s["tls"]:
            tcb, tsb = tls.get(st, (b"", b""))
            cb, sb = cb + tcb, sb + tsb
        f = check_samples.ntlm_facts(cb, sb, path, st, s["protocol"], extra)
        s["ntlm"]["tshark"] = f["tshark"]
        if "tshark_in_place" in f:
            s["ntlm"]["tshark_in_place"] = f["tshark_in_place"]
        problems = check_samples.ntlm_problems(s, f)
        if problems:
            raise SystemExit("%s stream %d: %s" % (os.path.basename(path), st, "; ".join(problems)))


SCENARIOS = {
    "smtp-plain": (scenario_smtp_plain, []),
    "smtp-auth-starttls": (scenario_smtp_auth_starttls, []),
    "smtp-auth-cleartext": (scenario_smtp_auth_cleartext, []),
    "pop3": (scenario_pop3, [("dave", POP3_MESSAGES)]),
    "imap": (scenario_imap, [("erin", IMAP_MESSAGES)]),
    "imap-compress": (scenario_imap_compress, [("erin", IMAP_COMPRESS_MESSAGES)]),
    "imap-large": (scenario_imap_large, [("erin", [])]),
    "tls-mixed": (scenario_tls_mixed, [("dave", TLS_MIXED_DAVE), ("erin", TLS_MIXED_ERIN)]),
    "tls-ciphers": (scenario_tls_ciphers, [("dave", TLS_CIPHERS_DAVE), ("erin", TLS_CIPHERS_ERIN)]),
    "tls-legacy": (scenario_tls_legacy, []),
    "small": (scenario_small, []),
    "hostile-escapes": (scenario_hostile_escapes, [("erin", [])]),
    "findings": (scenario_findings, [("dave", []), ("erin", []), ("carol", [])]),
    "ntlm": (scenario_ntlm, [(NTLM_USER, NTLM_MESSAGES)]),
}


def cmd_prepare(args):
    for user, builders in SCENARIOS[args.scenario][1]:
        prepare_mailbox(user, builders, args.state, args.scenario)
        print("[prepare] %s: %d messages delivered to %s" % (args.scenario, len(builders), user))
    if args.scenario == "findings":
        findings_prepare()
    if args.scenario == "ntlm":
        ntlm_prepare()


def password_on_wire(mech, protocol):
    if mech in ("PLAIN", "AUTHENTICATE PLAIN (SASL-IR)"):
        return "base64"  # SASL PLAIN: base64("\0user\0password")
    if mech == "LOGIN":
        return "plain" if protocol == "imap" else "base64"  # IMAP LOGIN command vs SASL LOGIN
    if mech == "USER/PASS":
        return "plain"
    if mech == "CRAM-MD5":
        return "none (base64 of user + HMAC-MD5 of the challenge)"
    if mech == "APOP":
        return "none (MD5 of greeting timestamp + password)"
    if mech == "NTLM":
        return "none (NTLM response over the server challenge, keyed by the password's NT hash; crackable offline)"
    return "unknown"


def cmd_run(args):
    fn = SCENARIOS[args.scenario][0]
    try:
        fn(args)
    except RaceLost as e:
        print("[run] %s: %s" % (args.scenario, e))
        sys.exit(75)
    name = args.name or args.scenario
    for s in SESSIONS:
        for c in s["credentials"]:
            c["inside_tls"] = s["tls"] is not None
            c["password_on_wire"] = ("none (malformed response, no credentials)" if c.get("malformed")
                                     else password_on_wire(c["mechanism"], s["protocol"]))
            c["readable_without_tls_keys"] = c["password_on_wire"] in ("plain", "base64") and not c["inside_tls"]
        for k in ("argv",):
            if k in s:
                s[k] = [a.replace(args.state, "$STATE") for a in s[k]]
    with open(os.path.join(args.state, "sessions-%s.json" % name), "w") as f:
        json.dump(SESSIONS, f, indent=1, ensure_ascii=False)
    print("[run] %s: %d sessions" % (name, len(SESSIONS)))


# ---------------------------------------------------------------- manifest
def tshark_fields(path, dfilter, fields, extra=()):
    argv = ["tshark", "-n", "-r", path] + list(extra) + ["-Y", dfilter, "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("tshark failed on %s: %s" % (path, p.stderr))
    return [l.split("\t") for l in p.stdout.splitlines() if l.strip()]


LINKTYPES = {1: "EN10MB (Ethernet)", 113: "LINUX_SLL (Linux cooked v1)", 276: "LINUX_SLL2 (Linux cooked v2)"}


def container(path):
    """format details read from the file itself (through gzip if compressed)"""
    import gzip
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read(4096)
    info = {"compression": "gzip" if opener is gzip.open else None}
    for endian, name in (("<", "little"), (">", "big")):
        magic = struct.unpack(endian + "I", data[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            _, vmaj, vmin, _, _, snaplen, net = struct.unpack(endian + "IHHiIII", data[:24])
            info.update({"format": "pcap", "version": "%d.%d" % (vmaj, vmin), "byte_order": name,
                         "ts_resolution": "ns" if magic == 0xA1B23C4D else "us", "snaplen": snaplen,
                         "linktype": net, "linktype_name": LINKTYPES.get(net)})
            return info
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        info.update({"format": "pcapng", "byte_order": "little" if endian == "<" else "big"})
        with opener(path, "rb") as f:
            data = f.read()
        off, btype, blocks = 0, None, []
        while off + 12 <= len(data):  # walk to the first Interface Description Block
            btype, blen = struct.unpack(endian + "II", data[off:off + 8])
            blocks.append({1: "IDB", 6: "EPB", 0x0A0D0D0A: "SHB", 0x0A: "DSB"}.get(btype, hex(btype)))
            if btype == 1 or blen < 12:
                break
            off += blen
        idb = data[off:]
        if "DSB" in blocks:
            info["decryption_secrets_block"] = True
        if btype == 1:
            _, blen, net, _, snaplen = struct.unpack(endian + "IIHHI", idb[:16])
            tsres = None
            opts = idb[16:blen - 4]
            while len(opts) >= 4:
                code, ln = struct.unpack(endian + "HH", opts[:4])
                if code == 0:
                    break
                if code == 9:
                    tsres = opts[4]
                opts = opts[4 + ((ln + 3) & ~3):]
            info.update({"linktype": net, "linktype_name": LINKTYPES.get(net), "snaplen": snaplen,
                         "ts_resolution": {None: "us", 6: "us", 9: "ns"}.get(tsres, "if_tsresol=%r" % tsres)})
            links = [net]
            for _ in range(64):  # further Interface Description Blocks right after the first one
                off += blen
                if off + 16 > len(data):
                    break
                btype, blen = struct.unpack(endian + "II", data[off:off + 8])
                if btype != 1 or blen < 12:
                    break
                links.append(struct.unpack(endian + "H", data[off + 8:off + 10])[0])
            if len(links) > 1:  # linktype/snaplen/ts_resolution above are interface 0's
                info["interfaces"] = [{"linktype": l, "linktype_name": LINKTYPES.get(l)} for l in links]
        return info
    info["format"] = "unknown"
    return info


def capinfos(path):
    p = subprocess.run(["capinfos", "-M", "-c", "-u", path], capture_output=True, text=True, timeout=120)
    info = {}
    for line in p.stdout.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return {"packets": int(info.get("Number of packets", "0") or 0),
            "duration": info.get("Capture duration"), **container(path)}


def streams_of(path):
    """client SYNs in order: [(stream, src, srcport, dst, dstport)]"""
    rows = tshark_fields(path, "tcp.flags.syn==1 && tcp.flags.ack==0",
                         ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport"])
    return [(int(r[0]), r[1] or r[2], int(r[3]), r[4] or r[5], int(r[6])) for r in rows]


DESCRIPTIONS = {
    "smtp-plain.pcap": "Cleartext SMTP on port 25: smtplib (EHLO, VRFY, HELP, unknown command, NOOP, 8BITMIME "
                       "mail with KOI8-R subject, dot-stuffed lines and a PNG attachment to 2 accepted + 1 refused "
                       "recipient, RSET, QUIT), swaks with PIPELINING, curl --upload-file (1 accepted, 1 refused)",
    "smtp-auth-starttls.pcap": "Submission port 587: STARTTLS then AUTH PLAIN (smtplib), AUTH LOGIN (smtplib), a failed "
                               "AUTH (535), and curl; TLS key log in smtp-auth-starttls.keys",
    "smtp-auth-cleartext.pcap": "Cleartext SMTP AUTH on port 2525 (no TLS offered; tshark needs -d tcp.port==2525,smtp): "
                                "smtplib AUTH PLAIN + 8BITMIME mail with a UTF-8 Cyrillic subject and dot lines; "
                                "smtplib AUTH LOGIN (user and password after 334s) + mail with report.pdf; a scripted "
                                "raw-socket client: AUTH LOGIN with a wrong password (535), AUTH PLAIN with a "
                                "non-base64 response (535 'Invalid base64 data'), AUTH PLAIN with initial response "
                                "(235), CHUNKING "
                                "(BDAT n + BDAT m LAST), PIPELINING (MAIL/RCPT/RCPT/DATA in one write, one 550), "
                                "RSET, QUIT; swaks AUTH LOGIN + mail; smtplib AUTH PLAIN + an old-style "
                                "non-MIME mail with report.pdf uuencoded (GNU uuencode) in its text body",
    "pop3.pcap": "Cleartext POP3 on port 110: poplib CAPA, USER/PASS, STAT, LIST, UIDL, RETR 1, RETR 3 (server "
                 "dot-stuffing), TOP 2 5, NOOP, DELE 1, QUIT; curl pop3:// (AUTH CRAM-MD5, LIST, RETR 1); poplib APOP",
    "imap.pcap": "Cleartext IMAP on port 143: imaplib LOGIN, CAPABILITY, LIST, SELECT, FETCH 1:* (FLAGS), UID FETCH "
                 "BODY[], BODY.PEEK[HEADER], chunked BODY.PEEK[]<off.1000>, APPEND with a literal, IDLE with an "
                 "EXISTS push, LOGOUT; curl imap:// (AUTHENTICATE PLAIN with SASL-IR, LIST, UID FETCH)",
    "imap-compress.pcap": "Cleartext IMAP on port 143 with COMPRESS=DEFLATE (RFC 4978), scripted raw-socket client: "
                          "LOGIN, CAPABILITY, a3 COMPRESS DEFLATE, then both directions raw deflate (sessions[].compress "
                          "has the stream offsets): SELECT INBOX, UID FETCH BODY[] (PNG attachment), APPEND to Sent with "
                          "a synchronising literal, NOOP, LOGOUT",
    "imap-large.pcap.gz": "Cleartext IMAP on port 143, gzip-compressed pcap: imaplib LOGIN, SELECT, APPEND of a ~10 MB "
                          "message (base64 attachment of 7,500,000 zero bytes) with a synchronising literal, NOOP, "
                          "UID FETCH BODY[] of it (one ~10 MB literal over many TCP segments), LOGOUT",
    "tls-mixed.pcapng": "TLS mix (pcapng): SMTPS 465 (TLS 1.3, AUTH PLAIN, one mail), IMAPS 993 (TLS 1.3), POP3S 995 "
                        "(TLS 1.2), IMAP STARTTLS on 143, POP3 STLS on 110, curl imaps://; key log in tls-mixed.keys",
    "tls-mixed-secrets.pcapng": "tls-mixed.pcapng with tls-mixed.keys embedded as a pcapng Decryption Secrets Block",
    "tls-ciphers.pcap": "TLS cipher-suite coverage, 14 sessions on 993/995/465/25, key log in tls-ciphers.keys: "
                        "TLS 1.2 (Python ssl, one suite each) ECDHE-RSA-AES128-GCM-SHA256, "
                        "ECDHE-RSA-CHACHA20-POLY1305, ECDHE-RSA-AES128-SHA256 (CBC, encrypt_then_mac), "
                        "ECDHE-RSA-AES256-SHA (CBC, no encrypt_then_mac), ECDHE-RSA-AES256-SHA384 (CBC), AES128-CCM "
                        "and AES128-CCM8 (RSA key exchange), ECDHE-RSA-AES256-GCM-SHA384 twice (the second resumed "
                        "with a session ticket); TLS 1.3 (openssl s_client) TLS_AES_128_GCM_SHA256, "
                        "TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256, SMTP STARTTLS on 25; and one TLS 1.3 "
                        "IMAPS session whose secrets are not in the key log",
    "tls-legacy.pcap": "TLS 1.0, TLS 1.1 and TLS 1.2 session-ID resumption, 4 sessions, key log in tls-legacy.keys: "
                       "TLS 1.0 ECDHE-RSA-AES128-SHA (CBC, IV chained from record to record, no encrypt_then_mac) "
                       "IMAP dialogue and TLS 1.1 AES256-SHA (CBC with explicit IV, RSA key exchange, "
                       "encrypt_then_mac) POP3 dialogue, openssl s_client against openssl s_server on "
                       "127.0.0.2:993/995; TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256 on Postfix 465 without session "
                       "tickets twice, the second resumed by session ID (AUTH PLAIN, one mail)",
    "variants/smtp-small-nsec.pcap": "Small SMTP session (smtplib, port 25), nanosecond-resolution pcap, the base of the "
                                     "other smtp-small variants",
    "variants/smtp-small.pcap": "Same packets, microsecond pcap (little-endian)",
    "variants/smtp-small.pcapng": "Same packets, pcapng",
    "variants/smtp-small.pcap.gz": "variants/smtp-small.pcap, gzip-compressed",
    "variants/smtp-small.pcapng.gz": "variants/smtp-small.pcapng, gzip-compressed",
    "variants/smtp-small-be.pcap": "variants/smtp-small.pcap rewritten big-endian (headers only; packet bytes unchanged)",
    "variants/smtp-small-nsec-be.pcap": "variants/smtp-small-nsec.pcap rewritten big-endian (nanosecond magic)",
    "variants/smtp-small-snap120.pcap": "Same session captured at the same time with snaplen 120 (truncated packets)",
    "variants/smtp-small-sll.pcap": "Same session captured at the same time on -i any as Linux cooked v1 (LINKTYPE 113)",
    "variants/smtp-small-sll2.pcap": "Same session captured at the same time on -i any as Linux cooked v2 (LINKTYPE 276)",
    "variants/smtp-ipv6.pcap": "Small SMTP session over IPv6 (::1 -> ::1 port 25), smtplib",
    "variants/multi-interface.pcapng": "mergecap of variants/smtp-small-sll2.pcap and variants/smtp-ipv6.pcap: one "
                                       "pcapng with two interfaces of different link types (Linux cooked v2, "
                                       "Ethernet)",
    "hostile-escapes.pcap": "Terminal escape sequences from a hostile client, 2 sessions from 127.0.0.10: smtplib on port "
                            "25 with ESC sequences in the EHLO name, raw in the Subject (clear screen, cursor home, "
                            "OSC 0 title, OSC 52 clipboard write, U+202E), in the 8bit body (also a bare CR) and in "
                            "the attachment filename '..\\x1b[31m/evil.txt', to erin; then imaplib LOGIN, SELECT "
                            "INBOX, UID FETCH (BODY[]) of the delivered message, LOGOUT",
    "findings.pcap": "Security and health findings, one or more sessions per scenario (sessions[].scenario, expect, "
                     "clean, incidental, facts): clean controls (submission 587 STARTTLS + AUTH, IMAP STARTTLS "
                     "FETCH and POP3 STLS RETR of the same message), cleartext AUTH (SMTP 2526, IMAP 143), STARTTLS "
                     "refused (2525), STARTTLS command injection, a STARTTLS-stripping proxy (both legs), SMTP "
                     "smuggling, a bare-LF command, open relay (2527) with its bounce fetched by IMAP, relay "
                     "denied, source route, HELO mismatch, spoofed headers, VRFY/EXPN, recipient enumeration "
                     "(127.0.0.12), IMAP/POP3 brute force (127.0.0.11), a slow reply (2528), no PIPELINING / "
                     "8BITMIME / SIZE 4000 (2529), an early talker, a TCP reset in DATA, a STARTTLS handshake the "
                     "server refuses (openssl s_client offering only NULL-SHA256: 220, then an alert), a greeting "
                     "6 s late (2530) and a STARTTLS response-injection proxy (both legs); key log in "
                     "findings.keys; mailscope needs --port smtp=2526 ... smtp=2530, tshark -d for 2525-2530",
    "ntlm.pcap": "SASL NTLM logins with curl (--login-options AUTH=NTLM; NTLMv2 + LMv2) against the lab's NTLM listeners "
                 "on 127.0.0.4 (Dovecot with Samba winbind, Postfix with that Dovecot's SASL): IMAP AUTHENTICATE NTLM "
                 "(SASL-IR) + SELECT + UID FETCH BODY[]; POP3 AUTH NTLM (no initial response, domain MAIL) + RETR 1; "
                 "IMAP STARTTLS + AUTHENTICATE NTLM + SEARCH (key log in ntlm.keys); SMTP AUTH NTLM with initial "
                 "response (domain MAIL) + one mail; IMAP and SMTP (no initial response) with a wrong password; "
                 "sessions[].ntlm holds each exchange, hashcat[] the NetNTLMv2 lines",
}


CAPTURE_NOTES = {
    "ntlm.pcap": [
        "Made by `scripts/make-samples --only ntlm` (also part of the full run). curl (--login-options AUTH=NTLM, "
        "-u [MAIL\\]bob:PASSWORD) against the lab's NTLM listeners on 127.0.0.4 (ntlm_server): the standard ports "
        "143, 110 and 25, so mailscope and tshark read IMAP, POP3 and SMTP without options. Dovecot 2.3.13+ has no NTLM "
        "of its own; the lab's second Dovecot instance gets it from Samba's winbind (ntlm_auth makes the CHALLENGE, "
        "winbindd checks the AUTHENTICATE against Samba's passdb). The STARTTLS session writes ntlm.keys.",
        "sessions[] (in SYN order): scenario, client and server as \"ip:port\" (the client program is client_software), "
        "credentials[] with mechanism NTLM, username, password (what curl was given), domain (what the client sent: "
        "\"\" or MAIL, the server's NetBIOS name), success, ntlm_version. ntlm: the exchange - auth_command, "
        "sasl_initial_response (the NEGOTIATE rides on the AUTH command: IMAP with SASL-IR, SMTP with curl --sasl-ir), "
        "negotiate / challenge / authenticate (each message's fields: flags, server_challenge, target_name, "
        "target_info, username, domain, workstation, lm_response, nt_response, ntproofstr, blob, client_challenge, "
        "session_key; bytes as lower-case hex), server_reply (the verdict line), hashcat (NetNTLMv2, hashcat mode "
        "5600: user::domain:server_challenge:NTProofStr:blob), lab_password (the user's password in lab-users) and "
        "whether the password given / the lab password yield the NTProofStr on the wire (HMAC-MD5 of NTOWFv2).",
        "ntlm.tshark: what tshark's ntlmssp dissector shows of the NEGOTIATE, CHALLENGE and AUTHENTICATE (-T fields; "
        "an empty string shows as NULL). tshark 4.0 does not dissect NTLMSSP inside IMAP or POP3, and inside SMTP only "
        "with -o smtp.decryption:TRUE, all of it only when AUTH NTLM carries an initial response: scripts/check_samples.py takes "
        "the base64 NTLMSSP tokens (TlRMTVNTUA...) from each session's TCP bytes (decrypted with ntlm.keys for "
        "STARTTLS) and gives them to tshark as frames of a DLT_USER0 pcap dissected as ntlmssp. ntlm.tshark_in_place "
        "(SMTP only): what tshark dissects in the capture itself with -o smtp.decryption:TRUE - the same values, "
        "all three messages for the session with an initial response, only the CHALLENGE for the one without.",
        "hashcat[]: one NetNTLMv2 line per session (success false: the wrong-password logins; their lines crack to "
        "bob-Wrong-pass, not to bob's password).",
    ],
    "findings.pcap": [
        "Made by `scripts/make-samples --only findings` (also part of the full run). Real clients (Python smtplib, "
        "imaplib, poplib; a scripted raw-socket SMTP client where a library would not send the bytes needed; "
        "OpenSSL s_client for a failing STARTTLS handshake) against the lab's Postfix and Dovecot, plus a "
        "STARTTLS-stripping proxy and a STARTTLS response-injection proxy written in scripts/sample_clients.py "
        "(StripTLSProxy, InjectTLSProxy). Every Python TLS client writes to findings.keys (the failed "
        "handshakes leave no secrets to log).",
        "sessions[] (in SYN order) carry the usual fields, except that client is \"ip:port\" and the client "
        "program is client_software; server is \"ip:port\". scenario: the scenario name (scenarios{} maps each "
        "to its tcp_streams). expect: the finding kinds (finding_kinds[]) the session is built to raise; [] with "
        "clean: true for the controls. expect also has error-reply whenever the client read a 4xx/5xx, -ERR, NO "
        "or BAD reply (computed from the replies it read; facts.error_replies lists them) and unanswered-command "
        "where a command got no reply (the RSET injected after STARTTLS, which Postfix discards). Per-client "
        "aggregates sit on one session: recipient-enumeration on the only session from 127.0.0.12, "
        "auth-brute-force on the session with the 5th failed login from 127.0.0.11.",
        "incidental: kinds a broader reading would also raise although the session is not built for them. "
        "starttls-not-used: the server offered STARTTLS (EHLO keyword or IMAP capability, as the client saw it: "
        "facts.starttls_offered) and the session never used it, e.g. every cleartext session on port 25. "
        "slow-reply: some reply came %.0f s or more after the client's write (facts.max_reply_delay_s): the "
        "brute-force logins, which Dovecot answers after auth_failure_delay plus its per-IP auth penalty "
        "(facts.reply_delay_s). A findings implementation may or may not raise these; they are never in expect."
        % SLOW_REPLY_INCIDENTAL,
        "facts: what the client did and what the server answered, as the client read it (reply lines, injected "
        "bytes as text and hex, credentials, the delay it measured in seconds, EHLO keywords, Message-IDs, the "
        "DSN fields parsed with Python's email package). Sessions on 2526-2530 have facts.mailscope_args "
        "(--port smtp=N) and, with 2525, facts.tshark_decode_as; the entry's mailscope_args and tshark_decode_as "
        "list them all. server_handling sums up what the servers did, written from the facts of this run.",
        "Extra Postfix listeners (scripts/lab/config/postfix/master.cf, scripts/lab/README.md): 2526 offers "
        "STARTTLS and AUTH before it (smtpd_tls_auth_only=no); 2527 is an open relay (check_client_access "
        "static:OK, smtpd_reject_unlisted_recipient=no; the error transport bounces the relayed mail); 2528 "
        "answers RCPT after `sleep 3`; 2529 discards the PIPELINING and 8BITMIME EHLO keywords and has "
        "message_size_limit=4000; 2530 greets 6 s after the connect (smtpd_delay_reject=no, "
        "smtpd_client_restrictions = sleep 6: the client restrictions, with their pause, run before the "
        "greeting). 2527-2530 offer no TLS. 2525 (no TLS at all) is the lab's cleartext-AUTH listener.",
        "The journey (clean-submission, clean-imap, clean-pop3): one 7-bit message with From equal to MAIL FROM "
        "and no Reply-To, sent to dave; IMAP UID FETCH BODY.PEEK[] and POP3 RETR 1 as dave bring back the same "
        "bytes (the Maildir file, CRLF form: the sent message after the Return-Path, Delivered-To and two "
        "Received headers the servers prepended, one of them naming the client as [127.0.0.10]). "
        "sessions[0].facts.journey has the Message-ID and all three sha256s.",
        "make-samples resets Dovecot's per-IP auth penalty of 127.0.0.10 and 127.0.0.11 before the capture with "
        "one successful, uncaptured login from each, so that no login is delayed by the failures of an earlier "
        "run. Each failed brute-force login is answered after auth_failure_delay (2 s) and, depending on the "
        "state of Dovecot's anvil, an auth penalty of up to 15 s more: facts.reply_delay_s and "
        "facts.brute_force.delays_s are what the client measured.",
        "The early talker's EHLO must reach Postfix before its greeting: an idle smtpd greets a client from "
        "mynetworks within microseconds, so during that session uncaptured helper connections from 127.0.0.1 "
        "keep every running smtpd busy (Postfix's master starts a new one for the early talker), and "
        "facts.server_log quotes Postfix's own 'improper command pipelining after CONNECT' line as the proof; "
        "had the race been lost, the run would exit 75 and make-samples would capture again.",
        "Failed STARTTLS handshakes (starttls-failed, server-injection): the session has tls null and "
        "facts.tls_used false; facts.client_tls / server_tls (and on the injection legs server_tls_proxy_leg, "
        "forwarded_to_client_after_injection) sum up the TLS records each side sent after the 220, read from the "
        "bytes without keys (handshake message names, alerts, ChangeCipherSpec and encrypted record counts); "
        "facts.tshark_tls is what tshark 4.0 dissects there (tls.handshake.type, tls.alert_message.level/desc by "
        "sender), facts.tshark_alert_desc the server's alert. starttls-failed: openssl s_client -starttls smtp "
        "-tls1_2 -cipher NULL-SHA256:@SECLEVEL=0 (facts.client_command; the cleartext lines and replies and the "
        "reply delays come from its -debug dump of every socket read and write): Postfix (TLS >= 1.2, "
        "smtpd_tls_ciphers medium) answers 220, shares no cipher and sends a fatal handshake_failure alert, no "
        "ServerHello. starttls-failed is expected wherever the client sent its ClientHello and nothing more; "
        "starttls-not-used is then incidental as everywhere STARTTLS was offered and no TLS session came up.",
        "slow-greeting (2530): facts.greeting_delay_s is the client's time from its TCP connect to the 220 "
        "(scripts/check_samples.py: from the SYN to the greeting segment on the wire); max_reply_delay_s stays "
        "the longest write-to-reply delay (EHLO, QUIT), since no write precedes a greeting.",
        "server-injection: a scripted raw client connects to the STARTTLS response-injection proxy on %s:25, "
        "which connects from %s to Postfix on %s:25 and relays both ways; right after it has written Postfix's "
        "'220 2.0.0 Ready to start TLS' to the client it writes %r in a send() of its own (its own segment on the "
        "client leg, facts.proxy_sends_to_client). The client reads the 220 exactly (MSG_PEEK, then a recv of its "
        "length) and starts TLS (Python ssl, findings.keys): its TLS layer reads the injected line where it expects "
        "the first record header and fails (facts.client_handshake_error, WRONG_VERSION_NUMBER, no alert); it "
        "closes with the rest of the line unread, so its kernel sends a RST. The proxy half-closes its connection "
        "to Postfix, which has answered the ClientHello with its ServerHello flight (facts.server_tls_proxy_leg; "
        "not forwarded when the client was already gone: facts.dropped_by_proxy, proxy_events) and logs a lost "
        "connection (facts.server_log). sessions: the client leg (expect starttls-injection and "
        "starttls-failed), then the proxy leg (expect starttls-failed: no injected byte there)."
        % (INJECT_PROXY4, INJECT_PROXY4, SERVER4, INJECTED_REPLY.decode()),
    ],
    "hostile-escapes.pcap": [
        "Made by `scripts/make-samples --only hostile-escapes` (also part of the full run). A terminal UI showing this "
        "capture must render every escape visibly (e.g. as \\x1b / \\u202e) and never write them to the terminal.",
        "escapes[]: name, python (a Python string literal), hex (its UTF-8 bytes), match (bytes: count those bytes; "
        "bare-cr: CRs not followed by LF), sent_in, and how often it occurs in_ehlo_line (the EHLO command line), "
        "in_sent_message (the DATA bytes), in_stored_message (the Maildir file, CRLF form) and in_imap_literal (the "
        "UID FETCH literal). scripts/check_samples.py counts them again in the SMTP client bytes (EHLO + DATA) and "
        "the IMAP server bytes.",
        "sessions[0].ehlo: the EHLO name (also as name_python / name_hex) and Postfix's reply. "
        "sessions[0].messages_sent[0]: sha256/size of the exact bytes sent in DATA, subject_python / subject_raw_hex, "
        "and stored: the Maildir file Dovecot LMTP wrote (sha256/size of the LF file, crlf_* of its CRLF form), "
        "prepended_headers (Return-Path, Delivered-To, both Received headers), postfix_received_helo (the EHLO name "
        "as Postfix's Received header shows it) and changes (bytes of the sent message that differ in the stored "
        "one, aligned at the end). sessions[1].messages_fetched[0]: the IMAP literal (received_sha256 = "
        "maildir.crlf_sha256) with the same changes. server_handling: a summary of these facts.",
        "MANIFEST.json holds no raw control or bidi characters: JSON escapes ESC/BEL/CR as \\u001b/\\u0007/"
        "\\r, and U+202E is written as \\u202e.",
    ],
    "tls-legacy.pcap": [
        "Made by `scripts/make-samples --only tls-legacy` (also part of the full run). sessions[0]: TLS 1.0 "
        "ECDHE-RSA-AES128-SHA, a scripted IMAP dialogue (greeting, LOGIN, LOGOUT) to 127.0.0.2:993; the server "
        "runs with -no_etm, so the records are MAC-then-encrypt and each record's CBC IV is the last ciphertext "
        "block of the record before it. sessions[1]: TLS 1.1 AES256-SHA (RSA key exchange), a scripted POP3 "
        "dialogue (USER, PASS, STAT, QUIT) to 127.0.0.2:995; explicit IV per record, encrypt_then_mac "
        "negotiated (extension 22 in the ServerHello). sessions[2] and [3]: TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256, "
        "Python smtplib to the lab's Postfix on 465 with ssl.OP_NO_TICKET (no session_ticket extension): a full "
        "handshake (EHLO, NOOP, QUIT), then a second connection offering that session, resumed by session ID "
        "(abbreviated handshake: no Certificate; AUTH PLAIN and one mail).",
        "Why openssl s_server: the lab's Dovecot and Postfix accept TLS 1.2 and 1.3 only, and OpenSSL 3 "
        "negotiates TLS 1.0/1.1 only at security level 0. So sessions[0] and [1] are `openssl s_client` "
        "against `openssl s_server -quiet -no_ign_eof -naccept 1` with the lab certificate and key on "
        "127.0.0.2 (993 and 995 are IMAPS/POP3S to mailscope and tshark), both with -tls1 / -tls1_1 and "
        "-cipher 'SUITE:@SECLEVEL=0' (argv in sessions[].argv and sessions[].server.argv). Both ends are "
        "scripted through stdin/stdout, one line per write, each written after the other end received the "
        "line before; closing s_server's stdin ends the connection (close_notify). The scripted server "
        "accepts any password: credentials[] is what the client sent. sessions[].plaintext is recorded at "
        "the client (as in tls-ciphers.pcap) and equals what s_server read and wrote (plaintext.server_side).",
        "The lab's Postfix has no TLS session cache (smtpd_tls_session_cache_database is empty) and resumes by "
        "ticket only; for this capture make-samples sets smtpd_tls_session_cache_database=btree:"
        "/var/lib/postfix/mailscope-samples-smtpd_scache in the installed main.cf and reloads Postfix, and puts "
        "the lab's main.cf back right after (scripts/lab/config is not changed).",
        "sessions[].tls.version is \"TLSv1.0\" for TLS 1.0, which Python's ssl and OpenSSL call \"TLSv1\"; "
        "\"TLSv1.1\" and \"TLSv1.2\" are Python's names (the tests map \"TLSv1.x\" to \"TLS1.x\"). "
        "cipher is the OpenSSL name.",
        "The other fields mean what they mean in tls-ciphers.pcap: tls.encrypt_then_mac is true/false for "
        "TLS 1.0-1.2 CBC suites, null for AEAD; resumed, resumes_session and resumption (\"session id\"); "
        "session_id: the ServerHello's session ID of the resumed session and of the session it resumes (the "
        "same; offered_session_id: the one the client offered); client_random, extended_master_secret, "
        "keylogged, keylog_labels (the AES256-SHA session also has an `RSA` line in the key log). "
        "tshark_decrypted_records {client, server}: application-data records tshark 4.0 decrypts with the key "
        "log, equal to tshark_encrypted_records (every application-data record decrypted). TLS 1.0 only: "
        "OpenSSL (s_client and s_server) sends an empty application-data record before each record with data "
        "(its CBC countermeasure against BEAST). tshark decrypts them, but its follow tap (-z follow,tls,raw) "
        "lists only records with data. So for TLS 1.0, tshark_decrypted_records = the follow entries + "
        "tshark_empty_records, the records that decrypt with a valid MAC to zero bytes, counted from "
        "tshark's TLS debug log (-o tls.debug_file). scripts/check_samples.py recomputes all of this "
        "(tls_facts, empty_app_records) and checks the resumption on the wire: the ServerHello echoes the "
        "ClientHello's non-empty session ID, and the server sends no Certificate.",
    ],
    "tls-ciphers.pcap": [
        "Made by `scripts/make-samples --only tls-ciphers` (also part of the full run). TLS 1.2 sessions: Python "
        "ssl with maximum_version TLSv1_2 and set_ciphers(one suite); the ECDHE-RSA-AES256-SHA session also sets "
        "0x80000 (SSL_OP_NO_ENCRYPT_THEN_MAC) so its ServerHello has no encrypt_then_mac extension. TLS 1.3 "
        "suites cannot be chosen from Python: those sessions are `openssl s_client -tls1_3 -ciphersuites SUITE "
        "-quiet -brief -keylogfile ...` (argv in sessions[].argv) driven line by line through stdin/stdout. All "
        "servers are the lab's real Postfix (465, 25) and Dovecot (993, 995); no openssl s_server was needed.",
        "sessions[].tls: mode/version/cipher as the client reported them; encrypt_then_mac: true/false for TLS 1.2 "
        "CBC suites (extension 22 in the ServerHello), null for AEAD suites and TLS 1.3; resumed (abbreviated "
        "handshake) with resumes_session (index in sessions[]) and resumption; extended_master_secret: "
        "extension 23 in the TLS 1.2 ServerHello (null for TLS 1.3); client_random: from the ClientHello (hex); "
        "keylogged: whether "
        "tls-ciphers.keys has lines for this client_random (the last session deliberately has none); "
        "keylog_labels: those lines' labels. The two RSA-key-exchange sessions (AES128-CCM, AES128-CCM8) also "
        "have an `RSA` line in the key log (OpenSSL logs the first 8 bytes of the encrypted pre-master secret "
        "and the pre-master secret) besides their CLIENT_RANDOM line; the resumed session has its own "
        "CLIENT_RANDOM line (new client random, same master secret as the session it resumes).",
        "sessions[].plaintext: sha256/size of the exact application data the client wrote to (client_*) and read "
        "from (server_*) the TLS layer over the whole connection (STARTTLS: only after the upgrade). Python: an "
        "ssl.SSLSocket subclass recording send()/read(); s_client: the bytes fed to its stdin and read from its "
        "stdout (-quiet: application data only). For keylogged sessions they equal what tshark decrypts.",
        "sessions[].tshark_decrypted_records {client, server}: application-data records tshark 4.0 decrypts with "
        "the key log, counted as the entries of `tshark -r tls-ciphers.pcap -o tls.keylog_file:tls-ciphers.keys "
        "-q -z follow,tls,raw,STREAM` (the TLS follow tap keeps one entry per decrypted record), split by "
        "direction. Cross-checked: TLS 1.3 - equal to the records whose decrypted inner tls.record.content_type "
        "is 23; TLS 1.2 - equal to tshark_encrypted_records (every application-data record decrypted). "
        "sessions[].tshark_encrypted_records: records whose type on the wire is 23 (tls.record.content_type 23 "
        "or tls.record.opaque_type 23 read without keys): TLS 1.2 application data; TLS 1.3 every encrypted "
        "record (EncryptedExtensions..Finished, NewSessionTicket, application data, close_notify). tshark needs "
        "no -d: 465/993/995 are TLS ports and SMTP STARTTLS on 25 is followed into TLS. "
        "scripts/check_samples.py recomputes all of this (tls_facts).",
    ],
}


def tls_session_truth(path, keylog_path, sess, decode_as=None):
    """tls-ciphers, tls-legacy: add what tshark sees (client random, EtM, key log lines, decrypted record counts) to
    each TLS session and stop if it contradicts what the client recorded (scripts/check_samples.py)."""
    sys.path.insert(0, HERE)
    import check_samples
    facts = check_samples.tls_facts(path, sess, keylog_path, decode_as)
    for s in sess:
        if not s.get("tls"):
            continue
        f = facts[s["tcp_stream"]]
        t = s["tls"]
        t["client_random"] = f["client_random"]
        t["extended_master_secret"] = f["extended_master_secret"]
        t["keylog_labels"] = f["keylog_labels"]
        if t.get("resumed"):
            t["resumption"] = "session ticket" if f["client_hello_ticket_len"] else "session id"
            if t["resumption"] == "session id":  # the ServerHello echoes the session ID of the first session
                first = sess[t["resumes_session"]]
                first["tls"]["session_id"] = facts[first["tcp_stream"]]["server_session_id"]
                t["session_id"] = f["server_session_id"]
                if not t["session_id"] or t["session_id"] != first["tls"]["session_id"] or (
                        t.get("offered_session_id", t["session_id"]) != t["session_id"]):
                    raise SystemExit("%s stream %d: resumed by session ID %r, the first session's is %r" % (
                        os.path.basename(path), s["tcp_stream"], t["session_id"], first["tls"]["session_id"]))
        s["tshark_decrypted_records"] = f["decrypted_records"]
        s["tshark_encrypted_records"] = f["encrypted_records"]
        if any(f["empty_records"].values()):
            s["tshark_empty_records"] = f["empty_records"]
        problems = check_samples.tls_truth_problems(s, f)
        if problems:
            raise SystemExit("%s stream %d: %s" % (os.path.basename(path), s["tcp_stream"], "; ".join(problems)))


def findings_tls_wire(path, keylog_path, sess, decode_as=None):
    """findings: what tshark dissects of the STARTTLS handshakes that did not complete (sessions whose facts have
    client_tls): facts.tshark_tls {client, server: handshake_types, alerts} and, for starttls-failed,
    facts.tshark_alert_desc (the server's tls.alert_message.desc, null without an alert); stops where it contradicts
    what the client recorded (scripts/check_samples.py checks it again)"""
    sys.path.insert(0, HERE)
    import check_samples
    extra = (["-o", "tls.keylog_file:" + keylog_path] if keylog_path else []) + \
        check_samples.decode_args(decode_as.split() if decode_as else None)
    wire = check_samples.tls_wire(path, sess, extra)
    for s in sess:
        if s["tcp_stream"] not in wire:
            continue
        tw, f = wire[s["tcp_stream"]], s["facts"]
        f["tshark_tls"] = tw
        problems = []
        if tw["client"]["handshake_types"] != [1]:
            problems.append("client handshake messages %r, not one ClientHello" % tw["client"]["handshake_types"])
        if s["scenario"] == "starttls-failed":
            alerts = tw["server"]["alerts"]
            f["tshark_alert_desc"] = alerts[0]["description"] if alerts else None
            if (f["alert"] or {}).get("description") != f["tshark_alert_desc"] or len(alerts) > 1 or \
                    2 in tw["server"]["handshake_types"]:
                problems.append("server alerts %r / handshake %r, the client read %r" % (
                    alerts, tw["server"]["handshake_types"], f["alert"]))
        if s["scenario"] == "server-injection" and f["leg"] == "proxy" and \
                (2 in tw["server"]["handshake_types"]) != f["server_hello_sent_by_server"]:
            problems.append("ServerHello on the proxy leg: tshark %r, proxy %r" % (
                tw["server"]["handshake_types"], f["server_hello_sent_by_server"]))
        if problems:
            raise SystemExit("%s stream %d (%s): %s" % (os.path.basename(path), s["tcp_stream"], s["scenario"],
                                                        "; ".join(problems)))


def findings_server_handling(sessions):
    """manifest "server_handling" of findings.pcap: what Postfix and Dovecot did, written from the sessions' facts"""
    by = {}
    for s in sessions:
        by.setdefault(s["scenario"], []).append(s)
    f = lambda name, i=0: by[name][i]["facts"]
    out = []
    inj = f("starttls-injection")
    out.append("STARTTLS injection: %s, %s" % (inj["reply_before_tls"], "the injected RSET was never answered "
               "(discarded)" if not inj["injected_command_answered"] else "the injected RSET was answered"))
    out.append("STARTTLS on 2525 (not offered): %s" % f("starttls-refused")["starttls_reply"])
    out.append("STARTTLS-stripping proxy: removed %s from the EHLO reply; the message was %s"
               % (", ".join(f("starttls-downgrade")["stripped_lines"]), f("starttls-downgrade")["queued"]))
    sm = f("smtp-smuggling")
    out.append("SMTP smuggling (\\n.\\r\\n): %d replies to one DATA payload (%s); delivered to erin: outer %s, "
               "smuggled %s" % (len(sm["replies_after_payload"]), "; ".join(sm["replies_after_payload"]),
                                sm["delivered_to_erin"]["outer_message"], sm["delivered_to_erin"]["smuggled_message"]))
    out.append("NOOP ending in a bare LF: %s" % (f("bare-line-end")["reply"] or "no reply"))
    out.append("open relay 2527: %s -> %s; relay-denied on 25: %s" % (
        f("open-relay")["rcpt"], f("open-relay")["rcpt_reply"], f("relay-denied")["rcpt_reply"]))
    b = f("bounce-fetch")
    out.append("bounce: %s from %s, Final-Recipient %s, Action %s, Status %s, %s" % (
        b["dsn_content_type"], b["dsn_from"], b["final_recipient"], b["action"], b["status"], b["diagnostic_code"]))
    out.append("source route: %s -> %s" % (f("source-route")["rcpt"], f("source-route")["rcpt_reply"]))
    out.append("EHLO [10.1.2.3] from %s: %s" % (f("helo-mismatch")["client_address"], f("helo-mismatch")["ehlo_reply"]))
    out.append("spoofed headers: %s" % f("spoofed-headers")["queued"])
    out.append("VRFY/EXPN: %s" % "; ".join("%s -> %s" % (p["command"], p["reply"]) for p in f("vrfy-expn")["probes"]))
    e = f("recipient-enumeration")
    out.append("recipient enumeration from %s: %d of %d RCPTs refused with 550" % (
        e["client_address"], e["rejected_550"], len(e["probes"])))
    bf = f("brute-force")["brute_force"]
    out.append("brute force from %s: %d failed logins (%s), answered after %s s" % (
        bf["client_address"], bf["failures"], ", ".join(bf["usernames"]),
        ", ".join("%.1f" % d for d in bf["delays_s"])))
    out.append("slow reply 2528: %s after %.2f s" % (f("slow-reply")["slow_reply"], f("slow-reply")["delay_s"]))
    out.append("2529 without PIPELINING: pipelined MAIL/RCPT/DATA answered %s" % ", ".join(
        f("no-pipelining", 0)["replies"]))
    out.append("2529 without 8BITMIME: 8-bit body %s" % f("no-pipelining", 1)["queued"])
    out.append("2529 SIZE %d: %d-byte message -> %s" % (f("no-pipelining", 2)["size_offered"],
                                                         f("no-pipelining", 2)["message_size"],
                                                         f("no-pipelining", 2)["end_of_data_reply"]))
    out.append("early talker: %s, then EHLO answered %d" % (f("early-talker")["greeting"],
                                                           f("early-talker")["ehlo_reply_code"]))
    sf = f("starttls-failed")
    out.append("STARTTLS with only %s offered: %s, then %s instead of a ServerHello" % (
        sf["offered"]["tls_args"][-1].split(":")[0], sf["reply_before_tls"],
        "a %s %s alert (%d)" % (sf["alert"]["level"], sf["alert"]["name"], sf["alert"]["description"])
        if sf["alert"] else "no alert"))
    out.append("slow greeting 2530: %s after %.2f s" % (f("slow-greeting")["greeting"],
                                                       f("slow-greeting")["greeting_delay_s"]))
    si = f("server-injection")
    out.append("STARTTLS response injection: Postfix answered %s; after the proxy's injected %r the client's TLS "
               "handshake failed (%s); Postfix sent %s to the proxy, which %s" % (
                   si["reply_before_tls"], si["injected_bytes"], si["client_handshake_error_reason"],
                   tls_flight(si["server_tls_proxy_leg"]),
                   "reached the client" if si["server_hello_reached_client_leg"] else
                   "did not reach the client (gone by then)"))
    return out


def cmd_manifest(args):
    samples = args.samples
    plan = {"captures": []}
    with open(os.path.join(args.state, "plan.tsv")) as f:
        for line in f:
            if line.strip():
                plan["captures"].append(dict(kv.split("=", 1) for kv in line.rstrip("\n").split("\t")))
    for cap in plan["captures"]:
        cap["description"] = DESCRIPTIONS[cap["file"]]
    pw = PASSWORDS
    if args.merge:  # --only: keep every other byte of the installed manifest, add/replace these captures
        with open(args.merge) as f:
            manifest = json.load(f)
    else:
        manifest = None
    full = {
        "generator": "scripts/make-samples (sudo scripts/make-samples)",
        "generated_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "notes": [
            "Real sessions on loopback: clients (Python %s smtplib/poplib/imaplib, %s, %s) against Postfix %s "
            "and Dovecot %s from scripts/lab/." % (sys.version.split()[0], CURL, SWAKS,
                                                 tool_version(["postconf", "-h", "mail_version"]),
                                                 tool_version(["dovecot", "--version"]).split()[0]),
            "IPv4 clients bind to %s, the servers are 127.0.0.1; the IPv6 sample uses ::1 on both ends. "
            "findings.pcap also has clients on %s and %s and proxies on %s and %s (its client_addresses). "
            "ntlm.pcap's servers are the lab's NTLM listeners on %s (its ntlm_server)."
            % (CLIENT_IP, BRUTE_IP, ENUM_IP, PROXY4, INJECT_PROXY4, NTLM_SERVER),
            "messages_sent[].sha256/size: the exact message bytes the server received in DATA/APPEND "
            "(CRLF line ends, before dot-stuffing, including the CRLF before the final '.'); "
            "wire.dot_stuffed_*: the same after dot-stuffing (without the terminating '.CRLF'). "
            "Messages sent with BDAT (transfer: BDAT) are not dot-stuffed: sha256/size are of the "
            "concatenated chunks, wire.bdat_chunks lists each chunk.",
            "messages_fetched[]: received_* are the bytes the client got (POP3: after un-dot-stuffing; IMAP: the "
            "literal); maildir.sha256/size are the Maildir file as Dovecot stored it (LF line ends), "
            "maildir.crlf_* the same with CRLF line ends, which is what POP3/IMAP put on the wire.",
            "Timestamps, ports, Postfix queue ids, Dovecot UIDVALIDITY and TLS secrets change on every run.",
        ],
        "users": {u: pw[u] for u in sorted(pw)},
        "server": {"hostname": "mail.example.test", "ipv4": SERVER4, "ipv6": SERVER6,
                   "tls_certificate": "scripts/lab/config/tls/server.crt"},
        "attachments": {"files/" + n: digest(read_file(n)) for n in sorted(FILES)},
        "captures": {},
    }
    if manifest is None:
        manifest = full
    for cap in plan["captures"]:
        path = os.path.join(samples, cap["file"])
        entry = {"description": cap["description"], **digest(open(path, "rb").read()), **capinfos(path)}
        if cap.get("filter"):
            entry["tcpdump_command"] = "tcpdump -s 0 -B 65536 -U --immediate-mode %s -w FILE '%s'" % (
                cap.get("tcpdump_args", "-i lo"), cap["filter"])
        if cap.get("decode_as"):  # tshark -d VALUE (port not dissected by default); several: a list
            values = cap["decode_as"].split()
            entry["tshark_decode_as"] = values[0] if len(values) == 1 else values
        if cap.get("ports"):  # mailscope --port PROTO=N for the ports it does not know by default
            entry["mailscope_args"] = [a for p in cap["ports"].split() for a in ("--port", p)]
        for k in ("keylog", "derived_from", "derivation", "embedded_secrets", "note"):
            if cap.get(k):
                entry[k] = cap[k]
        if cap["file"] in CAPTURE_NOTES:
            entry["notes"] = CAPTURE_NOTES[cap["file"]]
        if cap.get("keylog"):
            kp = os.path.join(samples, cap["keylog"])
            kl = open(kp, "rb").read()
            entry["keylog_lines"] = sum(1 for l in kl.splitlines() if l and not l.startswith(b"#"))
        sessions = cap.get("sessions")
        if sessions:
            sess = [s for name in sessions.split(",")  # several: a merge of captures, in time order
                    for s in json.load(open(os.path.join(args.state, "sessions-%s.json" % name)))]
            # the snap120 / cooked variants share the base session; streams are re-derived per file
            streams = streams_of(path)
            if len(streams) != len(sess):
                raise SystemExit("%s: %d TCP connections in the capture, %d sessions run" % (cap["file"], len(streams), len(sess)))
            for s, (stream, src, sport, dst, dport) in zip(sess, streams):
                if s.get("client_port") not in (None, sport) or dport != s["server_port"]:
                    raise SystemExit("%s: session/stream mismatch: %r vs %r" % (cap["file"], s, (src, sport, dport)))
                if (cap.get("findings") or cap.get("ntlm")) and (s["client"], s["server"]) != ("%s:%d" % (src, sport),
                                                                          "%s:%d" % (dst, dport)):
                    raise SystemExit("%s: session %s -> %s, capture stream %d %s:%d -> %s:%d" % (
                        cap["file"], s["client"], s["server"], stream, src, sport, dst, dport))
                s["client_port"] = sport
                s["client_ip"] = src
                s["tcp_stream"] = stream
            if cap.get("findings"):
                entry["finding_kinds"] = list(FINDING_KINDS)
                entry["client_addresses"] = {
                    CLIENT_IP: "every scenario but brute-force and recipient-enumeration",
                    BRUTE_IP: "brute-force", ENUM_IP: "recipient-enumeration",
                    PROXY4: "the STARTTLS-stripping proxy (starttls-downgrade: it listens on %s:25 and connects "
                            "to %s:25 from this address)" % (PROXY4, SERVER4),
                    INJECT_PROXY4: "the STARTTLS response-injection proxy (server-injection: it listens on %s:25 "
                                   "and connects to %s:25 from this address)" % (INJECT_PROXY4, SERVER4)}
                entry["scenarios"] = {}
                for s in sess:
                    entry["scenarios"].setdefault(s["scenario"], []).append(s["tcp_stream"])
            if cap.get("tls_truth"):
                tls_session_truth(path, os.path.join(samples, cap["keylog"]) if cap.get("keylog") else None,
                                  sess, cap.get("decode_as"))
            if cap.get("findings"):
                findings_tls_wire(path, os.path.join(samples, cap["keylog"]) if cap.get("keylog") else None, sess,
                                  cap.get("decode_as"))
                entry["server_handling"] = findings_server_handling(sess)
            if cap.get("ntlm"):
                ntlm_session_truth(path, os.path.join(samples, cap["keylog"]) if cap.get("keylog") else None, sess)
                entry["ntlm_server"] = NTLM_SERVER_INFO
                entry["hashcat"] = [{"scenario": s["scenario"], "tcp_stream": s["tcp_stream"], "protocol": s["protocol"],
                                     "success": s["credentials"][0]["success"], **s["ntlm"]["hashcat"]} for s in sess]
            if cap.get("escapes"):
                entry["escapes"] = hostile_escapes_field(sess)
                entry["server_handling"] = hostile_server_handling(sess)
            entry["sessions"] = sess
        prep = sorted(f for f in os.listdir(args.state)  # exact names: "imap" must not pick up "imap-large"
                      if sessions and f in ["prepared-%s-%s.json" % (sessions, u) for u in PASSWORDS])
        if prep:
            entry["prepared_mailboxes"] = [json.load(open(os.path.join(args.state, f))) for f in prep]
        manifest["captures"][cap["file"]] = entry
    text = json.dumps(manifest, indent=1, ensure_ascii=False)
    # C1 controls and bidi/invisible format characters (hostile-escapes' U+202E) as \uXXXX JSON escapes, so
    # that MANIFEST.json holds none of them raw (json already escapes C0 controls such as ESC)
    text = re.sub("[\u0080-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]",
                  lambda mo: "\\u%04x" % ord(mo.group()), text)
    with open(os.path.join(samples, "MANIFEST.json"), "w") as f:
        f.write(text + "\n")
    print("[manifest] %d captures%s" % (len(manifest["captures"]), " (merged %s into %s)" % (
        ", ".join(c["file"] for c in plan["captures"]), args.merge) if args.merge else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("files")
    p.add_argument("--dir", default=files_dir())
    p = sub.add_parser("prepare")
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--state", required=True)
    p = sub.add_parser("run")
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--state", required=True)
    p.add_argument("--name")
    p.add_argument("--keylog")
    p.add_argument("--ipv6", action="store_true")
    p = sub.add_parser("manifest")
    p.add_argument("--state", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--merge", metavar="MANIFEST", help="start from this MANIFEST.json and only add/replace the "
                   "planned captures (everything else stays byte for byte)")
    args = ap.parse_args()
    {"files": cmd_files, "prepare": cmd_prepare, "run": cmd_run, "manifest": cmd_manifest}[args.cmd](args)


if __name__ == "__main__":
    main()
