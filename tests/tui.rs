//! The real binary in a real terminal (tmux): open a sample, move to a session, open its
//! dialogue and ladder, filter, quit; the terminal is restored afterwards.

mod common;

use common::Tmux;

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
    // Escape and the next key in one read would be Alt+key: they go one at a time.
    tmux.keys(&["Escape"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    tmux.keys(&["Tab"]);
    let ladder = tmux.wait_for("▶│");
    assert!(
        ladder.contains("client") && ladder.contains("server"),
        "{ladder}"
    );

    tmux.keys(&["Escape"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    tmux.keys(&["/"]);
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
