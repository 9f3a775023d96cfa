//! `mailscope flows`: one line (or NDJSON record) per TCP connection on a mail port.

use std::io::{self, Write};

use serde::Serialize;

use super::{safe_json, time};
use crate::capture::Timestamp;
use crate::decode::{DecodeStats, DropReason};
use crate::tcp::{Direction, Flow, HalfStats, StreamEvent, StreamSink, TcpStats};

/// A finished flow, as the table and the JSON show it.
#[derive(Clone, Debug, Serialize)]
pub struct FlowSummary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: u64,
    pub client: String,
    pub server: String,
    pub protocol: &'static str,
    /// How client and server were told apart.
    pub roles: &'static str,
    pub state: &'static str,
    #[serde(serialize_with = "seconds")]
    pub start: Timestamp,
    #[serde(serialize_with = "seconds")]
    pub end: Timestamp,
    pub client_to_server: HalfStats,
    pub server_to_client: HalfStats,
}

fn seconds<S: serde::Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    // Unix seconds with microseconds, as the NDJSON contract writes times.
    s.serialize_f64((ts.0.div_euclid(1000)) as f64 / 1e6)
}

impl FlowSummary {
    pub fn of(flow: &Flow) -> FlowSummary {
        FlowSummary {
            kind: "flow",
            id: flow.info.id,
            client: flow.info.client.to_string(),
            server: flow.info.server.to_string(),
            protocol: flow.info.service.map_or("unknown", |s| s.name()),
            roles: flow.info.roles.name(),
            state: flow.end.map_or("open", |e| e.name()),
            start: flow.first_ts,
            end: flow.last_ts,
            client_to_server: flow.stream(Direction::ClientToServer).stats,
            server_to_client: flow.stream(Direction::ServerToClient).stats,
        }
    }

    pub fn gaps(&self) -> u64 {
        self.client_to_server.gaps + self.server_to_client.gaps
    }
}

/// Collects flow summaries as flows leave the table. With `stream_json`, each is written as an
/// NDJSON line at once (bounded memory); otherwise they are kept for the table, sorted by id.
pub struct FlowCollector<W: Write> {
    out: Option<W>,
    pub flows: Vec<FlowSummary>,
    pub error: Option<io::Error>,
}

impl<W: Write> FlowCollector<W> {
    pub fn table() -> FlowCollector<W> {
        FlowCollector {
            out: None,
            flows: Vec::new(),
            error: None,
        }
    }

    pub fn json(out: W) -> FlowCollector<W> {
        FlowCollector {
            out: Some(out),
            flows: Vec::new(),
            error: None,
        }
    }
}

impl<W: Write> StreamSink for FlowCollector<W> {
    fn stream_event(&mut self, _: &crate::tcp::FlowInfo, _: Direction, _: StreamEvent<'_>) {}

    fn flow_removed(&mut self, flow: &Flow) {
        let summary = FlowSummary::of(flow);
        match &mut self.out {
            Some(out) if self.error.is_none() => {
                let written = safe_json::to_writer(&mut *out, &summary)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"));
                self.error = written.err();
            }
            Some(_) => {}
            None => self.flows.push(summary),
        }
    }
}

/// Writes the flow table, ordered by flow id.
pub fn write_table(out: &mut dyn Write, flows: &mut [FlowSummary]) -> io::Result<()> {
    flows.sort_by_key(|f| f.id);
    let width = flows
        .iter()
        .flat_map(|f| [f.client.len(), f.server.len()])
        .max()
        .unwrap_or(0)
        .max(6);
    let header = [
        "#",
        "client",
        "server",
        "proto",
        "state",
        "c>s pkts",
        "c>s bytes",
        "s>c pkts",
        "s>c bytes",
        "gaps",
        "start (UTC)",
        "duration",
    ];
    write_row(out, width, header.map(String::from))?;
    for f in flows.iter() {
        let (c, s) = (&f.client_to_server, &f.server_to_client);
        write_row(
            out,
            width,
            [
                f.id.to_string(),
                f.client.clone(),
                f.server.clone(),
                f.protocol.to_string(),
                f.state.to_string(),
                c.packets.to_string(),
                c.bytes.to_string(),
                s.packets.to_string(),
                s.bytes.to_string(),
                f.gaps().to_string(),
                time::utc(f.start),
                time::duration(f.end.since(f.start)),
            ],
        )?;
    }
    Ok(())
}

fn write_row(out: &mut dyn Write, w: usize, cells: [String; 12]) -> io::Result<()> {
    let [id, client, server, proto, state, cp, cb, sp, sb, gaps, start, duration] = cells;
    writeln!(
        out,
        "{id:>5}  {client:<w$}  {server:<w$}  {proto:<7} {state:<8} {cp:>8} {cb:>11} {sp:>8} {sb:>11} {gaps:>5}  {start:<26}  {duration:>9}"
    )
}

/// The counters a user needs to trust the table: what was skipped and which limits were hit.
pub fn describe_stats(frames: u64, decode: &DecodeStats, tcp: &TcpStats) -> Vec<String> {
    let mut lines = vec![format!(
        "{frames} frames, {} TCP segments on mail ports, {} connections",
        decode.segments, tcp.flows
    )];
    let skipped: Vec<String> = DropReason::ALL
        .iter()
        .filter(|&&r| decode.dropped(r) > 0)
        .map(|&r| format!("{} {}", decode.dropped(r), r.describe()))
        .collect();
    if !skipped.is_empty() {
        lines.push(format!("skipped: {}", skipped.join(", ")));
    }
    let counted: [(u64, &str); 5] = [
        (
            decode.truncated_segments,
            "segments cut short by the snapshot length (their missing bytes are gaps)",
        ),
        (
            decode.overlong_claims,
            "packets whose IP header claims more bytes than the packet holds",
        ),
        (
            tcp.evicted,
            "connections closed early because the flow table was full",
        ),
        (
            tcp.pending_limit_hits,
            "times the out-of-order buffer limit turned a hole into a gap",
        ),
        (tcp.after_reset, "segments after a reset were ignored"),
    ];
    lines.extend(
        counted
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}")),
    );
    lines.extend(decode.warnings.iter().cloned());
    lines
}
