//! TLS key logs in the NSS format (SSLKEYLOGFILE), as curl, browsers, OpenSSL, rustls, Python
//! and Go write them: `LABEL <client random hex> <secret hex>` per line.
//!
//! `CLIENT_RANDOM` carries a TLS 1.0-1.2 master secret; TLS 1.3 has one line per traffic secret.
//! Comment lines and labels we do not use (EXPORTER_SECRET, EARLY secrets) are accepted and
//! counted; lines that do not parse are counted as malformed and reported, never fatal.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::hex;

/// Client randoms remembered; a key log is written by clients we trust, but may be huge.
const MAX_SESSIONS: usize = 1_000_000;
/// A line longer than this is not a key log line (the longest real one is under 250 bytes).
const MAX_LINE: usize = 1024;

/// The secrets logged for one client random.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// TLS 1.0-1.2.
    pub master: Option<Vec<u8>>,
    pub client_handshake: Option<Vec<u8>>,
    pub server_handshake: Option<Vec<u8>>,
    pub client_traffic: Option<Vec<u8>>,
    pub server_traffic: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default)]
pub struct KeyLog {
    sessions: HashMap<[u8; 32], Secrets>,
    /// Sessions handed to [`KeyLog::share`]: read by every clone (the workers of a parallel
    /// run), held once. Lines added later go to `sessions`, which then wins.
    shared: Arc<HashMap<[u8; 32], Secrets>>,
    pub lines: u64,
    pub malformed: u64,
    /// Comments, unused labels, and client randoms beyond the limit.
    pub ignored: u64,
    /// Bytes of an unfinished last line, kept until the rest of it is written.
    partial: Vec<u8>,
}

impl KeyLog {
    pub fn secrets(&self, client_random: &[u8; 32]) -> Option<&Secrets> {
        self.sessions
            .get(client_random)
            .or_else(|| self.shared.get(client_random))
    }

    /// Moves the sessions read so far to where clones share them instead of copying them.
    pub fn share(&mut self) {
        let sessions = std::mem::take(&mut self.sessions);
        if self.shared.is_empty() {
            self.shared = Arc::new(sessions);
        } else {
            Arc::make_mut(&mut self.shared).extend(sessions);
        }
    }

    /// The key log lines for one connection, as an NSS key log file has them.
    pub fn lines_for(&self, client_random: &[u8; 32]) -> String {
        let Some(secrets) = self.secrets(client_random) else {
            return String::new();
        };
        let random = hex::encode(client_random);
        [
            ("CLIENT_RANDOM", &secrets.master),
            ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", &secrets.client_handshake),
            ("SERVER_HANDSHAKE_TRAFFIC_SECRET", &secrets.server_handshake),
            ("CLIENT_TRAFFIC_SECRET_0", &secrets.client_traffic),
            ("SERVER_TRAFFIC_SECRET_0", &secrets.server_traffic),
        ]
        .into_iter()
        .filter_map(|(label, secret)| {
            Some(format!(
                "{label} {random} {}\n",
                hex::encode(secret.as_ref()?)
            ))
        })
        .collect()
    }

    pub fn sessions(&self) -> usize {
        let own = self.sessions.keys();
        self.shared.len() + own.filter(|r| !self.shared.contains_key(*r)).count()
    }

    /// Adds key log text; a line cut at the end is completed by the next call.
    pub fn add(&mut self, text: &[u8]) {
        // Lines are read where they are: a key log can be hundreds of megabytes.
        let Some(end) = memchr::memrchr(b'\n', text) else {
            self.hold(text);
            return;
        };
        let complete = text.get(..end).unwrap_or_default();
        let rest = text.get(end + 1..).unwrap_or_default();
        let mut lines = complete.split(|&b| b == b'\n');
        if !self.partial.is_empty() {
            let mut first = std::mem::take(&mut self.partial);
            first.extend_from_slice(lines.next().unwrap_or_default());
            self.line(&first);
        }
        for line in lines {
            self.line(line);
        }
        self.hold(rest);
    }

    /// Keeps the start of a line until its end comes; a line that grows too long is malformed.
    fn hold(&mut self, text: &[u8]) {
        self.partial.extend_from_slice(text);
        if self.partial.len() > MAX_LINE {
            self.malformed += 1;
            self.partial.clear();
        }
    }

    /// The last line, even without its newline: the input is over.
    pub fn finish(&mut self) {
        let rest = std::mem::take(&mut self.partial);
        self.line(&rest);
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            self.malformed += 1;
            return;
        };
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        self.lines += 1;
        if line.starts_with('#') {
            self.ignored += 1;
            return;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            self.malformed += 1;
            return;
        };
        let used = matches!(
            label,
            "CLIENT_RANDOM"
                | "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
                | "SERVER_HANDSHAKE_TRAFFIC_SECRET"
                | "CLIENT_TRAFFIC_SECRET_0"
                | "SERVER_TRAFFIC_SECRET_0"
        );
        if !used {
            // EXPORTER_SECRET, the EARLY secrets, OpenSSL's RSA pre-master lines, new labels.
            self.ignored += 1;
            return;
        }
        if random.len() > 64 || secret.len() > 256 {
            self.malformed += 1;
            return;
        }
        let (Some(random), Some(secret)) = (hex::decode(random), hex::decode(secret)) else {
            self.malformed += 1;
            return;
        };
        let Ok(random) = <[u8; 32]>::try_from(random.as_slice()) else {
            self.malformed += 1;
            return;
        };
        let known = self.sessions.contains_key(&random) || self.shared.contains_key(&random);
        // Both counts, not sessions(): an entry in both counts twice, but this runs per line.
        if self.sessions.len() + self.shared.len() >= MAX_SESSIONS && !known {
            self.ignored += 1;
            return;
        }
        let shared = &self.shared;
        let secrets = self
            .sessions
            .entry(random)
            .or_insert_with(|| shared.get(&random).cloned().unwrap_or_default());
        let slot = match label {
            "CLIENT_RANDOM" => &mut secrets.master,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut secrets.client_handshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut secrets.server_handshake,
            "CLIENT_TRAFFIC_SECRET_0" => &mut secrets.client_traffic,
            _ => &mut secrets.server_traffic,
        };
        *slot = Some(secret);
    }
}

