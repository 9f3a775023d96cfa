//! The UI on real samples, drawn into ratatui's TestBackend: what a user would read on screen
//! after each step. The reader runs to the end first, as it does for a small file.

use std::sync::mpsc::sync_channel;

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use sha2::Digest;

use mailscope::capture::{FileSource, PacketSource};
use mailscope::pipeline::{Config, Dissection};
use mailscope::tls::KeyLog;

use super::app::{Action, App, Screen};
use super::store::Item;
use super::worker::{self, Job};

fn sample(name: &str) -> String {
    format!("{}/samples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn loaded(file: &str, keylog: Option<&str>) -> App {
    loaded_with(sample(file), file, keylog, None)
}

fn loaded_path(path: &std::path::Path) -> App {
    let name = path.display().to_string();
    loaded_with(name.clone(), &name, None, None)
}

/// `hold_limit`: message body bytes kept in memory at most (the rest is spooled).
fn loaded_with(path: String, file: &str, keylog: Option<&str>, hold_limit: Option<usize>) -> App {
    let mut keys = KeyLog::default();
    if let Some(k) = keylog {
        keys.add(&std::fs::read(sample(k)).unwrap());
        keys.finish();
    }
    let source = FileSource::open(&path).unwrap();
    let job = Job {
        sources: vec![Box::new(source) as Box<dyn PacketSource>],
        dissection: Dissection {
            config: Config::default(),
            threads: 2,
            keys,
            live: false,
            followed: Vec::new(),
            redact: false,
        },
        analysis: Default::default(),
        total_bytes: None,
    };
    let (tx, rx) = sync_channel(1 << 20);
    worker::read(job, tx);
    let mut app = App::new(file.to_string(), false);
    app.store.hold_limit = hold_limit;
    while let Ok(update) = rx.try_recv() {
        app.store.apply(update);
    }
    assert!(app.store.done);
    app
}

fn screen(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| super::view::draw(frame, app))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

#[test]
fn session_list_dialogue_message_ladder_and_help() {
    let mut app = loaded("smtp-plain.pcap", None);
    let list = screen(&mut app, 120, 40);
    assert!(list.contains("3 sessions (3 shown)"), "{list}");
    assert!(list.contains("127.0.0.1:25"));
    assert!(list.contains("smtp"));

    app.handle(Action::Open);
    let dialogue = screen(&mut app, 120, 40);
    assert_eq!(app.screen, Screen::Dialogue);
    assert!(
        dialogue.contains("C: EHLO") || dialogue.contains("C: ehlo"),
        "{dialogue}"
    );
    assert!(dialogue.contains("S: 250"));
    assert!(dialogue.contains(" ms)"), "reply latency is shown");

    app.handle(Action::ToggleExplain);
    let teaching = screen(&mut app, 120, 40);
    assert!(
        teaching.contains("← client introduces itself"),
        "{teaching}"
    );

    // To the first message line, then open it.
    let entry = app.open_entry().unwrap();
    let at = entry
        .items
        .iter()
        .position(|i| matches!(i, Item::Message(_)))
        .unwrap();
    for _ in 0..at {
        app.handle(Action::Down);
    }
    app.handle(Action::Open);
    assert_eq!(app.screen, Screen::Message);
    let message = screen(&mut app, 120, 60);
    assert!(message.contains("Subject:"), "{message}");
    assert!(message.contains("MAIL FROM"));
    assert!(message.contains("MIME structure"));

    app.handle(Action::Back);
    app.handle(Action::SwitchPane);
    assert_eq!(app.screen, Screen::Ladder);
    let ladder = screen(&mut app, 120, 40);
    assert!(ladder.contains("client") && ladder.contains("server"));
    assert!(ladder.contains("▶│") && ladder.contains("│◀"), "{ladder}");

    app.handle(Action::Help);
    let help = screen(&mut app, 120, 40);
    assert!(help.contains("quit") && help.contains("filter"), "{help}");
}

#[test]
fn filter_language() {
    let mut app = loaded("tls-mixed.pcapng", Some("tls-mixed.keys"));
    let count = |app: &mut App, query: &str| {
        app.handle(Action::StartFilter);
        for c in query.chars() {
            app.handle(Action::FilterChar(c));
        }
        app.handle(Action::FilterDone);
        app.refresh();
        let n = app.visible.len();
        app.handle(Action::StartFilter);
        app.handle(Action::FilterCancel);
        n
    };
    assert_eq!(count(&mut app, ""), 6);
    assert_eq!(count(&mut app, "proto:imap"), 3);
    assert_eq!(count(&mut app, "proto:pop3"), 2);
    assert_eq!(count(&mut app, "tls:starttls"), 2);
    assert_eq!(count(&mut app, "tls:decrypted"), 6);
    assert_eq!(count(&mut app, "user:erin proto:imap"), 3);
    assert_eq!(count(&mut app, ":993"), 2);
    let mut plain = loaded("tls-mixed.pcapng", None);
    assert_eq!(count(&mut plain, "tls:failed"), 6);
}

#[test]
fn decrypted_session_shows_its_tls_and_masks_the_password_until_revealed() {
    let mut app = loaded("tls-mixed.pcapng", Some("tls-mixed.keys"));
    screen(&mut app, 140, 40);
    app.handle(Action::Open);
    let shown = screen(&mut app, 140, 40);
    assert!(shown.contains("TLS1.3 TLS_AES_256_GCM_SHA384"), "{shown}");
    assert!(shown.contains("decrypted"));
    assert!(
        shown.contains("certificate: CN=mail.example.test") || shown.contains("mail.example.test")
    );
    assert!(shown.contains("**** (r reveals)"));
    app.handle(Action::ToggleSecrets);
    let revealed = screen(&mut app, 140, 40);
    assert!(!revealed.contains("**** (r reveals)"));
}

#[test]
fn fits_in_80_by_24() {
    let mut app = loaded("imap.pcap", None);
    let small = screen(&mut app, 80, 24);
    assert!(small.lines().all(|l| l.chars().count() == 80));
    assert!(small.contains("sessions"));
    app.handle(Action::Open);
    let dialogue = screen(&mut app, 80, 24);
    assert!(dialogue.contains("LOGIN"), "{dialogue}");
}

/// The Subject, EHLO name, body and attachment name of this sample carry clear-screen, title,
/// OSC 52 clipboard and bidi sequences (sent by smtplib, stored by Postfix, fetched from
/// Dovecot): on every screen they are visible escapes, and no control character is drawn.
#[test]
fn escape_sequences_from_the_wire_never_reach_the_terminal() {
    let mut app = loaded("hostile-escapes.pcap", None);
    let mut screens = vec![screen(&mut app, 160, 50)];
    for session in 0..2 {
        app.selected = session;
        app.handle(Action::Open);
        screens.push(screen(&mut app, 160, 50));
        let entry = app.open_entry().unwrap();
        let messages: Vec<usize> = (0..entry.items.len())
            .filter(|&i| matches!(entry.items[i], Item::Message(_)))
            .collect();
        for at in messages {
            app.line = at;
            app.handle(Action::Open);
            screens.push(screen(&mut app, 160, 80));
            app.handle(Action::Back);
        }
        app.handle(Action::SwitchPane);
        screens.push(screen(&mut app, 160, 50));
        app.handle(Action::Back);
    }
    let all = screens.concat();
    for forbidden in ['\x1b', '\x07', '\u{202e}', '\r'] {
        assert!(!all.contains(forbidden), "{forbidden:?} reached the screen");
    }
    assert!(all.contains("\\x1b[2J"), "shown as a visible escape");
    assert!(
        all.contains("\\x1b]52;c;"),
        "the clipboard write is visible"
    );
    assert!(all.contains("\\u{202e}"), "the bidi override is visible");
}

#[test]
fn findings_list_undecrypted_tls_and_lead_to_the_session() {
    let mut app = loaded("tls-mixed.pcapng", None);
    screen(&mut app, 120, 40);
    app.handle(Action::Findings);
    let shown = screen(&mut app, 120, 40);
    assert_eq!(app.screen, Screen::Findings);
    assert_eq!(
        shown.matches("⚑ info tls-undecrypted: TLS (").count(),
        6,
        "{shown}"
    );
    app.handle(Action::Down);
    app.handle(Action::Open);
    assert_eq!(app.screen, Screen::Dialogue);
    assert!(app.session.is_some());
}

/// `n` finds the message, `s` and `a` save it and its attachment through the safe path builder:
/// the hostile name `..\x1b[31m/evil.txt` stays inside the save folder, and the saved bytes
/// have the SHA-256 computed on the wire; the same when the bodies were spooled to disk (the
/// title then says how much is there).
#[test]
fn messages_and_attachments_are_saved_inside_the_save_folder() {
    for hold_limit in [None, Some(0)] {
        let dir = tempfile::tempdir().unwrap();
        let file = "hostile-escapes.pcap";
        let mut app = loaded_with(sample(file), file, None, hold_limit);
        app.save_dir = dir.path().join("saved");
        let first = screen(&mut app, 120, 40);
        assert_eq!(
            first.contains("MB on disk"),
            hold_limit.is_some(),
            "{first}"
        );
        app.handle(Action::Open);
        app.handle(Action::NextMessage);
        app.handle(Action::Open);
        assert_eq!(app.screen, Screen::Message);
        // The text part is decoded from the body as the message opens (read back from the
        // spool when it went there), shown with its escape sequences made harmless.
        let shown = screen(&mut app, 120, 80);
        assert!(
            shown.contains("Hello Erin,") && shown.contains("This text is red"),
            "{shown}"
        );
        assert!(!shown.contains('\x1b'), "{shown}");
        app.handle(Action::Save);
        app.handle(Action::SaveAttachments);
        let Some(Item::Message(message)) =
            app.open_entry().unwrap().items.get(app.message.unwrap())
        else {
            panic!("a message is open");
        };
        assert_eq!(message.captured.bytes.is_empty(), hold_limit.is_some());
        let mut files: Vec<std::path::PathBuf> = walk(&app.save_dir);
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        for file in &files {
            assert!(file.starts_with(&app.save_dir));
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(!name.contains('\x1b') && !name.starts_with('.'), "{name:?}");
        }
        let saved: Vec<[u8; 32]> = files
            .iter()
            .map(|f| sha2::Sha256::digest(std::fs::read(f).unwrap()).into())
            .collect();
        assert!(saved.contains(&message.captured.sha256));
        assert!(saved.contains(&message.view.attachments[0].sha256));
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// `w` writes the selected session's packets with its TLS secrets (here from the capture's own
/// secrets block): the slice, read alone, is that one session, decrypted the same way.
#[test]
fn w_writes_the_session_as_a_pcapng_that_decrypts_alone() {
    use mailscope::export::slice::{self, Slice};
    let dir = tempfile::tempdir().unwrap();
    let mut app = loaded("tls-mixed-secrets.pcapng", None);
    app.save_dir = dir.path().join("saved");
    let path = sample("tls-mixed-secrets.pcapng");
    app.slicer = Some(Box::new(move |wanted: &Slice, file: std::fs::File| {
        let open = || {
            let source = FileSource::open(&path).map_err(|e| e.to_string())?;
            Ok(vec![Box::new(source) as Box<dyn PacketSource>])
        };
        let ports = Config::default().ports;
        slice::write(&open, &ports, wanted, &KeyLog::default(), file)
    }));
    screen(&mut app, 120, 40);
    app.handle(Action::Down);
    let chosen = app.selected_entry().unwrap();
    let (chosen, chosen_auth) = (chosen.row.clone(), chosen.auth.clone());
    assert!(!chosen_auth.is_empty());
    assert_eq!(chosen_auth.len() as u64, chosen.auth_attempts);
    app.handle(Action::SaveSlice);
    let shown = screen(&mut app, 120, 40);
    assert!(shown.contains("packets of session"), "{shown}");
    let written = walk(&app.save_dir);
    assert_eq!(written.len(), 1, "{written:?}");
    let again = loaded_path(&written[0]);
    assert_eq!(again.store.entries.len(), 1);
    let row = &again.store.entries[0].row;
    assert_eq!(again.store.entries[0].auth, chosen_auth);
    assert_eq!((row.client, row.server), (chosen.client, chosen.server));
    assert!(row.tls.decrypted(), "{:?}", row.tls.error());
    assert_eq!(row.exchanges, chosen.exchanges);
    assert_eq!(row.auth_attempts, chosen.auth_attempts);
}

/// findings.pcap: the findings screen lists alerts first, says why the selected one matters
/// with its evidence, and Enter opens its session at the finding, shown in the dialogue.
#[test]
fn findings_screen_puts_alerts_first_and_explains_them() {
    let mut app = loaded("findings.pcap", Some("findings.keys"));
    screen(&mut app, 140, 40);
    app.handle(Action::Findings);
    let shown = screen(&mut app, 140, 40);
    let first = shown
        .lines()
        .find(|l| l.contains("⚑"))
        .expect("a finding is listed");
    assert!(first.contains("⚑ alert "), "{first}");
    let kind = first
        .split("⚑ alert ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap();
    let why = mailscope::session::model::FindingKind::ALL
        .iter()
        .find(|k| k.name() == kind)
        .map(|k| k.why())
        .unwrap();
    assert!(
        shown.contains(&why[..40]),
        "the pane explains {kind}: {shown}"
    );
    app.handle(Action::Open);
    assert_eq!(app.screen, Screen::Dialogue);
    let dialogue = screen(&mut app, 140, 40);
    assert!(dialogue.contains(&format!("⚑ alert {kind}")), "{dialogue}");
    app.handle(Action::Back);
    app.handle(Action::Back);
    app.handle(Action::StartFilter);
    for c in "finding:alert".chars() {
        app.handle(Action::FilterChar(c));
    }
    app.handle(Action::FilterDone);
    let with_alerts = app
        .store
        .entries
        .iter()
        .filter(|e| e.worst == Some(mailscope::session::model::Severity::Alert))
        .count();
    let listed = screen(&mut app, 140, 40);
    assert!(
        listed.contains(&format!("({with_alerts} shown)")),
        "{with_alerts} sessions with alerts: {listed}"
    );
}
