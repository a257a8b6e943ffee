//! The live dashboard: a scraper thread feeds scrapes to the drawing loop,
//! which redraws on each one and on key presses. `q`, Esc and Ctrl-C quit;
//! the terminal is restored on every way out, a panic included (ratatui's
//! init installs a panic hook that restores it first).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Alignment, Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, LineGauge, Padding, Paragraph, Row, Table};
use ratatui::Frame;

use super::http::Target;
use super::scrape;
use super::view::{self, Fill, Scraped, View};

/// How often keys are looked at between scrapes.
const KEY_POLL: Duration = Duration::from_millis(100);
/// Characters of bar in the pools' gauge cells, at most: fewer when the
/// terminal is narrow.
const MAX_BAR: usize = 10;
/// Space between table columns.
const COLUMN_SPACING: u16 = 2;

/// Restores the terminal when dropped: on return, on `?`, and while a panic
/// unwinds.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// What the scraper thread sends: a scrape, or why there is none.
type Update = Result<Scraped, String>;

/// Runs the dashboard until the user quits.
pub fn run(target: Target, interval: Duration, pipeline: Option<String>) -> anyhow::Result<()> {
    let updates = spawn_scraper(target.clone(), interval);
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let mut state = State {
        url: target.to_string(),
        interval,
        pipeline,
        before: None,
        now: None,
        error: None,
        view: None,
    };
    loop {
        terminal.draw(|frame| draw(frame, &state))?;
        if quit_asked()? {
            return Ok(());
        }
        match updates.recv_timeout(Duration::ZERO) {
            Ok(update) => state.update(update),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the scraper thread stopped")
            }
        }
    }
}

/// Scrapes every `interval` on its own thread, so a slow endpoint never
/// freezes the keys. It ends when the receiver is gone.
fn spawn_scraper(target: Target, interval: Duration) -> Receiver<Update> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || loop {
        let started = Instant::now();
        let update = scrape(&target).map_err(|e| format!("{e:#}"));
        if sender.send(update).is_err() {
            return;
        }
        // Pacing the scrapes, not synchronizing with anything.
        thread::sleep((started + interval).saturating_duration_since(Instant::now()));
    });
    receiver
}

/// Waits up to [`KEY_POLL`] for a key; true for q, Esc or Ctrl-C (raw mode
/// turns Ctrl-C into a key instead of a signal).
fn quit_asked() -> anyhow::Result<bool> {
    if !event::poll(KEY_POLL)? {
        return Ok(false);
    }
    Ok(match event::read()? {
        Event::Key(key) if key.kind == KeyEventKind::Press => match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        },
        _ => false,
    })
}

struct State {
    url: String,
    interval: Duration,
    pipeline: Option<String>,
    before: Option<Scraped>,
    now: Option<Scraped>,
    error: Option<String>,
    view: Option<View>,
}

impl State {
    fn update(&mut self, update: Update) {
        match update {
            Ok(scraped) => {
                self.before = self.now.take();
                self.now = Some(scraped);
                if let Some(now) = &self.now {
                    match View::build(
                        &self.url,
                        self.pipeline.as_deref(),
                        self.before.as_ref(),
                        now,
                    ) {
                        Ok(view) => {
                            self.view = Some(view);
                            self.error = None;
                        }
                        Err(error) => self.error = Some(format!("{error:#}")),
                    }
                }
            }
            Err(error) => self.error = Some(error),
        }
    }
}

fn draw(frame: &mut Frame, state: &State) {
    let Some(view) = &state.view else {
        let message = match &state.error {
            Some(error) => Line::from(vec![
                "waiting for crew: ".into(),
                Span::styled(error.clone(), Style::new().fg(Color::Red)),
            ]),
            None => Line::from(format!("scraping {} …", state.url)),
        };
        let lines = vec![message, Line::from(""), Line::from("q quits").dim()];
        frame.render_widget(
            Paragraph::new(lines).block(titled(format!("crew top · {}", state.url))),
            frame.area(),
        );
        return;
    };
    let stages = view.stages_table();
    // The bars get what the numbers leave: two gauge columns, each a bar and
    // a space; borders and padding take 4.
    let spare = usize::from(frame.area().width)
        .saturating_sub(usize::from(table_width(&view.pools_table(0))) + 4);
    let pools = view.pools_table((spare / 2).saturating_sub(1).min(MAX_BAR));
    let [head, top, stages_area, pools_area, bottom, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(7),
        Constraint::Length(rows_height(&stages)),
        Constraint::Length(rows_height(&pools)),
        // What is left: the fixed parts above are drawn first.
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let state_style = match view.state {
        "ready" => Style::new().fg(Color::Green),
        "draining" => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red),
    };
    let headline = Line::from(vec![
        Span::styled(format!("crew top · {} ", view.url), Style::new().bold()),
        Span::styled(view.state.to_uppercase(), state_style.bold()),
        Span::raw(" · "),
        Span::raw(view.headline(false)),
    ]);
    frame.render_widget(Paragraph::new(headline), head);

    let [events_area, flight_area] =
        Layout::horizontal([Constraint::Length(40), Constraint::Min(30)]).areas(top);
    render_table(frame, events_area, &view.events_table(), "Events");
    draw_in_flight(frame, flight_area, view);
    render_table(frame, stages_area, &stages, "Stages");
    render_table(
        frame,
        pools_area,
        &pools,
        "Pools (busy/workers, queued/capacity)",
    );
    let [partitions_area, reasons_area] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(bottom);
    // Kafka's consumer and producer, and the HTTP sinks, ride on the
    // partitions' title: the layout stays the same with or without them.
    let mut partitions_title = "Partitions".to_owned();
    if let Some(kafka) = view.kafka_line() {
        partitions_title.push_str(&format!(" · kafka: {kafka}"));
    }
    if let Some(http) = view.http_line() {
        partitions_title.push_str(&format!(" · http: {http}"));
    }
    render_table(
        frame,
        partitions_area,
        &view.partitions_table(),
        &partitions_title,
    );
    render_table(
        frame,
        reasons_area,
        &view.reasons_table(),
        "Dropped and dead-lettered",
    );

    let footer = match &state.error {
        Some(error) => Line::from(vec![
            Span::styled(
                " scrape failed, showing the last one: ",
                Style::new().fg(Color::Red).bold(),
            ),
            Span::raw(error.clone()),
        ]),
        None => Line::from(format!(" q/Esc quit · every {:?}", state.interval)).dim(),
    };
    frame.render_widget(Paragraph::new(footer), foot);
}

