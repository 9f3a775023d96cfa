//! Journeys: the same message, by Message-ID, seen again in the capture (submitted by SMTP,
//! relayed, appended or fetched by IMAP, retrieved by POP3). Each sighting keeps the hashes
//! of the whole message and of its body, so that a changed message shows.

use std::collections::HashMap;

use super::model::Sighting;

/// Sightings remembered across the capture (each costs about a hundred bytes).
const MAX_SIGHTINGS: usize = 200_000;
/// Sightings remembered per Message-ID: the first ones are the journey (submission, relays,
/// the first fetches); a message fetched again and again needs no more, and every later
/// sighting lists them.
pub const MAX_PER_MESSAGE: usize = 8;

#[derive(Default)]
struct Journey {
    /// Sightings in all, remembered or not.
    count: u64,
    first: Vec<Sighting>,
}

#[derive(Default)]
pub struct Journeys {
    seen: HashMap<String, Journey>,
    sightings: usize,
}

impl Journeys {
    /// Records a sighting of `message_id`; returns the first earlier ones and how many earlier
    /// ones there were in all.
    pub fn sight(&mut self, message_id: &str, sighting: Sighting) -> (Vec<Sighting>, u64) {
        if let Some(journey) = self.seen.get_mut(message_id) {
            let earlier = (journey.first.clone(), journey.count);
            journey.count += 1;
            if journey.first.len() < MAX_PER_MESSAGE && self.sightings < MAX_SIGHTINGS {
                self.sightings += 1;
                journey.first.push(sighting);
            }
            return earlier;
        }
        if self.sightings < MAX_SIGHTINGS {
            self.sightings += 1;
            let journey = Journey {
                count: 1,
                first: vec![sighting],
            };
            self.seen.insert(message_id.to_string(), journey);
        }
        (Vec::new(), 0)
    }

    /// The first message seen with this Message-ID.
    pub fn first(&self, message_id: &str) -> Option<u64> {
        self.seen.get(message_id)?.first.first().map(|s| s.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sighting(message: u64) -> Sighting {
        Sighting {
            message,
            session: message,
            source: "imap-fetch",
            sha256: [0; 32],
            body_hash: [0; 32],
            whole: true,
        }
    }

    #[test]
    fn a_message_seen_often_lists_its_first_sightings_and_counts_all() {
        let mut journeys = Journeys::default();
        let mut last = (Vec::new(), 0);
        for n in 1..=20 {
            last = journeys.sight("<a@b>", sighting(n));
        }
        let (listed, count) = last;
        assert_eq!(count, 19);
        let ids: Vec<u64> = listed.iter().map(|s| s.message).collect();
        assert_eq!(ids, (1..=MAX_PER_MESSAGE as u64).collect::<Vec<_>>());
        assert_eq!(journeys.first("<a@b>"), Some(1));
        assert_eq!(journeys.sight("<other@b>", sighting(21)), (Vec::new(), 0));
    }
}
