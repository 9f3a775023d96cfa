//! The terminal UI: `app` holds the state and what actions do, `keys` maps keys and mouse to
//! actions, `view` draws, `store` is the model as the reader sent it, and `worker` is the
//! reading thread. The engine runs on the worker; the UI thread only draws and answers keys, so
//! it never freezes, and the terminal is restored however the UI ends (quit, Ctrl-C, panic).

// Public inside the binary so that benches/ui.rs can include this tree and time it.
pub mod app;
pub mod keys;
pub mod spool;
pub mod store;
pub mod view;
pub mod worker;

use std::io::{self, Stdout};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::Terminal;

pub use app::{App, Slicer};
pub use worker::Job;

/// Time given to model updates per frame, so that keys are answered while a file streams in.
const UPDATE_BUDGET: Duration = Duration::from_millis(25);
/// How long to wait for a key before looking at the channel again.
const TICK: Duration = Duration::from_millis(50);

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, DisableMouseCapture);
    let _ = execute!(io::stdout(), crossterm::cursor::Show);
}

fn setup() -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode()?;
    execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    Terminal::new(CrosstermBackend::new(io::stdout()))
}

/// Runs the UI on `job` until the user quits. Returns the read faults, if any, for the caller's
/// exit status.
pub fn run(job: Job, title: String, slicer: Option<Slicer>) -> io::Result<Vec<String>> {
    let live = job.dissection.live;
    let (tx, rx) = sync_channel(worker::CHANNEL_DEPTH);
    let reader = worker::spawn(job, tx);
    let mut terminal = setup()?;
    let mut app = App::new(title, live);
    app.slicer = slicer;
    let result = event_loop(&mut terminal, &mut app, &rx);
    restore();
    drop(rx);
    // The reader stops at its next update once the channel is gone; a live capture is told
    // nothing, so it is left to end with the process.
    if !live {
        let _ = reader.join();
    }
    result.map(|()| app.store.faults.clone())
}

fn drain(app: &mut App, rx: &Receiver<store::Update>) -> bool {
    let deadline = Instant::now() + UPDATE_BUDGET;
    let mut changed = false;
    while Instant::now() < deadline {
        match rx.try_recv() {
            Ok(update) => {
                app.store.apply(update);
                changed = true;
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    changed
}

fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    rx: &Receiver<store::Update>,
) -> io::Result<()> {
    let mut dirty = true;
    while !app.quit {
        dirty |= drain(app, rx);
        if dirty {
            terminal.draw(|frame| view::draw(frame, app))?;
            dirty = false;
        }
        if event::poll(TICK)? {
            let event = event::read()?;
            if let Some(action) = keys::action(&event, app.editing_filter, view::LIST_TOP) {
                app.handle(action);
            }
            dirty = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
