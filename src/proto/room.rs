//! Rooms: what all connections hold together, bounded together. Each connection has its own
//! limits (a message, the commands awaiting replies, the bytes a side sends while it waits for
//! the other); a capture with thousands of connections
//! at once multiplies them, so what grows past a small share draws on one room per run.
//!
//! A room is shared by every connection on every worker: the bound holds whatever the number
//! of threads. When one runs out, which connection is cut first depends on how the workers'
//! work interleaves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Message bytes that all messages in progress keep together: each is held until it ends, and
/// a capture can have thousands of them under way at once (MAX_MESSAGE_BYTES each).
pub const MESSAGE_ROOM_BYTES: usize = 128 << 20;
/// Commands awaiting replies past each connection's own first few ([`super::FREE_AWAITING`]),
/// all connections together.
pub const AWAITING_ROOM: usize = 100_000;
/// Bytes that sides waiting for the other side hold past their own first few
/// ([`super::framing::FREE_HELD_BYTES`]), all connections together.
pub const HELD_ROOM_BYTES: usize = 64 << 20;

/// Protected TLS records that wait for keys that may still be logged (a live capture), all
/// connections together.
pub const WAITING_ROOM_BYTES: usize = 64 << 20;

/// The rooms of one run.
#[derive(Clone, Debug)]
pub struct Rooms {
    /// Bytes kept of messages, in progress and on their way to the outputs.
    pub messages: Room,
    /// Commands awaiting their replies.
    pub awaiting: Room,
    /// Bytes a side sent that wait for the other side's reply before they can be read.
    pub held: Room,
    /// TLS records that wait for their keys.
    pub waiting: Room,
}

impl Default for Rooms {
    fn default() -> Rooms {
        Rooms {
            messages: Room::new(MESSAGE_ROOM_BYTES),
            awaiting: Room::new(AWAITING_ROOM),
            held: Room::new(HELD_ROOM_BYTES),
            waiting: Room::new(WAITING_ROOM_BYTES),
        }
    }
}

/// A count that many holders share, and the most they may hold together.
#[derive(Clone, Debug)]
pub struct Room {
    held: Arc<AtomicUsize>,
    limit: usize,
}

impl Room {
    pub fn new(limit: usize) -> Room {
        Room {
            held: Arc::default(),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes room for up to `wanted`; returns how much it got.
    pub fn take(&self, wanted: usize) -> usize {
        let mut granted = 0;
        // The closure always returns Some, so the update always happens.
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                granted = wanted.min(self.limit.saturating_sub(held));
                Some(held + granted)
            });
        granted
    }

    pub fn give_back(&self, taken: usize) {
        self.held.fetch_sub(taken, Ordering::Relaxed);
    }

    /// Counts `amount` that is held already (a finished message on its way to the outputs),
    /// room or not, until the ticket is dropped.
    pub fn hold(&self, amount: usize) -> Held {
        self.held.fetch_add(amount, Ordering::Relaxed);
        Held {
            room: self.clone(),
            amount,
        }
    }
}

/// An amount counted in a [`Room`] until this is dropped.
#[derive(Debug)]
pub struct Held {
    room: Room,
    amount: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.room.give_back(self.amount);
    }
}
