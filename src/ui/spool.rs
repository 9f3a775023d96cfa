//! Message bodies kept on disk instead of in memory: past a threshold the UI writes each new
//! message's bytes to one temporary file and reads them back when they are saved. The file
//! never has a name others could open or plant (tempfile: O_TMPFILE, or a random name unlinked
//! at once, mode 0600), and it goes away with the process, whatever ends it.
//!
//! Offsets into the capture file would need reassembly (and decryption, and inflating) run again
//! to give a body back; the spool holds the finished bytes once.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Where one body lies in the spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spooled {
    offset: u64,
    len: usize,
}

pub struct Spool {
    file: File,
    end: u64,
}

impl Spool {
    /// A new spool in the system's temporary folder.
    pub fn create() -> io::Result<Spool> {
        Ok(Spool {
            file: tempfile::tempfile()?,
            end: 0,
        })
    }

    pub fn put(&mut self, bytes: &[u8]) -> io::Result<Spooled> {
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(bytes)?;
        let spooled = Spooled {
            offset: self.end,
            len: bytes.len(),
        };
        self.end += bytes.len() as u64;
        Ok(spooled)
    }

    pub fn get(&self, spooled: Spooled) -> io::Result<Vec<u8>> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(spooled.offset))?;
        let mut bytes = vec![0; spooled.len];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    /// Bytes on disk.
    pub fn len(&self) -> u64 {
        self.end
    }
}
