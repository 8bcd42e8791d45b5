//! `weir top`: a live table of a running weir's components, read from its API.
//!
//! Every refresh reads `/metrics` (the Prometheus text format) and `/health`, the same figures a
//! dashboard shows: rates are the differences of the `weir_component_*_total` counters between
//! two reads, divided by the time between them. Nothing of weir's is added for it, so `top`
//! works against any weir whose API is on.
//!
//! Keys: `1`-`9`, `0` sort by that column (again: reverse), `s`/`S` next/previous column,
//! `r` reverse, `q`, `Esc` or `Ctrl-C` quit. No mouse; columns are left out, least useful
//! first, on a narrow terminal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

/// What `weir top` was asked.
#[derive(Clone, Debug)]
pub struct TopArgs {
    /// The API's base URL, `http://127.0.0.1:9598`.
    pub url: String,
    /// Time between two reads.
    pub interval: Duration,
}

/// One component's figures as read from `/metrics` (counters are totals since start).
#[derive(Clone, Debug, Default, PartialEq)]
struct Counters {
    kind: String,
    type_name: String,
    received_events: f64,
    sent_events: f64,
    received_bytes: f64,
    sent_bytes: f64,
    errors: f64,
    discarded: f64,
    buffer_bytes: Option<f64>,
    buffer_max_bytes: Option<f64>,
}

/// One read of the API.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    components: BTreeMap<String, Counters>,
    /// `healthy`, `unhealthy`, ... by component id.
    health: BTreeMap<String, String>,
}

/// A line of the table.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    id: String,
    kind: String,
    type_name: String,
    /// Per second; `None` until there are two reads.
    rates: Option<[f64; 4]>,
    errors: f64,
    discarded: f64,
    /// Fill of the input buffer, 0 to 1 (sources have none).
    buffer: Option<f64>,
    health: String,
}

/// Reads the label set `{a="x",b="y"}` (values may hold escaped quotes).
fn labels(text: &str) -> BTreeMap<&str, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let key = key.trim_start_matches([',', ' ']);
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        rest = &after[end..];
    }
    out
}

/// The component figures in a Prometheus text exposition.
fn parse_metrics(text: &str) -> BTreeMap<String, Counters> {
    let mut components: BTreeMap<String, Counters> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let Some((name, label_text)) = series.split_once('{') else { continue };
        let labels = labels(label_text.trim_end_matches('}'));
        let Some(id) = labels.get("component_id") else { continue };
        let c = components.entry(id.clone()).or_default();
        if let Some(kind) = labels.get("component_kind") {
            c.kind.clone_from(kind);
        }
        if let Some(t) = labels.get("component_type") {
            c.type_name.clone_from(t);
        }
        match name {
            "weir_component_received_events_total" => c.received_events += value,
            "weir_component_sent_events_total" => c.sent_events += value,
            "weir_component_received_bytes_total" => c.received_bytes += value,
            "weir_component_sent_bytes_total" => c.sent_bytes += value,
            "weir_component_errors_total" => c.errors += value,
            "weir_component_discarded_events_total" => c.discarded += value,
            "weir_buffer_size_bytes" => *c.buffer_bytes.get_or_insert(0.0) += value,
            "weir_buffer_max_size_bytes" => *c.buffer_max_bytes.get_or_insert(0.0) += value,
            _ => {}
        }
    }
    components
}

/// Each component's state in `/health`'s answer, by id.
fn parse_health(body: &str) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let Some(map) = v["components"].as_object() else { return BTreeMap::new() };
    (map.iter())
        .map(|(name, c)| {
            let id = name.split_once('.').map_or(name.as_str(), |(_, id)| id);
            (id.to_string(), c["state"].as_str().unwrap_or("?").to_string())
        })
        .collect()
}

