//! One session's packets as a pcapng of their own, with its TLS secrets embedded, so that
//! Wireshark (or mailscope) opens just that conversation, decrypted, with nothing beside it.
//! The session's two addresses and its start pick its frames out of a second read of the
//! capture, up to a SYN that opens another connection between the same two ends.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;

use super::pcapng::PcapngWriter;
use crate::capture::{PacketSource, Record, Timestamp};
use crate::decode::{Decoder, TcpSegment};
use crate::ports::MailPorts;
use crate::session::model::Session;
use crate::tcp::SeqNumber;
use crate::tls::KeyLog;

/// What picks a session's frames out of the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub start: Timestamp,
    pub client_random: Option<[u8; 32]>,
}

impl Slice {
    pub fn of(session: &Session) -> Slice {
        Slice {
            client: session.client,
            server: session.server,
            start: session.start,
            client_random: session.tls.info().client_random,
        }
    }

    fn ends(&self, segment: &TcpSegment) -> bool {
        let (src, dst) = (segment.src, segment.dst);
        let ends = (src == self.client && dst == self.server)
            || (src == self.server && dst == self.client);
        ends && segment.ts >= self.start
    }
}

/// Follows the slice's frames in capture order: all of them, until a SYN with another
/// sequence number opens a new connection on the same four-tuple (a retransmitted SYN has the
/// same one).
#[derive(Default)]
struct Tracker {
    first_syn: Option<SeqNumber>,
    seen_any: bool,
    over: bool,
}

impl Tracker {
    fn keep(&mut self, slice: &Slice, segment: &TcpSegment) -> bool {
        if self.over || !slice.ends(segment) {
            return false;
        }
        if segment.flags.syn && !segment.flags.ack {
            match self.first_syn {
                Some(seq) if seq != segment.seq => {
                    self.over = true;
                    return false;
                }
                None if self.seen_any => {
                    self.over = true;
                    return false;
                }
                _ => self.first_syn = Some(segment.seq),
            }
        }
        self.seen_any = true;
        true
    }
}

/// Opens the captures afresh: a slice reads them once more, twice when the secrets are in
/// them.
pub type Opener<'a> = &'a dyn Fn() -> Result<Vec<Box<dyn PacketSource>>, String>;

/// Writes the slice's frames to `out`, with the session's TLS secrets from `keys` or, failing
/// that, from the captures' own secrets blocks. Returns the packets written.
pub fn write(
    open: Opener,
    ports: &MailPorts,
    slice: &Slice,
    keys: &KeyLog,
    out: impl Write,
) -> Result<u64, String> {
    let secrets = match slice.client_random {
        Some(random) if keys.secrets(&random).is_some() => keys.lines_for(&random),
        Some(random) => embedded_secrets(&mut open()?, &random),
        None => String::new(),
    };
    let failed = |e: io::Error| format!("cannot write the slice: {e}");
    let mut writer = PcapngWriter::new(out, secrets.as_bytes()).map_err(failed)?;
    let mut decoder = Decoder::new(ports.clone());
    let mut tracker = Tracker::default();
    let mut error = None;
    for mut source in open()? {
        // A fault ends what can be read of that source; the slice holds what came before it.
        let _ = source.read(&mut |record| {
            let Record::Frame(frame) = record else {
                return ControlFlow::Continue(());
            };
            let keep = decoder
                .decode(&frame)
                .is_some_and(|s| tracker.keep(slice, &s));
            if keep {
                if let Err(e) = writer.frame(&frame) {
                    error = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
    }
    if let Some(e) = error {
        return Err(failed(e));
    }
    let packets = writer.packets;
    writer.finish().map_err(failed)?;
    Ok(packets)
}

/// The secrets of one connection from the Decryption Secrets Blocks of the captures.
fn embedded_secrets(sources: &mut [Box<dyn PacketSource>], random: &[u8; 32]) -> String {
    let mut keys = KeyLog::default();
    for source in sources.iter_mut() {
        let _ = source.read(&mut |record| {
            if let Record::TlsKeyLog(text) = record {
                keys.add(text);
                keys.finish();
            }
            ControlFlow::Continue(())
        });
    }
    keys.lines_for(random)
}
