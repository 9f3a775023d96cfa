//! NTLM inside SASL (SMTP AUTH NTLM, IMAP AUTHENTICATE NTLM, POP3 AUTH NTLM): the server's
//! challenge from its CHALLENGE message and the user, domain and responses from the client's
//! AUTHENTICATE message (MS-NLMP 2.2.1.2 and 2.2.1.3), turned into the line hashcat and John
//! read: NetNTLMv2 (hashcat 5600) `user::domain:challenge:NTProofStr:blob`, NetNTLMv1
//! (hashcat 5500) `user::domain:lm:nt:challenge`. Written here: the crates that parse NTLM
//! do so to authenticate, not to take a captured exchange apart.

use crate::hex;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// NTLMSSP_NEGOTIATE_UNICODE: strings are UTF-16LE, else the OEM code page.
const UNICODE: u32 = 0x1;

/// The 8-byte server challenge of a CHALLENGE message.
pub fn server_challenge(message: &[u8]) -> Option<[u8; 8]> {
    if message.get(..8)? != SIGNATURE || u32_at(message, 8)? != 2 {
        return None;
    }
    message.get(24..32)?.try_into().ok()
}

/// What an AUTHENTICATE message says.
#[derive(Debug, PartialEq, Eq)]
pub struct Authenticate {
    pub user: String,
    pub domain: String,
    pub lm_response: Vec<u8>,
    pub nt_response: Vec<u8>,
}

pub fn authenticate(message: &[u8]) -> Option<Authenticate> {
    if message.get(..8)? != SIGNATURE || u32_at(message, 8)? != 3 {
        return None;
    }
    let unicode = u32_at(message, 60).is_none_or(|flags| flags & UNICODE != 0);
    let field = |at: usize| -> Option<&[u8]> {
        let len = usize::from(u16::from_le_bytes(
            message.get(at..at + 2)?.try_into().ok()?,
        ));
        let offset = usize::try_from(u32_at(message, at + 4)?).ok()?;
        message.get(offset..offset.checked_add(len)?)
    };
    let string = |bytes: &[u8]| {
        if unicode {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .filter_map(|pair| pair.try_into().ok().map(u16::from_le_bytes))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            String::from_utf8_lossy(bytes).into_owned()
        }
    };
    Some(Authenticate {
        lm_response: field(12)?.to_vec(),
        nt_response: field(20)?.to_vec(),
        domain: string(field(28)?),
        user: string(field(36)?),
    })
}

impl Authenticate {
    /// The line password crackers read, for this response to `challenge`.
    pub fn crack_line(&self, challenge: &[u8; 8]) -> Option<String> {
        let (user, domain, challenge) = (&self.user, &self.domain, hex::encode(challenge));
        match self.nt_response.len() {
            // NTLMv1: 24 bytes of DES output (the LM response beside it).
            24 => Some(format!(
                "{user}::{domain}:{}:{}:{challenge}",
                hex::encode(&self.lm_response),
                hex::encode(&self.nt_response)
            )),
            // NTLMv2: a 16-byte proof, then the client's blob.
            n if n > 16 => {
                let (proof, blob) = self.nt_response.split_at_checked(16)?;
                Some(format!(
                    "{user}::{domain}:{challenge}:{}:{}",
                    hex::encode(proof),
                    hex::encode(blob)
                ))
            }
            _ => None,
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AUTHENTICATE message laid out as MS-NLMP 2.2.1.3 says, fields after the header.
    fn authenticate_message(lm: &[u8], nt: &[u8], domain: &str, user: &str) -> Vec<u8> {
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        let fields = [
            lm.to_vec(),
            nt.to_vec(),
            utf16(domain),
            utf16(user),
            utf16("WS"),
        ];
        let mut header = SIGNATURE.to_vec();
        header.extend(3u32.to_le_bytes());
        let mut payload: Vec<u8> = Vec::new();
        let start = 64;
        for f in &fields {
            let offset = start + payload.len();
            header.extend((f.len() as u16).to_le_bytes());
            header.extend((f.len() as u16).to_le_bytes());
            header.extend((offset as u32).to_le_bytes());
            payload.extend(f);
        }
        header.extend([0; 8]); // session key field
        header.extend(UNICODE.to_le_bytes());
        header.extend(payload);
        header
    }

    #[test]
    fn v1_and_v2_responses_become_hashcat_lines() {
        let challenge = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let mut message = SIGNATURE.to_vec();
        message.extend(2u32.to_le_bytes());
        message.extend([0; 12]);
        message.extend(challenge);
        assert_eq!(server_challenge(&message), Some(challenge));

        let v2 = authenticate(&authenticate_message(
            &[0; 24],
            &[0xaa; 40],
            "DOM",
            "Ünïcode",
        ))
        .unwrap();
        assert_eq!((v2.user.as_str(), v2.domain.as_str()), ("Ünïcode", "DOM"));
        assert_eq!(
            v2.crack_line(&challenge).unwrap(),
            format!(
                "Ünïcode::DOM:0123456789abcdef:{}:{}",
                "aa".repeat(16),
                "aa".repeat(24)
            )
        );
        let v1 = authenticate(&authenticate_message(&[0x11; 24], &[0x22; 24], "", "bob")).unwrap();
        assert_eq!(
            v1.crack_line(&challenge).unwrap(),
            format!(
                "bob:::{}:{}:0123456789abcdef",
                "11".repeat(24),
                "22".repeat(24)
            )
        );
    }

    #[test]
    fn truncated_and_lying_messages_give_nothing() {
        let whole = authenticate_message(&[0; 24], &[0xaa; 40], "DOM", "alice");
        for cut in 0..whole.len() {
            let _ = authenticate(&whole[..cut]);
        }
        let mut lying = whole.clone();
        lying[24..28].copy_from_slice(&u32::MAX.to_le_bytes()); // NT response offset
        assert_eq!(authenticate(&lying), None);
        assert_eq!(server_challenge(b"NTLMSSP\0\x02\0\0\0"), None);
    }
}
