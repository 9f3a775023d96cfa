//! A session's dialogue, as lines (commands and replies in order, client and server in their
//! colours, with times and reply latency) or as a ladder: the sequence diagram a teacher draws,
//! client on the left, server on the right.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use mailscope::analysis::explain;
use mailscope::capture::Timestamp;
use mailscope::export::{time, transcript};
use mailscope::proto::{Exchange, Reply};
use mailscope::sanitize;
use mailscope::session::model::{Message, Protocol};

use super::theme::{theme, Theme};
use crate::ui::app::App;
use crate::ui::store::{item_ts, Entry, Item};

/// Reply lines shown before the rest is folded (Enter shows them all).
const FOLDED_REPLY_LINES: usize = 3;

struct Clock {
    relative: bool,
    start: Timestamp,
}

impl Clock {
    fn show(&self, ts: Timestamp) -> String {
        if self.relative {
            format!(
                "{:>15}",
                format!("+{:.6}s", ts.since(self.start) as f64 / 1e9)
            )
        } else {
            time::utc(ts).get(11..).unwrap_or("").to_string()
        }
    }
}

fn latency(exchange: &Exchange) -> Option<String> {
    let (command, reply) = (exchange.command.as_ref()?, exchange.reply.as_ref()?);
    Some(format!("{:.2} ms", reply.ts.since(command.ts) as f64 / 1e6))
}

pub fn message_summary(message: &Message) -> String {
    let v = &message.view;
    let mut text = format!(
        "[message #{}: {} bytes, subject \"{}\"",
        message.id,
        message.captured.size,
        sanitize::line(v.subject.as_deref().unwrap_or("").as_bytes())
    );
    if !v.attachments.is_empty() {
        text.push_str(&format!(", {} attachments", v.attachments.len()));
    }
    if message.captured.partial {
        text.push_str(", partial");
    } else if !message.captured.complete {
        text.push_str(", incomplete");
    }
    text.push_str("] (Enter opens it)");
    text
}

fn explained<'a>(text: String, style: Style, note: Option<String>, theme: &Theme) -> Vec<Span<'a>> {
    let mut spans = vec![Span::styled(text, style)];
    if let Some(note) = note {
        spans.push(Span::styled(format!("   ← {note}"), theme.dim));
    }
    spans
}

fn reply_note(protocol: Protocol, reply: &Reply) -> Option<String> {
    let base = explain::reply(protocol, reply.code())?;
    Some(match reply.enhanced().and_then(explain::enhanced) {
        Some(detail) => format!("{base} ({detail})"),
        None => base.to_string(),
    })
}

