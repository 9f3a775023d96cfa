//! TLS record decryption, the hot part of reading encrypted mail: full-size (16 KiB)
//! application data records opened with AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 as
//! TLS 1.3 protects them. The records are sealed here with ring, the reference the opener
//! must agree with. Run with `cargo bench --bench tls`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mailscope::capture::Timestamp;
use mailscope::tls::cipher::{DirectionKeys, Protection, RecordCipher};
use mailscope::tls::record::{Record, APPLICATION_DATA};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

const RECORDS: u64 = 64;
const PLAINTEXT: usize = 16 * 1024;

fn sealed(algorithm: &'static aead::Algorithm, key: &[u8], iv: &[u8; 12]) -> Vec<Record> {
    let sealer = LessSafeKey::new(UnboundKey::new(algorithm, key).unwrap());
    (0..RECORDS)
        .map(|seq| {
            let mut nonce = *iv;
            for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= s;
            }
            // TLSInnerPlaintext: the data, then its real content type.
            let mut body: Vec<u8> = (0..PLAINTEXT)
                .map(|i| (i * 7 + seq as usize) as u8)
                .collect();
            body.push(APPLICATION_DATA);
            let len = (body.len() + algorithm.tag_len()) as u16;
            let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
            sealer
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(header),
                    &mut body,
                )
                .unwrap();
            Record {
                content_type: APPLICATION_DATA,
                version: [3, 3],
                body,
                ts: Timestamp(0),
            }
        })
        .collect()
}

fn open_records(c: &mut Criterion) {
    let iv = [7u8; 12];
    let mut group = c.benchmark_group("tls13_open_16k_records");
    group.throughput(Throughput::Bytes(RECORDS * PLAINTEXT as u64));
    for (name, algorithm, protection, key_len) in [
        (
            "aes128gcm",
            &aead::AES_128_GCM,
            Protection::Gcm { key_len: 16 },
            16,
        ),
        (
            "aes256gcm",
            &aead::AES_256_GCM,
            Protection::Gcm { key_len: 32 },
            32,
        ),
        (
            "chacha20poly1305",
            &aead::CHACHA20_POLY1305,
            Protection::ChaCha20Poly1305,
            32,
        ),
    ] {
        let key = vec![0x42u8; key_len];
        let records = sealed(algorithm, &key, &iv);
        group.bench_function(name, |b| {
            b.iter_batched(
                || records.clone(),
                |mut records| {
                    let keys = DirectionKeys {
                        key: &key,
                        iv: &iv,
                        mac_key: &[],
                    };
                    let mut cipher =
                        RecordCipher::new(protection, keys, true, false, false).unwrap();
                    for record in &mut records {
                        cipher.open(record).expect("the sealed record opens");
                    }
                    records
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, open_records);
criterion_main!(benches);
