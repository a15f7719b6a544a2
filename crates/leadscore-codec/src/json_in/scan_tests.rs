//! The one-pass reader against serde_json: whatever it takes on, it decodes
//! exactly as serde_json's path does (same event, same error), and it does take
//! on the events producers write.

use super::scan;
use super::*;
use crate::encode_event_json;
use leadscore_core::event::Field;
use proptest::prelude::*;

fn both(bytes: &[u8], key: Option<&[u8]>) -> (Result<Event, DecodeError>, Result<Event, DecodeError>) {
    let limits = Limits { max_event_id_bytes: 24, ..Limits::default() };
    (decode_json(bytes, key, None, &limits), decode_with_serde(bytes, key, None, &limits))
}

fn taken_on(bytes: &[u8]) -> bool {
    scan::event(bytes, &mut scan::Members::new()).is_some()
}

#[test]
fn generated_events_take_the_one_pass_reader_and_decode_the_same() {
    let mut generator = leadscore_synth::Generator::new(leadscore_synth::Settings { leads: 500, ..Default::default() });
    let mut buf = Vec::new();
    for _ in 0..20_000 {
        let e = generator.next_event();
        buf.clear();
        encode_event_json(&mut buf, &e);
        assert!(taken_on(&buf), "left to serde_json: {}", String::from_utf8_lossy(&buf));
        let (fast, serde) = both(&buf, None);
        assert_eq!(fast, serde);
        assert_eq!(fast.map(|d| d.event_id), Ok(e.event_id));
    }
}

#[test]
fn what_it_leaves_to_serde_json() {
    let plain = r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}}"#;
    assert!(taken_on(plain.as_bytes()));
    for other in [
        // An escape anywhere, in a key or a value, known or not.
        r#"{"event_id":"e\n","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}}"#,
        r#"{"event\u005fid":"e","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}}"#,
        r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"},"u":["\""]}"#,
        // A repeated event field (serde refuses it), a control character, a form feed.
        r#"{"event_id":"e","event_id":"f","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}}"#,
        "{\"event_id\":\"e\t\",\"lead_id\":\"L\",\"type\":\"search\",\"timestamp\":1,\"properties\":{\"term\":\"x\"}}",
        "{\"event_id\":\"e\",\"lead_id\":\"L\",\"type\":\"search\",\"timestamp\":1,\"properties\":{\"term\":\"x\"}}\x0c",
        // Deep nesting, bad syntax, trailing bytes, not an object.
        &format!(r#"{{"event_id":"e","x":{}1{}}}"#, "[".repeat(40), "]".repeat(40)),
        r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":01,"properties":{"term":"x"}}"#,
        r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x",}}"#,
        r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x"}} x"#,
        r#"["event_id"]"#,
    ] {
        assert!(!taken_on(other.as_bytes()), "taken on: {other}");
        let (fast, serde) = both(other.as_bytes(), None);
        assert_eq!(fast, serde, "{other}");
    }
    let repeated_unknown = r#"{"x":1,"x":2,"event_id":"e","lead_id":"L","type":"search","timestamp":1,"properties":{"term":"x","term":"y"}}"#;
    let mut members = scan::Members::new();
    let mut fields = scan::event(repeated_unknown.as_bytes(), &mut members).expect("unknown fields may repeat");
    members.attach(&mut fields);
    let mut terms = Vec::new();
    assert!(fields.properties.expect("properties").for_each_member(|k, v| terms.push((k.to_string(), v.text()))));
    assert_eq!(terms, [("term".to_string(), Some("x".into())), ("term".to_string(), Some("y".into()))]);
    assert_eq!(
        both(repeated_unknown.as_bytes(), None).0.map(|e| e.properties.text),
        Ok(vec![(Field::Term, "y".into())])
    );
}

