//! `mailscope export` through the real binary: each .eml holds exactly the bytes the client
//! sent (SHA-256 from samples/MANIFEST.json), each attachment is the original file, there is a
//! transcript per session, and hostile names from the capture never leave the folder.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn export(captures: &[&Path], dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .arg("export")
        .args(captures)
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn eml_and_attachments_are_the_bytes_that_were_sent() {
    let names = ["smtp-plain.pcap", "smtp-auth-cleartext.pcap"];
    let dir = tempfile::tempdir().unwrap();
    let captures: Vec<PathBuf> = names.iter().map(|n| common::sample(n)).collect();
    export(
        &captures.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        dir.path(),
    );

    let manifest = common::manifest();
    let mut sent = BTreeSet::new();
    let mut sessions = 0;
    for name in names {
        for session in manifest["captures"][name]["sessions"].as_array().unwrap() {
            sessions += 1;
            for m in session["messages_sent"].as_array().unwrap() {
                sent.insert(m["sha256"].as_str().unwrap().to_string());
            }
        }
    }
    let files = common::files_under(dir.path());
    let eml: BTreeSet<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| sha(&std::fs::read(p).unwrap()))
        .collect();
    assert_eq!(eml, sent);
    let transcripts = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .count();
    assert_eq!(transcripts, sessions);
    for original in ["noise.png", "report.pdf"] {
        let bytes = std::fs::read(common::sample("files").join(original)).unwrap();
        let exported: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.file_name().unwrap() == original)
            .collect();
        assert!(!exported.is_empty(), "{original} exported");
        for path in exported {
            assert_eq!(std::fs::read(path).unwrap(), bytes, "{}", path.display());
        }
    }
}

#[test]
fn hostile_attachment_names_stay_in_the_folder() {
    // The same capture with the attachment renamed (same length, so the TCP stream is intact).
    let mut bytes = std::fs::read(common::sample("smtp-plain.pcap")).unwrap();
    let mut renamed = 0;
    while let Some(at) = bytes.windows(9).position(|w| w == b"noise.png") {
        bytes[at..at + 9].copy_from_slice(b"../../evl");
        renamed += 1;
    }
    assert!(
        renamed >= 2,
        "the name is in Content-Type and Content-Disposition"
    );
    let work = tempfile::tempdir().unwrap();
    let capture = work.path().join("hostile.pcap");
    std::fs::write(&capture, &bytes).unwrap();
    let out_dir = work.path().join("out");
    export(&[&capture], &out_dir);
    for path in common::files_under(work.path()) {
        assert!(
            path == capture || path.starts_with(&out_dir),
            "{} escaped",
            path.display()
        );
    }
    let attachments: Vec<PathBuf> = common::files_under(&out_dir)
        .into_iter()
        .filter(|p| p.parent().unwrap() != out_dir)
        .collect();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].file_name().unwrap(), "_.._evl");
}

