//! Opening one direction's protected records. The ciphers come from crates: ring for AES-GCM
//! and ChaCha20-Poly1305 (the fastest well-kept implementations), RustCrypto for AES-CCM and
//! AES-CBC with HMAC. What is written here is only TLS's use of them: nonces, additional data,
//! CBC padding and MAC placement (RFC 5246 6.2.3, RFC 7366, RFC 8446 5.2, RFC 7905).

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, KeyIvInit};
use aes::{Aes128, Aes256};
use ccm::aead::{generic_array::GenericArray, AeadInPlace, KeyInit};
use ccm::consts::{U12, U16, U8};
use hmac::{Hmac, Mac};
use ring::aead::{self as ring_aead, Aad, LessSafeKey, Nonce, UnboundKey};
use sha1::Sha1;
use sha2::{Sha256, Sha384};

use super::record::Record;

/// How a suite protects records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    Gcm { key_len: usize },
    ChaCha20Poly1305,
    Ccm { key_len: usize, tag_len: usize },
    Cbc { key_len: usize, mac: MacHash },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacHash {
    Sha1,
    Sha256,
    Sha384,
}

impl MacHash {
    pub fn output_len(self) -> usize {
        match self {
            MacHash::Sha1 => 20,
            MacHash::Sha256 => 32,
            MacHash::Sha384 => 48,
        }
    }
}

impl Protection {
    pub fn key_len(self) -> usize {
        match self {
            Protection::Gcm { key_len }
            | Protection::Ccm { key_len, .. }
            | Protection::Cbc { key_len, .. } => key_len,
            Protection::ChaCha20Poly1305 => 32,
        }
    }

    /// The implicit IV bytes from the key block (TLS 1.2): 4 for GCM and CCM, whose nonces
    /// carry 8 more explicitly; the whole nonce for ChaCha20; the first IV for TLS 1.0 CBC.
    pub fn fixed_iv_len(self) -> usize {
        match self {
            Protection::Gcm { .. } | Protection::Ccm { .. } => 4,
            Protection::ChaCha20Poly1305 => 12,
            Protection::Cbc { .. } => 16,
        }
    }

    pub fn mac_key_len(self) -> usize {
        match self {
            Protection::Cbc { mac, .. } => mac.output_len(),
            _ => 0,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The record does not authenticate: wrong key, or bytes changed on the way.
    Authentication,
    /// Too short for what the cipher puts in a record.
    Malformed,
}

enum Aead {
    Ring(Box<LessSafeKey>),
    Ccm128(Box<ccm::Ccm<Aes128, U16, U12>>),
    Ccm128Short(Box<ccm::Ccm<Aes128, U8, U12>>),
    Ccm256(Box<ccm::Ccm<Aes256, U16, U12>>),
    Ccm256Short(Box<ccm::Ccm<Aes256, U8, U12>>),
}

impl Aead {
    fn new(protection: Protection, key: &[u8]) -> Option<Aead> {
        let ring = |alg| {
            Some(Aead::Ring(Box::new(LessSafeKey::new(
                UnboundKey::new(alg, key).ok()?,
            ))))
        };
        match protection {
            Protection::Gcm { key_len: 16 } => ring(&ring_aead::AES_128_GCM),
            Protection::Gcm { key_len: 32 } => ring(&ring_aead::AES_256_GCM),
            Protection::ChaCha20Poly1305 => ring(&ring_aead::CHACHA20_POLY1305),
            Protection::Ccm { key_len, tag_len } => Some(match (key_len, tag_len) {
                (16, 16) => Aead::Ccm128(Box::new(ccm::Ccm::new_from_slice(key).ok()?)),
                (16, 8) => Aead::Ccm128Short(Box::new(ccm::Ccm::new_from_slice(key).ok()?)),
                (32, 16) => Aead::Ccm256(Box::new(ccm::Ccm::new_from_slice(key).ok()?)),
                (32, 8) => Aead::Ccm256Short(Box::new(ccm::Ccm::new_from_slice(key).ok()?)),
                _ => return None,
            }),
            _ => None,
        }
    }

    fn tag_len(&self) -> usize {
        match self {
            Aead::Ccm128Short(_) | Aead::Ccm256Short(_) => 8,
            _ => 16,
        }
    }

    /// Opens `data` (ciphertext then tag) in place; the plaintext is what is left.
    fn open(&self, nonce: [u8; 12], aad: &[u8], data: &mut Vec<u8>) -> Result<(), OpenError> {
        let tag_len = self.tag_len();
        let Some(split) = data.len().checked_sub(tag_len) else {
            return Err(OpenError::Malformed);
        };
        let ok = match self {
            Aead::Ring(key) => key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    data.as_mut_slice(),
                )
                .is_ok(),
            ccm => {
                let (text, tag) = data.split_at_mut(split);
                let tag = &*tag;
                let nonce = GenericArray::from_slice(&nonce);
                match ccm {
                    Aead::Ccm128(c) => c
                        .decrypt_in_place_detached(nonce, aad, text, GenericArray::from_slice(tag))
                        .is_ok(),
                    Aead::Ccm128Short(c) => c
                        .decrypt_in_place_detached(nonce, aad, text, GenericArray::from_slice(tag))
                        .is_ok(),
                    Aead::Ccm256(c) => c
                        .decrypt_in_place_detached(nonce, aad, text, GenericArray::from_slice(tag))
                        .is_ok(),
                    Aead::Ccm256Short(c) => c
                        .decrypt_in_place_detached(nonce, aad, text, GenericArray::from_slice(tag))
                        .is_ok(),
                    Aead::Ring(_) => false,
                }
            }
        };
        if !ok {
            return Err(OpenError::Authentication);
        }
        data.truncate(split);
        Ok(())
    }
}

enum Engine {
    Aead(Aead),
    Cbc {
        key: Vec<u8>,
        mac: RecordMac,
        encrypt_then_mac: bool,
        /// TLS 1.0 chains the IV from the previous record; later versions send it per record.
        chained_iv: Option<Vec<u8>>,
    },
}

/// One direction's record protection, with its sequence number.
pub struct RecordCipher {
    engine: Engine,
    iv: Vec<u8>,
    /// TLS 1.3 nonces and additional data; else TLS 1.2's.
    tls13: bool,
    explicit_nonce: bool,
    pub seq: u64,
}

/// Keys for one direction.
pub struct DirectionKeys<'a> {
    pub key: &'a [u8],
    pub iv: &'a [u8],
    pub mac_key: &'a [u8],
}

