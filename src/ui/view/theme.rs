//! Colours that read on dark and light backgrounds (the terminal's own palette, no fixed RGB);
//! with NO_COLOR set, emphasis only.

use mailscope::session::model::Severity;
use ratatui::style::{Color, Modifier, Style};

pub struct Theme {
    pub client: Style,
    pub server: Style,
    pub note: Style,
    pub dim: Style,
    pub title: Style,
    pub selected: Style,
    pub header: Style,
    pub bad: Style,
    pub good: Style,
}

const COLOUR: Theme = Theme {
    client: Style::new().fg(Color::Cyan),
    server: Style::new().fg(Color::Yellow),
    note: Style::new().fg(Color::Magenta),
    dim: Style::new().add_modifier(Modifier::DIM),
    title: Style::new().add_modifier(Modifier::BOLD),
    selected: Style::new().add_modifier(Modifier::REVERSED),
    header: Style::new()
        .add_modifier(Modifier::BOLD)
        .add_modifier(Modifier::UNDERLINED),
    bad: Style::new().fg(Color::Red),
    good: Style::new().fg(Color::Green),
};

const PLAIN: Theme = Theme {
    client: Style::new(),
    server: Style::new().add_modifier(Modifier::BOLD),
    note: Style::new().add_modifier(Modifier::ITALIC),
    dim: Style::new().add_modifier(Modifier::DIM),
    title: Style::new().add_modifier(Modifier::BOLD),
    selected: Style::new().add_modifier(Modifier::REVERSED),
    header: Style::new().add_modifier(Modifier::UNDERLINED),
    bad: Style::new().add_modifier(Modifier::BOLD),
    good: Style::new(),
};

/// https://no-color.org: any non-empty NO_COLOR turns colours off.
impl Theme {
    /// How a finding of this severity is shown.
    pub fn severity(&self, severity: Severity) -> Style {
        match severity {
            Severity::Alert => self.bad,
            Severity::Warning => self.note,
            Severity::Info => self.dim,
        }
    }
}

pub fn theme() -> &'static Theme {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        &PLAIN
    } else {
        &COLOUR
    }
}
