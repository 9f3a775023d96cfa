//! The one sanitizer for text that reaches a terminal. Captured bytes may carry escape sequences
//! (clear screen, OSC 52 clipboard writes, title changes) or bidirectional overrides that make
//! text read differently than it is; here they become visible escapes.
//!
//! Kept as is: printable UTF-8, spaces and tabs; and, in multi-line text, CRLF and LF line ends.
//! Made visible: other C0 controls and DEL as `\xNN`, C1 controls and Unicode bidi controls as
//! `\u{NNNN}`, bytes that are not UTF-8 as `\xNN`.

use std::fmt::Write;

/// One line of text: line breaks are escaped too.
pub fn line(bytes: &[u8]) -> String {
    sanitize(bytes, false)
}

/// Multi-line text: `\n` and `\r\n` stay line breaks (as `\n`); a lone `\r` is escaped.
pub fn text(bytes: &[u8]) -> String {
    sanitize(bytes, true)
}

fn sanitize(bytes: &[u8], keep_newlines: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut chars = valid.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\n' if keep_newlines => out.push('\n'),
                '\r' if keep_newlines && chars.peek() == Some(&'\n') => {}
                '\t' | ' ' => out.push(c),
                c if is_c0_control(c) => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if is_invisible_control(c) => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// Whether captured text carries a character this module makes visible, line ends and tabs
/// aside: escape sequences, other controls, bidi overrides.
pub fn has_controls(text: &str) -> bool {
    text.chars()
        .any(|c| (is_c0_control(c) && !matches!(c, '\t' | '\r' | '\n')) || is_invisible_control(c))
}

/// C0 controls and DEL.
fn is_c0_control(c: char) -> bool {
    (c as u32) < 0x20 || c == '\x7f'
}

/// C1 controls (a terminal may treat U+009B as CSI) and the bidi formatting characters.
pub fn is_invisible_control(c: char) -> bool {
    matches!(c as u32, 0x80..=0x9f | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let cases: [(&[u8], &str, &str); 7] = [
            (b"EHLO a\r\n", "EHLO a\\x0d\\x0a", "EHLO a\n"),
            (
                b"\x1b]52;c;aGk=\x07",
                "\\x1b]52;c;aGk=\\x07",
                "\\x1b]52;c;aGk=\\x07",
            ),
            (b"\x1b[2J", "\\x1b[2J", "\\x1b[2J"),
            ("\u{9b}31m".as_bytes(), "\\u{009b}31m", "\\u{009b}31m"),
            ("a\u{202e}b".as_bytes(), "a\\u{202e}b", "a\\u{202e}b"),
            (b"\xff\xfe ok", "\\xff\\xfe ok", "\\xff\\xfe ok"),
            (
                "Привет\ttab\rcr".as_bytes(),
                "Привет\ttab\\x0dcr",
                "Привет\ttab\\x0dcr",
            ),
        ];
        for (input, want_line, want_text) in cases {
            assert_eq!(line(input), want_line);
            assert_eq!(text(input), want_text);
        }
    }
}
