//! Encodes input events as the JSON of docs/events.md, for generators and tests:
//! the inverse of [`crate::json_in::decode_json`].

use leadscore_core::event::{OwnedValue, Value};
use leadscore_core::time::format_rfc3339;
use leadscore_core::Event;
use serde_json::{json, Map, Value as Json};

fn value(v: Value<'_>) -> Json {
    match v {
        Value::Text(t) => json!(t),
        Value::Integer(i) => json!(i),
        Value::Number(n) => json!(n),
        Value::Boolean(b) => json!(b),
        Value::TextList(l) => json!(l.iter().map(|s| &**s).collect::<Vec<&str>>()),
    }
}

/// Appends the event as one JSON object (no newline) to `buf`.
pub fn encode_event_json(buf: &mut Vec<u8>, e: &Event) {
    let mut props = Map::new();
    for (field, _) in e.kind.properties() {
        if field.is_profile() {
            continue;
        }
        if let Some(v) = e.properties.get(*field) {
            props.insert(field.as_str().into(), value(v));
        }
    }
    for (field, v) in &e.properties.profile {
        props.insert(field.as_str().into(), v.as_ref().map_or(Json::Null, |v| value(OwnedValue::borrow(v))));
    }
    // A struct, not a map, so that the fields come in the contract's order.
    #[derive(serde::Serialize)]
    struct Out<'a> {
        event_id: &'a str,
        lead_id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        timestamp: String,
        #[serde(skip_serializing_if = "Map::is_empty")]
        properties: Map<String, Json>,
    }
    let out = Out {
        event_id: e.event_id.as_str(),
        lead_id: e.lead_id.as_str(),
        kind: e.kind.as_str(),
        timestamp: format_rfc3339(e.timestamp),
        properties: props,
    };
    serde_json::to_writer(buf, &out).expect("encoding to memory never fails");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_json, Limits};
    use leadscore_core::event::Field;
    use leadscore_core::Kind;

    #[test]
    fn round_trips_through_the_decoder() {
        let mut e = Event::new("e-1", "L-1", Kind::ProfileUpdate, 1_795_622_400_000);
        // In the order the decoder reads profile fields (that of docs/events.md).
        e.properties.profile.push((Field::Email, None));
        e.properties.profile.push((Field::JobTitle, Some(OwnedValue::Text("CEO".into()))));
        e.properties.profile.push((Field::Technologies, Some(OwnedValue::TextList(vec!["hubspot".into()].into()))));
        let mut w = Event::new("e-2", "L-1", Kind::Webinar, 5);
        w.properties.set_text(Field::Webinar, "w");
        w.properties.attended = Some(false);
        for event in [e, w] {
            let mut buf = Vec::new();
            encode_event_json(&mut buf, &event);
            assert_eq!(decode_json(&buf, None, None, &Limits::default()).expect("valid"), event);
        }
    }
}
