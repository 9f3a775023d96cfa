//! The real binary in a real terminal (tmux): open a sample, move to a session, open its
//! dialogue and ladder, filter, quit; the terminal is restored afterwards.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

struct Tmux {
    name: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let name = format!("mailscope-test-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "120", "-y", "40"])
            .arg(command)
            .status()
            .expect("tmux runs");
        assert!(status.success());
        Tmux { name }
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            Command::new("tmux")
                .args(["send-keys", "-t", &self.name, key])
                .status()
                .unwrap();
        }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen once it shows `text` (bounded wait).
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) || start.elapsed() > Duration::from_secs(10) {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn open_move_filter_and_quit_in_a_real_terminal() {
    let binary = env!("CARGO_BIN_EXE_mailscope");
    let sample = common::sample("smtp-plain.pcap");
    let tmux = Tmux::start(&format!(
        "{binary} {} ; echo SHELL-AGAIN; sleep 20",
        sample.display()
    ));
    let list = tmux.wait_for("3 sessions (3 shown)");
    assert!(list.contains("3 sessions (3 shown)"), "{list}");
    assert!(list.contains("127.0.0.1:25"));

    tmux.keys(&["j", "Enter"]);
    let dialogue = tmux.wait_for("C: ");
    assert!(dialogue.contains("Session 2"), "{dialogue}");
    assert!(dialogue.contains("S: 220"));

    tmux.keys(&["n", "Enter"]);
    let message = tmux.wait_for("MIME structure");
    assert!(message.contains("Subject:"), "{message}");
    assert!(message.contains("MAIL FROM"));
    tmux.keys(&["Escape", "Tab"]);
    let ladder = tmux.wait_for("▶│");
    assert!(
        ladder.contains("client") && ladder.contains("server"),
        "{ladder}"
    );

    tmux.keys(&["Escape", "/"]);
    tmux.keys(&["proto:pop3", "Enter"]);
    let filtered = tmux.wait_for("(0 shown)");
    assert!(filtered.contains("3 sessions (0 shown)"), "{filtered}");

    tmux.keys(&["q"]);
    let after = tmux.wait_for("SHELL-AGAIN");
    assert!(after.contains("SHELL-AGAIN"), "{after}");
    assert!(
        !after.contains("sessions ("),
        "the UI's screen is gone: {after}"
    );
}
