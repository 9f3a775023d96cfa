//! Hostile captures, generated here and streamed to the real binary's standard input: each tries
//! to exhaust memory, to confuse reassembly, or to attack whoever reads the output. For each,
//! mailscope must not panic, must stay under a stated peak memory (its own `peak memory` report,
//! the kernel's high-water mark of its resident set), must report the condition as a finding,
//! and must still extract the honest session beside it byte for byte.
//!
//! These captures cannot come from real software (no stack sends a 4 GB literal), so the truth
//! is what the generator wrote: the honest session's message bytes and the condition it built.

mod common;

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

use serde_json::Value;

/// Writes a classic pcap (raw IPv4 link type) while it is generated.
struct Capture<W: Write> {
    out: W,
    /// Microseconds since the epoch of the next packet.
    micros: u64,
}

const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 5000;

impl<W: Write> Capture<W> {
    fn new(mut out: W) -> Capture<W> {
        let mut header = Vec::new();
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&262_144u32.to_le_bytes());
        header.extend_from_slice(&101u32.to_le_bytes());
        out.write_all(&header).unwrap();
        Capture {
            out,
            micros: 1_700_000_000_000_000,
        }
    }

    fn packet(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        seq: u32,
        flags: &str,
        payload: &[u8],
    ) {
        let builder = etherparse::PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64);
        let mut tcp = builder.tcp(src.port(), dst.port(), seq, 65535);
        for flag in flags.chars() {
            tcp = match flag {
                'S' => tcp.syn(),
                'A' => tcp.ack(1),
                'F' => tcp.fin(),
                'R' => tcp.rst(),
                'P' => tcp.psh(),
                _ => panic!("flag {flag}"),
            };
        }
        let mut frame = Vec::with_capacity(40 + payload.len());
        tcp.write(&mut frame, payload).unwrap();
        self.micros += 10;
        let mut record = Vec::with_capacity(16);
        record.extend_from_slice(&((self.micros / 1_000_000) as u32).to_le_bytes());
        record.extend_from_slice(&((self.micros % 1_000_000) as u32).to_le_bytes());
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&record).unwrap();
        self.out.write_all(&frame).unwrap();
    }
}

/// One TCP connection in a capture: its ends and the next sequence number each way.
struct Conn {
    client: SocketAddrV4,
    server: SocketAddrV4,
    next: [u32; 2],
}

const C: usize = 0;
const S: usize = 1;
/// The largest payload per generated segment (loopback-sized, to keep captures quick to make).
const SEGMENT: usize = 60_000;

impl Conn {
    /// The three-way handshake, with the given initial sequence numbers.
    fn open_with<W: Write>(
        cap: &mut Capture<W>,
        client: SocketAddrV4,
        server: SocketAddrV4,
        isn: [u32; 2],
    ) -> Conn {
        cap.packet(client, server, isn[C], "S", &[]);
        cap.packet(server, client, isn[S], "SA", &[]);
        cap.packet(client, server, isn[C].wrapping_add(1), "A", &[]);
        Conn {
            client,
            server,
            next: [isn[C].wrapping_add(1), isn[S].wrapping_add(1)],
        }
    }

    fn open<W: Write>(cap: &mut Capture<W>, client: SocketAddrV4, server: SocketAddrV4) -> Conn {
        Conn::open_with(cap, client, server, [CLIENT_ISN, SERVER_ISN])
    }

    fn ends(&self, side: usize) -> (SocketAddrV4, SocketAddrV4) {
        if side == C {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        }
    }

    /// Sends bytes from one side in order, in segments of at most SEGMENT bytes.
    fn send<W: Write>(&mut self, cap: &mut Capture<W>, side: usize, bytes: &[u8]) {
        let (src, dst) = self.ends(side);
        for chunk in bytes.chunks(SEGMENT) {
            cap.packet(src, dst, self.next[side], "PA", chunk);
            self.next[side] = self.next[side].wrapping_add(chunk.len() as u32);
        }
    }

    /// Moves a side's sequence number on without sending: the capture missed those bytes.
    fn skip(&mut self, side: usize, len: u32) {
        self.next[side] = self.next[side].wrapping_add(len);
    }

    /// Both sides close.
    fn close<W: Write>(&mut self, cap: &mut Capture<W>) {
        for side in [C, S] {
            let (src, dst) = self.ends(side);
            cap.packet(src, dst, self.next[side], "FA", &[]);
            self.next[side] = self.next[side].wrapping_add(1);
        }
    }
}

