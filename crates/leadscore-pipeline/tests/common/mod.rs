//! Helpers shared by the processor's integration tests.
#![allow(dead_code)]

use leadscore_pipeline::{InputMessage, OutputTopic, Step};

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

/// The score changes and transitions of a step, as JSON lines.
pub fn published(step: &Step) -> Vec<String> {
    step.outputs
        .iter()
        .filter(|o| matches!(o.topic, OutputTopic::ScoreChanges | OutputTopic::Transitions))
        .map(|o| String::from_utf8(o.value.clone().expect("a value")).expect("UTF-8"))
        .collect()
}
