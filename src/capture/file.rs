//! Capture files: classic pcap (either byte order, micro- or nanosecond times, the "modified"
//! variant) and pcapng (sections, several interfaces, Enhanced and Simple Packet Blocks,
//! Decryption Secrets Blocks), plain or gzip-compressed, from a path or standard input.
//!
//! The record grammar is pcap-parser's (rusticata, fuzzed); this file adds what a reader of
//! hostile captures needs on top: a bounded buffer, record numbers in every error, and the
//! per-interface time base of pcapng.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::ops::ControlFlow;

use flate2::read::MultiGzDecoder;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

use super::{
    CaptureError, CaptureErrorKind, Frame, LinkType, PacketSource, Position, ReadSummary, Record,
    Timestamp,
};

/// The largest record (pcap record or pcapng block) we accept. Real packets are at most 256 KiB
/// (the largest snapshot length tools use); a bigger length field is corruption or an attack, and
/// accepting it would let one record claim unbounded memory.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Read buffer: holds at least one record of the largest accepted size.
const BUFFER_BYTES: usize = MAX_RECORD_BYTES + 64 * 1024;
/// A gzip stream starts with these (compressed captures are told by content, not by name).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The most read to recognise the format: a pcapng section header claiming more is not one.
const SNIFF_BYTES: usize = 64 * 1024;

pub struct FileSource {
    name: String,
    input: Option<Box<dyn Read + Send>>,
}

impl FileSource {
    /// Opens a capture file, or standard input for `-`. Gzip is recognised by its magic number,
    /// not by the file name.
    pub fn open(path: &str) -> Result<FileSource, CaptureError> {
        FileSource::open_watched(path, &mut |raw, _| raw)
    }

    /// As [`FileSource::open`], with the raw bytes read through `watch` (given the file's size,
    /// unknown for standard input): a progress display counts them there.
    pub fn open_watched(
        path: &str,
        watch: &mut dyn FnMut(Box<dyn Read + Send>, Option<u64>) -> Box<dyn Read + Send>,
    ) -> Result<FileSource, CaptureError> {
        let fail = |e| CaptureError {
            source_name: path.to_string(),
            at: None,
            kind: CaptureErrorKind::Open(e),
        };
        let raw: Box<dyn Read + Send> = if path == "-" {
            watch(Box::new(io::stdin()), None)
        } else {
            let file = File::open(path).map_err(fail)?;
            let size = file.metadata().ok().map(|m| m.len());
            watch(Box::new(file), size)
        };
        FileSource::from_reader(path, raw)
    }

    pub fn from_reader(name: &str, raw: Box<dyn Read + Send>) -> Result<FileSource, CaptureError> {
        let io_fail = |e| CaptureError {
            source_name: name.to_string(),
            at: None,
            kind: CaptureErrorKind::Io(e),
        };
        let (head, rest) = sniff(raw).map_err(io_fail)?;
        let input: Box<dyn Read + Send> = if head.starts_with(&GZIP_MAGIC) {
            let (head, rest) = sniff(Box::new(MultiGzDecoder::new(Cursor::new(head).chain(rest))))
                .map_err(io_fail)?;
            Box::new(Cursor::new(head).chain(rest))
        } else {
            Box::new(Cursor::new(head).chain(rest))
        };
        Ok(FileSource {
            name: name.to_string(),
            input: Some(input),
        })
    }

    fn error(&self, at: Option<Position>, kind: CaptureErrorKind) -> CaptureError {
        CaptureError {
            source_name: self.name.clone(),
            at,
            kind,
        }
    }
}

/// Reads the leading bytes the format check needs (fewer only at the end of the input), so that
/// it sees a whole header even when the input is a pipe that delivers a few bytes at a time, and
/// no more: a capture piped in as it is made must not have to fill a buffer first.
fn sniff(mut input: Box<dyn Read + Send>) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut head = Vec::new();
    while let Some(missing) = header_len(&head).checked_sub(head.len()).filter(|&n| n > 0) {
        if (&mut input).take(missing as u64).read_to_end(&mut head)? == 0 {
            break;
        }
    }
    Ok((head, input))
}

