//! The session list: one row per mail connection, only the rows on screen are built (a capture
//! can hold 100,000 sessions).

use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::widgets::{Block, Borders, Cell, Row, Table};
use ratatui::Frame;

use mailscope::export::time;
use mailscope::sanitize;
use mailscope::session::model::TlsMode;

use super::theme::theme;
use crate::ui::app::App;
use crate::ui::store::Entry;

/// The first row to show so that `selected` is on screen.
pub fn window(selected: usize, offset: usize, height: usize) -> usize {
    if selected < offset {
        selected
    } else if selected >= offset + height {
        selected + 1 - height
    } else {
        offset
    }
}

pub fn tls_cell(entry: &Entry) -> (String, bool) {
    let tls = &entry.row.tls;
    match tls.mode {
        TlsMode::None => ("none".into(), false),
        mode if tls.decrypted() => (format!("{} ✓", mode_name(mode)), false),
        mode if tls.error().is_some() => (format!("{} ✗", mode_name(mode)), true),
        mode => (mode_name(mode).into(), false),
    }
}

fn mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::None => "none",
        TlsMode::StartTls => "STARTTLS",
        TlsMode::Implicit => "implicit",
    }
}

pub fn status(entry: &Entry) -> String {
    let row = &entry.row;
    let end = row.ended.map_or("open", |e| e.name());
    if row.gaps > 0 {
        format!("{end}, {} gaps", row.gaps)
    } else {
        end.to_string()
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &mut App) {
    let theme = theme();
    let height = usize::from(area.height.saturating_sub(2)).max(1);
    app.offset = window(app.selected, app.offset, height);
    let first = app
        .visible
        .first()
        .and_then(|&i| app.store.entries.get(i))
        .map(|entry| entry.first_seen);
    let rows: Vec<Row> = app
        .visible
        .iter()
        .enumerate()
        .skip(app.offset)
        .take(height)
        .filter_map(|(n, &i)| Some((n, app.store.entries.get(i)?)))
        .map(|(n, entry)| {
            let row = &entry.row;
            let when = match (app.relative_time, first) {
                (true, Some(first)) => {
                    format!("+{}", time::duration(entry.first_seen.since(first)))
                }
                _ => time::utc(entry.first_seen)
                    .get(11..19)
                    .unwrap_or("")
                    .to_string(),
            };
            let (tls, failed) = tls_cell(entry);
            let user = row
                .user()
                .map(|u| sanitize::line(u.as_bytes()))
                .unwrap_or_default();
            let style = if n == app.selected {
                theme.selected
            } else {
                Style::default()
            };
            Row::new(vec![
                Cell::from(row.id.to_string()),
                Cell::from(when),
                Cell::from(row.client.to_string()),
                Cell::from(row.server.to_string()),
                Cell::from(row.protocol.name()),
                Cell::from(tls).style(if failed { theme.bad } else { Style::default() }),
                Cell::from(user),
                Cell::from(row.exchanges.to_string()),
                Cell::from(row.messages.to_string()),
                match (entry.findings, entry.worst) {
                    (n, Some(worst)) => Cell::from(n.to_string()).style(theme.severity(worst)),
                    _ => Cell::from(""),
                },
                Cell::from(status(entry)),
            ])
            .style(style)
        })
        .collect();
    let header = Row::new([
        "#", "time", "client", "server", "proto", "TLS", "user", "cmds", "msgs", "!", "status",
    ])
    .style(theme.header);
    let widths = [
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Min(15),
        Constraint::Min(15),
        Constraint::Length(5),
        Constraint::Length(10),
        Constraint::Min(6),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(3),
        Constraint::Min(6),
    ];
    let title = format!(
        " Sessions ({} of {}) · sorted by {}{} ",
        app.visible.len(),
        app.store.entries.len(),
        app.sort.name(),
        if app.descending { " ↓" } else { "" }
    );
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::default().borders(Borders::TOP).title(title));
    frame.render_widget(table, area);
}
