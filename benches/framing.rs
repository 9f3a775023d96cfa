//! The dissectors' framing of message bodies, the bytes that dominate mail traffic: SMTP DATA
//! (dot-stuffing and the end-of-data scan) and IMAP literals (counted bytes). Each feeds a
//! 16 MiB message in 64 KiB reads, as reassembly hands it over.
//! Run with `cargo bench --bench framing`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mailscope::capture::Timestamp;
use mailscope::proto::{Dissector, ImapDissector, ProtoEvent, SmtpDissector};
use mailscope::tcp::Direction;

const MESSAGE: usize = 16 << 20;
const READ: usize = 64 << 10;

/// A message body of 76-character lines, some starting with a dot (stuffed as SMTP sends it).
fn body() -> Vec<u8> {
    let mut body = Vec::with_capacity(MESSAGE + MESSAGE / 64);
    let mut n = 0u64;
    while body.len() < MESSAGE {
        if n % 50 == 0 {
            body.extend_from_slice(b"..a line that starts with a dot, stuffed\r\n");
        }
        let line: Vec<u8> = (0..76).map(|k| b'A' + ((n + k) % 26) as u8).collect();
        body.extend_from_slice(&line);
        body.extend_from_slice(b"\r\n");
        n += 1;
    }
    body
}

type Said<'a> = (Direction, &'a [u8]);

/// Feeds a dialogue to a fresh dissector, `body` in READ-sized pieces; returns the size of the
/// messages it reported.
fn run(mut dissector: impl Dissector, before: &[Said], body: Said, after: &[Said]) -> u64 {
    let mut out: Vec<ProtoEvent> = Vec::new();
    let ts = Timestamp(0);
    for (direction, bytes) in before {
        dissector.data(*direction, bytes, ts, &mut out);
    }
    let (direction, body) = body;
    for piece in body.chunks(READ) {
        dissector.data(direction, piece, ts, &mut out);
    }
    for (direction, bytes) in after {
        dissector.data(*direction, bytes, ts, &mut out);
    }
    out.iter()
        .filter_map(ProtoEvent::as_message)
        .map(|m| m.size)
        .sum()
}

fn framing(c: &mut Criterion) {
    use Direction::{ClientToServer as C, ServerToClient as S};
    let body = body();
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(20);

    let smtp_before: [Said; 5] = [
        (S, b"220 mx ESMTP\r\n"),
        (C, b"MAIL FROM:<a@x.test>\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"RCPT TO:<b@x.test>\r\nDATA\r\n"),
        (S, b"250 ok\r\n354 go\r\n"),
    ];
    let smtp_after: [Said; 2] = [(C, b".\r\n"), (S, b"250 queued\r\n")];
    group.bench_function("smtp DATA, 16 MiB", |b| {
        b.iter(|| {
            run(
                SmtpDissector::default(),
                &smtp_before,
                (C, &body),
                &smtp_after,
            )
        })
    });

    let imap_before: [Said; 4] = [
        (S, b"* OK ready\r\n"),
        (C, b"a1 SELECT INBOX\r\n"),
        (S, b"a1 OK [READ-WRITE] done\r\n"),
        (C, b"a2 FETCH 1 BODY[]\r\n"),
    ];
    let literal = format!("* 1 FETCH (BODY[] {{{}}}\r\n", body.len());
    let imap_body = [literal.as_bytes(), &body].concat();
    let imap_after: [Said; 1] = [(S, b")\r\na2 OK done\r\n")];
    group.bench_function("imap literal, 16 MiB", |b| {
        b.iter(|| {
            run(
                ImapDissector::default(),
                &imap_before,
                (S, &imap_body),
                &imap_after,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