/// How many leading bytes show the format and hold its header, as far as `head` tells: the
/// magic; then a classic pcap header, or a pcapng Section Header Block by its own length (at
/// most SNIFF_BYTES). gzip needs only its magic: the decoder's output is sniffed in turn.
fn header_len(head: &[u8]) -> usize {
    const CLASSIC_HEADER: usize = 24;
    let len = match *head {
        [0x0a, 0x0d, 0x0d, 0x0a, a, b, c, d, 0x4d, 0x3c, 0x2b, 0x1a, ..] => {
            u32::from_le_bytes([a, b, c, d]) as usize
        }
        [0x0a, 0x0d, 0x0d, 0x0a, a, b, c, d, 0x1a, 0x2b, 0x3c, 0x4d, ..] => {
            u32::from_be_bytes([a, b, c, d]) as usize
        }
        [0x0a, 0x0d, 0x0d, 0x0a, ..] => 12,
        _ if head.starts_with(&GZIP_MAGIC) => GZIP_MAGIC.len(),
        _ if head.len() < 4 => 4,
        _ => CLASSIC_HEADER,
    };
    len.min(SNIFF_BYTES)
}

/// A pcapng interface, as its Interface Description Block describes it.
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_sec: u64,
    offset_secs: i64,
}

impl Interface {
    fn timestamp(&self, raw: u64) -> Timestamp {
        let secs = raw / self.units_per_sec;
        let frac = raw % self.units_per_sec;
        let nanos = (u128::from(frac) * 1_000_000_000 / u128::from(self.units_per_sec)) as u32;
        Timestamp::from_parts(
            i64::try_from(secs)
                .unwrap_or(i64::MAX)
                .saturating_add(self.offset_secs),
            nanos,
        )
    }
}

/// Reader state that outlives one block: the classic header's settings or the current pcapng
/// section's interfaces.
#[derive(Default)]
struct Format {
    legacy_link: Option<LinkType>,
    legacy_nanos: bool,
    interfaces: Vec<Interface>,
    /// Simple Packet Blocks carry no time: they take the last one seen.
    last_ts: Timestamp,
}

impl PacketSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(
        &mut self,
        deliver: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Result<ReadSummary, CaptureError> {
        let input = self.input.take().ok_or_else(|| {
            self.error(
                None,
                CaptureErrorKind::Io(io::Error::other("capture already read")),
            )
        })?;
        let mut reader = create_reader(BUFFER_BYTES, input).map_err(|e| {
            let kind = match e {
                PcapError::Eof => CaptureErrorKind::Empty,
                PcapError::Incomplete(_) | PcapError::UnexpectedEof => CaptureErrorKind::Truncated,
                PcapError::ReadError => CaptureErrorKind::Io(io::Error::other("read error")),
                _ => CaptureErrorKind::NotACapture,
            };
            self.error(None, kind)
        })?;

        let mut format = Format::default();
        let mut summary = ReadSummary::default();
        // Blocks the reader returned; for classic pcap the first is the file header.
        let mut blocks: u64 = 0;
        let position = |format: &Format, block: u64| {
            if format.legacy_link.is_some() {
                Position::Record(block - 1)
            } else {
                Position::Block(block)
            }
        };
        loop {
            let (offset, block) = match reader.next() {
                Ok(next) => next,
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => {
                    if deliver(Record::Pause).is_break() {
                        break;
                    }
                    if let Err(e) = reader.refill() {
                        summary.fault =
                            Some(self.error(Some(position(&format, blocks + 1)), fault_kind(&e)));
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    summary.fault =
                        Some(self.error(Some(position(&format, blocks + 1)), fault_kind(&e)));
                    break;
                }
            };
            blocks += 1;
            let step = match self.on_block(block, &mut format, &mut summary, deliver) {
                Ok(step) => step,
                Err(kind) => {
                    summary.fault = Some(self.error(Some(position(&format, blocks)), kind));
                    break;
                }
            };
            reader.consume_noshift(offset);
            if step.is_break() {
                break;
            }
        }
        Ok(summary)
    }
}

fn fault_kind<I>(e: &PcapError<I>) -> CaptureErrorKind {
    match e {
        PcapError::UnexpectedEof | PcapError::Incomplete(_) | PcapError::Eof => {
            CaptureErrorKind::Truncated
        }
        PcapError::BufferTooSmall => CaptureErrorKind::Corrupt(format!(
            "record longer than the {MAX_RECORD_BYTES}-byte limit (corrupt length field)"
        )),
        PcapError::ReadError => CaptureErrorKind::Io(io::Error::other("read error")),
        PcapError::HeaderNotRecognized => CaptureErrorKind::NotACapture,
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            CaptureErrorKind::Corrupt(format!("malformed block ({})", kind.description()))
        }
    }
}

