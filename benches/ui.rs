//! The terminal UI with 100,000 sessions loaded: a keypress handled and the screen redrawn
//! (the budget is one frame, 16 ms), and a filter keystroke, which refilters and resorts them
//! all; and the findings screen rebuilt after a store update. The UI lives in the binary, so its module tree is included here by path. The sessions
//! are copies of the real ones in samples/smtp-plain.pcap. Run with `cargo bench --bench ui`.

// Its unit tests are compiled here too (benches build with cfg(test)) but not run.
#[allow(dead_code, unused_imports)]
#[path = "../src/ui/mod.rs"]
mod ui;

use std::sync::mpsc::sync_channel;

use criterion::{criterion_group, criterion_main, Criterion};
use mailscope::capture::{FileSource, PacketSource};
use mailscope::pipeline::{Config, Dissection};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use ui::app::{Action, App};
use ui::store::{Item, Update};
use ui::worker::{self, Job};

const SESSIONS: u64 = 100_000;

fn loaded() -> App {
    let path = format!("{}/samples/smtp-plain.pcap", env!("CARGO_MANIFEST_DIR"));
    let source = FileSource::open(&path).expect("the sample opens");
    let job = Job {
        sources: vec![Box::new(source) as Box<dyn PacketSource>],
        dissection: Dissection {
            config: Config::default(),
            threads: 2,
            keys: Default::default(),
            live: false,
            followed: Vec::new(),
            redact: false,
        },
        analysis: Default::default(),
        total_bytes: None,
    };
    let (tx, rx) = sync_channel(1 << 16);
    worker::read(job, tx);
    let mut sample = App::new(String::new(), false);
    while let Ok(update) = rx.try_recv() {
        sample.store.apply(update);
    }
    let mut app = App::new("100,000 sessions".into(), false);
    let originals = &sample.store.entries;
    for n in 0..SESSIONS {
        let original = &originals[n as usize % originals.len()];
        let mut row = original.row.clone();
        row.id = n + 1;
        row.client.set_port((n % 60_000) as u16 + 1024);
        app.store.apply(Update::Row(Box::new(row)));
        for item in &original.items {
            app.store.apply(match item {
                Item::Exchange(e) => Update::Exchange(n + 1, e.clone()),
                Item::Message(m) => Update::Message(n + 1, m.clone()),
                Item::Note(note) => Update::Note(n + 1, note.clone()),
                Item::Finding(f) => Update::Finding(n + 1, f.clone()),
            });
        }
    }
    app
}

fn keypress(c: &mut Criterion) {
    let mut app = loaded();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| ui::view::draw(f, &mut app)).unwrap();
    assert_eq!(app.visible.len(), SESSIONS as usize);
    let mut group = c.benchmark_group("ui_100k_sessions");
    group.bench_function("move_and_redraw", |b| {
        b.iter(|| {
            app.handle(Action::Down);
            terminal.draw(|f| ui::view::draw(f, &mut app)).unwrap();
        })
    });
    app.handle(Action::Top);
    app.handle(Action::Open);
    group.bench_function("dialogue_move_and_redraw", |b| {
        b.iter(|| {
            app.handle(Action::Down);
            terminal.draw(|f| ui::view::draw(f, &mut app)).unwrap();
        })
    });
    app.handle(Action::Back);
    group.bench_function("filter_keystroke_refilters_all", |b| {
        b.iter(|| {
            app.handle(Action::StartFilter);
            app.handle(Action::FilterChar('s'));
            terminal.draw(|f| ui::view::draw(f, &mut app)).unwrap();
            app.handle(Action::FilterCancel);
        })
    });
    app.handle(Action::Findings);
    let listed = app.store.findings.len();
    assert!(listed >= SESSIONS as usize, "{listed} findings");
    group.bench_function("findings_screen_redraw_after_an_update", |b| {
        b.iter(|| {
            // A read progresses between two frames (another finding would also refilter the
            // session list behind: that costs what filter_keystroke_refilters_all does).
            app.store.apply(Update::Progress {
                frames: 1,
                bytes: 1,
                total: None,
            });
            terminal.draw(|f| ui::view::draw(f, &mut app)).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, keypress);
criterion_main!(benches);
