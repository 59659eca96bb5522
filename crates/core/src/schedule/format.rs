//! The device x time grid of a simulated schedule, for goldens, `plan` output and errors:
//!
//! ```text
//!      t | 0  1  2  3  4  5  6  7  8  9  10 11
//! rank 0 | F0 F1 .  B0 -- F2 B1 -- F3 B2 -- .  ...
//! rank 1 | .  F0 B0 -- F1 B1 -- ...
//! ```
//!
//! One column per tick; a compute action is labelled in its first tick and continued with
//! dashes; `.` is idle. Zero-cost actions (communication by default) take no column. A rank that
//! deadlocked gets `<- waits on ACTION` after its row.

use super::action::Action;
use super::lower::lower;
use super::program::Schedule;
use super::simulate::{Costs, Timeline, timeline};

/// The grid of `schedule` under unit costs (F = 1, B = 2, comm = 0). A compute-only schedule is
/// lowered first, since without its transfers nothing past stage 0 could run. Infallible so it
/// can go straight into plan listings: a schedule that cannot be simulated renders as the error's
/// text, and a deadlocked one renders up to the deadlock.
pub fn render_grid(schedule: &Schedule) -> String {
    let lowered;
    let schedule = if schedule.is_lowered() {
        schedule
    } else {
        match lower(schedule) {
            Ok(s) => {
                lowered = s;
                &lowered
            }
            Err(e) => return e.to_string(),
        }
    };
    match timeline(schedule, &Costs::unit(schedule.stages)) {
        Ok(timeline) => render(schedule, &timeline),
        Err(e) => e.to_string(),
    }
}

/// Render `timeline`, the simulation of `schedule`, as aligned text (one line per rank plus a
/// time ruler).
pub fn render(schedule: &Schedule, timeline: &Timeline) -> String {
    let ticks = usize::try_from(timeline.makespan()).expect("internal error: makespan overflow");
    // Drop the stage from labels when each rank hosts one stage: `F3` reads faster than `F2.3`.
    let short = schedule.one_stage_per_rank();
    let label = |a: &Action| {
        if short {
            a.short_label()
        } else {
            a.to_string()
        }
    };
    let rows: Vec<Vec<Cell>> = (0..schedule.ranks)
        .map(|r| row_cells(&schedule.programs[r], &timeline.spans[r], ticks, &label))
        .collect();
    let width = rows
        .iter()
        .flatten()
        .map(|c| match c {
            Cell::Start(s) => s.len(),
            _ => 1,
        })
        .chain(std::iter::once(ticks.saturating_sub(1).to_string().len()))
        .max()
        .unwrap_or(1);
    let name_width = format!("rank {}", schedule.ranks.saturating_sub(1)).len();
    let ruler: Vec<String> = (0..ticks).map(|t| t.to_string()).collect();
    let mut out = line(&format!("{:>name_width$}", "t"), &ruler, width);
    for (r, cells) in rows.iter().enumerate() {
        let texts: Vec<String> = cells.iter().map(|c| c.text(width)).collect();
        let mut row = line(
            &format!("{:>name_width$}", format!("rank {r}")),
            &texts,
            width,
        );
        if let Some(waits) = waiting_on(schedule, timeline, r) {
            row.pop();
            row.push_str(&format!("  <- waits on {waits}\n"));
        }
        out.push_str(&row);
    }
    out
}

/// One grid cell: idle, the first tick of an action, or a later tick of it.
enum Cell {
    Idle,
    Start(String),
    Continued,
}

impl Cell {
    fn text(&self, width: usize) -> String {
        match self {
            Cell::Idle => ".".into(),
            Cell::Start(label) => label.clone(),
            Cell::Continued => "-".repeat(width),
        }
    }
}

fn row_cells(
    program: &[Action],
    spans: &[super::simulate::Span],
    ticks: usize,
    label: &dyn Fn(&Action) -> String,
) -> Vec<Cell> {
    let mut cells: Vec<Cell> = (0..ticks).map(|_| Cell::Idle).collect();
    for span in spans.iter().filter(|s| s.end > s.start) {
        let (start, end) = (span.start as usize, span.end as usize);
        cells[start] = Cell::Start(label(&program[span.index]));
        for cell in &mut cells[start + 1..end] {
            *cell = Cell::Continued;
        }
    }
    cells
}

/// `name | c0 c1 ...` with every cell padded to `width`, trailing blanks trimmed.
fn line(name: &str, cells: &[String], width: usize) -> String {
    let body: Vec<String> = cells.iter().map(|c| format!("{c:<width$}")).collect();
    let text = format!("{name} | {}", body.join(" "));
    format!("{}\n", text.trim_end())
}

fn waiting_on(schedule: &Schedule, timeline: &Timeline, r: usize) -> Option<String> {
    let deadlock = timeline.deadlock.as_ref()?;
    let &(_, index) = deadlock
        .waiting
        .iter()
        .find(|(rank, _)| rank.index() == r)?;
    Some(schedule.programs[r][index].to_string())
}