/// The table's lines from the last two reads.
fn lines(prev: Option<&Sample>, now: &Sample) -> Vec<Entry> {
    (now.components.iter())
        .map(|(id, c)| {
            let rates = prev.and_then(|p| {
                let before = p.components.get(id)?;
                let secs = now.at.duration_since(p.at).as_secs_f64();
                let rate =
                    |a: f64, b: f64| if secs > 0.0 { ((a - b) / secs).max(0.0) } else { 0.0 };
                Some([
                    rate(c.received_events, before.received_events),
                    rate(c.sent_events, before.sent_events),
                    rate(c.received_bytes, before.received_bytes),
                    rate(c.sent_bytes, before.sent_bytes),
                ])
            });
            let buffer = match (c.buffer_bytes, c.buffer_max_bytes) {
                (Some(b), Some(max)) if max > 0.0 => Some((b / max).clamp(0.0, 1.0)),
                _ => None,
            };
            Entry {
                id: id.clone(),
                kind: c.kind.clone(),
                type_name: c.type_name.clone(),
                rates,
                errors: c.errors,
                discarded: c.discarded,
                buffer,
                health: now.health.get(id).cloned().unwrap_or_else(|| "-".into()),
            }
        })
        .collect()
}

/// The table's columns, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Id,
    Kind,
    Type,
    EventsIn,
    EventsOut,
    BytesIn,
    BytesOut,
    Errors,
    Discarded,
    Buffer,
    Health,
}

const COLUMNS: [Column; 11] = [
    Column::Id,
    Column::Kind,
    Column::Type,
    Column::EventsIn,
    Column::EventsOut,
    Column::BytesIn,
    Column::BytesOut,
    Column::Errors,
    Column::Discarded,
    Column::Buffer,
    Column::Health,
];

/// Columns in the order they give way on a narrow terminal (the last go first).
const PRIORITY: [Column; 11] = [
    Column::Id,
    Column::EventsIn,
    Column::EventsOut,
    Column::Health,
    Column::Errors,
    Column::Buffer,
    Column::Discarded,
    Column::Kind,
    Column::BytesIn,
    Column::BytesOut,
    Column::Type,
];

impl Column {
    fn title(self) -> &'static str {
        match self {
            Self::Id => "ID",
            Self::Kind => "KIND",
            Self::Type => "TYPE",
            Self::EventsIn => "EVENTS IN/s",
            Self::EventsOut => "EVENTS OUT/s",
            Self::BytesIn => "BYTES IN/s",
            Self::BytesOut => "BYTES OUT/s",
            Self::Errors => "ERRORS",
            Self::Discarded => "DISCARDED",
            Self::Buffer => "BUFFER",
            Self::Health => "HEALTH",
        }
    }

    fn width(self, id_width: u16) -> u16 {
        match self {
            Self::Id => id_width,
            Self::Kind => 9,
            Self::Type => 14,
            Self::Buffer => 7,
            Self::Health => 9,
            // Room for the sort mark.
            other => other.title().len() as u16 + 1,
        }
    }

    /// The key that sorts by this column: `1` to `9`, then `0`, `h`.
    fn key(self) -> char {
        let i = COLUMNS.iter().position(|c| *c == self).unwrap_or(0);
        match i {
            0..=8 => char::from(b'1' + i as u8),
            9 => '0',
            _ => 'h',
        }
    }

    fn numeric(self) -> bool {
        !matches!(self, Self::Id | Self::Kind | Self::Type | Self::Health)
    }

    fn text(self, l: &Entry) -> String {
        let rate = |i: usize, bytes: bool| match l.rates {
            Some(r) if bytes => human_bytes(r[i]),
            Some(r) => human(r[i]),
            None => "-".into(),
        };
        match self {
            Self::Id => l.id.clone(),
            Self::Kind => l.kind.clone(),
            Self::Type => l.type_name.clone(),
            Self::EventsIn => rate(0, false),
            Self::EventsOut => rate(1, false),
            Self::BytesIn => rate(2, true),
            Self::BytesOut => rate(3, true),
            Self::Errors => human(l.errors),
            Self::Discarded => human(l.discarded),
            Self::Buffer => l.buffer.map_or("-".into(), |f| format!("{:.0}%", f * 100.0)),
            Self::Health => l.health.clone(),
        }
    }

    fn number(self, l: &Entry) -> f64 {
        let rate = |i: usize| l.rates.map_or(0.0, |r| r[i]);
        match self {
            Self::EventsIn => rate(0),
            Self::EventsOut => rate(1),
            Self::BytesIn => rate(2),
            Self::BytesOut => rate(3),
            Self::Errors => l.errors,
            Self::Discarded => l.discarded,
            Self::Buffer => l.buffer.unwrap_or(-1.0),
            _ => 0.0,
        }
    }
}

