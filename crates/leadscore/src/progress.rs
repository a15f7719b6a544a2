//! Progress of long commands (`gen` to a broker, `bench`) on standard error:
//! a bar redrawn in place on a terminal, a plain line every five seconds in a
//! log, so that neither a person nor a CI log is left guessing.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// See the module documentation.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    started: Instant,
    last_draw: Option<Instant>,
    tty: bool,
}

impl Progress {
    /// `total` of 0 means unknown (no bar, no ETA).
    pub fn new(label: impl Into<String>, total: u64) -> Progress {
        Progress {
            label: label.into(),
            total,
            started: Instant::now(),
            last_draw: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn due(&self) -> bool {
        let every = if self.tty { Duration::from_millis(200) } else { Duration::from_secs(5) };
        self.last_draw.is_none_or(|t| t.elapsed() >= every)
    }

    /// Reports `done` items; draws only when a redraw is due, so it is cheap to
    /// call per item.
    pub fn update(&mut self, done: u64) {
        if self.due() {
            self.draw(done);
        }
    }

    fn draw(&mut self, done: u64) {
        self.last_draw = Some(Instant::now());
        let line = render(&self.label, done, self.total, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = if self.tty { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
        let _ = err.flush();
    }

    /// Draws the final state and ends the line.
    pub fn finish(&mut self, done: u64) {
        self.draw(done);
        if self.tty {
            eprintln!();
        }
    }
}

/// One progress line: `label [#####     ] 50% 500000/1000000  123456/s  ETA 4s`.
pub fn render(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    if total == 0 {
        return format!("{label} {done}  {rate:.0}/s  {secs:.0}s");
    }
    let share = (done as f64 / total as f64).clamp(0.0, 1.0);
    let filled = (share * 20.0).round() as usize;
    let eta =
        if rate > 0.0 && done < total { format!("ETA {:.0}s", (total - done) as f64 / rate) } else { String::new() };
    format!(
        "{label} [{}{}] {:>3.0}% {done}/{total}  {rate:.0}/s  {eta}",
        "#".repeat(filled),
        " ".repeat(20 - filled),
        share * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_share_rate_and_eta() {
        let line = render("producing", 500, 1000, Duration::from_secs(5));
        assert_eq!(line, "producing [##########          ]  50% 500/1000  100/s  ETA 5s");
    }

    #[test]
    fn an_unknown_total_shows_count_and_rate() {
        assert_eq!(render("consumed", 300, 0, Duration::from_secs(3)), "consumed 300  100/s  3s");
    }
}
