//! `mailscope follow`: one connection's reassembled bytes, like Wireshark's Follow TCP Stream.
//!
//! Text mode interleaves both directions in the order the bytes were completed, each line
//! prefixed `C: ` (client) or `S: ` (server), gaps and the end of each direction marked, and
//! everything passed through the sanitizer. Raw mode writes one direction's exact bytes.

use std::io::{self, Write};

use crate::sanitize;
use crate::tcp::{Direction, Flow, FlowInfo, StreamEvent, StreamSink};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowMode {
    Text,
    Raw(Direction),
}

pub struct FollowWriter<W: Write> {
    target: u64,
    mode: FollowMode,
    out: W,
    /// The direction whose line is open (not yet ended by a newline) in text mode.
    open_line: Option<Direction>,
    pub found: bool,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub error: Option<io::Error>,
}

impl<W: Write> FollowWriter<W> {
    pub fn new(target: u64, mode: FollowMode, out: W) -> FollowWriter<W> {
        FollowWriter {
            target,
            mode,
            out,
            open_line: None,
            found: false,
            gaps: 0,
            gap_bytes: 0,
            error: None,
        }
    }

    fn write(&mut self, f: impl FnOnce(&mut W, &mut Option<Direction>) -> io::Result<()>) {
        if self.error.is_none() {
            self.error = f(&mut self.out, &mut self.open_line).err();
        }
    }
}

fn prefix(direction: Direction) -> &'static str {
    match direction {
        Direction::ClientToServer => "C: ",
        Direction::ServerToClient => "S: ",
    }
}

/// Writes `bytes` as prefixed, sanitized lines, continuing a line the same direction left open.
fn write_lines(
    out: &mut impl Write,
    open: &mut Option<Direction>,
    dir: Direction,
    bytes: &[u8],
) -> io::Result<()> {
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        match *open {
            Some(d) if d == dir => {}
            Some(_) => {
                out.write_all(b"\n")?;
                out.write_all(prefix(dir).as_bytes())?;
            }
            None => out.write_all(prefix(dir).as_bytes())?,
        }
        out.write_all(sanitize::text(line).as_bytes())?;
        *open = if line.ends_with(b"\n") {
            None
        } else {
            Some(dir)
        };
    }
    Ok(())
}

/// Writes a marker on a line of its own.
fn write_note(
    out: &mut impl Write,
    open: &mut Option<Direction>,
    dir: Direction,
    note: &str,
) -> io::Result<()> {
    if open.take().is_some() {
        out.write_all(b"\n")?;
    }
    writeln!(out, "{}[{note}]", prefix(dir))
}

impl<W: Write> StreamSink for FollowWriter<W> {
    fn flow_opened(&mut self, flow: &FlowInfo) {
        if flow.id != self.target {
            return;
        }
        self.found = true;
        if self.mode == FollowMode::Text {
            let service = flow.service.map_or("unknown", |s| s.name());
            let header = format!(
                "Connection {}: client {} -> server {} ({service}; roles from {})\n",
                flow.id,
                flow.client,
                flow.server,
                flow.roles.name()
            );
            self.write(|out, _| out.write_all(header.as_bytes()));
        }
    }

    fn stream_event(&mut self, flow: &FlowInfo, dir: Direction, event: StreamEvent<'_>) {
        if flow.id != self.target {
            return;
        }
        if let StreamEvent::Gap { len, .. } = event {
            self.gaps += 1;
            self.gap_bytes += len;
        }
        match self.mode {
            FollowMode::Raw(wanted) => {
                if let (true, StreamEvent::Data { bytes, .. }) = (dir == wanted, event) {
                    self.write(|out, _| out.write_all(bytes));
                }
            }
            FollowMode::Text => self.write(|out, open| match event {
                StreamEvent::Data { bytes, .. } => write_lines(out, open, dir, bytes),
                StreamEvent::Gap { len, .. } => {
                    write_note(out, open, dir, &format!("gap: {len} bytes not captured"))
                }
                StreamEvent::Fin { .. } => {
                    write_note(out, open, dir, &format!("{} closed (FIN)", dir.sender()))
                }
                StreamEvent::Rst { .. } => {
                    write_note(out, open, dir, &format!("{} reset (RST)", dir.sender()))
                }
            }),
        }
    }

    fn flow_removed(&mut self, flow: &Flow) {
        if flow.info.id == self.target && self.mode == FollowMode::Text {
            let c = &flow.stream(Direction::ClientToServer).stats;
            let s = &flow.stream(Direction::ServerToClient).stats;
            let footer = format!(
                "client sent {} bytes, server sent {} bytes; {} gaps ({} bytes missing)\n",
                c.bytes, s.bytes, self.gaps, self.gap_bytes
            );
            self.write(|out, open| {
                if open.take().is_some() {
                    out.write_all(b"\n")?;
                }
                out.write_all(footer.as_bytes())
            });
        }
    }
}