fn addr(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

const SERVER: [u8; 4] = [10, 0, 0, 25];
const HONEST_CLIENT: [u8; 4] = [10, 9, 9, 9];

/// The body of the honest message, as the client sent it inside DATA.
fn honest_message() -> Vec<u8> {
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: still here\r\n\
      Message-ID: <honest@example.test>\r\n\r\nThe honest message survived.\r\n"
        .to_vec()
}

/// A complete, well-behaved SMTP session carrying `honest_message`.
fn honest_smtp<W: Write>(cap: &mut Capture<W>) {
    let mut conn = Conn::open(cap, addr(HONEST_CLIENT, 40000), addr(SERVER, 25));
    let message = honest_message();
    let steps: [(&[u8], &[u8]); 6] = [
        (b"", b"220 mx.example.test ESMTP\r\n"),
        (b"EHLO client.example.test\r\n", b"250 mx.example.test\r\n"),
        (b"MAIL FROM:<alice@example.test>\r\n", b"250 2.1.0 Ok\r\n"),
        (b"RCPT TO:<bob@example.test>\r\n", b"250 2.1.5 Ok\r\n"),
        (b"DATA\r\n", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (
            &[&message[..], b".\r\n"].concat(),
            b"250 2.0.0 Ok: queued\r\n",
        ),
    ];
    for (command, reply) in steps {
        conn.send(cap, C, command);
        conn.send(cap, S, reply);
    }
    conn.send(cap, C, b"QUIT\r\n");
    conn.send(cap, S, b"221 2.0.0 Bye\r\n");
    conn.close(cap);
}

/// What a run gave: counts of records by type, the findings and messages, the run's summary.
struct Run {
    counts: std::collections::BTreeMap<String, u64>,
    findings: Vec<Value>,
    messages: Vec<Value>,
    /// Sessions that list a mailbox (POP3 LIST or UIDL).
    listed: Vec<Value>,
    /// Sessions that list authentications.
    authenticated: Vec<Value>,
    stderr: String,
    success: bool,
    peak_mb: f64,
}

/// Runs `mailscope --json -` on the capture that `generate` writes to its standard input.
/// Messages are kept only when `keep_message` says so (a million of them would not fit).
fn run(
    extra: &[&str],
    generate: impl FnOnce(&mut Capture<BufWriter<std::process::ChildStdin>>) + Send + 'static,
    keep_message: impl Fn(&Value) -> bool,
) -> Run {
    // Two workers wherever it runs: the figures (README) do not depend on the machine's cores.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(["--json", "--threads", "2"])
        .args(extra)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailscope");
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut cap = Capture::new(BufWriter::with_capacity(1 << 20, stdin));
        generate(&mut cap);
        cap.out.flush().unwrap();
    });
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let mut run = Run {
        counts: Default::default(),
        findings: Vec::new(),
        messages: Vec::new(),
        listed: Vec::new(),
        authenticated: Vec::new(),
        stderr: String::new(),
        success: false,
        peak_mb: 0.0,
    };
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // Most records are only counted: parse their type cheaply.
        let kind = line
            .strip_prefix("{\"type\":\"")
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?")
            .to_string();
        if kind == "finding" || kind == "message" {
            let record: Value = serde_json::from_str(&line).unwrap();
            if kind == "finding" {
                run.findings.push(record);
            } else if keep_message(&record) {
                run.messages.push(record);
            }
        }
        if kind == "session" && line.contains("\"mailbox\":[{") {
            run.listed.push(serde_json::from_str(&line).unwrap());
        }
        if kind == "session" && line.contains("\"auth\":[{") {
            run.authenticated.push(serde_json::from_str(&line).unwrap());
        }
        *run.counts.entry(kind).or_default() += 1;
    }
    writer.join().expect("generator");
    run.success = child.wait().unwrap().success();
    run.stderr = stderr.join().unwrap();
    run.peak_mb = peak_memory_mb(&run.stderr);
    let mut kinds = std::collections::BTreeMap::<&str, u64>::new();
    for finding in &run.findings {
        *kinds.entry(finding["kind"].as_str().unwrap()).or_default() += 1;
    }
    eprintln!(
        "peak memory {} MB; records {:?}; findings {kinds:?}",
        run.peak_mb, run.counts
    );
    run
}

/// Writes the capture `generate` makes to `DIR/generated.pcap` and runs mailscope on it with
/// `args` (a `{}` is the capture, `{out}` the folder `DIR/out`). Returns the temporary folder
/// DIR, its `out` folder, and the run's standard output and error.
fn on_file(
    args: &[&str],
    generate: impl FnOnce(&mut Capture<BufWriter<std::fs::File>>),
) -> (tempfile::TempDir, std::path::PathBuf, String, String) {
    let work = tempfile::tempdir().unwrap();
    let capture = work.path().join("generated.pcap");
    let mut cap = Capture::new(BufWriter::new(std::fs::File::create(&capture).unwrap()));
    generate(&mut cap);
    cap.out.flush().unwrap();
    drop(cap);
    let out_dir = work.path().join("out");
    let args = args.iter().map(|&a| match a {
        "{}" => capture.as_os_str(),
        "{out}" => out_dir.as_os_str(),
        a => std::ffi::OsStr::new(a),
    });
    let run = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    (work, out_dir, stdout, stderr)
}

/// `mailscope export --threads 2` on the capture `generate` makes: the temporary folder, the
/// export's folder, and the run's standard error.
fn export(
    generate: impl FnOnce(&mut Capture<BufWriter<std::fs::File>>),
) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let (work, out_dir, _, stderr) =
        on_file(&["export", "--threads", "2", "{}", "{out}"], generate);
    (work, out_dir, stderr)
}

/// The peak memory a run reported stays under `mb`.
fn assert_peak_under(what: &str, stderr: &str, mb: f64) {
    let peak_mb = peak_memory_mb(stderr);
    eprintln!("{what}: peak memory {peak_mb} MB");
    assert!(peak_mb < mb, "{what} peak memory {peak_mb} MB");
}

/// The peak memory a run reports on standard error, in MB.
fn peak_memory_mb(stderr: &str) -> f64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("mailscope: peak memory "))
        .and_then(|l| l.split(' ').next())
        .and_then(|mb| mb.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line in:\n{stderr}"))
}

impl Run {
    fn kinds(&self) -> Vec<&str> {
        self.findings
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect()
    }

    fn assert_finding(&self, kind: &str, detail_part: &str) {
        assert!(
            self.findings
                .iter()
                .any(|f| f["kind"] == kind && f["detail"].as_str().unwrap().contains(detail_part)),
            "no {kind} finding with {detail_part:?}; findings: {:#?}",
            &self.findings[..self.findings.len().min(20)]
        );
    }

    /// Exactly `count` findings of `kind`: one condition, one finding (not one per packet).
    fn assert_count(&self, kind: &str, count: usize) {
        let found = self.kinds().iter().filter(|&&k| k == kind).count();
        assert_eq!(found, count, "{kind} findings: {:#?}", self.findings);
    }

    /// Exactly `count` findings say `detail`.
    fn assert_detail_count(&self, detail: &str, count: usize) {
        let found = self
            .findings
            .iter()
            .filter(|f| f["detail"] == detail)
            .count();
        assert_eq!(found, count, "findings: {:#?}", self.findings);
    }

    fn assert_under(&self, mb: f64) {
        assert!(self.success, "exit status; stderr:\n{}", self.stderr);
        assert!(
            self.peak_mb < mb,
            "peak memory {} MB, bound {mb} MB",
            self.peak_mb
        );
    }

