//! Helpers shared by the integration tests: running the engine on a capture and collecting what
//! each direction delivered.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mailscope::capture::{FileSource, PacketSource};
use mailscope::pipeline::{Analyzer, Config, RunReport};
use mailscope::tcp::{Direction, Flow, FlowInfo, StreamEvent, StreamSink};

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
}

/// One direction as delivered: the data bytes and the gaps (offset in the stream, length).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub bytes: Vec<u8>,
    pub gaps: Vec<(u64, u64)>,
    pub fin: bool,
    pub rst: bool,
    offset: u64,
}

#[derive(Debug, Default)]
pub struct Collected {
    pub flows: BTreeMap<u64, FlowInfo>,
    /// Keyed by (flow id, direction index).
    pub streams: BTreeMap<(u64, usize), Delivered>,
    pub packets: BTreeMap<(u64, usize), u64>,
    /// Key log text the capture carried.
    pub keylog: Vec<u8>,
}

impl StreamSink for Collected {
    fn flow_opened(&mut self, flow: &FlowInfo) {
        self.flows.insert(flow.id, flow.clone());
    }

    fn keylog(&mut self, text: &[u8]) {
        self.keylog.extend_from_slice(text);
    }

    fn stream_event(&mut self, flow: &FlowInfo, direction: Direction, event: StreamEvent<'_>) {
        let d = self
            .streams
            .entry((flow.id, direction.index()))
            .or_default();
        match event {
            StreamEvent::Data { bytes, .. } => {
                d.bytes.extend_from_slice(bytes);
                d.offset += bytes.len() as u64;
            }
            StreamEvent::Gap { len, .. } => {
                d.gaps.push((d.offset, len));
                d.offset += len;
            }
            StreamEvent::Fin { .. } => d.fin = true,
            StreamEvent::Rst { .. } => d.rst = true,
        }
    }

    fn flow_removed(&mut self, flow: &Flow) {
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            self.packets.insert(
                (flow.info.id, direction.index()),
                flow.stream(direction).stats.packets,
            );
        }
    }
}

impl Collected {
    pub fn stream(&self, flow: u64, direction: Direction) -> Delivered {
        self.streams
            .get(&(flow, direction.index()))
            .cloned()
            .unwrap_or_default()
    }
}

pub fn run_sources(
    mut sources: Vec<Box<dyn PacketSource>>,
    config: Config,
) -> (Collected, RunReport) {
    let mut analyzer = Analyzer::new(config);
    let mut collected = Collected::default();
    let report = analyzer.run(&mut sources, &mut collected);
    (collected, report)
}

pub fn run_file(path: &Path) -> (Collected, RunReport) {
    let source = FileSource::open(path.to_str().expect("utf-8 path")).expect("open capture");
    run_sources(vec![Box::new(source)], Config::default())
}

/// The frames of a capture, to rewrite in tests.
pub fn frames(path: &Path) -> Vec<mailscope::capture::MemoryFrame> {
    use mailscope::capture::{MemoryFrame, Record};
    let mut source = FileSource::open(path.to_str().expect("utf-8 path")).expect("open capture");
    let mut frames = Vec::new();
    source
        .read(&mut |record| {
            if let Record::Frame(f) = record {
                frames.push(MemoryFrame {
                    ts: f.ts,
                    link: f.link,
                    data: f.data.to_vec(),
                });
            }
            std::ops::ControlFlow::Continue(())
        })
        .expect("read capture");
    frames
}

pub fn run_frames(frames: Vec<mailscope::capture::MemoryFrame>) -> Collected {
    let source = mailscope::capture::MemorySource { frames };
    let (collected, report) = run_sources(vec![Box::new(source)], Config::default());
    assert!(report.faults.is_empty());
    collected
}

/// What the session layer reported for a capture.
#[derive(Default)]
pub struct Dialogues {
    pub sessions: Vec<mailscope::session::model::Session>,
    pub exchanges: BTreeMap<u64, Vec<mailscope::proto::Exchange>>,
    pub messages: BTreeMap<u64, Vec<mailscope::session::model::Message>>,
    pub notes: BTreeMap<u64, Vec<String>>,
    /// IMAP: the selected mailbox after each exchange, with the exchange's command verb.
    pub selected: BTreeMap<u64, Vec<(String, Option<mailscope::proto::MailboxState>)>>,
    /// What TLS decrypted, per (session, direction index).
    pub decrypted: BTreeMap<(u64, usize), Vec<u8>>,
}

