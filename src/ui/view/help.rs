//! `?`: every key.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::theme::theme;
use crate::ui::app::App;
use crate::ui::keys::HELP;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = theme();
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!("  {keys:<22}"), theme.title),
                Span::raw(*what),
            ])
        })
        .collect();
    let block = Block::default().borders(Borders::TOP).title(" Keys ");
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((app.scroll.min(u16::MAX as usize) as u16, 0)),
        area,
    );
}