    /// The honest message came through whole: its exact bytes, by their SHA-256.
    fn assert_honest_message(&self) {
        use sha2::Digest;
        let want = hex(&sha2::Sha256::digest(honest_message()));
        assert!(
            self.messages.iter().any(|m| m["sha256"] == want.as_str()),
            "the honest message is missing; messages: {:#?}",
            self.messages
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_honest(message: &Value) -> bool {
    message["session"] == 1 || message["subject"] == "still here"
}

/// The SMTP dialogue up to an accepted recipient, on a connection already open.
fn smtp_until_rcpt<W: Write>(cap: &mut Capture<W>, conn: &mut Conn) {
    let steps: [(&[u8], &[u8]); 4] = [
        (b"", b"220 mx.example.test ESMTP\r\n"),
        (
            b"EHLO evil.example.test\r\n",
            b"250-mx.example.test\r\n250 PIPELINING\r\n",
        ),
        (b"MAIL FROM:<mallory@example.test>\r\n", b"250 2.1.0 Ok\r\n"),
        (b"RCPT TO:<bob@example.test>\r\n", b"250 2.1.5 Ok\r\n"),
    ];
    for (command, reply) in steps {
        conn.send(cap, C, command);
        conn.send(cap, S, reply);
    }
}

/// The SMTP dialogue up to the start of DATA's body, on a connection already open.
fn smtp_until_data<W: Write>(cap: &mut Capture<W>, conn: &mut Conn) {
    smtp_until_rcpt(cap, conn);
    conn.send(cap, C, b"DATA\r\n");
    conn.send(cap, S, b"354 End data with <CR><LF>.<CR><LF>\r\n");
}

fn evil_client(port: u16) -> SocketAddrV4 {
    addr([10, 6, 6, 6], port)
}

/// `count` connections from evil clients (ports 20,000 and on), the n-th to the server's port
/// `port(n)` with the traffic `each` gives it (told n), all still open when the last one is made; then
/// each closes in turn.
fn open_at_once<W: Write>(
    cap: &mut Capture<W>,
    count: u16,
    port: impl Fn(u16) -> u16,
    mut each: impl FnMut(&mut Capture<W>, &mut Conn, u16),
) {
    let mut conns = Vec::new();
    for n in 0..count {
        let mut conn = Conn::open(cap, evil_client(20_000 + n), addr(SERVER, port(n)));
        each(cap, &mut conn, n);
        conns.push(conn);
    }
    for conn in &mut conns {
        conn.close(cap);
    }
}

#[test]
fn a_million_syns() {
    let run = run(
        &[],
        |cap| {
            honest_smtp(cap);
            for n in 0..1_000_000u32 {
                let [_, a, b, c] = n.to_be_bytes();
                let client = addr([10, 100 + a, b, c], 1024 + (n % 60000) as u16);
                cap.packet(client, addr(SERVER, 25), n, "S", &[]);
            }
        },
        is_honest,
    );
    run.assert_under(300.0);
    run.assert_honest_message();
    // At 5, 50 ... 500,000 unanswered attempts.
    run.assert_count("unanswered-connections", 6);
    run.assert_finding(
        "unanswered-connections",
        "500000 connection attempts to 10.0.0.25 ",
    );
}

#[test]
fn one_flow_with_100_000_holes() {
    let run = run(
        &[],
        |cap| {
            honest_smtp(cap);
            let mut conn = Conn::open(cap, evil_client(40001), addr(SERVER, 25));
            smtp_until_data(cap, &mut conn);
            for _ in 0..100_000 {
                conn.send(cap, C, b"0123456789");
                conn.skip(C, 10);
            }
            conn.send(cap, C, b"\r\n.\r\n");
            conn.send(cap, S, b"250 2.0.0 Ok: queued\r\n");
            conn.close(cap);
        },
        is_honest,
    );
    run.assert_under(64.0);
    run.assert_honest_message();
    run.assert_count("capture-gap", 1);
    run.assert_finding("capture-gap", "gap(s) in the capture");
}

#[test]
fn an_imap_literal_claiming_4_gb() {
    let run = run(
        &[],
        |cap| {
            honest_smtp(cap);
            let mut conn = Conn::open(cap, evil_client(40002), addr(SERVER, 143));
            conn.send(cap, S, b"* OK IMAP4rev1 ready\r\n");
            conn.send(cap, C, b"a1 APPEND INBOX {4294967296}\r\n");
            conn.send(cap, S, b"+ Ready for literal data\r\n");
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..100 {
                conn.send(cap, C, &chunk);
            }
            conn.close(cap);
        },
        is_honest,
    );
    run.assert_under(128.0);
    run.assert_honest_message();
    run.assert_count("capture-limit", 1);
    run.assert_finding(
        "capture-limit",
        "a literal of 4294967296 bytes was announced",
    );
}

#[test]
fn a_gigabyte_line_without_crlf() {
    let run = run(
        &[],
        |cap| {
            honest_smtp(cap);
            let mut conn = Conn::open(cap, evil_client(40003), addr(SERVER, 25));
            conn.send(cap, S, b"220 mx.example.test ESMTP\r\n");
            let chunk = vec![b'A'; SEGMENT];
            for _ in 0..(1 << 30) / SEGMENT {
                conn.send(cap, C, &chunk);
            }
            conn.close(cap);
        },
        is_honest,
    );
    run.assert_under(32.0);
    run.assert_honest_message();
    // The first drop at once, the rest summed at the end; and the cut line itself.
    run.assert_count("capture-limit", 3);
    run.assert_finding("capture-limit", "bytes dropped");
}

#[test]
fn tls_lengths_claiming_too_much() {
    let run = run(
        &[],
        |cap| {
            honest_smtp(cap);
            // A record header claiming 65,535 bytes, over TLS's 2^14 + 2048.
            let mut conn = Conn::open(cap, evil_client(40004), addr(SERVER, 465));
            conn.send(cap, C, &[0x16, 0x03, 0x01, 0xff, 0xff]);
            conn.send(cap, C, &vec![0; 70_000]);
            conn.close(cap);
            // A handshake message claiming 2^24 - 1 bytes, spread over full-size records.
            let mut conn = Conn::open(cap, evil_client(40005), addr(SERVER, 465));
            let mut body = vec![1, 0xff, 0xff, 0xff];
            body.resize(16_384, 0xab);
            for _ in 0..1024 {
                let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
                record.extend_from_slice(&body);
                conn.send(cap, C, &record);
                body = vec![0xab; 16_384];
            }
            conn.close(cap);
        },
        is_honest,
    );
    run.assert_under(32.0);
    run.assert_honest_message();
    run.assert_finding("protocol-error", "length 65535");
    run.assert_finding("protocol-error", "handshake message claims more than");
}

/// The honest session, then `messages` one-line messages pipelined in one SMTP session.
fn tiny_messages<W: Write>(cap: &mut Capture<W>, messages: u64) {
    honest_smtp(cap);
    let mut conn = Conn::open(cap, evil_client(40006), addr(SERVER, 25));
    conn.send(cap, S, b"220 mx.example.test ESMTP\r\n");
    conn.send(cap, C, b"EHLO tiny.example.test\r\n");
    conn.send(cap, S, b"250-mx.example.test\r\n250 PIPELINING\r\n");
    for _ in 0..messages {
        conn.send(
            cap,
            C,
            b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n",
        );
        conn.send(cap, S, b"250 Ok\r\n250 Ok\r\n354 Go\r\n");
        conn.send(cap, C, b"x\r\n.\r\n");
        conn.send(cap, S, b"250 Ok\r\n");
    }
    conn.close(cap);
}

#[test]
fn a_million_tiny_messages() {
    const MESSAGES: u64 = 1_000_000;
    let run = run(&[], |cap| tiny_messages(cap, MESSAGES), is_honest);
    // One session, so one worker does it all and runs up to 8 chunks of 1,024 records (each
    // here a parsed message) ahead of the merge: about 5 MB of the peak.
    run.assert_under(40.0);
    run.assert_honest_message();
    run.assert_count("open-relay", 1);
    assert_eq!(run.counts["message"], MESSAGES + 1);
}

/// Many large messages in progress at once, each held until its end (to parse its MIME): all
/// of them together keep 128 MiB at most. The rest of each is still hashed and counted.
#[test]
fn large_messages_in_progress_at_once() {
    const CONNECTIONS: u16 = 24;
    const MIB_EACH: usize = 16;
    let body: Vec<u8> = [
        &b"Subject: large\r\n\r\n"[..],
        format!("{}\r\n", "x".repeat(78))
            .repeat(MIB_EACH * 13_108)
            .as_bytes(),
    ]
    .concat();
    let want = hex(&<sha2::Sha256 as sha2::Digest>::digest(&body));
    let run = run(
        &[],
        {
            let body = body.clone();
            move |cap| {
                honest_smtp(cap);
                let mut conns: Vec<Conn> = (0..CONNECTIONS)
                    .map(|n| Conn::open(cap, evil_client(30_000 + n), addr(SERVER, 25)))
                    .collect();
                for conn in &mut conns {
                    smtp_until_data(cap, conn);
                }
                // A mebibyte of each in turn: every message is under way at once.
                for piece in body.chunks(1 << 20) {
                    for conn in &mut conns {
                        conn.send(cap, C, piece);
                    }
                }
                for conn in &mut conns {
                    conn.send(cap, C, b".\r\n");
                    conn.send(cap, S, b"250 2.0.0 Ok: queued\r\n");
                    conn.close(cap);
                }
            }
        },
        |m| m["subject"] == "large" || is_honest(m),
    );
    // The 128 MiB of the room, and up to 8 rounds of 1 MiB queued for each of the two workers.
    run.assert_under(272.0);
    run.assert_honest_message();
    let large: Vec<&Value> = run
        .messages
        .iter()
        .filter(|m| m["subject"] == "large")
        .collect();
    assert_eq!(large.len(), usize::from(CONNECTIONS));
    for message in &large {
        // Size and hash are the whole message's; what was kept is its beginning.
        assert_eq!(message["size"], body.len());
        assert_eq!(message["sha256"], want.as_str());
        assert_eq!(message["truncated"], true);
    }
    run.assert_count("capture-limit", usize::from(CONNECTIONS));
    run.assert_finding(
        "capture-limit",
        "the messages in progress at once keep 128 MiB in all",
    );
}

/// `export` of many messages: every one is written, and the index lists the first 10,000 with
/// the totals, so that what the export holds does not grow with the capture.
#[test]
fn export_of_30_000_messages() {
    const MESSAGES: u64 = 30_000;
    let (_work, out_dir, stderr) = export(|cap| tiny_messages(cap, MESSAGES));
    let emls = common::files_under(&out_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .count();
    assert_eq!(emls as u64, MESSAGES + 1);
    let index: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["messages_total"], MESSAGES + 1);
    let listed = index["messages"].as_array().unwrap();
    assert_eq!(listed.len(), 10_000);
    for entry in listed {
        assert!(
            out_dir.join(entry["eml"].as_str().unwrap()).is_file(),
            "{entry}"
        );
    }
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(html.contains("30001 messages"), "{}", &html[..600]);
    assert_peak_under("export", &stderr, 64.0);
}

#[test]
fn a_mailbox_listed_again_and_again() {
    // As long as a listing may be (1 MiB), each line a new message number.
    const ENTRIES: u64 = 50_000;
    const ROUNDS: usize = 4;
    let run = run(
        &[],
        |cap| {
            honest_smtp(cap);
            let mut conn = Conn::open(cap, evil_client(40007), addr(SERVER, 110));
            conn.send(cap, S, b"+OK POP3 ready\r\n");
            let list: String = (1..=ENTRIES)
                .map(|n| format!("{n} {}\r\n", 100 + n))
                .collect();
            let uidl: String = (1..=ENTRIES).map(|n| format!("{n} uid-{n}\r\n")).collect();
            for _ in 0..ROUNDS {
                for (command, listing) in [("LIST", &list), ("UIDL", &uidl)] {
                    conn.send(cap, C, format!("{command}\r\n").as_bytes());
                    conn.send(cap, S, format!("+OK\r\n{listing}.\r\n").as_bytes());
                }
            }
            conn.send(cap, C, b"QUIT\r\n");
            conn.send(cap, S, b"+OK bye\r\n");
            conn.close(cap);
        },
        is_honest,
    );
    run.assert_under(64.0);
    run.assert_honest_message();
    // Every number once, with the size LIST gave and the id UIDL gave.
    let [session] = &run.listed[..] else {
        panic!("sessions with a mailbox: {}", run.listed.len());
    };
    let mailbox = session["mailbox"].as_array().unwrap();
    assert_eq!(mailbox.len() as u64, ENTRIES);
    for (entry, n) in mailbox.iter().zip(1..) {
        assert_eq!(entry["number"], n);
        assert_eq!(entry["size"], 100 + n);
        assert_eq!(entry["uid"], format!("uid-{n}"));
    }
}

#[test]
fn commands_that_get_no_reply() {
    // Only the clients' side was captured (asymmetric routing, or clients that never wait).
    const COMMANDS: usize = 300_000;
    let clients = [(25, "NOOP\r\n"), (110, "NOOP\r\n"), (143, "a NOOP\r\n")];
    let run = run(
        &[],
        move |cap| {
            honest_smtp(cap);
            for (n, (port, command)) in clients.into_iter().enumerate() {
                let mut conn = Conn::open(cap, evil_client(40010 + n as u16), addr(SERVER, port));
                conn.send(cap, C, command.repeat(COMMANDS).as_bytes());
                conn.close(cap);
            }
        },
        is_honest,
    );
    run.assert_under(64.0);
    run.assert_honest_message();
    // Every command is still reported, as an exchange without a reply.
    assert_eq!(run.counts["exchange"], 3 * COMMANDS as u64 + 7);
    run.assert_detail_count(&format!("{COMMANDS} command(s) got no reply: NOOP"), 3);
}

/// Thousands of connections, each with more commands awaiting replies than an honest client
/// pipelines, all open at once: past 32 each, they share one room of 100,000.
#[test]
fn many_connections_awaiting_replies() {
    const CONNECTIONS: u16 = 3_000;
    const COMMANDS: usize = 1_200;
    let clients = [(25, "NOOP\r\n"), (110, "NOOP\r\n"), (143, "a NOOP\r\n")];
    let run = run(
        &[],
        move |cap| {
            honest_smtp(cap);
            let client = |n: u16| clients[usize::from(n) % clients.len()];
            open_at_once(
                cap,
                CONNECTIONS,
                |n| client(n).0,
                |cap, conn, n| conn.send(cap, C, client(n).1.repeat(COMMANDS).as_bytes()),
            );
        },
        is_honest,
    );
    run.assert_under(128.0);
    run.assert_honest_message();
    // Every command is still reported, as an exchange without a reply.
    assert_eq!(
        run.counts["exchange"],
        u64::from(CONNECTIONS) * COMMANDS as u64 + 7
    );
    run.assert_detail_count(
        &format!("{COMMANDS} command(s) got no reply: NOOP"),
        usize::from(CONNECTIONS),
    );
}

/// Brute-force attempts in one SMTP session: AUTH PLAIN as `admin` with passwords `guess-0`
/// and on, a thousand pipelined per segment; all refused but the last.
const GUESSES: usize = 1_000_000;

fn brute_force<W: Write>(cap: &mut Capture<W>) {
    use base64::Engine;
    const BATCH: usize = 1_000;
    let b64 = base64::engine::general_purpose::STANDARD;
    honest_smtp(cap);
    let mut conn = Conn::open(cap, evil_client(40020), addr(SERVER, 25));
    conn.send(cap, S, b"220 mx.example.test ESMTP\r\n");
    conn.send(cap, C, b"EHLO guess.example.test\r\n");
    conn.send(cap, S, b"250-mx.example.test\r\n250 AUTH PLAIN\r\n");
    for first in (0..GUESSES).step_by(BATCH) {
        let guesses = first..(first + BATCH).min(GUESSES);
        let commands: String = guesses
            .clone()
            .map(|n| {
                format!(
                    "AUTH PLAIN {}\r\n",
                    b64.encode(format!("\0admin\0guess-{n}"))
                )
            })
            .collect();
        let replies: String = guesses
            .map(|n| match n + 1 == GUESSES {
                true => "235 2.7.0 Authentication successful\r\n",
                false => "535 5.7.8 Authentication credentials invalid\r\n",
            })
            .collect();
        conn.send(cap, C, commands.as_bytes());
        conn.send(cap, S, replies.as_bytes());
    }
    conn.send(cap, C, b"QUIT\r\n");
    conn.send(cap, S, b"221 2.0.0 Bye\r\n");
    conn.close(cap);
}

#[test]
fn a_million_logins_in_one_session() {
    let run = run(&[], brute_force, is_honest);
    run.assert_under(64.0);
    run.assert_honest_message();
    // The session keeps the first thousand and counts them all.
    let [session] = &run.authenticated[..] else {
        panic!("sessions with logins: {}", run.authenticated.len());
    };
    assert_eq!(session["auth_attempts"], GUESSES);
    let kept = session["auth"].as_array().unwrap();
    assert_eq!(kept.len(), 1_000);
    for (n, attempt) in kept.iter().enumerate() {
        assert_eq!(attempt["password"], format!("guess-{n}"));
    }
    run.assert_finding("capture-limit", "more than 1000 authentication attempts");
    // Once per user and outcome, not once per attempt.
    run.assert_count("cleartext-credentials", 2);
    // At 5 failures, then at each tenfold: 5, 50 ... 500,000.
    run.assert_count("auth-brute-force", 6);
    run.assert_finding("auth-brute-force", "500000 failed logins from 10.6.6.6");
    // The first hundred refusals one by one, the rest counted at the session's end.
    run.assert_count("error-reply", 101);
    run.assert_finding(
        "error-reply",
        "999899 more error replies after the first 100",
    );

    // credentials.csv has every attempt, in order, with its result.
    let (_work, out_dir, stderr) = export(brute_force);
    let csv = std::fs::read_to_string(out_dir.join("credentials.csv")).unwrap();
    let mut rows = csv.lines().skip(1);
    for n in 0..GUESSES {
        let row = rows
            .next()
            .unwrap_or_else(|| panic!("no row for guess {n}"));
        let fields: Vec<&str> = row.split(',').collect();
        let result = if n + 1 == GUESSES {
            "accepted"
        } else {
            "refused"
        };
        assert_eq!(
            (fields[6], fields[7], fields[8], fields[9]),
            ("PLAIN", "admin", format!("guess-{n}").as_str(), result),
            "{row}"
        );
    }
    assert_eq!(rows.next(), None);
    // Export holds a session's transcript until the session ends (at most 200,000 lines).
    assert_peak_under("export", &stderr, 128.0);
}

/// Many long SMTP sessions open at once, 10,000 connections taking turns: transcripts are
/// written when a session ends, so each holds its lines until then, within one budget for all.
#[test]
fn many_long_sessions_at_once_in_text() {
    const CONNECTIONS: u16 = 10_000;
    const COMMANDS: usize = 100;
    let (_work, _, text, stderr) = on_file(&["--text", "--threads", "2", "{}"], |cap| {
        honest_smtp(cap);
        let mut conns: Vec<Conn> = (0..CONNECTIONS)
            .map(|n| Conn::open(cap, evil_client(20_000 + n), addr(SERVER, 25)))
            .collect();
        for conn in &mut conns {
            conn.send(cap, S, b"220 mx.example.test ESMTP\r\n");
        }
        for n in 0..COMMANDS {
            for conn in &mut conns {
                conn.send(cap, C, format!("NOOP number {n} of many\r\n").as_bytes());
                conn.send(cap, S, b"250 2.0.0 Ok, noted and answered\r\n");
            }
        }
        for conn in &mut conns {
            conn.close(cap);
        }
    });
    let cut = text.matches("more lines not shown").count();
    eprintln!("--text: {cut} transcripts cut");
    assert_peak_under("--text", &stderr, 256.0);
    // The honest session, which ended first, is whole; later ones are cut, and say so.
    let honest = text.split("=== session ").nth(1).unwrap();
    assert!(honest.contains("still here"), "{honest}");
    assert!(honest.contains("C: QUIT") && !honest.contains("more lines not shown"));
    assert!(cut > 0 && cut <= usize::from(CONNECTIONS), "{cut}");
}

/// Connections that each had one burst, then sit idle until the end of the capture (as IMAP
/// clients in IDLE do): a long line and a thousand pipelined commands each. What the burst
/// made room for must be given back while they wait.
#[test]
fn idle_connections_after_a_burst() {
    const CONNECTIONS: u16 = 2_000;
    const COMMANDS: usize = 1_000;
    let run = run(
        &[],
        |cap| {
            honest_smtp(cap);
            let long_line = format!("NOOP {}\r\n", "x".repeat(50_000));
            open_at_once(
                cap,
                CONNECTIONS,
                |_| 25,
                |cap, conn, _| {
                    conn.send(cap, S, b"220 mx.example.test ESMTP\r\n");
                    conn.send(cap, C, long_line.as_bytes());
                    conn.send(cap, S, b"250 2.0.0 Ok\r\n");
                    conn.send(cap, C, "NOOP\r\n".repeat(COMMANDS).as_bytes());
                    conn.send(cap, S, "250 2.0.0 Ok\r\n".repeat(COMMANDS).as_bytes());
                },
            );
        },
        is_honest,
    );
    run.assert_under(128.0);
    run.assert_honest_message();
    // Every command was answered, and each long line was reported as cut (and its rest as
    // dropped).
    assert_eq!(
        run.counts["exchange"],
        u64::from(CONNECTIONS) * (COMMANDS as u64 + 2) + 7
    );
    run.assert_count("capture-limit", 2 * usize::from(CONNECTIONS));
    run.assert_finding("capture-limit", "command line longer than 16384 bytes, cut");
}

/// A message whose body is `body`, in DATA form (ends with the terminating dot line).
fn data_of(body: &[u8]) -> Vec<u8> {
    [b"Subject: contested\r\n\r\n", body, b"\r\n.\r\n"].concat()
}

#[test]
fn overlaps_with_different_bytes() {
    let first = b"pay 100 EUR to account A";
    let second = b"pay 999 EUR to account B";
    let run = run(
        &[],
        move |cap| {
            honest_smtp(cap);
            let mut conn = Conn::open(cap, evil_client(40007), addr(SERVER, 25));
            smtp_until_data(cap, &mut conn);
            let data = data_of(first);
            let head = 22; // "Subject: contested\r\n\r\n" goes last, after the hole
            let (src, dst) = conn.ends(C);
            let at = conn.next[C].wrapping_add(head as u32);
            cap.packet(src, dst, at, "PA", &data[head..]);
            let mut other = data.clone();
            other[head..head + second.len()].copy_from_slice(second);
            cap.packet(src, dst, at, "PA", &other[head..]);
            conn.send(cap, C, &data[..head]);
            conn.skip(C, (data.len() - head) as u32);
            conn.send(cap, S, b"250 2.0.0 Ok: queued\r\n");
            conn.close(cap);
        },
        |m| m["subject"] == "contested" || is_honest(m),
    );
    run.assert_under(32.0);
    run.assert_honest_message();
    run.assert_count("overlap-conflict", 1);
    run.assert_finding("overlap-conflict", "");
    // The first copy wins, as documented.
    use sha2::Digest;
    let want = hex(&sha2::Sha256::digest(
        [&b"Subject: contested\r\n\r\n"[..], first, b"\r\n"].concat(),
    ));
    assert!(
        run.messages.iter().any(|m| m["sha256"] == want.as_str()),
        "{:#?}",
        run.messages
    );
}

#[test]
fn sequence_numbers_wrap_inside_data() {
    let body: Vec<u8> = (0..200_000u32)
        .map(|n| b"abcdefghijklmnopqrstuvwxyz0123456789\r\n"[n as usize % 38])
        .collect();
    let message = data_of(&body);
    let want = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(&message[..message.len() - 3]))
    };
    let run = run(
        &[],
        move |cap| {
            honest_smtp(cap);
            // The client's sequence numbers pass 2^32 about 100,000 bytes into the body.
            let isn = 0u32.wrapping_sub(100_000 + 200);
            let mut conn =
                Conn::open_with(cap, evil_client(40008), addr(SERVER, 25), [isn, SERVER_ISN]);
            smtp_until_data(cap, &mut conn);
            conn.send(cap, C, &message);
            conn.send(cap, S, b"250 2.0.0 Ok: queued\r\n");
            conn.close(cap);
        },
        |m| m["subject"] == "contested" || is_honest(m),
    );
    run.assert_under(32.0);
    run.assert_honest_message();
    assert!(
        run.messages.iter().any(|m| m["sha256"] == want.as_str()),
        "{:#?}",
        run.messages
    );
    assert!(!run.kinds().contains(&"capture-gap"), "{:#?}", run.findings);
}

/// A client that sends its message before the go-ahead, past the mebibyte a side may hold
/// while it waits, then the rest after it: the bytes past the limit are lost, and the message
/// must say so rather than come out complete without them.
#[test]
fn a_message_sent_past_the_held_limit_before_its_go_ahead() {
    let body: Vec<u8> = (0..40_000u32)
        .flat_map(|n| format!("line {n:05} of a message sent too early\r\n").into_bytes())
        .collect();
    let message = data_of(&body);
    let early = 1_500_000; // sent before the go-ahead: past the 1 MiB held
    let sent = message.clone();
    let run = run(
        &[],
        move |cap| {
            let message = sent;
            honest_smtp(cap);
            let mut conn = Conn::open(cap, evil_client(40010), addr(SERVER, 25));
            smtp_until_rcpt(cap, &mut conn);
            conn.send(cap, C, &[&b"DATA\r\n"[..], &message[..early]].concat());
            conn.send(cap, S, b"354 End data with <CR><LF>.<CR><LF>\r\n");
            conn.send(cap, C, &message[early..]);
            conn.send(cap, S, b"250 2.0.0 Ok: queued\r\n");
            conn.close(cap);
        },
        |m| m["session"] == 2 || is_honest(m),
    );
    run.assert_under(64.0);
    run.assert_honest_message();
    run.assert_finding("capture-limit", "past 1 MiB");
    // The mebibyte held while waiting is lost with the segment that found no room past it;
    // the message is what came after, with a hole for the rest: every byte sent is in one or
    // the other.
    let cut: Vec<_> = run.messages.iter().filter(|m| m["session"] == 2).collect();
    assert_eq!(cut.len(), 1, "{cut:#?}");
    let (size, hole) = (cut[0]["size"].as_u64(), cut[0]["hole_bytes"].as_u64());
    assert_eq!(cut[0]["complete"], false);
    assert!(hole > Some((1 << 20) - 6), "{cut:#?}");
    let whole = message.len() - b".\r\n".len();
    assert_eq!(size.zip(hole).map(|(s, h)| s + h), Some(whole as u64));
}

/// 300 SMTP clients that each send 600 KB of their message before the go-ahead, all waiting at
/// once: under each side's mebibyte, 180 MB together. What waits shares one room: those that
/// find none lose their early bytes as a hole, and still come out with the rest.
#[test]
fn many_clients_holding_their_messages_at_once() {
    const CLIENTS: u16 = 300;
    let body: Vec<u8> = (0..25_000u32)
        .flat_map(|n| format!("line {n:05} sent before the go-ahead\r\n").into_bytes())
        .collect();
    let message = data_of(&body);
    let early = 600_000;
    let sent = message.clone();
    let run = run(
        &[],
        move |cap| {
            honest_smtp(cap);
            let mut conns = Vec::new();
            for n in 0..CLIENTS {
                let mut conn = Conn::open(cap, evil_client(20_000 + n), addr(SERVER, 25));
                smtp_until_rcpt(cap, &mut conn);
                conn.send(cap, C, &[&b"DATA\r\n"[..], &sent[..early]].concat());
                conns.push(conn);
            }
            for conn in &mut conns {
                conn.send(cap, S, b"354 End data with <CR><LF>.<CR><LF>\r\n");
                conn.send(cap, C, &sent[early..]);
                conn.send(cap, S, b"250 2.0.0 Ok: queued\r\n");
                conn.close(cap);
            }
        },
        |m| m["session"] != 1 || is_honest(m),
    );
    run.assert_under(160.0);
    run.assert_honest_message();
    let whole = (message.len() - b".\r\n".len()) as u64;
    let evil: Vec<_> = run.messages.iter().filter(|m| m["session"] != 1).collect();
    assert_eq!(evil.len(), CLIENTS as usize);
    let cut = evil.iter().filter(|m| m["complete"] == false).count();
    for m in &evil {
        let (size, hole) = (m["size"].as_u64(), m["hole_bytes"].as_u64());
        assert_eq!(size.zip(hole).map(|(s, h)| s + h), Some(whole), "{m:#?}");
    }
    // The room (64 MiB) holds about a hundred of them; the others lose their early bytes, and
    // a capture-limit finding says so in each of their sessions.
    assert!(
        (1..CLIENTS as usize).contains(&cut),
        "{cut} of {CLIENTS} cut"
    );
    let sessions = |of: &mut dyn Iterator<Item = &Value>| -> std::collections::BTreeSet<u64> {
        of.filter_map(|v| v["session"].as_u64()).collect()
    };
    let limited = sessions(&mut run.findings.iter().filter(|f| f["kind"] == "capture-limit"));
    let incomplete = sessions(&mut evil.iter().copied().filter(|m| m["complete"] == false));
    assert_eq!(limited, incomplete);
}

#[test]
fn reset_then_more_data() {
    let run = run(
        &[],
        |cap| {
            honest_smtp(cap);
            let mut conn = Conn::open(cap, evil_client(40009), addr(SERVER, 25));
            smtp_until_data(cap, &mut conn);
            conn.send(cap, C, b"Subject: before the reset\r\n\r\nseen by all\r\n");
            let (src, dst) = conn.ends(C);
            cap.packet(src, dst, conn.next[C], "R", &[]);
            conn.send(cap, C, b"hidden after the reset\r\n.\r\n");
            conn.send(cap, S, b"250 2.0.0 Ok: queued\r\n");
        },
        is_honest,
    );
    run.assert_under(32.0);
    run.assert_honest_message();
    // Each side sent after the reset.
    run.assert_count("data-after-reset", 2);
    run.assert_finding("data-after-reset", "");
}

/// Attachment names that try to leave the output folder, name a device, or hide in length.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "../../outside.txt",
        "/etc/passwd",
        "..",
        ".",
        "C:\\Windows\\system32\\evil.dll",
        "a\u{0}b.txt",
        "CON",
        "nul.txt",
        "LPT1.log",
        "\u{1b}[2J\u{1b}]52;c;ZXZpbA==\u{7}evil.sh",
        "report\u{202e}fdp.exe",
    ]
    .map(String::from)
    .to_vec();
    names.push(format!("{}.pdf", "n".repeat(10_000)));
    names
}

