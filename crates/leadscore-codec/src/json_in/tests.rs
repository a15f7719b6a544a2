//! Tests of the json_in module.

use super::*;
use leadscore_core::bounds::{MAX_LIST_ITEMS, MAX_PROFILE_TEXT_BYTES};
use leadscore_core::event::{BounceType, Field, Value};

fn dec(s: &str) -> Result<Event, DecodeError> {
    decode_json(s.as_bytes(), None, None, &Limits::default())
}

fn class(s: &str) -> ErrorClass {
    dec(s).unwrap_err().class
}

#[test]
fn decodes_the_contract_example() {
    let e = dec(r#"{"event_id":"e-000123","lead_id":"L-42","type":"page_view","timestamp":"2026-11-25T16:00:00.000Z","properties":{"url":"https://example.com/pricing","extra":1}}"#).unwrap();
    assert_eq!(e.event_id.as_str(), "e-000123");
    assert_eq!(e.lead_id.as_str(), "L-42");
    assert_eq!(e.kind, Kind::PageView);
    assert_eq!(e.timestamp, 1_795_622_400_000);
    assert_eq!(e.properties.get(Field::Url), Some(Value::Text("https://example.com/pricing")));
}

#[test]
fn deep_nesting_is_ignored_where_unknown_and_refused_where_it_matters() {
    // serde_json skips a raw value without recursion: an unknown property
    // nested a million deep neither overflows the stack nor fails.
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let unknown = format!(
        r#"{{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{{"url":"/","x":{deep}}},"y":{deep}}}"#
    );
    assert_eq!(dec(&unknown).unwrap().kind, Kind::PageView);
    let known =
        format!(r#"{{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{{"url":{deep}}}}}"#);
    assert_eq!(class(&known), ErrorClass::InvalidField);
    assert_eq!(class(&deep), ErrorClass::NotJson);
    let unclosed = format!(r#"{{"event_id":"e","properties":{{"x":{}}}}}"#, "[".repeat(200_000));
    assert_eq!(class(&unclosed), ErrorClass::NotJson);
}

#[test]
fn epoch_millis_and_key() {
    let e = decode_json(
        br#"{"event_id":"e","timestamp":5,"properties":{"url":"/"}}"#,
        Some(b"L-1"),
        Some(Kind::PageView),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((e.lead_id.as_str(), e.kind, e.timestamp), ("L-1", Kind::PageView, 5));
}

#[test]
fn every_class_of_bad_input() {
    assert_eq!(class("not json"), ErrorClass::NotJson);
    assert_eq!(class("[1,2]"), ErrorClass::NotJson);
    assert_eq!(
        class(r#"{"lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}}"#),
        ErrorClass::MissingField
    );
    assert_eq!(
        class(r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{}}"#),
        ErrorClass::MissingField
    );
    assert_eq!(class(r#"{"event_id":"e","lead_id":"L","type":"fax","timestamp":1}"#), ErrorClass::UnknownKind);
    assert_eq!(
        class(r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":"yesterday","properties":{"term":"x"}}"#),
        ErrorClass::BadTimestamp
    );
    assert_eq!(
        class(r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1.5,"properties":{"term":"x"}}"#),
        ErrorClass::BadTimestamp
    );
    assert_eq!(
        class(
            r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"company_size":"big"}}"#
        ),
        ErrorClass::InvalidField
    );
    assert_eq!(
        class(
            r#"{"event_id":"e","lead_id":"L","type":"webinar","timestamp":1,"properties":{"webinar":"w","attended":"yes"}}"#
        ),
        ErrorClass::InvalidField
    );
    assert_eq!(
        class(r#"{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{"url":7}}"#),
        ErrorClass::InvalidField
    );
    assert_eq!(
        class(
            r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"technologies":"salesforce"}}"#
        ),
        ErrorClass::InvalidField
    );
    assert_eq!(class(r#"{"event_id":"","lead_id":"L","type":"erase","timestamp":1}"#), ErrorClass::InvalidField);
    let mismatch = decode_json(
        br#"{"event_id":"e","lead_id":"L-2","type":"erase","timestamp":1}"#,
        Some(b"L-1"),
        None,
        &Limits::default(),
    );
    assert_eq!(mismatch.unwrap_err().class, ErrorClass::LeadIdMismatch);
    let big = format!(
        r#"{{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{{"term":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let small = Limits { max_message_bytes: 1000, ..Limits::default() };
    assert_eq!(decode_json(big.as_bytes(), None, None, &small).unwrap_err().class, ErrorClass::Oversize);
}

#[test]
fn values_a_lead_keeps_are_bounded() {
    let profile = |props: String| {
        dec(&format!(r#"{{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{props}}}"#))
    };
    let long = "x".repeat(MAX_PROFILE_TEXT_BYTES + 1);
    let e = profile(format!(r#"{{"company":"{long}"}}"#)).unwrap_err();
    assert_eq!(e.message, "properties.company: 4097 bytes, at most 4096 allowed");
    assert!(profile(format!(r#"{{"company":"{}"}}"#, &long[1..])).is_ok());
    let many: Vec<String> = (0..=MAX_LIST_ITEMS).map(|i| format!("\"t{i}\"")).collect();
    let e = profile(format!(r#"{{"technologies":[{}]}}"#, many.join(","))).unwrap_err();
    assert_eq!(e.message, "properties.technologies: 101 items, at most 100 allowed");
    let e = profile(format!(r#"{{"technologies":["{}"]}}"#, "t".repeat(300))).unwrap_err();
    assert_eq!(e.message, "properties.technologies item: 300 bytes, at most 256 allowed");
    let e = dec(&format!(
        r#"{{"event_id":"e","lead_id":"L","type":"opportunity_update","timestamp":1,"properties":{{"opportunity_id":"{}"}}}}"#,
        "o".repeat(257)
    ))
    .unwrap_err();
    assert_eq!(e.message, "properties.opportunity_id: 257 bytes, at most 256 allowed");
}

#[test]
fn messages_name_the_field() {
    let e = dec(
        r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"company_size":"big"}}"#,
    )
    .unwrap_err();
    assert_eq!(e.message, "properties.company_size: expected an integer, got a string");
    let e = dec(r#"{"event_id":"e","lead_id":"L","type":"download","timestamp":1,"properties":{"asset_type":"pdf"}}"#)
        .unwrap_err();
    assert_eq!(e.message, "properties.asset is required for download events");
}

#[test]
fn null_deletes_in_profile_updates_and_is_absent_elsewhere() {
    let e = dec(r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"email":null,"country":"us","job_title":"CEO"}}"#).unwrap();
    assert_eq!(e.properties.profile.len(), 3);
    assert_eq!(e.properties.get(Field::Country), Some(Value::Text("US")));
    assert_eq!(e.properties.get(Field::Email), None);
    let e =
        dec(r#"{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{"url":"/","title":null}}"#)
            .unwrap();
    assert_eq!(e.properties.get(Field::Title), None);
}

#[test]
fn bounce_type_is_case_insensitive_and_attended_defaults_to_true() {
    let e = dec(
        r#"{"event_id":"e","lead_id":"L","type":"email_bounce","timestamp":1,"properties":{"bounce_type":"HARD"}}"#,
    )
    .unwrap();
    assert_eq!(e.properties.bounce_type, Some(BounceType::Hard));
    let e =
        dec(r#"{"event_id":"e","lead_id":"L","type":"webinar","timestamp":1,"properties":{"webinar":"w"}}"#).unwrap();
    assert_eq!(e.properties.attended, Some(true));
}

#[test]
fn topic_kind_must_agree_with_type() {
    let r = decode_json(
        br#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}}"#,
        None,
        Some(Kind::PageView),
        &Limits::default(),
    );
    assert_eq!(r.unwrap_err().class, ErrorClass::InvalidField);
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = decode_json(&bytes, None, None, &Limits::default());
    }
}

#[test]
fn whitespace_and_escapes_do_not_change_values() {
    let plain = dec(
        r#"{"event_id":"e-1","lead_id":"L-1","type":"webinar","timestamp":5,"properties":{"webinar":"w/1","attended":false}}"#,
    );
    let spaced = dec(
        "{ \"event_id\" :\t\"e-1\" ,\n \"lead_id\": \"L\\u002d1\", \"type\" : \"webinar\" , \"timestamp\" : 5 ,\r\n \"properties\" : { \"webinar\" : \"w\\/1\" , \"attended\" : false } }",
    );
    assert_eq!(spaced, plain);
    assert_eq!(plain.unwrap().properties.attended, Some(false));
    // A boolean is not a string, a string not a number, and so on.
    assert_eq!(
        dec(r#"{"event_id":"e","lead_id":"L","type":"webinar","timestamp":5,"properties":{"webinar":true}}"#)
            .unwrap_err()
            .message,
        "properties.webinar: expected a string, got a boolean"
    );
    assert_eq!(
        dec(r#"{"event_id":"e","lead_id":"L","type":"page_view","timestamp":5,"properties":{"url":"/","duration_ms":"5"}}"#).unwrap_err().message,
        "properties.duration_ms: expected an integer, got a string"
    );
    assert_eq!(
        dec(r#"{"event_id":"e","lead_id":"L","type":"webinar","timestamp":5,"properties":{"webinar":"w","attended":"true"}}"#).unwrap_err().message,
        "properties.attended: expected a boolean, got a string"
    );
}