/// The lines of one dialogue item.
fn item_lines(
    item: &Item,
    protocol: Protocol,
    expanded: bool,
    explain_on: bool,
    clock: &Clock,
) -> Vec<Line<'static>> {
    let theme = theme();
    match item {
        Item::Exchange(exchange) => {
            let mut lines = Vec::new();
            if let Some(command) = &exchange.command {
                let note = explain_on
                    .then(|| explain::command(protocol, &command.verb).map(str::to_string))
                    .flatten();
                let mut spans = vec![Span::styled(
                    format!("{} C: ", clock.show(command.ts)),
                    theme.dim,
                )];
                spans.extend(explained(
                    sanitize::line(command.line.as_bytes()),
                    theme.client,
                    note,
                    theme,
                ));
                lines.push(Line::from(spans));
            }
            match &exchange.reply {
                Some(reply) => {
                    let count = reply.line_count();
                    let shown = if expanded { count } else { FOLDED_REPLY_LINES };
                    let last = count.saturating_sub(1);
                    for (i, text) in reply.lines().enumerate().take(shown) {
                        let mut text = sanitize::line(text.as_bytes());
                        if i == shown.min(count) - 1 && i < last {
                            text.push_str(&format!("  … (+{} lines, Enter)", last - i));
                        }
                        if i == 0 {
                            if let Some(l) = latency(exchange) {
                                text.push_str(&format!("   ({l})"));
                            }
                        }
                        let note = (explain_on && i == 0)
                            .then(|| reply_note(protocol, reply))
                            .flatten();
                        let mut spans = vec![Span::styled(
                            format!("{} S: ", clock.show(reply.ts)),
                            theme.dim,
                        )];
                        spans.extend(explained(text, theme.server, note, theme));
                        lines.push(Line::from(spans));
                    }
                }
                None if exchange.command.is_some() => lines.push(Line::styled(
                    "                S: (no reply captured)",
                    theme.dim,
                )),
                None => {}
            }
            lines
        }
        Item::Message(message) => {
            let side = if matches!(message.captured.source, "pop3" | "imap-fetch") {
                "S"
            } else {
                "C"
            };
            let style = if side == "S" {
                theme.server
            } else {
                theme.client
            };
            vec![Line::from(vec![
                Span::styled(
                    format!("{} {side}: ", clock.show(message.captured.ts)),
                    theme.dim,
                ),
                Span::styled(
                    message_summary(message),
                    style.add_modifier(ratatui::style::Modifier::BOLD),
                ),
            ])]
        }
        Item::Note(note) => vec![Line::styled(
            format!(
                "{} !! {}",
                clock.show(note.ts),
                sanitize::line(note.text.as_bytes())
            ),
            theme.note,
        )],
        Item::Finding(finding) => vec![Line::styled(
            format!(
                "{} {}",
                clock.show(finding.ts),
                transcript::finding_line(finding)
            ),
            theme.severity(finding.severity()),
        )],
    }
}

/// The arrows of the ladder for one item, `width` columns between the two lifelines.
fn ladder_lines(item: &Item, width: usize, clock: &Clock) -> Vec<Line<'static>> {
    let theme = theme();
    let arrow = |text: &str, rightwards: bool| -> String {
        let room = width.saturating_sub(6);
        let text: String = text.chars().take(room).collect();
        let fill = room.saturating_sub(text.chars().count());
        if rightwards {
            format!("│ ── {text} {}▶│", "─".repeat(fill))
        } else {
            format!("│◀{} {text} ── │", "─".repeat(fill))
        }
    };
    match item {
        Item::Exchange(exchange) => {
            let mut lines = Vec::new();
            if let Some(command) = &exchange.command {
                lines.push(Line::from(vec![
                    Span::styled(clock.show(command.ts), theme.dim),
                    Span::styled(
                        arrow(&sanitize::line(command.line.as_bytes()), true),
                        theme.client,
                    ),
                ]));
            }
            if let Some(reply) = &exchange.reply {
                let mut text = sanitize::line(reply.first_line().as_bytes());
                if let Some(l) = latency(exchange) {
                    text = format!("{text} (+{l})");
                }
                lines.push(Line::from(vec![
                    Span::styled(clock.show(reply.ts), theme.dim),
                    Span::styled(arrow(&text, false), theme.server),
                ]));
            }
            lines
        }
        Item::Message(message) => {
            let fetched = matches!(message.captured.source, "pop3" | "imap-fetch");
            vec![Line::from(vec![
                Span::styled(clock.show(message.captured.ts), theme.dim),
                Span::styled(
                    arrow(
                        &format!("message #{} ({} bytes)", message.id, message.captured.size),
                        !fetched,
                    ),
                    if fetched { theme.server } else { theme.client },
                ),
            ])]
        }
        Item::Note(note) => vec![Line::styled(
            format!(
                "{}│ {} │",
                clock.show(note.ts),
                sanitize::line(note.text.as_bytes())
            ),
            theme.note,
        )],
        Item::Finding(finding) => vec![Line::styled(
            format!(
                "{}│ {} │",
                clock.show(finding.ts),
                transcript::finding_line(finding)
            ),
            theme.severity(finding.severity()),
        )],
    }
}

/// Authentications the header lists; a brute force would leave no room for the dialogue.
const HEADER_AUTH_LINES: usize = 4;