fn draw_in_flight(frame: &mut Frame, area: Rect, view: &View) {
    let block = titled("In flight, latency".to_owned());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(1); 5])
        .split(inner);
    let gauge = |fill: &Fill, label: String| {
        let ratio = fill.ratio().unwrap_or(0.0).clamp(0.0, 1.0);
        LineGauge::default()
            .line_set(symbols::line::THICK)
            .ratio(ratio)
            .label(label)
            .filled_style(Style::new().fg(fill_color(fill.ratio())))
            .unfilled_style(Style::new().fg(Color::DarkGray))
    };
    frame.render_widget(
        gauge(
            &view.in_flight,
            format!(
                "events {:>9}/{:<9} {:>4}",
                view::offset(view.in_flight.used),
                view::offset(view.in_flight.capacity),
                view::percent(view.in_flight.ratio())
            ),
        ),
        rows[0],
    );
    frame.render_widget(
        gauge(
            &view.in_flight_bytes,
            format!(
                "bytes  {:>9}/{:<9} {:>4}",
                view::bytes(view.in_flight_bytes.used),
                view::bytes(view.in_flight_bytes.capacity),
                view::percent(view.in_flight_bytes.ratio())
            ),
        ),
        rows[1],
    );
    frame.render_widget(
        Paragraph::new(format!("lag     {}", view.lag_line())),
        rows[2],
    );
    frame.render_widget(
        Paragraph::new(format!("latency {}", view.latency_line())),
        rows[3],
    );
    frame.render_widget(Paragraph::new(view.problems_line()), rows[4]);
}

fn titled(title: String) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .padding(Padding::horizontal(1))
        .title(Span::styled(format!(" {title} "), Style::new().bold()))
}

/// Green under 70 %, yellow under 90 %, red from there.
fn fill_color(ratio: Option<f64>) -> Color {
    match ratio {
        Some(r) if r >= 0.9 => Color::Red,
        Some(r) if r >= 0.7 => Color::Yellow,
        Some(_) => Color::Green,
        None => Color::Reset,
    }
}

