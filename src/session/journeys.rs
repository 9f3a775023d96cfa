//! Journeys: the same message, by Message-ID, seen again in the capture (submitted by SMTP,
//! relayed, appended or fetched by IMAP, retrieved by POP3). Each sighting keeps the hashes
//! of the whole message and of its body, so that a changed message shows.

use std::collections::HashMap;

use super::model::Sighting;

/// Sightings remembered across the capture (each costs about a hundred bytes).
const MAX_SIGHTINGS: usize = 200_000;
/// Sightings remembered per Message-ID: a message fetched again and again needs no more.
const MAX_PER_MESSAGE: usize = 64;

#[derive(Default)]
pub struct Journeys {
    seen: HashMap<String, Vec<Sighting>>,
    sightings: usize,
}

impl Journeys {
    /// Records a sighting of `message_id` and returns the earlier ones.
    pub fn sight(&mut self, message_id: &str, sighting: Sighting) -> Vec<Sighting> {
        let earlier = self.seen.get(message_id).cloned().unwrap_or_default();
        if self.sightings < MAX_SIGHTINGS && earlier.len() < MAX_PER_MESSAGE {
            self.sightings += 1;
            self.seen
                .entry(message_id.to_string())
                .or_default()
                .push(sighting);
        }
        earlier
    }

    /// The first message seen with this Message-ID.
    pub fn first(&self, message_id: &str) -> Option<u64> {
        self.seen.get(message_id)?.first().map(|s| s.message)
    }
}
