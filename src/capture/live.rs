//! Live capture through libpcap (the `pcap` crate): an interface, a BPF filter, and a stop flag
//! that Ctrl-C sets so the read ends cleanly and everything downstream is flushed.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{
    CaptureError, CaptureErrorKind, Frame, LinkType, LiveDrops, PacketSource, Position,
    ReadSummary, Record, Timestamp,
};

/// Whole packets: mail dissection needs every payload byte.
pub const DEFAULT_LIVE_SNAPLEN: i32 = 262_144;
/// The read is non-blocking (a blocking libpcap read on Linux can wait forever on a quiet
/// interface, whatever its timeout), so an idle reader sleeps this long between looks at the
/// interface and the stop flag.
const IDLE_SLEEP: std::time::Duration = std::time::Duration::from_millis(10);

pub struct LiveOptions {
    pub interface: String,
    pub filter: String,
    pub promiscuous: bool,
    pub snaplen: i32,
    pub stop: Arc<AtomicBool>,
}

pub struct LiveSource {
    name: String,
    capture: pcap::Capture<pcap::Active>,
    link: LinkType,
    stop: Arc<AtomicBool>,
}

impl LiveSource {
    pub fn open(options: LiveOptions) -> Result<LiveSource, CaptureError> {
        let name = options.interface.clone();
        let fail = |message: String| CaptureError {
            source_name: name.clone(),
            at: None,
            kind: CaptureErrorKind::Live(message),
        };
        let mut capture = pcap::Capture::from_device(options.interface.as_str())
            .and_then(|c| {
                c.promisc(options.promiscuous)
                    .snaplen(options.snaplen)
                    .immediate_mode(true)
                    .open()
            })
            .and_then(|c| c.setnonblock())
            .map_err(|e| fail(explain_open_error(&options.interface, &e)))?;
        capture
            .filter(&options.filter, true)
            .map_err(|e| fail(format!("invalid capture filter {:?}: {e}", options.filter)))?;
        let link = LinkType(capture.get_datalink().0 as u32);
        Ok(LiveSource {
            name,
            capture,
            link,
            stop: options.stop,
        })
    }
}

/// Turns libpcap's terse errors into a message that says what to do.
fn explain_open_error(interface: &str, error: &pcap::Error) -> String {
    let text = error.to_string();
    let lower = text.to_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        format!(
            "cannot capture on {interface}: {text}\n  live capture needs root, or give the binary \
             the capability once:\n  sudo setcap cap_net_raw,cap_net_admin=eip $(command -v mailscope)"
        )
    } else if lower.contains("no such device") || lower.contains("doesn't exist") {
        let names: Vec<String> = pcap::Device::list()
            .map(|list| list.into_iter().map(|d| d.name).collect())
            .unwrap_or_default();
        format!(
            "no interface named {interface:?}; available: {} (or `any` for all)",
            if names.is_empty() {
                "none found".to_string()
            } else {
                names.join(", ")
            }
        )
    } else {
        format!("cannot capture on {interface}: {text}")
    }
}

impl PacketSource for LiveSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(
        &mut self,
        deliver: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Result<ReadSummary, CaptureError> {
        let mut summary = ReadSummary::default();
        while !self.stop.load(Ordering::Relaxed) {
            match self.capture.next_packet() {
                Ok(packet) => {
                    summary.frames += 1;
                    let ts = Timestamp::from_parts(
                        packet.header.ts.tv_sec,
                        (packet.header.ts.tv_usec as u32).saturating_mul(1000),
                    );
                    let frame = Frame {
                        index: summary.frames,
                        ts,
                        link: self.link,
                        interface: 0,
                        data: packet.data,
                        orig_len: packet.header.len,
                    };
                    if deliver(Record::Frame(frame)).is_break() {
                        break;
                    }
                }
                Err(pcap::Error::TimeoutExpired) => {
                    if deliver(Record::Pause).is_break() {
                        break;
                    }
                    std::thread::sleep(IDLE_SLEEP)
                }
                Err(e) => {
                    summary.fault = Some(CaptureError {
                        source_name: self.name.clone(),
                        at: Some(Position::Packet(summary.frames + 1)),
                        kind: CaptureErrorKind::Live(e.to_string()),
                    });
                    break;
                }
            }
        }
        summary.drops = self.capture.stats().ok().map(|s| LiveDrops {
            received: s.received,
            kernel: s.dropped,
            interface: s.if_dropped,
        });
        Ok(summary)
    }
}
