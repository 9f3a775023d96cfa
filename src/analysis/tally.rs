//! What the analysis counts across sessions: failed logins and rejected recipients per client
//! (brute force, address harvesting), per server whether STARTTLS was offered (downgrade) and
//! the connection attempts it never answered (scans, floods, an outage).

use std::collections::HashMap;
use std::net::IpAddr;

use super::analyst::remember;

/// Clients and servers tracked at most (a scan touches many; the first ones are kept).
const MAX_TRACKED: usize = 100_000;
/// The first report comes at this many failures; the next ones at ten times more each.
pub const FIRST_ALARM: u64 = 5;

/// A count that raises an alarm at 5, 50, 500... events.
#[derive(Debug)]
pub struct Alarm {
    pub count: u64,
    next: u64,
    /// The names involved (user names tried, recipients refused), the first few.
    pub names: Vec<String>,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm {
            count: 0,
            next: FIRST_ALARM,
            names: Vec::new(),
        }
    }
}

impl Alarm {
    /// Counts one event; true when it reaches the next alarm level.
    pub fn count(&mut self, name: Option<&str>) -> bool {
        self.count += 1;
        if let Some(name) = name {
            remember(&mut self.names, name);
        }
        if self.count >= self.next {
            self.next = self.next.saturating_mul(10);
            return true;
        }
        false
    }
}

#[derive(Debug, Default)]
pub struct Client {
    pub auth_failures: Alarm,
    pub rejected_recipients: Alarm,
}

/// What one server (by protocol, port and name) showed about STARTTLS: the first session that
/// offered it, and the first that did not.
#[derive(Debug, Default)]
pub struct Offers {
    pub offered: Option<u64>,
    pub not_offered: Option<u64>,
}

#[derive(Default)]
pub struct Tally {
    clients: HashMap<IpAddr, Client>,
    servers: HashMap<String, Offers>,
    /// Per server address: connection attempts it never answered.
    unanswered: HashMap<IpAddr, Alarm>,
}

/// The entry for `key`, made if there is room for one more.
fn tracked<K: Eq + std::hash::Hash, V: Default>(map: &mut HashMap<K, V>, key: K) -> Option<&mut V> {
    if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
        return None;
    }
    Some(map.entry(key).or_default())
}

/// When `alarm` reaches its next level: the count and the names involved.
fn raised(alarm: &mut Alarm, name: Option<&str>) -> Option<(u64, String)> {
    alarm
        .count(name)
        .then(|| (alarm.count, alarm.names.join(", ")))
}

impl Tally {
    /// Counts one event on a client's alarm (`which` picks it); when that reaches the next
    /// level, the count and the names involved.
    pub fn alarm(
        &mut self,
        ip: IpAddr,
        which: fn(&mut Client) -> &mut Alarm,
        name: Option<&str>,
    ) -> Option<(u64, String)> {
        raised(which(tracked(&mut self.clients, ip)?), name)
    }

    pub fn server(&mut self, key: String) -> Option<&mut Offers> {
        tracked(&mut self.servers, key)
    }

    /// Counts a connection attempt `server` never answered, from `client`.
    pub fn unanswered(&mut self, server: IpAddr, client: &str) -> Option<(u64, String)> {
        raised(tracked(&mut self.unanswered, server)?, Some(client))
    }
}
