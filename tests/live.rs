//! Live capture on the loopback interface against the real Postfix of the mail lab. These need
//! root and the lab running, so they are ignored by default; `.ci/run` starts the lab and runs
//! them (scripts/test with MAILSCOPE_LIVE=1).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

mod common;

fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailscope"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailscope")
}

/// A short SMTP dialogue with Postfix on 127.0.0.1:25: returns (client port, bytes sent, bytes
/// received) as counted on the socket.
fn smtp_dialogue() -> (u16, usize, usize) {
    let stream =
        TcpStream::connect("127.0.0.1:25").expect("Postfix on 127.0.0.1:25 (scripts/lab/setup.sh)");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = stream.local_addr().unwrap().port();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let (mut sent, mut received) = (0, 0);
    let mut read_reply = |received: &mut usize| loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("reply line");
        assert!(n > 0, "server closed early");
        *received += n;
        if line.as_bytes().get(3) == Some(&b' ') {
            return line;
        }
    };
    assert!(read_reply(&mut received).starts_with("220"));
    for (command, code) in [
        ("EHLO live-test.example\r\n", "250"),
        ("NOOP\r\n", "250"),
        ("QUIT\r\n", "221"),
    ] {
        writer.write_all(command.as_bytes()).unwrap();
        sent += command.len();
        assert!(read_reply(&mut received).starts_with(code));
    }
    drop(writer);
    (port, sent, received)
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
#[ignore = "needs root and the mail lab; .ci/run runs it"]
fn live_capture_sees_the_dialogue_and_ctrl_c_flushes() {
    let child = start(&["flows", "--json", "-i", "lo"]);
    sleep(Duration::from_millis(1500)); // let libpcap open the interface
    let (port, sent, received) = smtp_dialogue();
    sleep(Duration::from_millis(500));
    interrupt(&child);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Ctrl-C ends the capture promptly"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let flow = flows
        .iter()
        .find(|f| f["client"] == format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("our connection in {flows:?}"));
    assert_eq!(flow["server"], "127.0.0.1:25");
    assert_eq!(flow["roles"], "handshake");
    assert_eq!(flow["client_to_server"]["bytes"], sent);
    assert_eq!(flow["server_to_client"]["bytes"], received);
    assert_eq!(flow["client_to_server"]["gaps"], 0);
}

#[test]
#[ignore = "needs root and the mail lab; .ci/run runs it"]
fn missing_interface_and_missing_permission_say_what_to_do() {
    let out = start(&["flows", "-i", "nosuchif0"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no interface named \"nosuchif0\"") && err.contains("lo"),
        "{err}"
    );

    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_mailscope"))
        .args(["flows", "-i", "lo"])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("setcap cap_net_raw,cap_net_admin=eip"),
        "{err}"
    );
}

/// The terminal UI on a live capture: a session appears as it happens, with its dialogue.
#[test]
#[ignore = "needs root and the mail lab; .ci/run runs it"]
fn the_terminal_ui_follows_a_live_capture() {
    let tmux = common::Tmux::start(&format!(
        "{} -i lo; echo SHELL-AGAIN; sleep 20",
        env!("CARGO_BIN_EXE_mailscope")
    ));
    let started = tmux.wait_for("live on lo");
    assert!(started.contains("live, following"), "{started}");
    // Give libpcap a moment to open the interface before the traffic starts.
    sleep(Duration::from_millis(500));
    let (port, _, _) = smtp_dialogue();
    let listed = tmux.wait_for(&format!("127.0.0.1:{port}"));
    assert!(listed.contains("127.0.0.1:25"), "{listed}");
    tmux.keys(&["G", "Enter"]);
    let dialogue = tmux.wait_for("S: 221");
    assert!(dialogue.contains("S: 220"), "{dialogue}");
    tmux.keys(&["C-c"]);
    let after = tmux.wait_for("SHELL-AGAIN");
    assert!(
        !after.contains("live on lo"),
        "the terminal is restored: {after}"
    );
}

/// The terminal UI with `--user nobody` reads key logs as nobody, after the interface is open:
/// a key log only root may read is refused (as root it would be read).
#[test]
#[ignore = "needs root and the mail lab; .ci/run runs it"]
fn the_terminal_ui_reads_key_logs_after_dropping_root() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("root-only.keys");
    std::fs::write(
        &keys,
        format!("CLIENT_RANDOM {} {}\n", "ab".repeat(32), "cd".repeat(48)),
    )
    .unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert!(std::fs::read(&keys).is_ok(), "root reads it");
    let tmux = common::Tmux::start(&format!(
        "{} -i lo --user nobody --keylog {}; echo SHELL-AGAIN; sleep 20",
        env!("CARGO_BIN_EXE_mailscope"),
        keys.display()
    ));
    let after = tmux.wait_for("SHELL-AGAIN");
    assert!(
        after.contains("cannot read key log") && after.contains("ermission denied"),
        "{after}"
    );
}

/// The ids a process runs with, from /proc: its (real, effective, saved, filesystem) uids and
/// gids, and its supplementary groups.
fn process_ids(pid: u32) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

/// `--user nobody`: once the interface is open the process is nobody for good (all four uids
/// and gids, none of root's groups), and it still captures.
#[test]
#[ignore = "needs root and the mail lab; .ci/run runs it"]
fn user_drops_root_after_opening_the_interface() {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (nobody, nogroup) = (id("-u"), id("-g"));
    let child = start(&["--user", "nobody", "--json", "-i", "lo"]);
    sleep(Duration::from_millis(1500));
    let (uids, gids, groups) = process_ids(child.id());
    assert_eq!(
        uids,
        vec![nobody; 4],
        "real, effective, saved and filesystem uid"
    );
    assert_eq!(
        gids,
        vec![nogroup; 4],
        "real, effective, saved and filesystem gid"
    );
    assert!(!groups.contains(&0), "root's group is gone: {groups:?}");
    let (port, _, _) = smtp_dialogue();
    sleep(Duration::from_millis(500));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains(&format!("\"client\":\"127.0.0.1:{port}\"")),
        "the capture after the drop holds our connection: {stdout}"
    );
    // libpcap's counts, read after the drop too.
    let stderr = String::from_utf8(out.stderr).unwrap();
    let counts = stderr
        .lines()
        .find_map(|l| l.strip_prefix("mailscope: live: "))
        .unwrap_or_else(|| panic!("no live counts in {stderr}"));
    let passed: u64 = counts.split(' ').next().unwrap().parse().unwrap();
    assert!(
        passed >= 10,
        "the dialogue's packets passed the filter: {counts}"
    );
    assert!(counts.contains(" 0 dropped by the kernel"), "{counts}");
}