/// A multipart message carrying one attachment per hostile name, each with its own content,
/// and escape sequences in every header a viewer shows.
fn hostile_message() -> Vec<u8> {
    let mut message = String::from(
        "From: \u{1b}[31mMallory\u{1b}[0m <mallory@example.test>\r\n\
         To: \u{1b}]0;pwned\u{7}bob <bob@example.test>\r\n\
         Subject: \u{1b}[2J\u{1b}[Hinvoice \u{9b}31m\r\n\
         Message-ID: <hostile@example.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nsee attached \u{1b}[8mhidden\r\n",
    );
    for (n, name) in hostile_names().iter().enumerate() {
        message.push_str(&format!(
            "--b\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n\
             attachment number {n}\r\n"
        ));
    }
    message.push_str("--b--\r\n");
    message.into_bytes()
}

/// Every field of an SMTP session carries escapes: EHLO, the envelope, AUTH, the replies, the
/// headers and the attachment names.
fn hostile_session<W: Write>(cap: &mut Capture<W>) {
    let mut conn = Conn::open(cap, evil_client(40010), addr(SERVER, 25));
    let mut data = hostile_message();
    data.extend_from_slice(b".\r\n");
    let steps: [(&[u8], &[u8]); 7] = [
        (b"", b"220 \x1b[2Jmx.example.test ESMTP\r\n"),
        (
            b"EHLO \x1b]0;title\x07evil\r\n",
            b"250-mx\x1b[5m.example.test\r\n250 AUTH PLAIN\r\n",
        ),
        // AUTH PLAIN of "\0mal\x1b[2Jlory\0pass\x1b[0m"
        (
            b"AUTH PLAIN AG1hbBtbMkpsb3J5AHBhc3MbWzBt\r\n",
            b"235 2.7.0 \x1b[1mAuthenticated\r\n",
        ),
        (b"MAIL FROM:<\x1b[2J@example.test>\r\n", b"250 2.1.0 Ok\r\n"),
        (
            b"RCPT TO:<bob\x1b[8m@example.test>\r\n",
            b"250 2.1.5 Ok\r\n",
        ),
        (b"DATA\r\n", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (&data, b"250 2.0.0 Ok: queued as \x1b[2J\r\n"),
    ];
    for (command, reply) in steps {
        conn.send(cap, C, command);
        conn.send(cap, S, reply);
    }
    conn.close(cap);
}

/// What a terminal must never receive from captured text: C0 controls other than tab and line
/// feed, DEL, C1 controls, and bidirectional overrides.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[test]
fn escapes_in_every_field_and_hostile_attachment_names() {
    let work = tempfile::tempdir().unwrap();
    let capture = work.path().join("hostile.pcap");
    {
        let mut cap = Capture::new(BufWriter::new(std::fs::File::create(&capture).unwrap()));
        honest_smtp(&mut cap);
        hostile_session(&mut cap);
        cap.out.flush().unwrap();
    }
    let out_dir = work.path().join("out");
    let export = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .arg("export")
        .arg(&capture)
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    // Nothing was written outside the folder.
    for path in common::files_under(work.path()) {
        assert!(
            path == capture || path.starts_with(&out_dir),
            "{} escaped",
            path.display()
        );
    }
    // Every attachment is there, with its own content, under a name that is one safe component.
    let files = common::files_under(&out_dir);
    for n in 0..hostile_names().len() {
        // The line end before a boundary belongs to the boundary.
        let content = format!("attachment number {n}");
        let found: Vec<_> = files
            .iter()
            .filter(|p| std::fs::read(p).unwrap() == content.as_bytes())
            .collect();
        assert_eq!(found.len(), 1, "attachment {n}: {found:?}");
        let name = found[0].file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 255, "{name}");
        assert!(
            raw_controls(name).is_empty() && !name.contains(['/', '\\', '\0']),
            "{name:?}"
        );
        let stem = name.split('.').next().unwrap().to_ascii_uppercase();
        assert!(!["CON", "NUL", "LPT1"].contains(&stem.as_str()), "{name}");
    }
    // What a terminal or a browser shows carries no raw control character.
    for path in &files {
        if let Ok(text) = std::fs::read_to_string(path) {
            // The .eml files are the messages as sent, escapes and all, on purpose.
            if path.extension().is_none_or(|e| e != "eml") {
                assert!(raw_controls(&text).is_empty(), "{}", path.display());
            }
        }
    }
    for mode in ["--text", "--json"] {
        let out = Command::new(env!("CARGO_BIN_EXE_mailscope"))
            .arg(mode)
            .arg(&capture)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(raw_controls(&text), Vec::<char>::new(), "{mode}");
        assert!(raw_controls(&String::from_utf8_lossy(&out.stderr)).is_empty());
        if mode == "--json" {
            let findings: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|r| r["type"] == "finding")
                .collect();
            for kind in ["control-characters", "hostile-file-name"] {
                assert!(
                    findings.iter().any(|f| f["kind"] == kind),
                    "{kind}: {findings:#?}"
                );
            }
        }
    }
}