impl mailscope::session::SessionSink for Dialogues {
    fn exchange(
        &mut self,
        session: &mailscope::session::model::Session,
        exchange: &mailscope::proto::Exchange,
    ) {
        self.exchanges
            .entry(session.id)
            .or_default()
            .push(exchange.clone());
        let verb = exchange
            .command
            .as_ref()
            .map(|c| c.verb.clone())
            .unwrap_or_default();
        self.selected
            .entry(session.id)
            .or_default()
            .push((verb, session.selected.clone()));
    }
    fn message(
        &mut self,
        session: &mailscope::session::model::Session,
        message: &mailscope::session::model::Message,
    ) {
        self.messages
            .entry(session.id)
            .or_default()
            .push(message.clone());
    }
    fn note(
        &mut self,
        session: &mailscope::session::model::Session,
        note: &mailscope::proto::Note,
    ) {
        self.notes
            .entry(session.id)
            .or_default()
            .push(note.text.clone());
    }
    fn decrypted(
        &mut self,
        session: &mailscope::session::model::Session,
        direction: Direction,
        bytes: &[u8],
    ) {
        self.decrypted
            .entry((session.id, direction.index()))
            .or_default()
            .extend_from_slice(bytes);
    }
    fn session_end(&mut self, session: &mailscope::session::model::Session) {
        self.sessions.push(session.clone());
    }
}

pub fn dialogues(path: &Path) -> Dialogues {
    dialogues_with_keys(path, b"").0
}

/// The dialogues of a capture decrypted with this key log text; also the key log as read.
pub fn dialogues_with_keys(path: &Path, keylog: &[u8]) -> (Dialogues, mailscope::tls::KeyLog) {
    let source = FileSource::open(path.to_str().expect("utf-8 path")).expect("open capture");
    let mut analyzer = Analyzer::new(Config::default());
    let mut table = mailscope::session::SessionTable::new(Dialogues::default());
    table.keys.add(keylog);
    table.keys.finish();
    let report = analyzer.run(&mut [Box::new(source) as Box<dyn PacketSource>], &mut table);
    assert!(report.faults.is_empty(), "{:?}", report.faults);
    (table.out.sink, table.keys)
}

/// samples/MANIFEST.json: what the clients that made the samples sent and received.
pub fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(sample("MANIFEST.json")).expect("samples/MANIFEST.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// A program running in a detached tmux session of 120x40, read back with capture-pane.
pub struct Tmux {
    name: String,
}

impl Tmux {
    pub fn start(command: &str) -> Tmux {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("mailscope-test-{}-{n}", std::process::id());
        // One at a time: two tests starting the first tmux server at once can both fail.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let status = std::process::Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "120", "-y", "40"])
            .arg(command)
            .status()
            .expect("tmux runs");
        assert!(status.success());
        Tmux { name }
    }

    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            std::process::Command::new("tmux")
                .args(["send-keys", "-t", &self.name, key])
                .status()
                .unwrap();
        }
    }

    pub fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen once it shows `text` (bounded wait).
    pub fn wait_for(&self, text: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) || start.elapsed() > std::time::Duration::from_secs(10) {
                return screen;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

/// tshark with these arguments; its standard output. tshark must be installed (scripts/test
/// installs it) and must succeed.
pub fn tshark(args: &[&str]) -> String {
    let out = std::process::Command::new("tshark")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("tshark is needed for this test: run scripts/test, which installs it");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tshark prints UTF-8")
}

/// `tshark -n -r FILE -Y FILTER -T fields -e FIELD...` with `extra` options: one line per
/// packet, the fields tab-separated.
pub fn tshark_fields(file: &Path, filter: &str, fields: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args = vec!["-n", "-r", file.to_str().expect("utf-8 path"), "-Y", filter];
    args.extend(extra);
    args.extend(["-T", "fields"]);
    for field in fields {
        args.extend(["-e", field]);
    }
    tshark(&args).lines().map(String::from).collect()
}

/// Every file below `dir`, in no particular order.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