impl FileSource {
    fn on_block(
        &self,
        block: PcapBlockOwned<'_>,
        format: &mut Format,
        summary: &mut ReadSummary,
        deliver: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, CaptureErrorKind> {
        let mut frame = |summary: &mut ReadSummary, frame: Frame<'_>| {
            summary.frames += 1;
            deliver(Record::Frame(Frame {
                index: summary.frames,
                ..frame
            }))
        };
        match block {
            PcapBlockOwned::LegacyHeader(header) => {
                format.legacy_link = Some(LinkType(header.network.0 as u32));
                format.legacy_nanos = header.is_nanosecond_precision();
            }
            PcapBlockOwned::Legacy(packet) => {
                let link = format.legacy_link.ok_or_else(|| {
                    CaptureErrorKind::Corrupt("packet record before the file header".into())
                })?;
                let nanos = if format.legacy_nanos {
                    packet.ts_usec
                } else {
                    packet.ts_usec.saturating_mul(1000)
                };
                let ts = Timestamp::from_parts(i64::from(packet.ts_sec), nanos.min(999_999_999));
                let step = frame(
                    summary,
                    Frame {
                        index: 0,
                        ts,
                        link,
                        interface: 0,
                        data: packet.data,
                        orig_len: packet.origlen,
                    },
                );
                return Ok(step);
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => format.interfaces.clear(),
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                let units_per_sec = idb.ts_resolution().filter(|&u| u > 0).ok_or_else(|| {
                    CaptureErrorKind::Corrupt(format!("invalid if_tsresol {}", idb.if_tsresol))
                })?;
                format.interfaces.push(Interface {
                    link: LinkType(u32::from(idb.linktype.0 as u16)),
                    units_per_sec,
                    offset_secs: idb.if_tsoffset,
                });
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let interface = format.interfaces.get(epb.if_id as usize).ok_or_else(|| {
                    CaptureErrorKind::Corrupt(format!(
                        "packet on undeclared interface {}",
                        epb.if_id
                    ))
                })?;
                let ts =
                    interface.timestamp((u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low));
                format.last_ts = ts;
                let data = epb.packet_data();
                let step = frame(
                    summary,
                    Frame {
                        index: 0,
                        ts,
                        link: interface.link,
                        interface: epb.if_id,
                        data,
                        orig_len: epb.origlen,
                    },
                );
                return Ok(step);
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                let interface = format.interfaces.first().ok_or_else(|| {
                    CaptureErrorKind::Corrupt("simple packet block without an interface".into())
                })?;
                let data = spb.packet_data();
                let step = frame(
                    summary,
                    Frame {
                        index: 0,
                        ts: format.last_ts,
                        link: interface.link,
                        interface: 0,
                        data,
                        orig_len: spb.origlen,
                    },
                );
                return Ok(step);
            }
            PcapBlockOwned::NG(Block::DecryptionSecrets(dsb)) => {
                if dsb.secrets_type == pcap_parser::pcapng::SecretsType::TlsKeyLog {
                    // A length past the block's data is clamped to what the block holds.
                    let secrets = dsb.data.get(..dsb.secrets_len as usize).unwrap_or(dsb.data);
                    return Ok(deliver(Record::TlsKeyLog(secrets)));
                }
            }
            PcapBlockOwned::NG(_) => {}
        }
        Ok(ControlFlow::Continue(()))
    }
}
