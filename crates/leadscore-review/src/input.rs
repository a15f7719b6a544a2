//! A history of events (JSON lines, the input contract), which a replay or a
//! review reads more than once: from a file, or from standard input held in
//! memory.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

/// Where a history comes from.
#[derive(Debug, Clone)]
pub enum Input {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Input {
    /// `-` reads standard input to the end; anything else is a file path.
    pub fn from_arg(arg: &str) -> std::io::Result<Input> {
        if arg == "-" {
            let mut bytes = Vec::new();
            std::io::stdin().lock().read_to_end(&mut bytes)?;
            return Ok(Input::Bytes(bytes));
        }
        let path = PathBuf::from(arg);
        // Fail now, with the path, rather than on the first pass.
        std::fs::metadata(&path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Input::File(path))
    }

    /// A new reader from the start.
    pub fn open(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(match self {
            Input::File(p) => Box::new(BufReader::with_capacity(1 << 20, std::fs::File::open(p)?)),
            Input::Bytes(b) => Box::new(&b[..]),
        })
    }
}

/// `input` in event-time order (stable), without the events after `until`,
/// in memory; and the latest event time kept. Lines that are not valid
/// events are reported to `err` with their line number in `input` and left
/// out. Scoring in event time needs
/// it: an event read after later events of other leads would find its
/// partition's timers already fired past it. A history exported from Kafka
/// comes partition by partition; this puts it back in order.
pub fn prepare(
    input: &Input,
    until: Option<leadscore_core::Millis>,
    err: &mut impl std::io::Write,
) -> std::io::Result<(Input, Option<leadscore_core::Millis>)> {
    let limits = leadscore_codec::Limits::default();
    let mut lines: Vec<(leadscore_core::Millis, Vec<u8>)> = Vec::new();
    let mut rejected = 0u64;
    for (n, line) in input.open()?.split(b'\n').enumerate() {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match leadscore_codec::decode_json(&line, None, None, &limits) {
            Ok(e) if until.is_some_and(|u| e.timestamp > u) => {}
            Ok(e) => lines.push((e.timestamp, line)),
            Err(e) => {
                rejected += 1;
                writeln!(err, "line {}: {}: {}", n + 1, e.class.as_str(), e.message)?;
            }
        }
    }
    if rejected > 0 {
        writeln!(err, "leadscore: {rejected} lines of the history are not valid events (above): left out")?;
    }
    lines.sort_by_key(|(t, _)| *t);
    let latest = lines.last().map(|(t, _)| *t);
    let mut bytes = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
    for (_, l) in lines {
        bytes.extend_from_slice(&l);
        bytes.push(b'\n');
    }
    Ok((Input::Bytes(bytes), latest))
}
