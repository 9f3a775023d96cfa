//! Analysis over the model: what analysts came for, computed from finished sessions and
//! messages. `credentials` lists every authentication across a capture; the findings (clear
//! text credentials, STARTTLS downgrades, smuggling, relays...) are to come beside it.

pub mod credentials;
