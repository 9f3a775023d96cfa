//! Drawing: one function per screen over the app's state, plus the title and key lines that
//! frame them. Every string from the wire goes through `mailscope::sanitize` before it is drawn.

mod dialogue;
mod findings;
mod help;
mod message;
mod sessions;
pub mod theme;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph};
use ratatui::Frame;

use super::app::{App, Screen};

/// The first screen row of the session list, for mouse clicks (title, border, header above it).
pub const LIST_TOP: u16 = 3;

pub fn draw(frame: &mut Frame, app: &mut App) {
    app.refresh();
    let [title, body, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_title(frame, title, app);
    app.page = usize::from(body.height.saturating_sub(2)).max(1);
    match app.screen {
        Screen::Sessions => sessions::draw(frame, body, app),
        Screen::Dialogue => dialogue::draw(frame, body, app, false),
        Screen::Ladder => dialogue::draw(frame, body, app, true),
        Screen::Message => message::draw(frame, body, app),
        Screen::Findings => findings::draw(frame, body, app),
        Screen::Help => help::draw(frame, body, app),
    }
    draw_keys(frame, keys, app);
}

fn draw_title(frame: &mut Frame, area: Rect, app: &App) {
    let theme = theme::theme();
    let store = &app.store;
    let counts = format!(
        "{} sessions ({} shown), {} frames",
        store.entries.len(),
        app.visible.len(),
        store.frames
    );
    let state = if store.done {
        if store.faults.is_empty() {
            "read".to_string()
        } else {
            format!("read in part: {}", store.faults.join("; "))
        }
    } else if app.live {
        if app.following {
            "live, following"
        } else {
            "live, paused"
        }
        .to_string()
    } else {
        "reading…".to_string()
    };
    // Past the memory threshold, message bodies wait on disk: say how much (or why not).
    let spooled = match (store.body_bytes(), &store.spool_error) {
        (_, Some(e)) => format!(" │ bodies stay in memory: no temporary file ({e})"),
        ((_, 0), None) => String::new(),
        ((held, on_disk), None) => format!(
            " │ bodies {:.1} MB in memory, {:.1} MB on disk",
            held as f64 / 1048576.0,
            on_disk as f64 / 1048576.0
        ),
    };
    let text = format!(" mailscope  {}  │ {counts} │ {state}{spooled}", app.title);
    let progress = match (store.done, store.total) {
        (false, Some(total)) if total > 0 => Some((store.bytes as f64 / total as f64).min(0.99)),
        _ => None,
    };
    match progress {
        Some(ratio) => {
            let [left, right] =
                Layout::horizontal([Constraint::Min(10), Constraint::Length(24)]).areas(area);
            frame.render_widget(Paragraph::new(text).style(theme.title), left);
            frame.render_widget(
                Gauge::default()
                    .ratio(ratio)
                    .label(format!("{:.0}%", ratio * 100.0)),
                right,
            );
        }
        None => frame.render_widget(Paragraph::new(text).style(theme.title), area),
    }
}

fn draw_keys(frame: &mut Frame, area: Rect, app: &App) {
    let theme = theme::theme();
    if app.editing_filter {
        let line = Line::from(vec![
            Span::styled(" filter: ", theme.title),
            Span::raw(mailscope::sanitize::line(app.filter.as_bytes())),
            Span::styled("▏ Enter keep · Esc clear", theme.dim),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    if let Some(status) = &app.status {
        frame.render_widget(Paragraph::new(format!(" {status}")).style(theme.note), area);
        return;
    }
    let hints = match app.screen {
        Screen::Sessions => "Enter open · / filter · o sort · ! findings · f follow · ? help · q quit",
        Screen::Dialogue => {
            "Enter open/expand · n next message · Tab ladder · e explain · t time · r secrets · Esc back"
        }
        Screen::Ladder => "Tab dialogue · e explain · t time · Esc back",
        Screen::Message => "↑↓ scroll · s save .eml · a save attachments · Esc back",
        Screen::Findings => "Enter open the session there · Esc back",
        Screen::Help => "Esc back",
    };
    let filter = if app.filter.is_empty() {
        String::new()
    } else {
        format!(
            " · filter: {}",
            mailscope::sanitize::line(app.filter.as_bytes())
        )
    };
    frame.render_widget(
        Paragraph::new(format!(" {hints}{filter}")).style(theme.dim),
        area,
    );
}
