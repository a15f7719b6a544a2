//! The published contracts agree with the code: the AsyncAPI document
//! (`docs/asyncapi.yaml`) parses, names every topic of the default
//! configuration and refers only to files and components that exist; the JSON
//! Schemas (`schemas/json/`) accept every event leadscore accepts from the
//! sample and every record the offline scorer prints for it (timers
//! included), and refuse what they must. Records published through a broker
//! are validated in `crates/leadscore/tests/golden_broker.rs`.

use leadscore_config::service::ServiceConfig;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = root().join("schemas/json").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&json)
        .unwrap_or_else(|e| panic!("{name} is not a valid JSON Schema: {e}"))
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some("$ref") {
                    out.push(v.as_str().expect("a $ref is a string").to_string());
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_asyncapi_document_names_every_topic_and_resolves() {
    let path = root().join("docs/asyncapi.yaml");
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).expect("asyncapi.yaml")).expect("YAML");
    assert_eq!(doc["asyncapi"].as_str(), Some("3.0.0"));
    let channels = doc["channels"].as_mapping().expect("channels");
    let addresses: Vec<&str> = channels.values().filter_map(|c| c["address"].as_str()).collect();

    let none: [&Path; 0] = [];
    let config = ServiceConfig::load_files(&none).expect("defaults");
    let t = &config.topics;
    let mut topics: Vec<&str> = t.inputs.keys().map(String::as_str).collect();
    topics.extend([t.score_changes.as_str(), t.transitions.as_str(), t.dead_letters.as_str(), t.changelog.as_str()]);
    for topic in topics {
        assert!(addresses.contains(&topic), "no channel for topic {topic}: {addresses:?}");
    }

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20);
    for r in all {
        if let Some(pointer) = r.strip_prefix("#/") {
            let mut at = &doc;
            for part in pointer.split('/') {
                at = &at[part];
            }
            assert!(!at.is_null(), "{r} does not resolve");
        } else {
            let file = path.parent().expect("docs").join(&r);
            assert!(file.is_file(), "{r} ({}) does not exist", file.display());
        }
    }
    for op in doc["operations"].as_mapping().expect("operations").values() {
        assert!(matches!(op["action"].as_str(), Some("send" | "receive")));
    }
}

#[test]
fn the_event_schema_accepts_what_leadscore_accepts_and_refuses_wrong_types() {
    let events = schema("lead-event.schema.json");
    let sample = std::fs::read_to_string(root().join("examples/sample-events.jsonl")).expect("sample");
    let mut n = 0;
    for line in sample.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let errors: Vec<String> = events.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        n += 1;
    }
    assert!(n > 1000);
    for bad in [
        r#"{"event_id":"e","lead_id":"L","type":"profile_update","timestamp":1,"properties":{"company_size":"big"}}"#,
        r#"{"event_id":"e","lead_id":"L","type":"fax","timestamp":1}"#,
        r#"{"event_id":"","lead_id":"L","type":"search","timestamp":1}"#,
        r#"{"lead_id":"L","type":"search","timestamp":1}"#,
        r#"{"event_id":"e","lead_id":"L","type":"search","timestamp":"yesterday"}"#,
        r#"{"event_id":"e","lead_id":"L","type":"webinar","timestamp":1,"properties":{"attended":"yes"}}"#,
    ] {
        let v: serde_json::Value = serde_json::from_str(bad).expect("json");
        assert!(!events.is_valid(&v), "the schema accepts {bad}");
    }
}