/// `1234567.0` as `1.2M`.
fn human(v: f64) -> String {
    match v {
        v if v < 10.0 && v.fract() != 0.0 => format!("{v:.1}"),
        v if v < 1e3 => format!("{v:.0}"),
        v if v < 1e6 => format!("{:.1}k", v / 1e3),
        v if v < 1e9 => format!("{:.1}M", v / 1e6),
        v => format!("{:.1}G", v / 1e9),
    }
}

fn human_bytes(v: f64) -> String {
    match v {
        v if v < 1024.0 => format!("{v:.0} B"),
        v if v < 1024.0 * 1024.0 => format!("{:.1} KiB", v / 1024.0),
        v if v < 1024.0 * 1024.0 * 1024.0 => format!("{:.1} MiB", v / 1024.0 / 1024.0),
        v => format!("{:.1} GiB", v / 1024.0 / 1024.0 / 1024.0),
    }
}

/// The sort: a column, numbers largest first and text in order, or the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sort {
    column: Column,
    reverse: bool,
}

fn sort(lines: &mut [Entry], by: Sort) {
    lines.sort_by(|a, b| {
        let order = if by.column.numeric() {
            by.column.number(b).total_cmp(&by.column.number(a))
        } else {
            by.column.text(a).cmp(&by.column.text(b))
        };
        let order = order.then_with(|| a.id.cmp(&b.id));
        if by.reverse { order.reverse() } else { order }
    });
}

/// The columns that fit in `width`, in display order.
fn fitting(width: u16, id_width: u16) -> Vec<Column> {
    let mut used = 0u16;
    let mut shown = Vec::new();
    for c in PRIORITY {
        let w = c.width(id_width) + 1;
        if used + w <= width || c == Column::Id {
            used += w;
            shown.push(c);
        }
    }
    COLUMNS.into_iter().filter(|c| shown.contains(c)).collect()
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Quit,
    Sort(Sort),
    Nothing,
}

fn on_key(key: KeyEvent, sort: Sort) -> Action {
    if key.kind != KeyEventKind::Press {
        return Action::Nothing;
    }
    let i = COLUMNS.iter().position(|c| *c == sort.column).unwrap_or(0);
    let step = |d: usize| COLUMNS[(i + d) % COLUMNS.len()];
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('r') => Action::Sort(Sort { reverse: !sort.reverse, ..sort }),
        KeyCode::Char('s') | KeyCode::Right | KeyCode::Tab => {
            Action::Sort(Sort { column: step(1), reverse: false })
        }
        KeyCode::Char('S') | KeyCode::Left | KeyCode::BackTab => {
            Action::Sort(Sort { column: step(COLUMNS.len() - 1), reverse: false })
        }
        KeyCode::Char(c) => match COLUMNS.iter().find(|col| col.key() == c) {
            Some(&column) if column == sort.column => {
                Action::Sort(Sort { reverse: !sort.reverse, ..sort })
            }
            Some(&column) => Action::Sort(Sort { column, reverse: false }),
            None => Action::Nothing,
        },
        _ => Action::Nothing,
    }
}

/// What the screen shows.
struct State {
    url: String,
    interval: Duration,
    prev: Option<Sample>,
    now: Sample,
    sort: Sort,
    /// Why the last read failed (the figures shown are the last ones read).
    error: Option<String>,
}

