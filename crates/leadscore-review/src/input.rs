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
    pub fn open(&self) -> std::io::Result<Box<dyn BufRead + '_>> {
        Ok(match self {
            Input::File(p) => Box::new(BufReader::with_capacity(1 << 20, std::fs::File::open(p)?)),
            Input::Bytes(b) => Box::new(&b[..]),
        })
    }
}

/// The latest event time of the valid events in `input` (`None`: none).
pub fn latest_time(input: &Input) -> std::io::Result<Option<leadscore_core::Millis>> {
    let limits = leadscore_codec::Limits::default();
    let mut latest = None;
    for line in input.open()?.split(b'\n') {
        if let Ok(e) = leadscore_codec::decode_json(&line?, None, None, &limits) {
            latest = latest.max(Some(e.timestamp));
        }
    }
    Ok(latest)
}

/// `input` without the valid events after `until` (lines that are not valid
/// events are kept, for the scorer to report).
pub fn up_to(input: &Input, until: leadscore_core::Millis) -> std::io::Result<Input> {
    let limits = leadscore_codec::Limits::default();
    let mut kept = Vec::new();
    for line in input.open()?.split(b'\n') {
        let line = line?;
        match leadscore_codec::decode_json(&line, None, None, &limits) {
            Ok(e) if e.timestamp > until => {}
            _ => {
                kept.extend_from_slice(&line);
                kept.push(b'\n');
            }
        }
    }
    Ok(Input::Bytes(kept))
}
