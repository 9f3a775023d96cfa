//! TLS decryption from key logs: the stage between TCP streams and the dissectors for implicit
//! TLS (SMTPS, IMAPS, POP3S) and for the part of a dialogue after STARTTLS/STLS.
//!
//! `record` frames each direction into records, `handshake` reads the hellos and the
//! certificate, `keylog` holds the logged secrets, `keys` turns them into record keys, `cipher`
//! opens records, and `connection` ties them together for one connection.

pub mod cipher;
pub mod connection;
pub mod handshake;
pub mod keylog;
pub mod keys;
pub mod record;

pub use connection::{TlsConnection, TlsEvent, TlsInfo};
pub use keylog::{KeyLog, KeyLogFile};