fn render(frame: &mut ratatui::Frame, state: &State) {
    let [table_area, status_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(2)]).areas(frame.area());
    let mut lines = lines(state.prev.as_ref(), &state.now);
    sort(&mut lines, state.sort);
    let id_width = (lines.iter().map(|l| l.id.len()).max().unwrap_or(2).clamp(2, 32)) as u16;
    let columns = fitting(table_area.width, id_width);
    let header = Row::new(columns.iter().map(|c| {
        let mark = match (c == &state.sort.column, state.sort.reverse) {
            (false, _) => "",
            (true, false) => {
                if c.numeric() {
                    "▼"
                } else {
                    "▲"
                }
            }
            (true, true) => {
                if c.numeric() {
                    "▲"
                } else {
                    "▼"
                }
            }
        };
        Cell::from(format!("{}{mark}", c.title()))
    }))
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
    let rows = lines.iter().map(|l| {
        Row::new(columns.iter().map(|c| {
            let cell = Cell::from(c.text(l));
            let alarm = match c {
                Column::Health => l.health != "healthy" && l.health != "-",
                Column::Errors => l.errors > 0.0,
                Column::Discarded => l.discarded > 0.0,
                Column::Buffer => l.buffer.is_some_and(|f| f >= 0.9),
                _ => false,
            };
            if alarm { cell.style(Style::new().fg(Color::Red)) } else { cell }
        }))
    });
    let widths = columns.iter().map(|c| Constraint::Length(c.width(id_width)));
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), table_area);
    let keys = "keys: 1-9,0,h sort by column (again: reverse) · s next · r reverse · q quit";
    let first = match &state.error {
        Some(e) => Line::styled(
            format!("{e} (the figures shown are the last read)"),
            Style::new().fg(Color::Red),
        ),
        None => Line::from(format!(
            "weir at {} · {} components · every {:.1}s · sorted by {}",
            state.url,
            lines.len(),
            state.interval.as_secs_f64(),
            state.sort.column.title()
        )),
    };
    frame.render_widget(Paragraph::new(vec![first, Line::from(keys)]), status_area);
}

/// Reads `/metrics` and `/health`.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Sample, String> {
    let base = url.trim_end_matches('/');
    let get =
        |path: &str| client.get(format!("{base}{path}")).header("accept", "text/plain").send();
    let unreachable = |e: reqwest::Error| {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(s) = cause.source() {
            cause = s;
        }
        format!(
            "cannot reach weir's API at {url}: {cause} (is weir running, with [api] enabled at \
             this address? --url sets it)"
        )
    };
    let metrics = get("/metrics").await.map_err(unreachable)?;
    if !metrics.status().is_success() {
        return Err(format!("{url}/metrics answered {}", metrics.status()));
    }
    let text = metrics.text().await.map_err(unreachable)?;
    let health = get("/health").await.map_err(unreachable)?.text().await.unwrap_or_default();
    Ok(Sample {
        at: Instant::now(),
        components: parse_metrics(&text),
        health: parse_health(&health),
    })
}

/// Runs the table until a quitting key. Returns the exit code: 0, or 1 when weir cannot be
/// reached at start or the terminal cannot be used.
pub fn run(args: TopArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            crate::say_err!("error: cannot start the runtime: {e}");
            return 70;
        }
    };
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(c) => c,
        Err(e) => {
            crate::say_err!("error: cannot make an HTTP client: {e}");
            return 70;
        }
    };
    // Before the screen is taken over: a wrong address is an error on the shell, not an empty
    // table.
    let now = match runtime.block_on(fetch(&client, &args.url)) {
        Ok(s) => s,
        Err(e) => {
            crate::say_err!("error: {e}");
            return 1;
        }
    };
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            crate::say_err!("error: cannot use the terminal: {e}");
            return 1;
        }
    };
    let state = State {
        url: args.url.clone(),
        interval: args.interval,
        prev: None,
        now,
        sort: Sort { column: Column::Id, reverse: false },
        error: None,
    };
    let result = ui(&mut terminal, state, |url| runtime.block_on(fetch(&client, url)));
    ratatui::restore();
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::say_err!("error: {e}");
            1
        }
    }
}