/// A key log file read as it grows (a live capture's client keeps writing it).
#[derive(Debug)]
pub struct KeyLogFile {
    pub path: PathBuf,
    read: u64,
}

impl KeyLogFile {
    pub fn new(path: &Path) -> KeyLogFile {
        KeyLogFile {
            path: path.to_path_buf(),
            read: 0,
        }
    }

    /// Adds what was written since the last call. A file that shrank was rewritten: it is read
    /// again from the start.
    pub fn poll(&mut self, keys: &mut KeyLog) -> io::Result<()> {
        let mut file = std::fs::File::open(&self.path)?;
        let len = file.metadata()?.len();
        if len < self.read {
            self.read = 0;
        }
        if len == self.read {
            return Ok(());
        }
        io::Seek::seek(&mut file, io::SeekFrom::Start(self.read))?;
        let mut file = file.take(len - self.read);
        let mut chunk = vec![0; 1 << 20];
        loop {
            let n = file.read(&mut chunk)?;
            let Some(text) = chunk.get(..n).filter(|text| !text.is_empty()) else {
                return Ok(());
            };
            self.read += n as u64;
            keys.add(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_file_is_read_as_it_grows_and_again_when_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        let line = |byte: &str| format!("CLIENT_RANDOM {} {}\n", byte.repeat(32), "11".repeat(48));
        let mut keys = KeyLog::default();
        let mut file = KeyLogFile::new(&path);
        assert!(file.poll(&mut keys).is_err(), "not written yet");
        std::fs::write(&path, line("aa")).unwrap();
        file.poll(&mut keys).unwrap();
        assert_eq!(keys.sessions(), 1);
        let mut more = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut more, line("bb").as_bytes()).unwrap();
        file.poll(&mut keys).unwrap();
        assert_eq!(keys.sessions(), 2);
        assert!(keys.secrets(&[0xbb; 32]).is_some());
        std::fs::write(&path, line("cc")).unwrap();
        file.poll(&mut keys).unwrap();
        assert!(
            keys.secrets(&[0xcc; 32]).is_some(),
            "a shorter file is read from the start"
        );
        assert_eq!(keys.lines, 3);
    }

    #[test]
    fn labels_comments_and_malformed_lines() {
        let random = "ab".repeat(32);
        let mut keys = KeyLog::default();
        keys.add(
            format!(
                "# a comment\nCLIENT_RANDOM {random} {}\r\nEXPORTER_SECRET {random} 00\n\
                 CLIENT_TRAFFIC_SECRET_0 {random} 0102\nCLIENT_RANDOM zz 00\nCLIENT_RANDOM {random}\n\
                 RSA 0011223344556677 {}\nSERVER_TRAFFIC_SECRET_0 {random} 03",
                "11".repeat(48),
                "22".repeat(48)
            )
            .as_bytes(),
        );
        let s = keys.secrets(&[0xab; 32]).unwrap();
        assert_eq!(s.master.as_deref(), Some(&[0x11; 48][..]));
        assert_eq!(s.client_traffic.as_deref(), Some(&[1, 2][..]));
        assert_eq!(s.server_traffic, None, "its line is not finished yet");
        keys.add(b"04\n");
        let s = keys.secrets(&[0xab; 32]).unwrap();
        assert_eq!(s.server_traffic.as_deref(), Some(&[3, 4][..]));
        assert_eq!((keys.lines, keys.malformed, keys.ignored), (8, 2, 3));
    }

    #[test]
    fn shared_sessions_are_read_by_clones_and_later_lines_complete_them() {
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let mut keys = KeyLog::default();
        keys.add(
            format!("CLIENT_HANDSHAKE_TRAFFIC_SECRET {a} 01\nCLIENT_RANDOM {b} 02\n").as_bytes(),
        );
        keys.share();
        let mut worker = keys.clone();
        assert_eq!(worker.sessions(), 2);
        assert_eq!(
            worker.secrets(&[0xbb; 32]).unwrap().master.as_deref(),
            Some(&[2][..])
        );
        // A key log inside the capture adds to a session the shared part already has.
        worker.add(format!("SERVER_HANDSHAKE_TRAFFIC_SECRET {a} 03\n").as_bytes());
        let s = worker.secrets(&[0xaa; 32]).unwrap();
        assert_eq!(
            s.client_handshake.as_deref(),
            Some(&[1][..]),
            "kept from the shared part"
        );
        assert_eq!(s.server_handshake.as_deref(), Some(&[3][..]));
        assert_eq!(worker.sessions(), 2, "the same session, not a new one");
        assert!(worker
            .lines_for(&[0xaa; 32])
            .contains("SERVER_HANDSHAKE_TRAFFIC_SECRET"));
        assert_eq!(
            keys.secrets(&[0xaa; 32]).unwrap().server_handshake,
            None,
            "clones apart"
        );
        worker.share();
        assert_eq!(worker.sessions(), 2);
        assert_eq!(
            worker
                .secrets(&[0xaa; 32])
                .unwrap()
                .server_handshake
                .as_deref(),
            Some(&[3][..])
        );
    }
}
