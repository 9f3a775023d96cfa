//! One message: the envelope beside the decoded headers, where it is stored, the relay path
//! from its Received chain, the MIME tree, attachments, and the best text part.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use mailscope::session::model::Message;
use mailscope::{hex, sanitize};

use super::theme::theme;
use crate::ui::app::App;
use crate::ui::store::Item;

fn field(name: &str, value: &str) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{name:>12}: "), theme().title),
        Span::raw(sanitize::line(value.as_bytes())),
    ])
}

fn section(name: &str) -> Line<'static> {
    Line::styled(format!("── {name} "), theme().header)
}

pub fn lines(message: &Message, text: &str) -> Vec<Line<'static>> {
    let (c, v) = (&message.captured, &message.view);
    let mut lines = vec![section(&format!("message #{} ({})", message.id, c.source))];
    lines.push(field("Subject", v.subject.as_deref().unwrap_or("")));
    lines.push(field("From", &v.from.join(", ")));
    lines.push(field("To", &v.to.join(", ")));
    if !v.cc.is_empty() {
        lines.push(field("Cc", &v.cc.join(", ")));
    }
    if !v.reply_to.is_empty() {
        lines.push(field("Reply-To", &v.reply_to.join(", ")));
    }
    lines.push(field("Date", v.date.as_deref().unwrap_or("")));
    lines.push(field("Message-ID", v.message_id.as_deref().unwrap_or("")));
    lines.push(section("envelope and storage"));
    if let Some(from) = &c.mail_from {
        lines.push(field("MAIL FROM", from));
        lines.push(field("RCPT TO", &c.rcpt_to.join(", ")));
    }
    if let Some(mailbox) = &c.mailbox {
        let uid = c.uid.map_or(String::new(), |u| format!(" UID {u}"));
        lines.push(field(
            "mailbox",
            &format!("{mailbox}{uid} {}", c.flags.join(" ")),
        ));
    }
    let mut state = vec![format!("{} bytes", c.size)];
    if c.partial {
        state.push(format!(
            "partial ({})",
            c.section.as_deref().unwrap_or("headers or a part")
        ));
    }
    if !c.complete {
        state.push(format!("incomplete, {} bytes missing", c.hole_bytes));
    }
    lines.push(field("size", &state.join(", ")));
    lines.push(field("SHA-256", &hex::encode(&c.sha256)));
    if !message.seen_before.is_empty() || message.reports_on.is_some() {
        lines.push(section(
            "journey (the same Message-ID earlier in the capture)",
        ));
        for s in &message.seen_before {
            let same = if !s.whole {
                "a part"
            } else if Some(s.body_hash) == message.body_hash {
                "same body"
            } else {
                "ANOTHER BODY"
            };
            lines.push(Line::raw(format!(
                "  message #{} in session {} ({}), {same}",
                s.message, s.session, s.source
            )));
        }
        let more = message
            .seen_count
            .saturating_sub(message.seen_before.len() as u64);
        if more > 0 {
            lines.push(Line::raw(format!("  and {more} sightings after those")));
        }
        if let Some(original) = message.reports_on {
            lines.push(Line::raw(format!(
                "  a delivery report on message #{original}"
            )));
        }
    }
    if !v.hops.is_empty() {
        lines.push(section("relay path (oldest first)"));
        for hop in &v.hops {
            let mut marks = Vec::new();
            if let Some(delay) = hop.delay_s {
                marks.push(format!("+{delay} s"));
            }
            if hop.encrypted {
                marks.push(hop.tls.clone().unwrap_or_else(|| "TLS".into()));
            }
            if hop.authenticated {
                marks.push("authenticated".into());
            }
            let text = format!(
                "from {} [{}] by {} with {} {}{}",
                hop.from.as_deref().unwrap_or("?"),
                hop.from_ip.as_deref().unwrap_or("?"),
                hop.by.as_deref().unwrap_or("?"),
                hop.with.as_deref().unwrap_or("?"),
                hop.date.as_deref().unwrap_or(""),
                if marks.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", marks.join(", "))
                }
            );
            lines.push(Line::raw(format!("  {}", sanitize::line(text.as_bytes()))));
        }
    }
    lines.push(section("MIME structure"));
    for (depth, content_type, size) in &v.parts {
        lines.push(Line::raw(format!(
            "  {}{} ({size} bytes)",
            "  ".repeat(*depth),
            sanitize::line(content_type.as_bytes())
        )));
    }
    if !v.attachments.is_empty() {
        lines.push(section("attachments"));
        for a in &v.attachments {
            lines.push(Line::raw(format!(
                "  {} · {} · {} bytes · sha256 {}",
                sanitize::line(a.filename.as_deref().unwrap_or("(unnamed)").as_bytes()),
                sanitize::line(a.content_type.as_bytes()),
                a.size,
                hex::encode(&a.sha256)
            )));
        }
    }
    lines.push(section("text"));
    lines.extend(
        sanitize::text(text.as_bytes())
            .lines()
            .map(|l| Line::raw(l.to_string())),
    );
    lines
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let message =
        app.open_entry()
            .zip(app.message)
            .and_then(|(entry, i)| match entry.items.get(i) {
                Some(Item::Message(m)) => Some(m),
                _ => None,
            });
    let Some(message) = message else {
        frame.render_widget(Paragraph::new("no message open"), area);
        return;
    };
    let scroll = app.scroll.min(u16::MAX as usize) as u16;
    frame.render_widget(
        Paragraph::new(lines(message, &app.message_text))
            .block(Block::default().borders(Borders::NONE))
            .scroll((scroll, 0)),
        area,
    );
}
