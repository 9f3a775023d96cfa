//! The one way mailscope writes into an output folder. Names come from captured data (subjects,
//! attachment names), so they are made safe here: one path component, no separators, no `..`,
//! no control characters, no names Windows reserves, bounded length, never an existing file
//! (files are created exclusively, which also refuses to follow a planted symlink).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::privileges;

/// Longest name part taken from captured data, in characters.
pub const MAX_NAME_CHARS: usize = 60;
/// An extension kept when a long name is cut (`.attachments` is the longest we write).
const MAX_EXTENSION_CHARS: usize = 16;

const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A safe single path component from untrusted text: letters and digits of any script, `-`,
/// `_` and `.` are kept, anything else becomes `_`; no leading dot; at most MAX_NAME_CHARS,
/// cut before a short extension so that `.eml` or `.pdf` survives a long name.
pub fn safe_name(text: &str, fallback: &str) -> String {
    let safe: Vec<char> = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let last_dot = safe.iter().rposition(|&c| c == '.');
    let extension = match last_dot.and_then(|dot| safe.get(dot..)) {
        Some(extension) if extension.len() <= MAX_EXTENSION_CHARS => extension,
        _ => &[],
    };
    let mut name: String = if safe.len() <= MAX_NAME_CHARS {
        safe.iter().collect()
    } else {
        let stem_chars = MAX_NAME_CHARS - extension.len();
        safe.iter().take(stem_chars).chain(extension).collect()
    };
    while name.starts_with('.') {
        name.remove(0);
    }
    let trimmed = name.trim_end_matches(['.', '_']).to_string();
    let name = if trimmed.is_empty() {
        fallback.to_string()
    } else {
        trimmed
    };
    if is_reserved(&name) {
        format!("_{name}")
    } else {
        name
    }
}

/// Whether Windows reserves `name` for a device (`CON`, `nul.txt`, `LPT1.log`...).
fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("").trim();
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem))
}

/// Why a name taken from a capture would be dangerous as a file name, if it would.
pub fn name_hazard(name: &str) -> Option<&'static str> {
    if name.contains(['/', '\\']) || name.starts_with("..") || name == "." {
        Some("it names a path, not a file")
    } else if name.contains('\0') || crate::sanitize::has_controls(name) {
        Some("it carries control characters")
    } else if is_reserved(name) {
        Some("Windows reserves it for a device")
    } else if name.len() > 255 {
        Some("it is longer than file systems allow")
    } else {
        None
    }
}

pub struct OutputDir {
    root: PathBuf,
    /// Who gets what is created here (see [`privileges::owner_for`]).
    owner: Option<(u32, u32)>,
    /// The sub-folder made last, by the name asked for: a message's attachments go into one
    /// folder, asked for once per attachment. Only the last is kept, so that a run of a
    /// million messages does not remember a million folders.
    last_folder: Option<(String, PathBuf)>,
}

impl OutputDir {
    /// The folder `root`, made if need be; what is made in it goes to `owner` (and `root` too,
    /// with its parents, if they are made here).
    pub fn create(root: &Path, owner: Option<(u32, u32)>) -> io::Result<OutputDir> {
        privileges::create_dirs(root, owner)?;
        Ok(OutputDir {
            root: root.to_path_buf(),
            owner,
            last_folder: None,
        })
    }

    /// A path this type wrote, relative to the root, with `/` between folders (for links).
    pub fn relative(&self, path: &Path) -> String {
        let inside = path.strip_prefix(&self.root).unwrap_or(path);
        let parts: Vec<String> = inside
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        parts.join("/")
    }

    /// A new, unused path for `name` (already safe) in `folder` (a path this type made, or
    /// the root), adding `-2`, `-3`... before the extension when taken.
    fn claim(&self, folder: &Path, name: &str) -> PathBuf {
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
            _ => (name, String::new()),
        };
        let mut n: u64 = 1;
        loop {
            let candidate = if n == 1 {
                name.to_string()
            } else {
                format!("{stem}-{n}{ext}")
            };
            let path = folder.join(candidate);
            // A link counts as taken, even one that points nowhere. What this run made is on
            // disk too: the file system is the one list of names taken.
            if path.symlink_metadata().is_err() {
                return path;
            }
            n += 1;
        }
    }

    /// The sub-folder for `name` (made safe), made new on first use: names are predictable from
    /// the capture, so a folder (or a link) already in its place is never written into.
    fn folder(&mut self, name: &str) -> io::Result<PathBuf> {
        if let Some((_, dir)) = self.last_folder.as_ref().filter(|(last, _)| last == name) {
            return Ok(dir.clone());
        }
        let root = self.root.clone();
        let dir = self.claim(&root, &safe_name(name, "folder"));
        privileges::create_dir(&dir, self.owner)?;
        self.last_folder = Some((name.to_string(), dir.clone()));
        Ok(dir)
    }

    /// Writes a new file named from `name` (made safe) in the root, or in a sub-folder named
    /// from `folder` (made safe). Returns the path written.
    pub fn write(
        &mut self,
        folder: Option<&str>,
        name: &str,
        fallback: &str,
        bytes: &[u8],
    ) -> io::Result<PathBuf> {
        let dir = match folder {
            Some(f) => self.folder(f)?,
            None => self.root.clone(),
        };
        let (path, mut file) = self.new_file(&dir, name, fallback)?;
        file.write_all(bytes)?;
        Ok(path)
    }

    /// Creates a new file named from `name` (made safe) in the root, to write at length.
    pub fn create_file(&mut self, name: &str, fallback: &str) -> io::Result<(PathBuf, File)> {
        let root = self.root.clone();
        self.new_file(&root, name, fallback)
    }

    fn new_file(&mut self, dir: &Path, name: &str, fallback: &str) -> io::Result<(PathBuf, File)> {
        let path = self.claim(dir, &safe_name(name, fallback));
        let file = privileges::create_new(&path, self.owner)?;
        Ok((path, file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_inside() {
        let cases = [
            ("../../etc/passwd", "_.._etc_passwd"),
            ("/absolute/path.txt", "_absolute_path.txt"),
            ("..", "x"),
            ("nul\0byte.pdf", "nul_byte.pdf"),
            ("CON.txt", "_CON.txt"),
            ("lpt1", "_lpt1"),
            (".hidden", "hidden"),
            ("Отчёт за квартал.pdf", "Отчёт_за_квартал.pdf"),
            ("\x1b]0;title\x07.sh", "__0_title_.sh"),
            ("", "x"),
        ];
        for (input, want) in cases {
            assert_eq!(safe_name(input, "x"), want, "{input:?}");
        }
        assert_eq!(
            safe_name(&"a".repeat(10_000), "x").chars().count(),
            MAX_NAME_CHARS
        );
        let long = safe_name(&format!("{}.attachments", "a".repeat(10_000)), "x");
        assert_eq!(long.chars().count(), MAX_NAME_CHARS);
        assert!(long.ends_with("a.attachments"), "{long}");
    }

    #[test]
    fn same_name_twice_gets_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = OutputDir::create(dir.path(), None).unwrap();
        let a = out.write(None, "report.pdf", "x", b"1").unwrap();
        let b = out.write(None, "report.pdf", "x", b"2").unwrap();
        assert_eq!(a.file_name().unwrap(), "report.pdf");
        assert_eq!(b.file_name().unwrap(), "report-2.pdf");
        let c = out.write(Some("../up"), "../x", "x", b"3").unwrap();
        assert!(c.starts_with(dir.path()) && c.parent().unwrap().file_name().unwrap() == "_up");
    }
}
