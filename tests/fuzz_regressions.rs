//! Every input the fuzz targets (`fuzz/`) crashed on, replayed through the same stage on stable
//! Rust: tests/fuzz-regressions/TARGET/NAME. Each crashed mailscope before its fix.

mod common;

use mailscope::fuzzing;
use mailscope::tls::KeyLog;

#[test]
fn crashes_found_by_fuzzing_stay_fixed() {
    let mut keys = KeyLog::default();
    for name in [
        "smtp-auth-starttls.keys",
        "tls-ciphers.keys",
        "tls-legacy.keys",
    ] {
        keys.add(&std::fs::read(common::sample(name)).unwrap());
    }
    keys.finish();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut replayed = 0;
    for target in std::fs::read_dir(&root).unwrap() {
        let target = target.unwrap().path();
        let name = target.file_name().unwrap().to_str().unwrap().to_string();
        for input in std::fs::read_dir(&target).unwrap() {
            let input = input.unwrap().path();
            eprintln!("{name}: {}", input.display());
            assert!(
                fuzzing::run(&name, &std::fs::read(&input).unwrap(), &keys),
                "{name}"
            );
            replayed += 1;
        }
    }
    assert!(replayed > 0);
}
