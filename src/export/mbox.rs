//! `export --mbox FILE`: every whole message in one mbox (the mboxrd variant), so that a mail
//! client or Python's `mailbox` opens them all. Each starts with a `From ` line holding the
//! envelope sender and the capture time; lines are LF-ended as mbox files are; a body line
//! that starts with `From ` (after any `>`s) gets one more `>`, which mboxrd readers remove.
//! Written here: the format is these three rules, and no maintained crate writes it.

use std::io::{self, Write};

use crate::capture::Timestamp;
use crate::session::model::Message;

pub struct MboxWriter<W: Write> {
    out: W,
    pub messages: u64,
}

impl<W: Write> MboxWriter<W> {
    pub fn new(out: W) -> MboxWriter<W> {
        MboxWriter { out, messages: 0 }
    }

    /// Appends one message; parts (a header fetch, a section) are not messages and are left out.
    pub fn message(&mut self, message: &Message) -> io::Result<()> {
        let c = &message.captured;
        if c.partial {
            return Ok(());
        }
        let sender = c
            .mail_from
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("MAILER-DAEMON");
        // An address with spaces or controls would break the From_ line.
        let sender: String = sender
            .chars()
            .map(|ch| {
                if ch.is_whitespace() || ch.is_control() {
                    '_'
                } else {
                    ch
                }
            })
            .collect();
        writeln!(self.out, "From {sender} {}", asctime(c.ts))?;
        for line in c.bytes.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut unquoted = line;
            while let [b'>', rest @ ..] = unquoted {
                unquoted = rest;
            }
            if unquoted.starts_with(b"From ") {
                self.out.write_all(b">")?;
            }
            self.out.write_all(line)?;
            self.out.write_all(b"\n")?;
        }
        self.out.write_all(b"\n")?;
        self.messages += 1;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// `Thu Nov 26 21:30:01 2026`, in UTC, as the From_ line has it.
fn asctime(ts: Timestamp) -> String {
    super::time::datetime(ts)
        .unwrap_or_default()
        .format("%a %b %e %H:%M:%S %Y")
        .to_string()
}
