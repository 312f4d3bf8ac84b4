//! `loadgen run --tui`: the run drawn live on the terminal (ratatui, on
//! stderr, so `--json` on stdout stays clean). A header with the phase, the
//! time, the load and the running decision; the live heap over time with the
//! Theil–Sen fit of the measured part drawn through it, so a leak's line is
//! seen to form; RSS and alive tasks below. `q`, Esc or ctrl-c ends the run
//! early (as ctrl-c does without the TUI: the samples so far are judged).
//!
//! The drawing is a pure function of a [`View`] (tested on ratatui's test
//! backend); the task around it keeps the history from the shared newest
//! sample, redraws four times a second, and always gives the terminal back,
//! also when the run ends by an error or a panic.

use std::io::{IsTerminal, Stderr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use leaklab_model::run::{Phase, Sample};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::ExecutableCommand;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Wrap};
use ratatui::{Frame, Terminal};
use tokio::time::Instant;

use super::progress::Status;
use super::until_verdict::UntilVerdict;
use crate::engine::Progress;
use crate::judging::stats::theil_sen;
use crate::sampling::Shared;

const MIB: f64 = 1024.0 * 1024.0;
/// Points kept per series: a long run keeps every other one beyond this.
const MAX_POINTS: usize = 2048;

/// Everything one frame shows.
#[derive(Debug, Default)]
pub struct View {
    pub title: String,
    pub total_s: f64,
    pub warmup_s: f64,
    pub elapsed_s: f64,
    /// The progress line's figures (phase, requests, memory, slope).
    pub line: String,
    /// The running decision (`--until-verdict`), if any.
    pub decision: String,
    /// (t, MiB) of the live heap, RSS, and (t, count) of alive tasks.
    pub heap: Vec<(f64, f64)>,
    pub rss: Vec<(f64, f64)>,
    pub tasks: Vec<(f64, f64)>,
}

impl View {
    /// Adds a sample once (the sampler and the redraw run at their own pace).
    pub fn push(&mut self, sample: &Sample) {
        let Some(memory) = sample.memory.as_ref() else {
            return;
        };
        if sample.phase == Phase::Baseline || self.heap.last().is_some_and(|p| p.0 >= sample.t) {
            return;
        }
        let t = sample.t;
        self.heap.push((t, memory.allocated as f64 / MIB));
        self.rss
            .push((t, sample.rss().unwrap_or(memory.rss) as f64 / MIB));
        self.tasks.push((t, memory.alive_tasks as f64));
        if self.heap.len() > MAX_POINTS {
            for series in [&mut self.heap, &mut self.rss, &mut self.tasks] {
                let mut i = 0;
                series.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
            }
        }
    }

    /// The Theil–Sen line through the measured part of a series, as two
    /// points to draw, once there are three.
    fn fit(&self, series: &[(f64, f64)]) -> Option<[(f64, f64); 2]> {
        let measured: Vec<(f64, f64)> = series
            .iter()
            .copied()
            .filter(|p| p.0 >= self.warmup_s)
            .collect();
        let (x, y): (Vec<f64>, Vec<f64>) = measured.iter().copied().unzip();
        let fit = theil_sen(&x, &y)?;
        let (a, b) = (x.first()?, x.last()?);
        Some([
            (*a, fit.intercept + fit.slope * a),
            (*b, fit.intercept + fit.slope * b),
        ])
    }
}

/// The y bounds of the series drawn: a little room above and below.
fn bounds(series: &[&[(f64, f64)]]) -> [f64; 2] {
    let ys = series.iter().flat_map(|s| s.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if !lo.is_finite() {
        return [0.0, 1.0];
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.01).max(0.5);
    [(lo - pad).max(0.0), hi + pad]
}

/// One chart: the series, its fit when it has one, axes over the run.
fn chart<'a>(
    view: &View,
    title: &'a str,
    unit: &str,
    series: &'a [(f64, f64)],
    fit: &'a [(f64, f64)],
    color: Color,
) -> Chart<'a> {
    let y = bounds(&[series, fit]);
    let mut datasets = vec![Dataset::default()
        .name(title)
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::default().fg(color))
        .data(series)];
    if !fit.is_empty() {
        datasets.push(
            Dataset::default()
                .name("fit")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(Color::Yellow))
                .data(fit),
        );
    }
    let total = view.total_s.max(1.0);
    Chart::new(datasets)
        .block(Block::bordered().title(format!(
            " {title} ({unit}); warm-up to {:.0}s, fit over the rest ",
            view.warmup_s
        )))
        .x_axis(
            Axis::default()
                .bounds([0.0, total])
                .labels(["0s".to_owned(), format!("{total:.0}s")])
                .style(Style::default().fg(Color::Gray)),
        )
        .y_axis(
            Axis::default()
                .bounds(y)
                .labels([format!("{:.1}", y[0]), format!("{:.1}", y[1])])
                .style(Style::default().fg(Color::Gray)),
        )
}

