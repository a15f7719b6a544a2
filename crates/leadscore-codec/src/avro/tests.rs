//! Tests of the avro module: the direct reader and writer against apache-avro
//! and the JSON decoder (the independent references).

use super::*;
use crate::json_out::encode_json;
use leadscore_core::output::{Cause, Direction, ScoreChange, Transition};
use leadscore_core::{Grade, LeadState, Model, Outputs};
use proptest::prelude::*;

/// A producer's own writer schema: another order, an extra field, the
/// timestamp only ever a long, `type` required.
const OTHER_WRITER: &str = r#"{"type":"record","name":"LeadEvent","namespace":"io.leadscore","fields":[
  {"name":"properties","type":{"type":"map","values":["null","boolean","long","double","string",{"type":"array","items":"string"}]}},
  {"name":"source","type":"string"},
  {"name":"type","type":"string"},
  {"name":"timestamp","type":"long"},
  {"name":"lead_id","type":["null","string"]},
  {"name":"event_id","type":"string"}
]}"#;

fn codec() -> AvroCodec {
    // One file per call: the tests run in parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("leadscore-avro-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("lead-event.avsc");
    std::fs::write(&file, LEAD_EVENT_AVSC).expect("write");
    let other = dir.join("other.avsc");
    std::fs::write(&other, OTHER_WRITER).expect("write");
    let codec = AvroCodec::new(AvroSettings {
        schema_files: [(1, file), (7, other)].into_iter().collect(),
        registry: None,
        score_change_id: 2,
        transition_id: 3,
    })
    .expect("codec");
    // The codec has read its files: nothing left behind in /tmp.
    std::fs::remove_dir_all(&dir).ok();
    codec
}

