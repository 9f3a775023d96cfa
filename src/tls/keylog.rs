//! TLS key logs in the NSS format (SSLKEYLOGFILE), as curl, browsers, OpenSSL, rustls, Python
//! and Go write them: `LABEL <client random hex> <secret hex>` per line.
//!
//! `CLIENT_RANDOM` carries a TLS 1.0-1.2 master secret; TLS 1.3 has one line per traffic secret.
//! Comment lines and labels we do not use (EXPORTER_SECRET, EARLY secrets) are accepted and
//! counted; lines that do not parse are counted as malformed and reported, never fatal.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

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
    pub lines: u64,
    pub malformed: u64,
    /// Comments, unused labels, and client randoms beyond the limit.
    pub ignored: u64,
    /// Bytes of an unfinished last line, kept until the rest of it is written.
    partial: Vec<u8>,
}

impl KeyLog {
    pub fn secrets(&self, client_random: &[u8; 32]) -> Option<&Secrets> {
        self.sessions.get(client_random)
    }

    /// The key log lines for one connection, as an NSS key log file has them.
    pub fn lines_for(&self, client_random: &[u8; 32]) -> String {
        let Some(secrets) = self.sessions.get(client_random) else {
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
        self.sessions.len()
    }

    /// Adds key log text; a line cut at the end is completed by the next call.
    pub fn add(&mut self, text: &[u8]) {
        self.partial.extend_from_slice(text);
        let Some(end) = memchr::memrchr(b'\n', &self.partial) else {
            if self.partial.len() > MAX_LINE {
                self.malformed += 1;
                self.partial.clear();
            }
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in complete.split(|&b| b == b'\n') {
            self.line(line);
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
        if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&random) {
            self.ignored += 1;
            return;
        }
        let secrets = self.sessions.entry(random).or_default();
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
        let mut text = Vec::new();
        file.take(len - self.read).read_to_end(&mut text)?;
        self.read += text.len() as u64;
        keys.add(&text);
        Ok(())
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
}