/// Draws one frame of `view`.
pub fn draw(frame: &mut Frame, view: &View) {
    let [head, heap, lower, foot] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(8),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let left = (view.total_s - view.elapsed_s).max(0.0);
    // The load on one line, the memory and slope on the next, so a narrow
    // terminal keeps them (the line's parts are ` | `-separated).
    let (load, memory) = view.line.split_once(" | ").unwrap_or((&view.line, ""));
    let header = Paragraph::new(vec![
        Line::from(format!(
            "{:.0}/{:.0}s, {left:.0}s left  {load}",
            view.elapsed_s, view.total_s
        )),
        Line::from(memory.to_owned()),
        Line::from(if view.decision.is_empty() {
            "the verdict comes at the end of the run (--until-verdict decides as it goes)"
                .to_owned()
        } else {
            view.decision.trim_start_matches(" | ").to_owned()
        }),
    ])
    .wrap(Wrap { trim: true })
    .block(
        Block::bordered()
            .title(format!(" loadgen: {} ", view.title))
            .bold(),
    );
    frame.render_widget(header, head);
    let heap_fit = view.fit(&view.heap).map(Vec::from).unwrap_or_default();
    frame.render_widget(
        chart(view, "live heap", "MiB", &view.heap, &heap_fit, Color::Cyan),
        heap,
    );
    let [rss, tasks] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(lower);
    let rss_fit = view.fit(&view.rss).map(Vec::from).unwrap_or_default();
    frame.render_widget(
        chart(view, "RSS", "MiB", &view.rss, &rss_fit, Color::Magenta),
        rss,
    );
    let tasks_fit = view.fit(&view.tasks).map(Vec::from).unwrap_or_default();
    frame.render_widget(
        chart(
            view,
            "alive tasks",
            "count",
            &view.tasks,
            &tasks_fit,
            Color::Green,
        ),
        tasks,
    );
    frame.render_widget(
        Paragraph::new("q, Esc or ctrl-c: stop now and judge the samples so far").dim(),
        foot,
    );
}

/// Whether `--tui` can draw here: stderr must be a terminal.
pub fn available() -> bool {
    std::io::stderr().is_terminal()
}

/// The terminal, in raw mode on the alternate screen until dropped.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stderr>>,
}

impl Screen {
    fn open() -> std::io::Result<Screen> {
        enable_raw_mode()?;
        let mut err = std::io::stderr();
        if let Err(e) = err.execute(EnterAlternateScreen) {
            let _ = disable_raw_mode();
            return Err(e);
        }
        let terminal = Terminal::new(CrosstermBackend::new(err))?;
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = self.terminal.backend_mut().execute(LeaveAlternateScreen);
        let _ = self.terminal.show_cursor();
    }
}

/// Whether a key asks to stop the run.
fn wants_stop() -> bool {
    // Bounded: only the events already queued are read.
    for _ in 0..64 {
        match event::poll(Duration::ZERO) {
            Ok(true) => {}
            _ => return false,
        }
        if let Ok(Event::Key(key)) = event::read() {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                return true;
            }
        }
    }
    false
}