impl RecordCipher {
    /// TLS 1.3 (`keys.iv` is the 12-byte write IV) or TLS 1.2 and earlier.
    pub fn new(
        protection: Protection,
        keys: DirectionKeys<'_>,
        tls13: bool,
        tls10: bool,
        encrypt_then_mac: bool,
    ) -> Option<RecordCipher> {
        let engine = match protection {
            Protection::Cbc { mac, .. } => Engine::Cbc {
                key: keys.key.to_vec(),
                mac: RecordMac::new(mac, keys.mac_key)?,
                encrypt_then_mac,
                chained_iv: tls10.then(|| keys.iv.to_vec()),
            },
            aead => Engine::Aead(Aead::new(aead, keys.key)?),
        };
        Some(RecordCipher {
            engine,
            iv: keys.iv.to_vec(),
            tls13,
            explicit_nonce: !tls13
                && matches!(protection, Protection::Gcm { .. } | Protection::Ccm { .. }),
            seq: 0,
        })
    }

    /// Opens one record in place: its body becomes the plaintext (for TLS 1.3 still with the
    /// inner content type and padding at the end). The sequence number moves on either way, as
    /// the sender's did.
    pub fn open(&mut self, record: &mut Record) -> Result<(), OpenError> {
        let seq = self.seq;
        self.seq += 1;
        match &mut self.engine {
            Engine::Aead(aead) => {
                let mut nonce = [0u8; 12];
                if self.explicit_nonce {
                    let explicit = record.body.get(..8).ok_or(OpenError::Malformed)?;
                    nonce[..4].copy_from_slice(self.iv.get(..4).ok_or(OpenError::Malformed)?);
                    nonce[4..].copy_from_slice(explicit);
                    record.body.drain(..8);
                } else {
                    nonce.copy_from_slice(self.iv.get(..12).ok_or(OpenError::Malformed)?);
                    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                        *n ^= s;
                    }
                }
                // TLS 1.3 authenticates the record header; TLS 1.2 the fields of RFC 5246.
                let header;
                let fields;
                let aad: &[u8] = if self.tls13 {
                    header = record.header();
                    &header
                } else {
                    let plain_len = record
                        .body
                        .len()
                        .checked_sub(aead.tag_len())
                        .ok_or(OpenError::Malformed)?;
                    fields = tls12_aad(seq, record, plain_len);
                    &fields
                };
                aead.open(nonce, aad, &mut record.body)
            }
            Engine::Cbc {
                key,
                mac,
                encrypt_then_mac,
                chained_iv,
            } => open_cbc(seq, record, key, mac, *encrypt_then_mac, chained_iv),
        }
    }
}