#[test]
fn a_declared_count_of_billions_is_invalid_not_an_abort() {
    let c = codec();
    let limits = Limits::default();
    // An empty id, two nulls, timestamp 0, then a properties map of
    // 402,653,178 entries (found by the fuzzer: 40 GB reserved); an id
    // of as many bytes.
    for datum in [&[0u8, 0, 0, 0, 0, 0xf4, 0xff, 0xff, 0xff, 0x02, 0x0e][..], &[0xf4, 0xff, 0xff, 0xff, 0x02]] {
        let message = [&[0u8, 0, 0, 0, 1][..], datum].concat();
        match c.decode(&message, None, None, &limits) {
            Err(AvroError::Bad(e)) => assert_eq!(e.class, ErrorClass::InvalidAvro, "{e:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_avro_event_decodes_to_the_same_event_as_its_json() {
    let c = codec();
    let json = r#"{"event_id":"e-1","lead_id":"L-1","type":"profile_update","timestamp":"2026-11-25T16:00:00.000Z","properties":{"company_size":500,"country":"de","technologies":["a","b"],"annual_revenue":1.5,"region":null}}"#;
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    let avro = c.encode_event(&v, 1).expect("encode");
    let limits = Limits::default();
    assert_eq!(
        c.decode(&avro, None, None, &limits),
        decode_json(json.as_bytes(), None, None, &limits).map_err(AvroError::Bad)
    );
    let by_millis = c.encode_event(&serde_json::json!({"event_id":"e","timestamp":5,"properties":{"url":"u"}}), 1);
    let e = c.decode(&by_millis.expect("encode"), Some(b"L-9"), Some(Kind::PageView), &limits).expect("event");
    assert_eq!((e.lead_id.as_str(), e.timestamp, e.kind), ("L-9", 5, Kind::PageView));
}

#[test]
fn avro_problems_are_invalid_avro_and_contract_problems_keep_their_class() {
    let c = codec();
    let limits = Limits::default();
    let class = |b: &[u8]| match c.decode(b, None, None, &limits) {
        Err(AvroError::Bad(e)) => e.class,
        other => panic!("expected bad input, got {other:?}"),
    };
    assert_eq!(class(b"{\"event_id\":1}"), ErrorClass::InvalidAvro, "JSON on an Avro topic");
    assert_eq!(class(&[0, 0, 0, 0, 9, 2, 65]), ErrorClass::InvalidAvro, "unknown schema id");
    assert_eq!(class(&[0, 0, 0, 0, 1, 0xff, 0xff]), ErrorClass::InvalidAvro, "truncated datum");
    let unknown = c.encode_event(&serde_json::json!({"event_id":"e","lead_id":"L","type":"fax","timestamp":1}), 1);
    assert_eq!(class(&unknown.expect("encode")), ErrorClass::UnknownKind);
    let bad = c.encode_event(
        &serde_json::json!({"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"company_size":"big"}}),
        1,
    );
    assert_eq!(class(&bad.expect("encode")), ErrorClass::InvalidField);
}

#[test]
fn outputs_round_trip_through_their_schemas() {
    let c = codec();
    let change = br#"{"kind":"score_change","lead_id":"L-42","version":7,"timestamp":"2026-11-25T16:00:00.000Z","event_id":"e-000123","event_type":"page_view","score":57.25,"previous_score":46.25,"delta":11.0,"grade":"B","previous_grade":"B","reasons":[{"rule":"page-view","points":1.0},{"rule":"pricing-page","points":10.0}],"model_version":"seed-1"}"#;
    let avro = c.encode_output(change, false).expect("encode");
    assert_eq!(&avro[..5], &[0, 0, 0, 0, 2]);
    let back = c.decode_output(&avro, false).expect("decode");
    assert_eq!(back, serde_json::from_slice::<serde_json::Value>(change).expect("json"));
    let timer = br#"{"kind":"segment_transition","lead_id":"L-42","version":8,"segment":"inactive-60d","transition":"entered","timestamp":"2026-11-25T16:00:00.000Z","cause":"timer","event_id":null,"score":1.5,"grade":"B","model_version":"seed-1"}"#;
    let avro = c.encode_output(timer, true).expect("encode");
    assert_eq!(
        c.decode_output(&avro, true).expect("decode"),
        serde_json::from_slice::<serde_json::Value>(timer).expect("json")
    );
}

#[test]
fn only_the_envelope_itself_is_read_directly() {
    let parse = |t: &str| Schema::parse_str(t).expect("schema");
    assert!(Writer::new(parse(LEAD_EVENT_AVSC)).is_envelope);
    // Docs and defaults do not change the layout.
    let undocumented = LEAD_EVENT_AVSC.replace("One input event", "An event").replace(r#", "default": {}"#, "");
    assert!(Writer::new(parse(&undocumented)).is_envelope);
    assert!(!Writer::new(parse(OTHER_WRITER)).is_envelope);
    // The same layout, but microseconds: resolved, not read as milliseconds.
    let micros = LEAD_EVENT_AVSC.replace("timestamp-millis", "timestamp-micros");
    assert!(!Writer::new(parse(&micros)).is_envelope);
}

#[test]
fn another_writer_schema_is_resolved_to_the_same_event() {
    let c = codec();
    let writer = Schema::parse_str(OTHER_WRITER).expect("schema");
    let json = serde_json::json!({"properties":{"url":"/pricing","x":true},"source":"web","type":"page_view",
        "timestamp":1_795_622_400_000i64,"lead_id":"L-1","event_id":"e-1"});
    let value = Value::from(json).resolve(&writer).expect("fits");
    let mut message = vec![0, 0, 0, 0, 7];
    message.extend(apache_avro::to_avro_datum(&writer, value).expect("datum"));
    let limits = Limits::default();
    let direct = c.decode(&message, None, None, &limits).expect("decodes");
    let expected = r#"{"event_id":"e-1","lead_id":"L-1","type":"page_view","timestamp":1795622400000,"properties":{"url":"/pricing"}}"#;
    assert_eq!(direct, decode_json(expected.as_bytes(), None, None, &limits).expect("json"));
    assert_eq!(Ok(direct), c.decode_through_json(&message, None, None, &limits));
}

#[test]
fn a_non_finite_double_is_an_invalid_field() {
    let c = codec();
    let event = serde_json::json!({"event_id":"e","lead_id":"L","type":"opportunity_update","timestamp":1,
        "properties":{"opportunity_id":"o","amount":1.0}});
    let mut message = c.encode_event(&event, 1).expect("encode");
    let one = 1.0f64.to_le_bytes();
    let at = message.windows(8).position(|w| w == one).expect("the amount");
    message[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    match c.decode(&message, None, None, &Limits::default()) {
        Err(AvroError::Bad(e)) => {
            assert_eq!(e.class, ErrorClass::InvalidField);
            assert!(e.message.contains("properties.amount: expected a number, got a non-finite number"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// A value of the envelope's `properties` union, of a type a property may
/// or may not accept.
fn property_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        prop_oneof![any::<i64>(), -5i64..500_000].prop_map(|i| json!(i)),
        prop_oneof![any::<f64>().prop_filter("finite", |f| f.is_finite()), Just(2.5f64)].prop_map(|f| json!(f)),
        prop_oneof![
            Just("hard".to_string()),
            Just("SOFT".to_string()),
            Just("closed_won".to_string()),
            Just(" de ".to_string()),
            Just("".to_string()),
            "[a-z]{0,3}",
            "\\PC{0,12}",
            Just("x".repeat(300)),
        ]
        .prop_map(|s| json!(s)),
        prop::collection::vec("[a-z]{0,4}", 0..4).prop_map(|v| json!(v)),
        Just(json!(vec!["t"; 101])),
    ]
}

/// Mostly the properties of `kind` (so that values reach the rules that
/// check them), sometimes any known property or another name.
fn property_name(kind: Option<leadscore_core::Kind>) -> impl Strategy<Value = String> {
    let all = leadscore_core::Kind::ALL
        .iter()
        .flat_map(|k| k.properties().iter().map(|(f, _)| f.as_str().to_string()))
        .collect::<Vec<_>>();
    let own = kind.map_or(all.clone(), |k| k.properties().iter().map(|(f, _)| f.as_str().to_string()).collect());
    let own = if own.is_empty() { all.clone() } else { own };
    prop_oneof![6 => prop::sample::select(own), 2 => prop::sample::select(all), 1 => "[a-z_]{1,8}"]
}

fn optional_text(values: Vec<&'static str>) -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![Just(serde_json::Value::Null), prop::sample::select(values).prop_map(serde_json::Value::from)]
}

/// An event as its producer would write it with the envelope schema:
/// everything the schema allows, valid or not by the contract.
fn envelope_event() -> impl Strategy<Value = serde_json::Value> {
    let mut kinds: Vec<&'static str> = leadscore_core::Kind::ALL.iter().map(|k| k.as_str()).collect();
    kinds.push("fax");
    optional_text(kinds)
        .prop_flat_map(|kind| {
            let parsed = kind.as_str().and_then(leadscore_core::Kind::parse);
            (
                prop_oneof![Just("e-1".to_string()), Just(String::new()), Just("e".repeat(129)), "[a-z0-9-]{1,20}"],
                optional_text(vec!["L-1", "L-2", "", "\u{e9}"]),
                Just(kind),
                prop_oneof![
                    any::<i64>().prop_map(serde_json::Value::from),
                    (0i64..4_000_000_000_000).prop_map(serde_json::Value::from),
                    prop::sample::select(vec![
                        "2026-11-25T16:00:00.000Z",
                        "2026-11-25T16:00:00+01:00",
                        "yesterday",
                        ""
                    ])
                    .prop_map(serde_json::Value::from),
                ],
                prop::collection::vec((property_name(parsed), property_value()), 0..8),
            )
        })
        .prop_map(|(event_id, lead_id, kind, timestamp, properties)| {
            let properties: serde_json::Map<String, serde_json::Value> = properties.into_iter().collect();
            serde_json::json!({"event_id": event_id, "lead_id": lead_id, "type": kind,
            "timestamp": timestamp, "properties": properties})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the envelope can carry, the direct reader gives exactly the
    /// event (or the error, class and message) that apache-avro's value tree
    /// written out as JSON gives the JSON decoder.
    #[test]
    fn the_direct_reader_agrees_with_apache_avro_and_the_json_decoder(
        event in envelope_event(),
        key in prop::option::of(prop::sample::select(vec!["L-1", "L-3", ""])),
        topic_kind in prop::option::of(prop::sample::select(leadscore_core::Kind::ALL.to_vec())),
    ) {
        let c = codec();
        let message = c.encode_event(&event, 1).expect("the envelope holds it");
        let limits = Limits::default();
        let key = key.map(str::as_bytes);
        prop_assert_eq!(
            c.decode(&message, key, topic_kind, &limits),
            c.decode_through_json(&message, key, topic_kind, &limits)
        );
    }

    /// On damaged datums (a valid one with bytes changed, cut short or
    /// extended, or bytes at random) the direct reader fails exactly when
    /// apache-avro does, and otherwise agrees with it.
    #[test]
    fn the_direct_reader_fails_where_apache_avro_fails(
        event in envelope_event(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        extra in prop::collection::vec(any::<u8>(), 0..3),
        random in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
    ) {
        let c = codec();
        let mut message = c.encode_event(&event, 1).expect("the envelope holds it");
        if let Some(random) = random {
            message.truncate(5);
            message.extend(random);
        }
        for (at, byte) in edits {
            if message.len() > 5 {
                let i = 5 + at.index(message.len() - 5);
                message[i] = byte;
            }
        }
        if let Some(cut) = cut {
            message.truncate(5 + cut.index(message.len() - 4));
        }
        message.extend(extra);
        let limits = Limits::default();
        let direct = c.decode(&message, None, None, &limits);
        let reference = c.decode_through_json(&message, None, None, &limits);
        match (&direct, &reference) {
            (Err(AvroError::Bad(d)), Err(AvroError::Bad(r))) if r.class == ErrorClass::InvalidAvro => {
                prop_assert_eq!(d.class, ErrorClass::InvalidAvro, "{:?}", d)
            }
            // JSON has no NaN: the reference reads one as null.
            (Err(AvroError::Bad(d)), _) if d.message.contains("non-finite") => {}
            _ => prop_assert_eq!(direct, reference),
        }
    }
}

/// Datums at the edges of the encoding, each a prefix and a suffix around
/// a valid event id, lead id, type and timestamp.
#[test]
fn the_direct_reader_agrees_with_apache_avro_at_the_edges() {
    let c = codec();
    let head = |event_id: &[u8]| {
        let mut d = vec![0, 0, 0, 0, 1];
        d.push((event_id.len() * 2) as u8);
        d.extend_from_slice(event_id);
        // lead_id "L", type "webinar", timestamp 2 (long).
        d.extend_from_slice(&[2, 2, b'L', 2, 14]);
        d.extend_from_slice(b"webinar");
        d.extend_from_slice(&[0, 4]);
        d
    };
    let with = |properties: &[u8]| [head(b"e"), properties.to_vec()].concat();
    let webinar = [14, b'w', b'e', b'b', b'i', b'n', b'a', b'r', 8, 2, b'w'];
    let attended =
        |byte: u8| [&[4][..], &webinar, &[16, b'a', b't', b't', b'e', b'n', b'd', b'e', b'd', 2, byte, 0]].concat();
    let mut long_id = vec![0, 0, 0, 0, 1];
    // An event id one byte over the allocation limit, all of it there.
    let n = (MAX_AVRO_ALLOCATION + 1) as i64 * 2;
    let mut z = n as u64;
    while z > 0x7f {
        long_id.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    long_id.push(z as u8);
    long_id.extend(std::iter::repeat_n(b'e', MAX_AVRO_ALLOCATION + 1));
    long_id.extend_from_slice(&with(&attended(1))[7..]);
    let profile = |properties: serde_json::Value| {
        let e = serde_json::json!({"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":properties});
        c.encode_event(&e, 1).expect("encode")
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a valid webinar", with(&attended(0))),
        ("attended true", with(&attended(1))),
        ("a boolean of 2", with(&attended(2))),
        ("a negative block count and its size", with(&[&[1, 20][..], &webinar, &[0]].concat())),
        ("a negative block count without its size", with(&[1])),
        ("union index 6 of 6", with(&[2, 2, b'x', 12, 0])),
        ("a negative union index", with(&[2, 2, b'x', 1, 0])),
        ("a varint of eleven bytes", with(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
        ("a varint of ten bytes", with(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02])),
        ("a key that is not UTF-8", with(&[2, 2, 0xff, 0, 0])),
        ("bytes after the datum", with(&[0, 0])),
        ("an empty map, then nothing", with(&[0])),
        ("an array of strings", with(&[2, 2, b'x', 10, 2, 2, b'y', 0, 0])),
        ("a double", with(&[2, 2, b'x', 6, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0])),
        ("an event id over the allocation limit", long_id),
        ("an integer for a number", profile(serde_json::json!({"annual_revenue": 9_007_199_254_740_993i64}))),
        ("a double for an integer", profile(serde_json::json!({"company_size": 5.0}))),
    ];
    let limits = Limits::default();
    for (what, message) in cases {
        let direct = c.decode(&message, None, None, &limits);
        let reference = c.decode_through_json(&message, None, None, &limits);
        let valid =
            ["a valid webinar", "attended true", "a negative block count and its size", "an integer for a number"];
        assert_eq!(direct.is_ok(), valid.contains(&what) || reference.is_ok(), "{what}: {direct:?}");
        match (&direct, &reference) {
            (Err(AvroError::Bad(d)), Err(AvroError::Bad(r))) if r.class == ErrorClass::InvalidAvro => {
                assert_eq!(d.class, ErrorClass::InvalidAvro, "{what}: {d:?}")
            }
            _ => assert_eq!(direct, reference, "{what}"),
        }
    }
}

/// The records the seed model makes of a synthetic stream, and some made by
/// hand at the edges (a removed segment, a timer, a version beyond 32 bits,
/// long strings, negative and odd numbers).
/// (lead, the event's id and kind if there was one, outputs).
type Made = Vec<(String, Option<(String, leadscore_core::Kind)>, Outputs)>;

fn records() -> (Model, Made) {
    let model = leadscore_config::seed_model();
    let mut generator = leadscore_synth::Generator::new(leadscore_synth::Settings {
        leads: 200,
        ..leadscore_synth::Settings::default()
    });
    let mut leads: std::collections::HashMap<String, Option<LeadState>> = Default::default();
    let mut made = Vec::new();
    for _ in 0..3000 {
        let e = generator.next_event();
        let mut out = Outputs::default();
        leadscore_core::apply(&model, leads.entry(e.lead_id.as_str().to_string()).or_default(), &e, &mut out);
        made.push((e.lead_id.as_str().to_string(), Some((e.event_id.as_str().to_string(), e.kind)), out));
    }
    let mut edge = Outputs::default();
    edge.records.push(Record::Transition(Transition {
        version: 1 << 40,
        segment: 0,
        direction: Direction::Exited,
        timestamp: -62_167_219_200_000,
        cause: Cause::ModelChange,
        score: -0.0,
        grade: Grade::F,
        retired_segment: Some(
            "a-removed-segment-with-a-name-longer-than-sixty-four-bytes-so-its-length-takes-two".into(),
        ),
    }));
    edge.records.push(Record::ScoreChange(ScoreChange {
        version: u64::from(u32::MAX) + 7,
        timestamp: 253_402_300_799_999,
        score: 1e300,
        previous_score: f64::MIN_POSITIVE,
        delta: -123.456,
        grade: Grade::A,
        previous_grade: Grade::E,
        reasons: 0..0,
    }));
    made.push(("L-\u{e9}".repeat(40), None, edge));
    (model, made)
}

#[test]
fn the_direct_writer_writes_what_apache_avro_writes_from_the_json() {
    let c = codec();
    let (model, made) = records();
    let (mut checked, mut timers) = (0, 0);
    for (lead, event, out) in &made {
        let ctx =
            RecordContext { model: &model, lead_id: lead, event: event.as_ref().map(|(id, k)| (id.as_str(), *k)) };
        for r in &out.records {
            let mut json = Vec::new();
            encode_json(&mut json, &ctx, r, &out.reasons);
            let transition = matches!(r, Record::Transition(_));
            let reference = c.encode_output(&json, transition).expect("the reference encodes it");
            let mut direct = Vec::new();
            c.encode_record(&mut direct, &ctx, r, &out.reasons);
            assert_eq!(direct, reference, "{}", String::from_utf8_lossy(&json));
            assert_eq!(
                c.decode_output(&direct, transition).expect("decodes"),
                serde_json::from_slice::<serde_json::Value>(&json).expect("json")
            );
            checked += 1;
            timers += usize::from(matches!(r, Record::Transition(t) if t.cause != Cause::Event));
        }
    }
    assert!(checked > 2000 && timers > 0, "{checked} records, {timers} without an event");
}
