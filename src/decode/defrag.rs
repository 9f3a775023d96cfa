//! IP fragment reassembly with a bound. etherparse's `IpDefragBuf` puts the pieces together;
//! its pool has no memory limit (its own docs warn about it), so the datagrams in progress are
//! kept here, at most MAX_PENDING_DATAGRAMS of them, the oldest pushed out first, each dropped
//! after FRAGMENT_TIMEOUT of capture time.

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::defrag::IpDefragBuf;
use etherparse::IpFragOffset;

use super::{DropReason, Ip};
use crate::capture::Timestamp;

/// Each datagram in progress holds up to 64 KiB, so this bounds the defragmenter at 16 MiB.
pub const MAX_PENDING_DATAGRAMS: usize = 256;
/// RFC 791 suggests 15 seconds; Linux uses 30.
const FRAGMENT_TIMEOUT_NANOS: i64 = 30_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DatagramId {
    src: IpAddr,
    dst: IpAddr,
    identification: u32,
    protocol: u8,
}

#[derive(Default)]
pub(super) struct Defragmenter {
    pending: HashMap<DatagramId, (IpDefragBuf, Timestamp)>,
    /// The last datagram completed: the TCP segment borrows from it.
    done: Vec<u8>,
}

impl Defragmenter {
    /// Adds a fragment; returns the whole IP payload once the datagram is complete.
    pub(super) fn add(&mut self, ip: &Ip<'_, '_>, ts: Timestamp) -> Result<&[u8], DropReason> {
        let (identification, offset, more) = ip.fragment.ok_or(DropReason::FragmentRejected)?;
        let id = DatagramId {
            src: ip.src,
            dst: ip.dst,
            identification,
            protocol: ip.payload.ip_number.0,
        };
        if !self.pending.contains_key(&id) {
            self.make_room(ts);
        }
        let (buffer, last_ts) = self.pending.entry(id).or_insert_with(|| {
            (
                IpDefragBuf::new(ip.payload.ip_number, Vec::new(), Vec::new()),
                ts,
            )
        });
        *last_ts = ts;
        let offset = IpFragOffset::try_new(offset).map_err(|_| DropReason::FragmentRejected)?;
        if buffer.add(offset, more, ip.payload.payload).is_err() {
            self.pending.remove(&id);
            return Err(DropReason::FragmentRejected);
        }
        if !buffer.is_complete() {
            return Err(DropReason::FragmentHeld);
        }
        let (buffer, _) = self
            .pending
            .remove(&id)
            .ok_or(DropReason::FragmentRejected)?;
        self.done = buffer.take_bufs().0;
        Ok(&self.done)
    }

    /// Drops datagrams that timed out, then the oldest if the table is still full.
    fn make_room(&mut self, now: Timestamp) {
        self.pending
            .retain(|_, (_, ts)| now.0.saturating_sub(ts.0) < FRAGMENT_TIMEOUT_NANOS);
        if self.pending.len() >= MAX_PENDING_DATAGRAMS {
            if let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, (_, ts))| *ts)
                .map(|(id, _)| *id)
            {
                self.pending.remove(&oldest);
            }
        }
    }
}
