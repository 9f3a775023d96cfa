//! Lowercase hex, as key logs, hashes and client randoms are written.

use std::fmt;

/// The lowercase hex digit of a nibble.
fn digit(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'a' + nibble - 10
    }
}

pub fn encode(bytes: &[u8]) -> String {
    Hex(bytes).to_string()
}

/// Bytes written as hex where they go, with no string made for them: in a JSON record (a
/// string) or with `{}`.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 64];
        for chunk in self.0.chunks(text.len() / 2) {
            for (pair, &b) in text.chunks_exact_mut(2).zip(chunk) {
                pair.copy_from_slice(&[digit(b >> 4), digit(b & 0x0f)]);
            }
            let written = text.get(..2 * chunk.len()).unwrap_or_default();
            f.write_str(std::str::from_utf8(written).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl serde::Serialize for Hex<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `None` unless every pair of characters is a hex byte.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn encode_writes_what_format_writes_and_decode_reads_it_back() {
        let bytes: Vec<u8> = (0..=255).collect();
        let formatted: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(super::encode(&bytes), formatted);
        assert_eq!(super::Hex(&bytes).to_string(), formatted);
        let json = serde_json::to_string(&super::Hex(&bytes[..3])).unwrap();
        assert_eq!(json, "\"000102\"");
        assert_eq!(super::decode(&formatted), Some(bytes));
    }
}