fn ui(
    terminal: &mut ratatui::DefaultTerminal,
    mut state: State,
    mut fetch: impl FnMut(&str) -> Result<Sample, String>,
) -> std::io::Result<()> {
    let mut next = Instant::now() + state.interval;
    loop {
        terminal.draw(|frame| render(frame, &state))?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                match on_key(key, state.sort) {
                    Action::Quit => return Ok(()),
                    Action::Sort(sort) => state.sort = sort,
                    Action::Nothing => {}
                }
            }
            continue;
        }
        next = Instant::now() + state.interval;
        match fetch(&state.url) {
            Ok(sample) => {
                state.prev = Some(std::mem::replace(&mut state.now, sample));
                state.error = None;
            }
            Err(e) => state.error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# TYPE weir_component_received_events counter
weir_component_received_events_total{component_id="parse",component_kind="transform",component_type="remap"} 100
weir_component_sent_events_total{component_id="parse",component_kind="transform",component_type="remap",output="_default"} 90
weir_component_sent_events_total{component_id="parse",component_kind="transform",component_type="remap",output="errors"} 10
weir_component_errors_total{component_id="parse",component_kind="transform",component_type="remap",error_type="a \"b\"",stage="processing"} 2
weir_buffer_size_bytes{component_id="parse",component_kind="transform",component_type="remap"} 512
weir_buffer_max_size_bytes{component_id="parse",component_kind="transform",component_type="remap"} 1024
weir_component_sent_events_total{component_id="in",component_kind="source",component_type="demo",output="_default"} 100
weir_api_open_connections 1
"#;

    #[test]
    fn metrics_become_rates_per_component() {
        let components = parse_metrics(METRICS);
        let parse = &components["parse"];
        assert_eq!((parse.kind.as_str(), parse.type_name.as_str()), ("transform", "remap"));
        assert_eq!((parse.received_events, parse.sent_events, parse.errors), (100.0, 100.0, 2.0));
        let at = Instant::now();
        let before = Sample { at, components: components.clone(), health: BTreeMap::new() };
        let mut later = components;
        later.get_mut("parse").unwrap().received_events += 500.0;
        let health = parse_health(r#"{"components":{"transforms.parse":{"state":"healthy"}}}"#);
        let now = Sample { at: at + Duration::from_secs(2), components: later, health };
        let lines = lines(Some(&before), &now);
        assert_eq!(lines[1].id, "parse");
        assert_eq!(lines[1].rates, Some([250.0, 0.0, 0.0, 0.0]));
        assert_eq!(lines[1].buffer, Some(0.5));
        assert_eq!(lines[1].health, "healthy");
        assert_eq!(lines[0].buffer, None);
    }

    #[test]
    fn keys_sort_and_quit() {
        let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
        let by_id = Sort { column: Column::Id, reverse: false };
        let by_out = Sort { column: Column::EventsOut, reverse: false };
        assert_eq!(on_key(key(KeyCode::Char('5')), by_id), Action::Sort(by_out));
        assert_eq!(
            on_key(key(KeyCode::Char('5')), by_out),
            Action::Sort(Sort { reverse: true, ..by_out })
        );
        assert_eq!(on_key(key(KeyCode::Char('q')), by_id), Action::Quit);
        assert_eq!(on_key(key(KeyCode::Esc), by_id), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(on_key(ctrl_c, by_id), Action::Quit);
        assert_eq!(Column::Buffer.key(), '0');
        assert_eq!(Column::Health.key(), 'h');
    }

    #[test]
    fn a_narrow_terminal_keeps_the_rates() {
        assert_eq!(fitting(160, 10).len(), COLUMNS.len());
        let narrow = fitting(40, 10);
        assert_eq!(narrow, [Column::Id, Column::EventsIn, Column::EventsOut]);
        assert_eq!(fitting(5, 10), [Column::Id]);
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(2.5), "2.5");
        assert_eq!(human(1234.0), "1.2k");
        assert_eq!(human_bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
    }
}
