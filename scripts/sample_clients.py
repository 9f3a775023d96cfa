#!/usr/bin/env python3
"""Real mail-client sessions against the loopback Postfix/Dovecot lab (scripts/lab/).

Used by scripts/make-samples, which starts tcpdump around each `run` step:

    sample_clients.py files     --dir samples/files        # attachment files (deterministic)
    sample_clients.py prepare   SCENARIO --state DIR       # uncaptured: reset + fill mailboxes
    sample_clients.py run       SCENARIO --state DIR [--keylog FILE] [--ipv6]
    sample_clients.py manifest  --state DIR --samples DIR [--merge MANIFEST]  # writes samples/MANIFEST.json

Clients are Python's smtplib/poplib/imaplib, curl, swaks and (tls-ciphers, for TLS 1.3 suites; tls-legacy,
for TLS 1.0/1.1) openssl s_client.  Every client connects only to 127.0.0.1 or ::1, except tls-legacy's
s_client, which connects to the openssl s_server this script starts on 127.0.0.2.  IPv4 clients bind their
source address to CLIENT_IP (default 127.0.0.10) so the captures can be filtered to our own sessions.

Truth data ("sha256" of a sent message) is always over the exact message bytes the server
receives in DATA / APPEND: CRLF line endings, before dot-stuffing, ending with CRLF (for SMTP
the CRLF before the terminating "." belongs to the message, RFC 5321 4.1.1.4).
"""
import argparse
import base64
import binascii
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


def _guarded_create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kw):
    host, port = address[0], address[1]
    if host not in (SERVER4, SERVER6):
        raise RuntimeError("network rule: refusing to connect to %r (only 127.0.0.1 / ::1)" % (host,))
    if source_address is None and host == SERVER4:
        source_address = (CLIENT_IP, 0)
    sock = _orig_create_connection(address, timeout, source_address, **kw)
    local = sock.getsockname()
    CONNECTIONS.append((host, port, local[0], local[1]))
    return sock


socket.create_connection = _guarded_create_connection


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
        return super().send(s)

    def getreply(self):
        code, msg = super().getreply()
        if self._mlog is not None:
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
        return super()._putline(line)

    def _getresp(self):
        resp = super()._getresp()
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
        return super().send(data)

    def _command_complete(self, name, tag):
        typ, dat = super()._command_complete(name, tag)
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


def run_curl(sess, args, keylog=None, outputs=()):
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
    sess["commands_note"] = ("from curl -v; curl also sends %s while closing the connection, which its trace "
                             "does not show" % ("LOGOUT" if sess["protocol"] == "imap" else "QUIT"))
    if p.returncode != 0:
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
}


def cmd_prepare(args):
    for user, builders in SCENARIOS[args.scenario][1]:
        prepare_mailbox(user, builders, args.state, args.scenario)
        print("[prepare] %s: %d messages delivered to %s" % (args.scenario, len(builders), user))


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
    return "unknown"


def cmd_run(args):
    fn = SCENARIOS[args.scenario][0]
    fn(args)
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
}


CAPTURE_NOTES = {
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
            "IPv4 clients bind to %s, the servers are 127.0.0.1; the IPv6 sample uses ::1 on both ends." % CLIENT_IP,
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
        if cap.get("decode_as"):
            entry["tshark_decode_as"] = cap["decode_as"]  # tshark -d VALUE (port not dissected by default)
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
                s["client_port"] = sport
                s["client_ip"] = src
                s["tcp_stream"] = stream
            if cap.get("tls_truth"):
                tls_session_truth(path, os.path.join(samples, cap["keylog"]) if cap.get("keylog") else None,
                                  sess, cap.get("decode_as"))
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