/// seq_num + type + version + length (RFC 5246 6.2.3.3).
fn tls12_aad(seq: u64, record: &Record, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = record.content_type;
    aad[9..11].copy_from_slice(&record.version);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// A record MAC keyed once per direction: HMAC's keying costs two hash blocks, as much as the
/// MAC of a short record itself.
enum RecordMac {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha384(Box<Hmac<Sha384>>),
}

impl RecordMac {
    fn new(mac: MacHash, key: &[u8]) -> Option<RecordMac> {
        fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8]) -> Option<M> {
            <M as hmac::digest::KeyInit>::new_from_slice(key).ok()
        }
        Some(match mac {
            MacHash::Sha1 => RecordMac::Sha1(keyed(key)?),
            MacHash::Sha256 => RecordMac::Sha256(keyed(key)?),
            MacHash::Sha384 => RecordMac::Sha384(Box::new(keyed(key)?)),
        })
    }

    fn output_len(&self) -> usize {
        match self {
            RecordMac::Sha1(_) => MacHash::Sha1.output_len(),
            RecordMac::Sha256(_) => MacHash::Sha256.output_len(),
            RecordMac::Sha384(_) => MacHash::Sha384.output_len(),
        }
    }

    /// Whether `expected` is the MAC of `parts` (compared in constant time).
    fn verifies(&self, parts: &[&[u8]], expected: &[u8]) -> bool {
        fn run<M: Mac + Clone>(keyed: &M, parts: &[&[u8]], expected: &[u8]) -> bool {
            let mut m = keyed.clone();
            parts.iter().for_each(|p| m.update(p));
            m.verify_slice(expected).is_ok()
        }
        match self {
            RecordMac::Sha1(m) => run(m, parts, expected),
            RecordMac::Sha256(m) => run(m, parts, expected),
            RecordMac::Sha384(m) => run(m.as_ref(), parts, expected),
        }
    }
}

fn cbc_decrypt(key: &[u8], iv: &[u8], data: &mut [u8]) -> Result<(), OpenError> {
    let done = match key.len() {
        16 => cbc::Decryptor::<Aes128>::new_from_slices(key, iv)
            .map_err(|_| OpenError::Malformed)?
            .decrypt_padded_mut::<NoPadding>(data)
            .is_ok(),
        32 => cbc::Decryptor::<Aes256>::new_from_slices(key, iv)
            .map_err(|_| OpenError::Malformed)?
            .decrypt_padded_mut::<NoPadding>(data)
            .is_ok(),
        _ => false,
    };
    done.then_some(()).ok_or(OpenError::Malformed)
}

/// Checks and removes the HMAC at the end of the record's body, computed over the sequence
/// number, header fields and the rest of the body. A body too short to hold one is `short`.
fn strip_mac(
    seq: u64,
    record: &mut Record,
    mac: &RecordMac,
    short: OpenError,
) -> Result<(), OpenError> {
    let (content, received_mac) = record
        .body
        .len()
        .checked_sub(mac.output_len())
        .and_then(|split| record.body.split_at_checked(split))
        .ok_or(short)?;
    let content_len = content.len();
    let aad = tls12_aad(seq, record, content_len);
    if !mac.verifies(&[&aad, content], received_mac) {
        return Err(OpenError::Authentication);
    }
    record.body.truncate(content_len);
    Ok(())
}

/// AES-CBC with HMAC: MAC-then-encrypt by default, encrypt-then-MAC when both sides agreed to it
/// (RFC 7366). From TLS 1.1 each record starts with its IV.
fn open_cbc(
    seq: u64,
    record: &mut Record,
    key: &[u8],
    mac: &RecordMac,
    encrypt_then_mac: bool,
    chained_iv: &mut Option<Vec<u8>>,
) -> Result<(), OpenError> {
    if encrypt_then_mac {
        strip_mac(seq, record, mac, OpenError::Malformed)?;
    }
    let body = &mut record.body;
    let iv = match chained_iv {
        Some(iv) => iv.clone(),
        None => {
            if body.len() < 16 {
                return Err(OpenError::Malformed);
            }
            body.drain(..16).collect()
        }
    };
    if body.is_empty() || body.len() % 16 != 0 {
        return Err(OpenError::Malformed);
    }
    if let Some(next) = chained_iv {
        // The last ciphertext block is the IV of the next record.
        let last_block = body.last_chunk::<16>().ok_or(OpenError::Malformed)?;
        *next = last_block.to_vec();
    }
    cbc_decrypt(key, &iv, body)?;
    let pad = *body.last().ok_or(OpenError::Malformed)? as usize + 1;
    let padding = body
        .len()
        .checked_sub(pad)
        .and_then(|start| body.get(start..));
    let padding_ok = padding.is_some_and(|padding| padding.iter().all(|&b| b as usize + 1 == pad));
    if !padding_ok {
        return Err(OpenError::Authentication);
    }
    body.truncate(body.len() - pad);
    if !encrypt_then_mac {
        strip_mac(seq, record, mac, OpenError::Authentication)?;
    }
    Ok(())
}
