//! Frames held in memory: for tests and fuzzing, where a capture is built in code.

use std::ops::ControlFlow;

use super::{CaptureError, Frame, LinkType, PacketSource, ReadSummary, Record, Timestamp};

#[derive(Clone, Debug)]
pub struct MemoryFrame {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: Vec<u8>,
}

pub struct MemorySource {
    pub frames: Vec<MemoryFrame>,
}

impl PacketSource for MemorySource {
    fn name(&self) -> &str {
        "memory"
    }

    fn read(
        &mut self,
        deliver: &mut dyn FnMut(Record<'_>) -> ControlFlow<()>,
    ) -> Result<ReadSummary, CaptureError> {
        let mut summary = ReadSummary::default();
        for frame in &self.frames {
            summary.frames += 1;
            let record = Record::Frame(Frame {
                index: summary.frames,
                ts: frame.ts,
                link: frame.link,
                interface: 0,
                data: &frame.data,
                orig_len: frame.data.len() as u32,
            });
            if deliver(record).is_break() {
                break;
            }
        }
        Ok(summary)
    }
}
