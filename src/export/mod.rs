//! Export: pure formatters over what the engine produced. Nothing here reads packets; everything
//! that goes to a terminal passes [`crate::sanitize`].

pub mod files;
pub mod flows;
pub mod folder;
pub mod follow;
pub mod json;
pub mod pcapng;
pub mod time;
pub mod transcript;
