//! The UI's state and what each action does to it. Nothing here draws or reads the terminal.

use std::collections::HashSet;

use mailscope::export::files::OutputDir;
use mailscope::export::slice::Slice;
use mailscope::mime;
use mailscope::session::model::{Severity, TlsMode};

use mailscope::session::model::Message;

use super::store::{Entry, Item, Store};

/// Writes a session's packets into a file; gives the number of packets.
pub type Slicer = Box<dyn Fn(&Slice, std::fs::File) -> Result<u64, String>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Sessions,
    Dialogue,
    Ladder,
    Message,
    Findings,
    Help,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Time,
    Client,
    Server,
    Protocol,
    User,
    Exchanges,
    Messages,
}

impl SortKey {
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Time => "time",
            SortKey::Client => "client",
            SortKey::Server => "server",
            SortKey::Protocol => "protocol",
            SortKey::User => "user",
            SortKey::Exchanges => "commands",
            SortKey::Messages => "messages",
        }
    }

    fn next(self) -> SortKey {
        match self {
            SortKey::Time => SortKey::Client,
            SortKey::Client => SortKey::Server,
            SortKey::Server => SortKey::Protocol,
            SortKey::Protocol => SortKey::User,
            SortKey::User => SortKey::Exchanges,
            SortKey::Exchanges => SortKey::Messages,
            SortKey::Messages => SortKey::Time,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Open,
    Back,
    Quit,
    /// Between the dialogue and its ladder.
    SwitchPane,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    FilterCancel,
    NextSort,
    ReverseSort,
    ToggleTime,
    ToggleExplain,
    ToggleSecrets,
    ToggleFollow,
    Save,
    SaveAttachments,
    SaveSlice,
    /// To the next message in the dialogue.
    NextMessage,
    Findings,
    Help,
    /// A click on the n-th row of the list shown.
    Click(usize),
    ScrollUp,
    ScrollDown,
}

pub struct App {
    pub store: Store,
    pub screen: Screen,
    history: Vec<Screen>,
    /// Sessions shown, as indices into the store, filtered and sorted.
    pub visible: Vec<usize>,
    visible_generation: Option<u64>,
    /// All sessions in the current order, kept while only the filter changes.
    sorted: Vec<usize>,
    sorted_for: Option<(u64, SortKey, bool)>,
    pub selected: usize,
    pub filter: String,
    pub editing_filter: bool,
    pub sort: SortKey,
    pub descending: bool,
    /// The session whose dialogue or message is open.
    pub session: Option<u64>,
    /// The line selected in the dialogue (or ladder), and in the message view the scroll.
    pub line: usize,
    pub message: Option<usize>,
    /// The open message's best text part, decoded from its body when it was opened: messages
    /// do not keep it (a copy as large as the body, which no other output reads).
    pub message_text: String,
    pub scroll: usize,
    pub relative_time: bool,
    pub explain: bool,
    pub show_secrets: bool,
    /// Live capture: keep the newest session in view.
    pub following: bool,
    pub expanded: HashSet<(u64, usize)>,
    pub status: Option<String>,
    pub title: String,
    pub live: bool,
    pub quit: bool,
    /// Rows of the list on screen and the first one shown (set by the view), for paging and
    /// clicks.
    pub page: usize,
    pub offset: usize,
    pub finding: usize,
    /// Where `s` saves messages and attachments.
    pub save_dir: std::path::PathBuf,
    saver: Option<OutputDir>,
    /// Writes a session's packets as pcapng (reading the capture files again); None for live
    /// capture and standard input.
    pub slicer: Option<Slicer>,
}

impl App {
    pub fn new(title: String, live: bool) -> App {
        App {
            store: Store::default(),
            screen: Screen::Sessions,
            history: Vec::new(),
            visible: Vec::new(),
            visible_generation: None,
            sorted: Vec::new(),
            sorted_for: None,
            selected: 0,
            filter: String::new(),
            editing_filter: false,
            sort: SortKey::Time,
            descending: false,
            session: None,
            line: 0,
            message: None,
            message_text: String::new(),
            scroll: 0,
            relative_time: false,
            explain: false,
            show_secrets: false,
            following: live,
            expanded: HashSet::new(),
            status: None,
            title,
            live,
            quit: false,
            page: 20,
            offset: 0,
            finding: 0,
            save_dir: std::path::PathBuf::from("mailscope-saved"),
            saver: None,
            slicer: None,
        }
    }

    /// Recomputes the filtered, sorted list when the store or the query changed.
    pub fn refresh(&mut self) {
        if self.visible_generation == Some(self.store.generation) {
            return;
        }
        self.visible_generation = Some(self.store.generation);
        let order = (self.store.generation, self.sort, self.descending);
        if self.sorted_for != Some(order) {
            self.sorted_for = Some(order);
            self.sorted = self.sorted_sessions();
        }
        let query = Query::parse(&self.filter);
        self.visible = self
            .sorted
            .iter()
            .copied()
            .filter(|&i| {
                let (entries, search) = (&self.store.entries, &self.store.search);
                match (entries.get(i), search.get(i)) {
                    (Some(entry), Some(text)) => query.matches(entry, text),
                    _ => false,
                }
            })
            .collect();
        if self.following && !self.visible.is_empty() {
            self.selected = self.visible.len() - 1;
        }
        self.selected = self.selected.min(self.visible.len().saturating_sub(1));
    }

    fn sorted_sessions(&self) -> Vec<usize> {
        let mut sorted: Vec<(usize, &Entry)> = self.store.entries.iter().enumerate().collect();
        let key = self.sort;
        sorted.sort_by(|&(_, a), &(_, b)| {
            let order = match key {
                SortKey::Time => a.first_seen.cmp(&b.first_seen),
                SortKey::Client => a.row.client.cmp(&b.row.client),
                SortKey::Server => a.row.server.cmp(&b.row.server),
                SortKey::Protocol => a.row.protocol.name().cmp(b.row.protocol.name()),
                SortKey::User => a.row.user().cmp(&b.row.user()),
                SortKey::Exchanges => a.row.exchanges.cmp(&b.row.exchanges),
                SortKey::Messages => a.row.messages.cmp(&b.row.messages),
            };
            order.then(a.row.id.cmp(&b.row.id))
        });
        if self.descending {
            sorted.reverse();
        }
        sorted.into_iter().map(|(i, _)| i).collect()
    }

    pub fn selected_entry(&self) -> Option<&Entry> {
        self.visible
            .get(self.selected)
            .and_then(|&i| self.store.entries.get(i))
    }

    pub fn open_entry(&self) -> Option<&Entry> {
        self.session.and_then(|id| self.store.get(id))
    }

    fn go(&mut self, screen: Screen) {
        self.history.push(self.screen);
        self.screen = screen;
    }

    /// Lines of the open dialogue, for moving the cursor: its items.
    fn dialogue_len(&self) -> usize {
        self.open_entry().map_or(0, |e| e.items.len())
    }

    pub fn handle(&mut self, action: Action) {
        self.status = None;
        if self.editing_filter {
            match action {
                Action::FilterChar(c) => self.filter.push(c),
                Action::FilterBackspace => {
                    self.filter.pop();
                }
                Action::FilterDone => self.editing_filter = false,
                Action::FilterCancel => {
                    self.filter.clear();
                    self.editing_filter = false;
                }
                _ => return,
            }
            self.visible_generation = None;
            self.selected = 0;
            return;
        }
        match action {
            Action::Quit => self.quit = true,
            Action::Back => match self.history.pop() {
                Some(previous) => self.screen = previous,
                None => self.quit = true,
            },
            Action::Help if self.screen != Screen::Help => self.go(Screen::Help),
            Action::Findings if self.screen != Screen::Findings => {
                self.finding = 0;
                self.go(Screen::Findings)
            }
            Action::Findings => self.handle(Action::Back),
            Action::NextMessage => {
                if let Some(entry) = self.open_entry() {
                    let next = entry
                        .items
                        .iter()
                        .enumerate()
                        .skip(self.line + 1)
                        .find(|(_, item)| matches!(item, Item::Message(_)))
                        .map(|(i, _)| i);
                    self.line = next.unwrap_or(self.line);
                }
            }
            Action::SaveAttachments => self.save_attachments(),
            Action::SaveSlice => self.save_slice(),
            Action::Help => self.handle(Action::Back),
            Action::StartFilter => {
                self.editing_filter = true;
                if self.screen != Screen::Sessions {
                    self.history.clear();
                    self.screen = Screen::Sessions;
                }
            }
            Action::NextSort => {
                self.sort = self.sort.next();
                self.visible_generation = None;
            }
            Action::ReverseSort => {
                self.descending = !self.descending;
                self.visible_generation = None;
            }
            Action::ToggleTime => self.relative_time = !self.relative_time,
            Action::ToggleExplain => self.explain = !self.explain,
            Action::ToggleSecrets => self.show_secrets = !self.show_secrets,
            Action::ToggleFollow => {
                self.following = !self.following;
                self.visible_generation = None;
            }
            Action::SwitchPane => match self.screen {
                Screen::Dialogue => self.screen = Screen::Ladder,
                Screen::Ladder => self.screen = Screen::Dialogue,
                _ => {}
            },
            Action::Save => self.save(),
            Action::Open => self.open(),
            Action::Click(row) if self.screen == Screen::Sessions => {
                let row = self.offset + row;
                self.selected = row.min(self.visible.len().saturating_sub(1));
                self.following = false;
            }
            Action::Click(_) => {}
            movement => self.move_cursor(movement),
        }
    }

    fn move_cursor(&mut self, action: Action) {
        let (position, len) = match self.screen {
            Screen::Sessions => {
                self.following = false;
                (&mut self.selected, self.visible.len())
            }
            Screen::Dialogue | Screen::Ladder => {
                let len = self.dialogue_len();
                (&mut self.line, len)
            }
            Screen::Findings => {
                let len = self.store.findings.len();
                (&mut self.finding, len)
            }
            Screen::Message | Screen::Help => (&mut self.scroll, usize::MAX / 2),
        };
        let last = len.saturating_sub(1);
        *position = match action {
            Action::Up | Action::ScrollUp => position.saturating_sub(1),
            Action::Down | Action::ScrollDown => (*position + 1).min(last),
            Action::PageUp => position.saturating_sub(self.page),
            Action::PageDown => (*position + self.page).min(last),
            Action::Top => 0,
            Action::Bottom => last,
            _ => *position,
        };
    }

    fn open(&mut self) {
        match self.screen {
            Screen::Sessions => {
                if let Some(id) = self.selected_entry().map(|e| e.row.id) {
                    self.session = Some(id);
                    self.line = 0;
                    self.go(Screen::Dialogue);
                }
            }
            Screen::Findings => {
                let at = self.finding;
                let target = self.store.findings.get(at).and_then(|listed| {
                    let entry = self.store.entries.get(listed.entry)?;
                    Some((entry.row.id, listed.item))
                });
                if let Some((id, line)) = target {
                    self.session = Some(id);
                    self.line = line;
                    self.go(Screen::Dialogue);
                }
            }
            Screen::Dialogue | Screen::Ladder => {
                let Some(entry) = self.open_entry() else {
                    return;
                };
                let key = (entry.row.id, self.line);
                let (message, exchange) = match entry.items.get(self.line) {
                    Some(Item::Message(_)) => (true, false),
                    Some(Item::Exchange(_)) => (false, true),
                    _ => (false, false),
                };
                if message {
                    self.message = Some(self.line);
                    self.message_text = self.chosen_message().map_or_else(String::new, |m| {
                        match self.store.body(m) {
                            Ok(body) => {
                                mime::text(&body).unwrap_or_else(|| "(no text part)".into())
                            }
                            Err(e) => format!("(cannot read the message back: {e})"),
                        }
                    });
                    self.scroll = 0;
                    self.go(Screen::Message);
                } else if exchange && !self.expanded.remove(&key) {
                    self.expanded.insert(key);
                }
            }
            _ => {}
        }
    }

    /// The open message, or the message under the cursor.
    fn chosen_message(&self) -> Option<&Message> {
        let entry = self.open_entry()?;
        let index = match self.screen {
            Screen::Message => self.message?,
            _ => self.line,
        };
        match entry.items.get(index) {
            Some(Item::Message(message)) => Some(message),
            _ => None,
        }
    }

    /// Files written into the save folder, through the one path builder.
    fn write_files(&mut self, files: Vec<(Option<String>, String, Vec<u8>)>) -> String {
        let saver = match self.saver() {
            Ok(saver) => saver,
            Err(e) => return e,
        };
        let mut written = Vec::new();
        for (folder, name, bytes) in files {
            match saver.write(folder.as_deref(), &name, "attachment", &bytes) {
                Ok(path) => written.push(path.display().to_string()),
                Err(e) => return format!("cannot save: {e}"),
            }
        }
        match written.as_slice() {
            [] => "nothing to save".into(),
            [one] => format!("saved {}", mailscope::sanitize::line(one.as_bytes())),
            [first, ..] => format!(
                "saved {} files, the first {}",
                written.len(),
                mailscope::sanitize::line(first.as_bytes())
            ),
        }
    }

    /// `w`: the session's packets, with its TLS secrets, as a pcapng of its own.
    fn save_slice(&mut self) {
        let entry = match self.screen {
            Screen::Sessions => self.selected_entry(),
            _ => self.open_entry(),
        };
        let Some(row) = entry.map(|e| &e.row) else {
            self.status = Some("select a session to write its packets".into());
            return;
        };
        let slice = Slice {
            client: row.client,
            server: row.server,
            start: row.start,
            client_random: row.tls.info().client_random,
        };
        let id = row.id;
        let Some(slicer) = self.slicer.take() else {
            self.status =
                Some("slices are written from capture files, not live or standard input".into());
            return;
        };
        let result = self.saver().and_then(|saver| {
            saver
                .create_file(&format!("session-{id}.pcapng"), "session.pcapng")
                .map_err(|e| format!("cannot save: {e}"))
        });
        self.status = Some(
            match result.and_then(|(path, file)| Ok((path, slicer(&slice, file)?))) {
                Ok((path, packets)) => format!(
                    "wrote {packets} packets of session {id} to {}",
                    mailscope::sanitize::line(path.display().to_string().as_bytes())
                ),
                Err(e) => e,
            },
        );
        self.slicer = Some(slicer);
    }

    /// The save folder, created on first use.
    fn saver(&mut self) -> Result<&mut OutputDir, String> {
        if self.saver.is_none() {
            let owner = mailscope::privileges::owner_for(&self.save_dir, None)?;
            let created = OutputDir::create(&self.save_dir, owner)
                .map_err(|e| format!("cannot create {}: {e}", self.save_dir.display()))?;
            self.saver = Some(created);
        }
        self.saver.as_mut().ok_or_else(|| "no save folder".into())
    }

    /// `s`: the message as an .eml.
    fn save(&mut self) {
        let Some(message) = self.chosen_message() else {
            self.status = Some("select a message line to save it".into());
            return;
        };
        let name = format!(
            "{}-{}.eml",
            message.id,
            message.view.subject.as_deref().unwrap_or("message")
        );
        let files = self
            .store
            .body(message)
            .map(|body| vec![(None, name, body)]);
        self.status = Some(match files {
            Ok(files) => self.write_files(files),
            Err(e) => format!("cannot read the message back: {e}"),
        });
    }

    /// `a`: each attachment of the message, decoded (again, from its body), in a folder named
    /// after the message.
    fn save_attachments(&mut self) {
        let Some(message) = self.chosen_message() else {
            self.status = Some("select a message line to save its attachments".into());
            return;
        };
        let folder = format!("{}-attachments", message.id);
        let files = self.store.body(message).map(|body| {
            mime::parse(&body)
                .attachments
                .into_iter()
                .map(|a| {
                    let name = a.filename.unwrap_or_else(|| "attachment".into());
                    (Some(folder.clone()), name, a.bytes)
                })
                .collect()
        });
        self.status = Some(match files {
            Ok(files) => self.write_files(files),
            Err(e) => format!("cannot read the message back: {e}"),
        });
    }
}

/// The session filter: words that must all match. `proto:imap`, `user:alice`,
/// `tls:none|starttls|implicit|decrypted|failed`, `has:attachment|message|auth|gap|finding`,
/// `finding:KIND` (a finding kind, or `alert`/`warning`/`info` for that severity or worse), and
/// plain words matched against the addresses, protocol and user.
struct Query {
    terms: Vec<(Option<String>, String)>,
}

impl Query {
    fn parse(text: &str) -> Query {
        Query {
            terms: text
                .split_whitespace()
                .map(|w| match w.split_once(':') {
                    Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                        (Some(k.to_lowercase()), v.to_lowercase())
                    }
                    _ => (None, w.to_lowercase()),
                })
                .collect(),
        }
    }

    fn matches(&self, entry: &Entry, search: &str) -> bool {
        let row = &entry.row;
        self.terms.iter().all(|(key, value)| {
            match key.as_deref() {
            Some("proto" | "protocol") => row.protocol.name() == value,
            Some("user") => row
                .user()
                .is_some_and(|u| u.to_lowercase().contains(value.as_str())),
            Some("tls") => match value.as_str() {
                "none" => row.tls.mode == TlsMode::None,
                "starttls" => row.tls.mode == TlsMode::StartTls,
                "implicit" => row.tls.mode == TlsMode::Implicit,
                "decrypted" => row.tls.decrypted(),
                "failed" => row.tls.mode != TlsMode::None && !row.tls.decrypted(),
                _ => false,
            },
            Some("has") => match value.as_str() {
                "attachment" | "attachments" => entry.attachments > 0,
                "message" | "messages" => row.messages > 0,
                "auth" => row.auth_attempts > 0,
                "gap" | "gaps" => row.gaps > 0,
                "finding" | "findings" => entry.findings > 0,
                _ => false,
            },
            Some("finding") => match Severity::named(value) {
                Some(least) => entry.worst.is_some_and(|worst| worst >= least),
                None => entry.items.iter().any(|item| {
                    matches!(item, Item::Finding(f) if f.kind.name().contains(value.as_str()))
                }),
            },
            _ => search.contains(value.as_str()),
        }
        })
    }
}