/// Draws a [`view::Table`] in a box: names left, numbers right,
/// each as wide as its widest cell, fill cells coloured by how full.
fn render_table(frame: &mut Frame, area: Rect, table: &view::Table, title: &str) {
    let columns = table.header.len();
    let widths = column_widths(table);
    let align = |i: usize| {
        if i < table.left {
            Alignment::Left
        } else {
            Alignment::Right
        }
    };
    let header = Row::new(
        table
            .header
            .iter()
            .enumerate()
            .map(|(i, h)| Cell::from(Line::from(*h).alignment(align(i)))),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let mut rows: Vec<Row> = table
        .rows
        .iter()
        .map(|row| {
            Row::new(row.iter().take(columns).enumerate().map(|(i, cell)| {
                let mut line = Line::from(cell.text.clone()).alignment(align(i));
                if cell.fill.is_some() {
                    line = line.style(Style::new().fg(fill_color(cell.fill)));
                }
                Cell::from(line)
            }))
        })
        .collect();
    if rows.is_empty() {
        rows.push(Row::new([Cell::from(Line::from("(none)").dim())]));
    }
    // No column wider than the box: a huge label takes what there is.
    let widths = widths
        .into_iter()
        .map(|w| Constraint::Length(w.min(area.width)));
    let mut block = titled(title.to_owned());
    if let Some(legend) = table.legend {
        block = block.title_bottom(Line::from(format!(" {legend} ")).dim());
    }
    let widget = Table::new(rows, widths)
        .header(header)
        .column_spacing(COLUMN_SPACING)
        .block(block);
    frame.render_widget(widget, area);
}

/// A table's box height: its rows (one at least, for `(none)`), the header
/// and the two borders; a screen is never that tall, so it saturates.
fn rows_height(table: &view::Table) -> u16 {
    u16::try_from(table.rows.len().max(1))
        .unwrap_or(u16::MAX)
        .saturating_add(3)
}

/// Characters of `text`, as a terminal width (saturating: a label longer
/// than any terminal is as wide as one can get).
fn width(text: &str) -> u16 {
    u16::try_from(text.chars().count()).unwrap_or(u16::MAX)
}

/// Each column as wide as its widest cell or header.
fn column_widths(table: &view::Table) -> Vec<u16> {
    let mut widths: Vec<u16> = table.header.iter().map(|h| width(h)).collect();
    for row in &table.rows {
        for (column, cell) in widths.iter_mut().zip(row) {
            *column = (*column).max(width(&cell.text));
        }
    }
    widths
}

/// The width of a table's columns and the spaces between them.
fn table_width(table: &view::Table) -> u16 {
    let widths = column_widths(table);
    let spaces = COLUMN_SPACING.saturating_mul(u16::try_from(widths.len()).unwrap_or(u16::MAX));
    widths
        .iter()
        .fold(spaces.saturating_sub(COLUMN_SPACING), |sum, w| {
            sum.saturating_add(*w)
        })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::super::metrics::{tests::canned, Metrics};
    use super::super::text;
    use super::*;

    fn screen(state: &State, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, state)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn state() -> State {
        State {
            url: "http://h:1/metrics".to_owned(),
            interval: Duration::from_secs(1),
            pipeline: None,
            before: None,
            now: None,
            error: None,
            view: None,
        }
    }

    #[test]
    fn the_dashboard_shows_every_section() {
        let mut state = state();
        let t0 = Instant::now();
        for (k, at) in [(1.0, t0), (2.0, t0 + Duration::from_secs(2))] {
            state.update(Ok(Scraped {
                at,
                metrics: Metrics::parse(&canned(k)),
            }));
        }
        let screen = screen(&state, 140, 40);
        for expected in [
            "READY · pipeline pixels",
            "Events",
            "Stages",
            "Pools",
            "Partitions",
            "Dropped and dead-lettered",
            "consent",
            "3/4",
            "60/64",
            "10/40",
            "q/Esc quit",
        ] {
            assert!(screen.contains(expected), "no `{expected}` in\n{screen}");
        }
        // The table text and the screen agree on a stage's row.
        let text = text::render(state.view.as_ref().unwrap());
        assert!(text.contains("405"), "{text}");
        assert!(screen.contains("405"), "{screen}");
    }

    #[test]
    fn a_failed_scrape_keeps_the_last_view_and_says_why() {
        let mut state = state();
        state.update(Ok(Scraped {
            at: Instant::now(),
            metrics: Metrics::parse(&canned(1.0)),
        }));
        state.update(Err("connection refused".to_owned()));
        let screen = screen(&state, 140, 40);
        assert!(screen.contains("scrape failed"), "{screen}");
        assert!(screen.contains("connection refused"), "{screen}");
        assert!(screen.contains("Stages"), "{screen}");
    }

    #[test]
    fn a_label_longer_than_any_screen_is_drawn_without_overflow() {
        // A pool and stage name of 65,530 characters: the columns' widths
        // added up pass u16::MAX.
        let huge = "x".repeat(65_530);
        let mut state = state();
        let t0 = Instant::now();
        for (k, at) in [(1.0, t0), (2.0, t0 + Duration::from_secs(1))] {
            state.update(Ok(Scraped {
                at,
                metrics: Metrics::parse(&canned(k).replace("parse_json", &huge)),
            }));
        }
        let view = state.view.as_ref().expect("a view");
        assert_eq!(view.pools[0].name, huge);
        assert_eq!(table_width(&view.pools_table(0)), u16::MAX);
        // Small screens draw too (what fits of them).
        for (width, height) in [(20, 5), (1, 1)] {
            screen(&state, width, height);
        }
        let screen = screen(&state, 140, 40);
        for expected in ["xxxxxxxxxx", "Stages", "Pools", "Partitions", "q/Esc quit"] {
            assert!(screen.contains(expected), "no `{expected}` in\n{screen}");
        }
    }

    #[test]
    fn the_partitions_box_explains_its_rate_column() {
        let mut state = state();
        state.update(Ok(Scraped {
            at: Instant::now(),
            metrics: Metrics::parse(&canned(1.0)),
        }));
        let screen = screen(&state, 140, 40);
        assert!(screen.contains("COMMITTED/S"), "{screen}");
        assert!(
            screen.contains(view::COMMITTED_LEGEND),
            "no legend in\n{screen}"
        );
    }

    #[test]
    fn before_the_first_scrape_it_waits() {
        let mut state = state();
        state.update(Err("connection refused".to_owned()));
        let screen = screen(&state, 100, 10);
        assert!(screen.contains("waiting for crew"), "{screen}");
    }
}