/// Draws the run until it aborts this task (bounded by the run's duration
/// and half a minute more). Falls back to nothing drawn if the terminal
/// cannot be set up; the run goes on either way.
pub async fn live(
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    until_verdict: Option<Arc<UntilVerdict>>,
    (start, duration, warmup): (Instant, Duration, Duration),
    title: String,
) {
    let mut screen = match Screen::open() {
        Ok(screen) => screen,
        Err(err) => {
            eprintln!("loadgen: --tui: cannot take the terminal ({err}); going on without it");
            return;
        }
    };
    let mut view = View {
        title,
        total_s: duration.as_secs_f64(),
        warmup_s: warmup.as_secs_f64(),
        ..View::default()
    };
    let mut status = Status::new(progress.clone(), shared, until_verdict);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    for _ in 0..(duration.as_secs() + 30) * 4 {
        tick.tick().await;
        let now = status.tick();
        if let Some(sample) = &now.latest {
            view.push(sample);
        }
        view.elapsed_s = start.elapsed().as_secs_f64();
        view.line = now.line;
        view.decision = now.decision;
        if screen.terminal.draw(|f| draw(f, &view)).is_err() {
            return;
        }
        if wants_stop() {
            progress.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// What the area of a test frame shows, line by line.
#[cfg(test)]
fn rendered(view: &View, area: ratatui::layout::Rect) -> Vec<String> {
    let backend = ratatui::backend::TestBackend::new(area.width, area.height);
    let mut terminal = Terminal::new(backend).expect("test terminal");
    terminal.draw(|f| draw(f, view)).expect("draw");
    let buffer = terminal.backend().buffer().clone();
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use leaklab_model::run::TargetMemory;

    use super::*;

    fn sample(t: f64, phase: Phase, allocated: u64, tasks: u64) -> Sample {
        Sample {
            t,
            phase,
            requests: 0,
            in_flight: 0,
            memory: Some(TargetMemory {
                allocated,
                rss: allocated + (8 << 20),
                alive_tasks: tasks,
                ..Default::default()
            }),
            proc: None,
            cgroup: None,
            metrics: None,
            error: None,
        }
    }

    #[test]
    fn a_frame_shows_the_time_the_three_charts_and_the_fit_of_a_climb() {
        let mut view = View {
            title: "unbounded-cache against http://127.0.0.1:8080".into(),
            total_s: 40.0,
            warmup_s: 10.0,
            elapsed_s: 25.0,
            line: "measuring  5000 done  200/s  errors 0  dropped 0".into(),
            decision: " | evidence 0.40 of the way to a leak call".into(),
            ..View::default()
        };
        view.push(&sample(-1.0, Phase::Baseline, 1 << 30, 0));
        for i in 0..100 {
            let t = i as f64 * 0.25;
            let phase = if t < 10.0 {
                Phase::Warmup
            } else {
                Phase::Measure
            };
            view.push(&sample(t, phase, (20 << 20) + i * (2 << 20), 6));
        }
        assert_eq!(view.heap.len(), 100, "the baseline is not drawn");
        let fit = view.fit(&view.heap).expect("a fit over the measured part");
        assert!(
            (fit[0].0 - 10.0).abs() < 1e-9,
            "the fit starts after warm-up"
        );
        // 2 MiB per quarter second: 8 MiB/s.
        let slope = (fit[1].1 - fit[0].1) / (fit[1].0 - fit[0].0);
        assert!((slope - 8.0).abs() < 1e-9, "{slope}");

        let lines = rendered(&view, ratatui::layout::Rect::new(0, 0, 110, 32));
        let screen = lines.join("\n");
        for text in [
            "loadgen: unbounded-cache",
            "25/40s, 15s left  measuring",
            "evidence 0.40 of the way to a leak call",
            "live heap (MiB)",
            "RSS (MiB)",
            "alive tasks (count)",
            "warm-up to 10s",
            "q, Esc or ctrl-c",
        ] {
            assert!(screen.contains(text), "{text:?} not on screen:\n{screen}");
        }
        assert!(
            screen.contains('⠁')
                || screen
                    .chars()
                    .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)),
            "no line drawn:\n{screen}"
        );
        // On 80 columns the memory and the slope still show, on their own line.
        view.line = "measuring  5000 done  200/s  errors 0  dropped 0 | allocated 36.8 MiB rss 46.5 MiB tasks 8 | heap slope +2.0 MiB/s".into();
        let narrow = rendered(&view, ratatui::layout::Rect::new(0, 0, 80, 30)).join("\n");
        for text in ["dropped 0", "rss 46.5 MiB", "heap slope +2.0 MiB/s"] {
            assert!(
                narrow.contains(text),
                "{text:?} not on 80 columns:\n{narrow}"
            );
        }
    }

    #[test]
    fn a_long_run_keeps_a_bounded_history() {
        let mut view = View::default();
        for i in 0..(3 * MAX_POINTS) {
            view.push(&sample(i as f64, Phase::Measure, 1, 1));
        }
        assert!(view.heap.len() <= MAX_POINTS, "{}", view.heap.len());
        assert_eq!(view.heap.len(), view.tasks.len());
        assert_eq!(
            view.heap.last().map(|p| p.0),
            Some((3 * MAX_POINTS - 1) as f64)
        );
    }

    #[test]
    fn bounds_leave_room_and_survive_no_data() {
        assert_eq!(bounds(&[&[]]), [0.0, 1.0]);
        let [lo, hi] = bounds(&[&[(0.0, 10.0), (1.0, 20.0)]]);
        assert!(lo < 10.0 && hi > 20.0 && lo >= 0.0);
    }
}
