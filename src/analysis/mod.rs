//! Analysis over the model: what analysts and admins came for. The [`Analyst`] watches the
//! sessions as they are built and adds findings (credentials in clear, STARTTLS downgrades and
//! injections, smuggling, relaying, probing, slow replies, bounces...): `dialogue` judges each
//! exchange, `content` each message, `ending` each finished session, `tally` counts across
//! sessions. `credentials` lists every authentication; `explain` says what commands and reply
//! codes mean.

mod analyst;
mod content;
pub mod credentials;
mod dialogue;
mod ending;
pub mod explain;
mod tally;

pub use analyst::{Analyst, Options};
pub use dialogue::refused;