/// A second export into the same folder writes beside the first, never over it, and its index
/// links to its own files: credentials, findings and the JSON index of the second run.
#[test]
fn a_second_export_into_one_folder_indexes_its_own_files() {
    let capture = common::sample("smtp-auth-cleartext.pcap");
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    export(&[&capture], &out_dir);
    let first: Vec<PathBuf> = common::files_under(&out_dir);
    let read = |name: &str| std::fs::read(out_dir.join(name)).unwrap();
    let first_bytes: Vec<Vec<u8>> = first.iter().map(|p| std::fs::read(p).unwrap()).collect();
    export(&[&capture], &out_dir);
    // The first run's files are as they were.
    for (path, bytes) in first.iter().zip(&first_bytes) {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
    let index: serde_json::Value = serde_json::from_slice(&read("index-2.json")).unwrap();
    assert_eq!(index["credentials"], "credentials-2.csv");
    assert_eq!(index["findings_file"], "findings-2.json");
    // The same capture: the same credentials and findings, in the second run's files.
    assert_eq!(read("credentials-2.csv"), read("credentials.csv"));
    assert_eq!(read("findings-2.json"), read("findings.json"));
    let html = String::from_utf8(read("index-2.html")).unwrap();
    for link in ["credentials-2.csv", "findings-2.json", "index-2.json"] {
        assert!(html.contains(&format!("href=\"{link}\"")), "{link}");
    }
}

/// Run as root into a folder another user owns (named relative to it, as `sudo mailscope export
/// cap out` does), the export leaves nothing root owns: every folder and file it made is that
/// user's; and a link planted where an attachment folder will go is not followed.
#[test]
fn exports_by_root_into_a_users_folder_belong_to_that_user() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    if work.path().metadata().unwrap().uid() != 0 {
        eprintln!("not root: nothing to hand over, nothing to check");
        return;
    }
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    // A folder of the user's with a link where smtp-plain.pcap's attachment folder would go.
    let out = home.join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    let planted = out.join("0001-01-Отчёт_за_квартал__проверка.attachments");
    std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
    for dir in ["out", "fresh/sub"] {
        let run = Command::new(env!("CARGO_BIN_EXE_mailscope"))
            .args([
                "export",
                common::sample("smtp-plain.pcap").to_str().unwrap(),
                dir,
            ])
            .current_dir(&home)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let made = home.join(dir);
        let mut paths = common::files_under(&made);
        assert!(paths.len() > 5, "{paths:?}");
        assert!(
            paths.iter().any(|p| p.parent().unwrap() != made),
            "an attachment folder"
        );
        paths.extend(
            paths
                .clone()
                .iter()
                .filter_map(|p| p.parent().map(Path::to_path_buf)),
        );
        if dir == "fresh/sub" {
            paths.push(home.join("fresh"));
        }
        for path in paths {
            let meta = path.symlink_metadata().unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (65534, 65534),
                "{}",
                path.display()
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing through the link"
    );
}

/// The samples with logins, cleartext and inside TLS.
const WITH_LOGINS: [&str; 5] = [
    "pop3.pcap",
    "imap.pcap",
    "smtp-auth-cleartext.pcap",
    "smtp-auth-starttls.pcap",
    "tls-mixed.pcapng",
];

/// mailscope `before` WITH_LOGINS `after`, with their key logs; its standard output.
fn on_samples_with_logins(before: &[&str], after: &[&std::path::Path]) -> Vec<u8> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(before)
        .args(WITH_LOGINS.map(common::sample))
        .args(after)
        .args([
            "--keylog",
            common::sample("smtp-auth-starttls.keys").to_str().unwrap(),
        ])
        .args([
            "--keylog",
            common::sample("tls-mixed.keys").to_str().unwrap(),
        ])
        .arg("-q")
        .env_remove("SSLKEYLOGFILE")
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The rows of DIR/credentials.csv as Python's csv module reads them.
fn credentials_rows(dir: &Path) -> Vec<serde_json::Value> {
    let read = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys; print(json.dumps(list(csv.DictReader(open(sys.argv[1], newline='')))))",
        ])
        .arg(dir.join("credentials.csv"))
        .output()
        .unwrap();
    serde_json::from_slice(&read.stdout).unwrap()
}

