//! Keys and mouse to actions, following habits: arrows and j/k, Enter, Esc/q, g/G, PgUp/PgDn,
//! Tab, `/` to filter, `?` for help.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

use super::app::Action;

pub fn action(event: &Event, editing_filter: bool, list_top: u16) -> Option<Action> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => key_action(key, editing_filter),
        Event::Mouse(mouse) => match mouse.kind {
            MouseEventKind::ScrollUp => Some(Action::ScrollUp),
            MouseEventKind::ScrollDown => Some(Action::ScrollDown),
            MouseEventKind::Down(_) if mouse.row >= list_top => {
                Some(Action::Click(usize::from(mouse.row - list_top)))
            }
            _ => None,
        },
        _ => None,
    }
}

fn key_action(key: &KeyEvent, editing_filter: bool) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if editing_filter {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Esc => Some(Action::FilterCancel),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) => Some(Action::FilterChar(c)),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown | KeyCode::Char(' ') => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => Action::Back,
        KeyCode::Char('q') => Action::Back,
        KeyCode::Tab | KeyCode::Char('l') => Action::SwitchPane,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('o') => Action::NextSort,
        KeyCode::Char('O') => Action::ReverseSort,
        KeyCode::Char('t') => Action::ToggleTime,
        KeyCode::Char('e') => Action::ToggleExplain,
        KeyCode::Char('r') => Action::ToggleSecrets,
        KeyCode::Char('f') => Action::ToggleFollow,
        KeyCode::Char('s') => Action::Save,
        KeyCode::Char('a') => Action::SaveAttachments,
        KeyCode::Char('w') => Action::SaveSlice,
        KeyCode::Char('n') => Action::NextMessage,
        KeyCode::Char('!') | KeyCode::Char('F') => Action::Findings,
        KeyCode::Char('?') => Action::Help,
        _ => return None,
    })
}

/// Every key, for the help screen: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    ("↑ ↓  j k", "move"),
    ("PgUp PgDn  Space", "page"),
    ("g G  Home End", "first, last"),
    (
        "Enter",
        "open: session → dialogue → message; on a reply, show all its lines",
    ),
    ("Tab  l", "dialogue ⇄ ladder (sequence diagram)"),
    ("Esc  q  ←  h", "back; from the session list, quit"),
    (
        "/",
        "filter: words, proto:imap user:alice tls:failed has:attachment finding:alert",
    ),
    ("o  O", "sort by the next column, reverse the order"),
    ("t", "absolute ⇄ relative times"),
    ("e", "explain each command and reply (teaching mode)"),
    ("r", "reveal or mask passwords"),
    ("n", "in a dialogue: to the next message"),
    ("s", "save the message as .eml into ./mailscope-saved/"),
    (
        "a",
        "save the message's attachments into ./mailscope-saved/",
    ),
    (
        "w",
        "write the session's packets, with its TLS secrets, as a pcapng into ./mailscope-saved/",
    ),
    (
        "!  F",
        "findings, the most severe first: why each matters and its evidence; Enter opens it",
    ),
    ("f", "live capture: follow the newest session, or stay"),
    ("mouse", "click a row, wheel to scroll"),
    ("?", "this help"),
    ("Ctrl-C", "quit at once"),
];
