//! What the fuzz targets share: the samples' key logs, so that mutated TLS still decrypts.
//! The targets' bodies live in `mailscope::fuzzing`, where `tests/fuzz_regressions.rs` replays
//! the crashes they found.

use std::sync::OnceLock;

use mailscope::tls::KeyLog;

/// The key logs of the samples, read once.
pub fn sample_keys() -> &'static KeyLog {
    static KEYS: OnceLock<KeyLog> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = KeyLog::default();
        for text in [
            &include_bytes!("../../samples/smtp-auth-starttls.keys")[..],
            include_bytes!("../../samples/tls-ciphers.keys"),
            include_bytes!("../../samples/tls-legacy.keys"),
            include_bytes!("../../samples/tls-mixed.keys"),
            include_bytes!("../../samples/findings.keys"),
            include_bytes!("../../samples/ntlm.keys"),
        ] {
            keys.add(text);
        }
        keys.finish();
        keys
    })
}

/// Defines the fuzz target of one stage of `mailscope::fuzzing`.
#[macro_export]
macro_rules! stage {
    ($name:literal) => {
        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            mailscope::fuzzing::run($name, data, mailscope_fuzz::sample_keys());
        });
    };
}
