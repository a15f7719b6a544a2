//! Helpers shared by the processor's integration tests.
#![allow(dead_code)]

use leadscore_pipeline::InputMessage;

/// `lines` as the messages of partition 0 of `topic`, offsets from 0, no key.
pub fn messages(topic: &str, lines: &[&str]) -> Vec<InputMessage> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| InputMessage {
            topic: topic.to_string(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: Some(l.as_bytes().to_vec()),
            timestamp: None,
        })
        .collect()
}
