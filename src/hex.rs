//! Lowercase hex, as key logs, hashes and client randoms are written.

pub fn encode(bytes: &[u8]) -> String {
    // Not `format!` per byte: hashes are written for every message and attachment.
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            text.push(char::from_digit(nibble.into(), 16).unwrap_or('0'));
        }
    }
    text
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
        assert_eq!(super::decode(&formatted), Some(bytes));
    }
}