fn header(entry: &Entry, show_secrets: bool) -> Vec<Line<'static>> {
    let theme = theme();
    let row = &entry.row;
    let mut lines = vec![Line::styled(
        format!(
            "Session {} · {} → {} · {} · {} · {}",
            row.id,
            row.client,
            row.server,
            row.protocol.name(),
            time::duration(row.end.since(row.start)),
            row.ended.map_or("open", |e| e.name())
        ),
        theme.title,
    )];
    let tls_style = if row.tls.error().is_some() {
        theme.bad
    } else {
        Style::default()
    };
    lines.push(Line::styled(transcript::tls_summary(&row.tls), tls_style));
    if let Some(cert) = &row.tls.info().certificate {
        lines.push(Line::raw(format!(
            "certificate: {} · issuer {} · valid {} to {}",
            sanitize::line(cert.subject.as_bytes()),
            sanitize::line(cert.issuer.as_bytes()),
            cert.not_before,
            cert.not_after
        )));
    }
    for auth in entry.auth.iter().take(HEADER_AUTH_LINES) {
        let secret = match (&auth.secret, show_secrets) {
            (Some(s), true) => sanitize::line(s.expose().as_bytes()),
            (Some(_), false) => "**** (r reveals)".to_string(),
            (None, _) => "-".to_string(),
        };
        let result = match auth.success {
            Some(true) => Span::styled("accepted", theme.good),
            Some(false) => Span::styled("refused", theme.bad),
            None => Span::raw("result not captured"),
        };
        lines.push(Line::from(vec![
            Span::raw(format!(
                "auth {} user {} secret {secret} · ",
                sanitize::line(auth.mechanism.as_bytes()),
                sanitize::line(auth.username.as_deref().unwrap_or("-").as_bytes()),
            )),
            result,
        ]));
    }
    let more = row.auth_attempts.saturating_sub(HEADER_AUTH_LINES as u64);
    if more > 0 {
        lines.push(Line::raw(format!(
            "… and {more} more authentication attempts (each is in the dialogue below)"
        )));
    }
    lines
}

pub fn draw(frame: &mut Frame, area: Rect, app: &mut App, ladder: bool) {
    let theme = theme();
    let Some(entry) = app.open_entry() else {
        frame.render_widget(Paragraph::new("no session open"), area);
        return;
    };
    let head = header(entry, app.show_secrets);
    let [top, body] = Layout::vertical([
        Constraint::Length(head.len() as u16 + 1),
        Constraint::Min(1),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(head).block(Block::default().borders(Borders::BOTTOM)),
        top,
    );
    let clock = Clock {
        relative: app.relative_time,
        start: entry.items.first().map(item_ts).unwrap_or_default(),
    };
    let protocol = entry.row.protocol;
    let width = usize::from(body.width).saturating_sub(17);
    let mut lines: Vec<Line> = Vec::new();
    let mut selected_at = 0;
    if ladder {
        lines.push(Line::styled(
            format!(
                "{:15} client{}server",
                "",
                " ".repeat(width.saturating_sub(11))
            ),
            theme.header,
        ));
    }
    for (i, item) in entry.items.iter().enumerate() {
        let mut group = if ladder {
            ladder_lines(item, width, &clock)
        } else {
            let expanded = app.expanded.contains(&(entry.row.id, i));
            item_lines(item, protocol, expanded, app.explain, &clock)
        };
        if i == app.line {
            selected_at = lines.len();
            for line in &mut group {
                line.style = theme.selected;
            }
        }
        lines.extend(group);
    }
    if entry.items.is_empty() {
        lines.push(Line::styled(
            "(no dialogue: nothing readable was captured)",
            theme.dim,
        ));
    }
    let height = usize::from(body.height).max(1);
    app.offset = super::sessions::window(selected_at, app.offset.min(lines.len()), height);
    let offset = app.offset.min(u16::MAX as usize) as u16;
    frame.render_widget(Paragraph::new(lines).scroll((offset, 0)), body);
}
