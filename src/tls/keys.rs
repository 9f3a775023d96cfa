//! Record keys from logged secrets: the TLS 1.0-1.2 PRF over the master secret (RFC 5246 5,
//! RFC 2246 5) and the TLS 1.3 HKDF-Expand-Label (RFC 8446 7.1). The primitives are the
//! RustCrypto hmac/hkdf/sha crates; only the TLS-specific framing of them is written here.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Sha256, Sha384};

/// The hash a suite's PRF or key schedule is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// TLS 1.0 and 1.1: MD5 and SHA-1 together.
    Md5Sha1,
    Sha256,
    Sha384,
}

impl Hash {
    pub fn output_len(self) -> usize {
        match self {
            Hash::Md5Sha1 => 36,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

/// P_hash (RFC 5246 5): HMAC chained until `out` is full.
fn p_hash<M: Mac + hmac::digest::KeyInit + Clone>(secret: &[u8], seed: &[u8], out: &mut [u8]) {
    let Ok(keyed) = <M as hmac::digest::KeyInit>::new_from_slice(secret) else {
        return;
    };
    let mut a = {
        let mut m = keyed.clone();
        m.update(seed);
        m.finalize().into_bytes().to_vec()
    };
    let mut filled = 0;
    while let Some(unfilled) = out
        .get_mut(filled..)
        .filter(|unfilled| !unfilled.is_empty())
    {
        let mut m = keyed.clone();
        m.update(&a);
        m.update(seed);
        let block = m.finalize().into_bytes();
        for (byte, &produced) in unfilled.iter_mut().zip(block.iter()) {
            *byte = produced;
        }
        filled += block.len().min(unfilled.len());
        let mut m = keyed.clone();
        m.update(&a);
        a = m.finalize().into_bytes().to_vec();
    }
}

/// PRF(secret, label, seed) of `len` bytes.
pub fn prf(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let seed = [label, seed].concat();
    let mut out = vec![0; len];
    match hash {
        Hash::Sha256 => p_hash::<Hmac<Sha256>>(secret, &seed, &mut out),
        Hash::Sha384 => p_hash::<Hmac<Sha384>>(secret, &seed, &mut out),
        Hash::Md5Sha1 => {
            // Each half of the secret keys one hash (the halves share a byte when it is odd).
            let half = secret.len().div_ceil(2);
            let mut sha = vec![0; len];
            let first_half = secret.get(..half).unwrap_or_default();
            let second_half = secret.get(secret.len() - half..).unwrap_or_default();
            p_hash::<Hmac<Md5>>(first_half, &seed, &mut out);
            p_hash::<Hmac<Sha1>>(second_half, &seed, &mut sha);
            out.iter_mut().zip(sha).for_each(|(o, s)| *o ^= s);
        }
    }
    out
}

/// TLS 1.2 and earlier: the key block of `len` bytes for this connection.
pub fn key_block(
    hash: Hash,
    master: &[u8],
    client_random: &[u8],
    server_random: &[u8],
    len: usize,
) -> Vec<u8> {
    let seed = [server_random, client_random].concat();
    prf(hash, master, b"key expansion", &seed, len)
}

/// A TLS 1.3 secret keyed for HKDF-Expand-Label (RFC 8446 7.1). Keying costs as much as one
/// expansion, so a secret that gives several values (a record key and its IV) is keyed once.
pub enum Prk {
    Sha256(Hkdf<Sha256>),
    Sha384(Box<Hkdf<Sha384>>),
}

impl Prk {
    pub fn new(hash: Hash, secret: &[u8]) -> Option<Prk> {
        match hash {
            Hash::Sha256 => Some(Prk::Sha256(Hkdf::from_prk(secret).ok()?)),
            Hash::Sha384 => Some(Prk::Sha384(Box::new(Hkdf::from_prk(secret).ok()?))),
            Hash::Md5Sha1 => None,
        }
    }

    /// HKDF-Expand-Label(secret, label, "", len).
    pub fn expand_label(&self, label: &str, len: usize) -> Option<Vec<u8>> {
        let full_len = "tls13 ".len() + label.len();
        let mut info = Vec::with_capacity(4 + full_len);
        info.extend_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
        info.push(u8::try_from(full_len).ok()?);
        info.extend_from_slice(b"tls13 ");
        info.extend_from_slice(label.as_bytes());
        info.push(0);
        let mut out = vec![0; len];
        let expanded = match self {
            Prk::Sha256(hkdf) => hkdf.expand(&info, &mut out),
            Prk::Sha384(hkdf) => hkdf.expand(&info, &mut out),
        };
        expanded.ok().map(|_| out)
    }
}

/// HKDF-Expand-Label(secret, label, "", len) of TLS 1.3.
pub fn expand_label(hash: Hash, secret: &[u8], label: &str, len: usize) -> Option<Vec<u8>> {
    Prk::new(hash, secret)?.expand_label(label, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Vec<u8> {
        crate::hex::decode(text).unwrap()
    }

    /// The TLS 1.2 PRF test vector for SHA-256 published on the IETF TLS list (also in
    /// Go's crypto/tls prf_test.go).
    #[test]
    fn prf_sha256_vector() {
        let secret = decode("9bbe436ba940f017b17652849a71db35");
        let seed = decode("a0ba9f936cda311827a6f796ffd5198c");
        let out = prf(Hash::Sha256, &secret, b"test label", &seed, 100);
        assert_eq!(
            out,
            decode(
                "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66"
            )
        );
    }

    /// RFC 8448 (TLS 1.3 traces), simple 1-RTT handshake: the server handshake traffic key
    /// and IV from its secret.
    #[test]
    fn expand_label_rfc8448() {
        let secret = decode("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
        assert_eq!(
            expand_label(Hash::Sha256, &secret, "key", 16).unwrap(),
            decode("3fce516009c21727d0f2e4e86ee403bc")
        );
        assert_eq!(
            expand_label(Hash::Sha256, &secret, "iv", 12).unwrap(),
            decode("5d313eb2671276ee13000b30")
        );
    }
}
