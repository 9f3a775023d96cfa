//! Everything worth a look across the capture: for now the parser notes and the TLS sessions
//! that could not be decrypted (the findings analysis will add its own).

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use mailscope::export::time;
use mailscope::sanitize;

use super::theme::theme;
use crate::ui::app::App;

pub fn draw(frame: &mut Frame, area: Rect, app: &mut App) {
    let theme = theme();
    let selected = app.finding;
    let height = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = super::sessions::window(selected, app.offset, height);
    app.offset = offset;
    let findings = app.findings();
    let title = format!(" Findings ({}) ", findings.len());
    let lines: Vec<Line> = findings
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, f)| {
            let text = format!(
                "{}  session {:<5} {}",
                time::utc(f.ts).get(11..).unwrap_or(""),
                f.session,
                sanitize::line(f.text.as_bytes())
            );
            let style = if i == selected {
                theme.selected
            } else {
                theme.note
            };
            Line::styled(text, style)
        })
        .collect();
    let lines = if lines.is_empty() {
        vec![Line::styled("nothing so far", theme.dim)]
    } else {
        lines
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::TOP).title(title)),
        area,
    );
}