#[test]
fn properties_beyond_those_kept_are_read_again_the_same() {
    for n in [15, 16, 17, 40] {
        let filler: String = (0..n).map(|i| format!(r#""p{i}":[{i}],"#)).collect();
        let event = format!(
            r#"{{"event_id":"e","lead_id":"L","type":"page_view","timestamp":1,"properties":{{"url":"/a",{filler}"url":"/b"}}}}"#
        );
        assert!(taken_on(event.as_bytes()));
        let (fast, serde) = both(event.as_bytes(), None);
        assert_eq!(fast, serde);
        assert_eq!(fast.map(|e| e.properties.text), Ok(vec![(Field::Url, "/b".into())]), "{n} members");
    }
}

fn scalar() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "null",
        "true",
        "false",
        "0",
        "-0",
        "7",
        "-12",
        "1.5",
        "-2.5E-3",
        "1e3",
        "1E+2",
        "123456789012345678",
        "-123456789012345678",
        "1234567890123456789",
        "99999999999999999999",
        "1e400",
        r#""""#,
        r#""x""#,
        r#""L-1""#,
        r#""page_view""#,
        r#""search""#,
        r#""profile_update""#,
        r#""email_bounce""#,
        r#""HARD""#,
        r#""soft""#,
        r#""closed_won""#,
        r#""us""#,
        r#""2026-11-25T16:00:00.000Z""#,
        r#""2026-02-30T00:00:00Z""#,
        r#""https://example.com/pricing?x=1""#,
        r#""caf\u00e9""#,
        r#""a\"b""#,
        r#""é—ü""#,
        r#""\ud800""#,
    ])
    .prop_map(str::to_string)
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "event_id",
        "lead_id",
        "type",
        "timestamp",
        "properties",
        "url",
        "term",
        "duration_ms",
        "amount",
        "attended",
        "bounce_type",
        "stage",
        "country",
        "title",
        "tags",
        "x",
        "",
    ])
    .prop_map(|k| format!("\"{k}\""))
}

fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..5).prop_map(|m| {
                let m: Vec<String> = m.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", m.join(","))
            }),
        ]
    })
}

/// An event-shaped object, its separators padded with any whitespace.
fn object() -> impl Strategy<Value = String> {
    let space = prop::sample::select(vec!["", "", "", " ", "\n\t", "\r\n  "]);
    prop::collection::vec((key(), value(), space.clone(), space), 0..8).prop_map(|members| {
        let m: Vec<String> = members.into_iter().map(|(k, v, a, b)| format!("{a}{k}{b}:{a}{v}{b}")).collect();
        format!("{{{}}}", m.join(","))
    })
}

/// A plausible event with one of a few kinds and its properties.
fn event() -> impl Strategy<Value = String> {
    let props = prop::sample::select(vec![
        r#""type":"page_view","properties":{"url":"/p","duration_ms":1500,"title":"Pricing"}"#,
        r#""type":"search","properties":{"term":"api"}"#,
        r#""type":"email_bounce","properties":{"bounce_type":"Hard","campaign":"c"}"#,
        r#""type":"webinar","properties":{"webinar":"w"}"#,
        r#""type":"opportunity_update","properties":{"opportunity_id":"o","stage":"closed_won","amount":12.5}"#,
        r#""type":"profile_update","properties":{"country":" de ","tags":["a","b"],"title":null,"employees":40}"#,
    ]);
    (prop::sample::select(vec![r#""e-1""#, r#""an-event-id-longer-than-24""#]), scalar(), props)
        .prop_map(|(id, ts, props)| format!(r#"{{"event_id":{id},"lead_id":"L-1","timestamp":{ts},{props}}}"#))
}

/// Up to three single-byte edits, to reach the edges of the grammar.
fn mutated(text: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop::sample::select(b"{}[],:\"\\ \x0c\x00\xff1e-.n".to_vec());
    (text, prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, byte), 0..3)).prop_map(|(t, edits)| {
        let mut b = t.into_bytes();
        for (at, op, byte) in edits {
            let i = at.index(b.len() + 1);
            match op {
                0 if i < b.len() => {
                    b.remove(i);
                }
                1 if i < b.len() => b[i] = byte,
                _ => b.insert(i, byte),
            }
        }
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn decodes_as_serde_json_does(
        bytes in prop_oneof![mutated(event()), mutated(object()), event().prop_map(String::into_bytes)],
        keyed in any::<bool>(),
    ) {
        let key = keyed.then_some(&b"L-1"[..]);
        let (fast, serde) = both(&bytes, key);
        prop_assert_eq!(fast, serde, "{}", String::from_utf8_lossy(&bytes));
    }
}