/// credentials.csv, read by Python's csv module: every credential the clients used, with its
/// result; CRAM-MD5 and APOP as crack lines that the real password reproduces.
#[test]
fn credentials_csv_has_every_login_the_clients_made() {
    use hmac::Mac;
    use md5::Digest;
    let manifest = common::manifest();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    on_samples_with_logins(&["export"], &[&out]);
    let rows = credentials_rows(&out);
    let mut checked = 0;
    for file in WITH_LOGINS {
        for session in manifest["captures"][file]["sessions"].as_array().unwrap() {
            let port = session["client_port"].as_u64().unwrap();
            for credential in session["credentials"].as_array().unwrap() {
                // A malformed AUTH has neither: its row has them empty.
                let user = credential["username"].as_str().unwrap_or("");
                let password = credential["password"].as_str().unwrap_or("");
                let row = rows
                    .iter()
                    .find(|r| {
                        r["client"].as_str().unwrap().ends_with(&format!(":{port}"))
                            && r["username"] == user
                            && r["result"]
                                == if credential["success"] == true {
                                    "accepted"
                                } else {
                                    "refused"
                                }
                    })
                    .unwrap_or_else(|| panic!("{file}: {user} from port {port}"));
                let secret = row["secret"].as_str().unwrap();
                match row["mechanism"].as_str().unwrap() {
                    "CRAM-MD5" => {
                        let (challenge, digest) = secret.rsplit_once(' ').unwrap();
                        let mut mac =
                            hmac::Hmac::<md5::Md5>::new_from_slice(password.as_bytes()).unwrap();
                        mac.update(challenge.as_bytes());
                        assert_eq!(mailscope::hex::encode(&mac.finalize().into_bytes()), digest);
                        assert!(row["crack"].as_str().unwrap().starts_with("$cram_md5$"));
                    }
                    "APOP" => {
                        let (timestamp, digest) = secret.rsplit_once(' ').unwrap();
                        let md5 = md5::Md5::digest(format!("{timestamp}{password}"));
                        assert_eq!(mailscope::hex::encode(&md5), digest);
                        assert_eq!(row["crack"], format!("{digest}:{timestamp}"));
                    }
                    _ => assert_eq!(secret, password, "{file}: {user}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "{checked}");
}

/// `--redact`: no password the sample clients used appears in --json, --text --full or any
/// file `export` writes, neither as text nor as the base64 the client sent. Without it, the
/// JSON carries them (so this test can fail).
#[test]
fn redact_leaves_no_password_anywhere() {
    let manifest = common::manifest();
    let mut secrets: Vec<String> = Vec::new();
    for file in WITH_LOGINS {
        for session in manifest["captures"][file]["sessions"].as_array().unwrap() {
            for credential in session["credentials"].as_array().unwrap() {
                if let Some(password) = credential["password"].as_str() {
                    secrets.push(password.to_string());
                }
                for line in credential["auth_lines"].as_array().into_iter().flatten() {
                    let last = line.as_str().unwrap().rsplit(' ').next().unwrap();
                    if last.len() > 8 {
                        secrets.push(last.to_string());
                    }
                }
            }
        }
    }
    assert!(secrets.len() >= 10);
    let dir = tempfile::tempdir().unwrap();
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    let clear = on_samples_with_logins(&["--json"], &[]);
    assert!(
        secrets.iter().any(|s| contains(&clear, s)),
        "the JSON has them unredacted"
    );
    let mut everything = on_samples_with_logins(&["--json", "--redact"], &[]);
    everything.extend(on_samples_with_logins(
        &["--text", "--full", "--redact"],
        &[],
    ));
    let out = dir.path().join("export");
    on_samples_with_logins(&["export", "--redact"], &[&out]);
    let mut stack = vec![out];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            everything.extend(std::fs::read(&path).unwrap());
        }
    }
    for secret in &secrets {
        assert!(!contains(&everything, secret), "{secret:?} leaked");
    }
    assert!(contains(&everything, "<redacted>"));
}

/// samples/ntlm.pcap (curl's NTLM logins to Dovecot over IMAP, POP3 and SMTP through Postfix,
/// one inside STARTTLS, two with a wrong password): each becomes a NetNTLMv2 line in
/// credentials.csv whose NTProofStr the password the client used reproduces (MS-NLMP 3.3.2),
/// over the server challenge tshark decodes.
#[test]
fn ntlm_logins_are_netntlmv2_lines_that_the_password_reproduces() {
    use hmac::Mac;
    use md4::Digest;
    type HmacMd5 = hmac::Hmac<md5::Md5>;
    let manifest = common::manifest();
    let truth = &manifest["captures"]["ntlm.pcap"];
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .arg("export")
        .arg(common::sample("ntlm.pcap"))
        .arg("--keylog")
        .arg(common::sample("ntlm.keys"))
        .arg(&out)
        .arg("-q")
        .env_remove("SSLKEYLOGFILE")
        .status()
        .unwrap();
    assert!(status.success());
    let rows = credentials_rows(&out);
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let mut checked = 0;
    for session in truth["sessions"].as_array().unwrap() {
        let port = session["client_port"].as_u64().unwrap();
        let credential = &session["credentials"][0];
        let row = rows
            .iter()
            .find(|r| r["client"].as_str().unwrap().ends_with(&format!(":{port}")))
            .unwrap_or_else(|| panic!("no row for port {port}"));
        assert_eq!(row["mechanism"], "NTLM");
        assert_eq!(row["username"], credential["username"]);
        let accepted = if credential["success"] == true {
            "accepted"
        } else {
            "refused"
        };
        assert_eq!(row["result"], accepted);
        let line = row["crack"].as_str().unwrap();
        let f: Vec<&str> = line.split(':').collect();
        let [user, "", domain, challenge, proof, blob] = f.as_slice() else {
            panic!("not a NetNTLMv2 line: {line}");
        };
        assert_eq!(*user, credential["username"].as_str().unwrap());
        assert_eq!(*domain, credential["domain"].as_str().unwrap());
        let tshark_challenge = session["ntlm"]["tshark"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|m| m["ntlmssp.ntlmserverchallenge"].as_str())
            .unwrap();
        assert_eq!(*challenge, tshark_challenge);
        let password = credential["password"].as_str().unwrap();
        let nt_hash = md4::Md4::digest(utf16(password));
        let mut owf = HmacMd5::new_from_slice(&nt_hash).unwrap();
        owf.update(&utf16(&format!("{}{domain}", user.to_uppercase())));
        let owf = owf.finalize().into_bytes();
        let mut mac = HmacMd5::new_from_slice(&owf).unwrap();
        mac.update(&mailscope::hex::decode(challenge).unwrap());
        mac.update(&mailscope::hex::decode(blob).unwrap());
        assert_eq!(
            mailscope::hex::encode(&mac.finalize().into_bytes()),
            *proof,
            "{line}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");
}
