//! A connection: its two endpoints, which one is the client, and its two byte streams.

use std::net::SocketAddr;

use super::stream::HalfStream;
use crate::capture::Timestamp;
use crate::ports::Service;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToServer = 0,
    ServerToClient = 1,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Who sends in this direction.
    pub fn sender(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        }
    }

    /// This direction's element of a pair kept in [`Direction::index`] order.
    pub fn pick<T>(self, pair: &[T; 2]) -> &T {
        let [client_to_server, server_to_client] = pair;
        match self {
            Direction::ClientToServer => client_to_server,
            Direction::ServerToClient => server_to_client,
        }
    }

    /// As [`Direction::pick`], mutably.
    pub fn pick_mut<T>(self, pair: &mut [T; 2]) -> &mut T {
        let [client_to_server, server_to_client] = pair;
        match self {
            Direction::ClientToServer => client_to_server,
            Direction::ServerToClient => server_to_client,
        }
    }
}

/// How the client was told from the server, strongest evidence first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleEvidence {
    /// The SYN (or SYN-ACK) was captured.
    Handshake,
    /// Only one side uses a mail port: that side is the server.
    Port,
    /// Neither tells: whoever sent the first packet seen is taken as the client, as Wireshark does.
    FirstSender,
}

impl RoleEvidence {
    pub fn name(self) -> &'static str {
        match self {
            RoleEvidence::Handshake => "handshake",
            RoleEvidence::Port => "port",
            RoleEvidence::FirstSender => "first-sender",
        }
    }
}

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEnd {
    /// Both sides sent FIN and their streams were complete up to it.
    Fin,
    Reset,
    /// No packet for the idle timeout.
    IdleTimeout,
    /// Closed early to make room in a full flow table.
    Evicted,
    /// The capture ended while the connection was open.
    EndOfCapture,
}

impl FlowEnd {
    pub fn name(self) -> &'static str {
        match self {
            FlowEnd::Fin => "closed",
            FlowEnd::Reset => "reset",
            FlowEnd::IdleTimeout => "timeout",
            FlowEnd::Evicted => "evicted",
            FlowEnd::EndOfCapture => "open",
        }
    }
}

/// What identifies a flow to the stages above: fixed once the flow exists.
#[derive(Clone, Debug)]
pub struct FlowInfo {
    /// 1-based, in order of each connection's first packet.
    pub id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// The mail service of the server's port, if it is one.
    pub service: Option<Service>,
    pub roles: RoleEvidence,
}

#[derive(Debug)]
pub struct Flow {
    pub info: FlowInfo,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    /// Indexed by [`Direction::index`].
    pub half: [HalfStream; 2],
    pub end: Option<FlowEnd>,
    /// The client's initial sequence number, to tell a retransmitted SYN from a new connection
    /// on the same ports.
    pub(super) client_isn: Option<super::SeqNumber>,
}

impl Flow {
    pub fn stream(&self, direction: Direction) -> &HalfStream {
        direction.pick(&self.half)
    }
}