#[test]
fn every_record_the_scorer_prints_matches_its_schema() {
    let changes = schema("score-change.schema.json");
    let transitions = schema("segment-transition.schema.json");
    let model = leadscore_config::seed_model();
    let sample = std::fs::read(root().join("examples/sample-events.jsonl")).expect("sample");
    let options = leadscore_pipeline::offline::Options {
        until: Some(leadscore_core::time::parse_rfc3339("2027-01-01T00:00:00Z").expect("time")),
        ..Default::default()
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    leadscore_pipeline::offline::score(&model, &sample[..], &options, &mut out, &mut err).expect("scores");
    let mut kinds = std::collections::BTreeMap::new();
    for line in String::from_utf8(out).expect("utf-8").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let kind = v["kind"].as_str().expect("kind").to_string();
        let cause = v["cause"].as_str().unwrap_or("").to_string();
        let validator = if kind == "score_change" { &changes } else { &transitions };
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        *kinds.entry((kind, cause)).or_insert(0) += 1;
    }
    for seen in [("score_change", ""), ("segment_transition", "event"), ("segment_transition", "timer")] {
        assert!(kinds.contains_key(&(seen.0.to_string(), seen.1.to_string())), "no {seen:?} in {kinds:?}");
    }
    let mut wrong: serde_json::Value =
        serde_json::from_str(r#"{"kind":"score_change","lead_id":"L","version":0}"#).expect("json");
    assert!(!changes.is_valid(&wrong));
    wrong["extra"] = serde_json::json!(1);
    assert!(!changes.is_valid(&wrong));
}

#[test]
fn records_of_a_model_change_match_their_schemas() {
    use leadscore_pipeline::{OutputTopic, Processor, TimeMode, Topics};
    use leadscore_store::StateStore;
    let (changes, transitions) = (schema("score-change.schema.json"), schema("segment-transition.schema.json"));
    let seed = leadscore_config::seed_model();
    // A new version where every manager is worth more (grades change) and
    // the low-score segment is gone (its members exit it).
    let text = leadscore_config::SEED_MODEL_TOML
        .replace("version = \"seed-1\"", "version = \"seed-2\"")
        .replace("name = \"score-low\"", "name = \"score-below-31\"");
    let at = text.find("name = \"title-manager\"").expect("the criterion");
    let fit = at + text[at..].find("\nfit = ").expect("its fit") + 1;
    let end = fit + text[fit..].find('\n').expect("a line end");
    let text = format!("{}fit = 60{}", &text[..fit], &text[end..]);
    let changed = leadscore_config::parse_model(&text).expect("the changed model");
    let store = leadscore_store::memory::MemoryStore::new();
    let topics = Topics::default();
    let sample = std::fs::read_to_string(root().join("examples/sample-events.jsonl")).expect("sample");
    let msgs: Vec<leadscore_pipeline::InputMessage> = sample
        .lines()
        .enumerate()
        .map(|(i, l)| leadscore_pipeline::InputMessage {
            topic: "lead-events".into(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: Some(l.as_bytes().to_vec()),
            timestamp: None,
        })
        .collect();
    let half = msgs.len() / 2;
    let mut seen = std::collections::BTreeSet::new();
    for (model, part) in [(&seed, &msgs[..half]), (&changed, &msgs[half..])] {
        let p = Processor::new(model, &store, &topics, TimeMode::EventTime);
        for chunk in part.chunks(50) {
            let step = p.process(0, chunk, 0).expect("a step");
            for o in
                step.outputs.iter().filter(|o| matches!(o.topic, OutputTopic::ScoreChanges | OutputTopic::Transitions))
            {
                let v: serde_json::Value =
                    serde_json::from_slice(o.value.as_deref().unwrap_or_default()).expect("json");
                let validator = if o.topic == OutputTopic::ScoreChanges { &changes } else { &transitions };
                let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{v}: {errors:?}");
                if v["cause"] == "model_change" || (v["kind"] == "score_change" && v["event_id"].is_null()) {
                    seen.insert((v["kind"].as_str().map(String::from), v["segment"].as_str().map(String::from)));
                }
            }
            store.write(&step.write).expect("commit");
        }
    }
    assert!(seen.contains(&(Some("score_change".into()), None)), "a grade change without an event: {seen:?}");
    assert!(seen.contains(&(Some("segment_transition".into()), Some("score-low".into()))), "{seen:?}");
}

#[test]
fn the_asyncapi_document_is_valid_asyncapi_3() {
    // The AsyncAPI Initiative's JSON Schema of AsyncAPI 3.0.0 (from the npm
    // package @asyncapi/specs 6.11.1, Apache-2.0; tests/fixtures/README.md).
    let path = root().join("tests/fixtures/asyncapi-3.0.0.schema.json");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the AsyncAPI schema")).expect("JSON");
    let validator = jsonschema::options().build(&spec).expect("the AsyncAPI schema compiles");
    let text = std::fs::read_to_string(root().join("docs/asyncapi.yaml")).expect("asyncapi.yaml");
    let doc: serde_json::Value = serde_yaml::from_str(&text).expect("YAML");
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "docs/asyncapi.yaml is not valid AsyncAPI 3.0.0: {errors:#?}");
    // And the check can fail: a channel without its required shape is refused.
    let mut broken = doc.clone();
    broken["channels"]["scoreChanges"]["messages"] = serde_json::json!("not a map");
    assert!(!validator.is_valid(&broken));
}
