//! Export: pure formatters over what the engine produced, and `slice`, which copies one
//! session's packets out of the capture. Everything that goes to a terminal passes
//! [`crate::sanitize`]; everything written to disk passes [`files::OutputDir`].

pub mod ecs;
pub mod files;
pub mod flows;
pub mod folder;
pub mod follow;
pub mod index;
pub mod json;
pub mod mbox;
pub mod pcapng;
pub mod safe_json;
pub mod slice;
pub mod time;
pub mod transcript;
