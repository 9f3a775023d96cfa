//! Everything worth a look across the capture, the most severe first (in the order found
//! within a severity): one line per finding,
//! and below the list what the selected one means and the exchanges that show it.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use mailscope::export::time;
use mailscope::export::transcript::finding_line;
use mailscope::sanitize;

use super::theme::theme;
use crate::ui::app::App;
use crate::ui::store::Item;

/// Lines under the list for the selected finding: why it matters and its evidence.
const DETAIL_HEIGHT: u16 = 8;

pub fn draw(frame: &mut Frame, area: Rect, app: &mut App) {
    let theme = theme();
    let [list_area, detail_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(DETAIL_HEIGHT)]).areas(area);
    let selected = app.finding;
    let height = usize::from(list_area.height.saturating_sub(1)).max(1);
    let offset = super::sessions::window(selected, app.offset, height);
    app.offset = offset;
    let store = &app.store;
    let total = store.findings.len();
    let finding_at = |i: usize| {
        let l = store.findings.get(i)?;
        match store.entries.get(l.entry)?.items.get(l.item)? {
            Item::Finding(f) => Some(f),
            _ => None,
        }
    };
    let title = format!(" Findings ({total}) ");
    let lines: Vec<Line> = (offset..total.min(offset + height))
        .filter_map(|i| Some((i, finding_at(i)?)))
        .map(|(i, f)| {
            let text = format!(
                "{}  session {:<5} {}",
                time::utc(f.ts).get(11..).unwrap_or(""),
                f.session,
                finding_line(f)
            );
            let style = if i == selected {
                theme.selected
            } else {
                theme.severity(f.severity())
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
        list_area,
    );
    let detail: Vec<Line> = match finding_at(selected) {
        Some(f) => std::iter::once(Line::styled(f.kind.why(), theme.title))
            .chain(
                f.evidence
                    .iter()
                    .map(|e| Line::styled(sanitize::line(e.as_bytes()), theme.dim)),
            )
            .chain(std::iter::once(Line::styled(
                "Enter: the session, at this finding",
                theme.dim,
            )))
            .collect(),
        None => Vec::new(),
    };
    frame.render_widget(
        Paragraph::new(detail).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::TOP)
                .title(" Why it matters "),
        ),
        detail_area,
    );
}
