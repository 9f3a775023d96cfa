//! Sessions: the fifth stage, in two halves. [`Connections`] is the byte side: per
//! connection, a dissector (through TLS where the connection has it) and what it reports, as
//! [`SessionEvent`]s. [`Sessions`] is the model side: it turns those events into the
//! [`model`] users see, numbers and links messages across the capture, and hands each finished
//! piece to a [`SessionSink`] as soon as it is complete (so that a live capture can be
//! followed). One thread runs both as a [`SessionTable`]; a parallel run gives each worker its
//! own `Connections` and merges their events, in capture order, into one `Sessions`.

pub mod connections;
pub mod journeys;
pub mod model;
pub mod sessions;

use crate::proto::{AuthAttempt, Exchange, Note};
use crate::tcp::Direction;
pub use connections::{Connections, Events, PreparedMessage, SessionEvent, REDACTED};
use model::{Finding, Message, Session};
pub use sessions::Sessions;

/// The outputs: told about each piece as it is complete.
pub trait SessionSink {
    fn exchange(&mut self, session: &Session, exchange: &Exchange);
    fn message(&mut self, session: &Session, message: &Message);
    fn note(&mut self, _session: &Session, _note: &Note) {}
    /// An authentication attempt, once its outcome is known (or the connection ended). The
    /// session keeps only the first ones: outputs that list every attempt take them here.
    fn auth(&mut self, _session: &Session, _attempt: &AuthAttempt) {}
    /// Something analysis found (see [`crate::analysis::Analyst`]).
    fn finding(&mut self, _session: &Session, _finding: &Finding) {}
    /// Bytes TLS decrypted, in order per direction (what the dissector reads next).
    fn decrypted(&mut self, _session: &Session, _direction: Direction, _bytes: &[u8]) {}
    /// The connection ended; the session is final.
    fn session_end(&mut self, session: &Session);
    /// Write out what is held: the input pauses, or is over.
    fn flush(&mut self) {}
}

/// The session layer on one thread: the connections report straight to the model.
pub type SessionTable<S> = Connections<Sessions<S>>;

impl<S: SessionSink> SessionTable<S> {
    pub fn new(sink: S) -> SessionTable<S> {
        Connections::with_output(Sessions::new(sink))
    }

    /// The outputs, once the run is over.
    pub fn into_sink(self) -> S {
        self.out.sink
    }
}

/// Outputs are often borrowed for a run, so that the caller can look at them afterwards.
impl<S: SessionSink> SessionSink for &mut S {
    fn exchange(&mut self, session: &Session, exchange: &Exchange) {
        (**self).exchange(session, exchange)
    }
    fn message(&mut self, session: &Session, message: &Message) {
        (**self).message(session, message)
    }
    fn note(&mut self, session: &Session, note: &Note) {
        (**self).note(session, note)
    }
    fn auth(&mut self, session: &Session, attempt: &AuthAttempt) {
        (**self).auth(session, attempt)
    }
    fn decrypted(&mut self, session: &Session, direction: Direction, bytes: &[u8]) {
        (**self).decrypted(session, direction, bytes)
    }
    fn finding(&mut self, session: &Session, finding: &Finding) {
        (**self).finding(session, finding)
    }
    fn session_end(&mut self, session: &Session) {
        (**self).session_end(session)
    }
    fn flush(&mut self) {
        (**self).flush()
    }
}
