//! The admin routes without a socket (`Router::oneshot`), over an in-memory
//! store holding leads the processing step produced.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use leadscore_admin::{router, Access, AdminState};
use leadscore_config::seed_model;
use leadscore_core::time::{parse_rfc3339, DAY};
use leadscore_pipeline::{InputMessage, Processor, TimeMode, Topics};
use leadscore_store::memory::MemoryStore;
use leadscore_store::StateStore;
use leadscore_telemetry::Telemetry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tower::ServiceExt;

const EVENTS: [&str; 3] = [
    r#"{"event_id":"a1","lead_id":"L-1","type":"form_submit","timestamp":"2026-01-01T00:00:00Z","properties":{"form":"demo-request"}}"#,
    r#"{"event_id":"a2","lead_id":"L-1","type":"profile_update","timestamp":"2026-01-01T00:01:00Z","properties":{"country":"us","job_title":"VP Marketing","company_size":500}}"#,
    r#"{"event_id":"a3","lead_id":"L-1","type":"page_view","timestamp":"2026-01-01T00:02:00Z","properties":{"url":"https://example.com/pricing"}}"#,
];

fn state() -> (AdminState, Arc<MemoryStore>) {
    let model = Arc::new(seed_model());
    let store = Arc::new(MemoryStore::new());
    let topics = Topics::default();
    let p = Processor::new(&model, &*store, &topics, TimeMode::EventTime);
    let messages: Vec<InputMessage> = EVENTS
        .iter()
        .enumerate()
        .map(|(i, e)| InputMessage {
            topic: "lead-events".into(),
            partition: 0,
            offset: i as i64,
            key: None,
            payload: Some(e.as_bytes().to_vec()),
            timestamp: None,
        })
        .collect();
    let step = p.process(0, &messages, 0).expect("process");
    store.write(&step.write).expect("commit");
    let telemetry = Arc::new(Telemetry::default());
    telemetry.metrics.describe_model(&model);
    telemetry.history.note(step.observations.published.clone());
    let now = parse_rfc3339("2026-01-01T00:02:00Z").expect("time") + 10 * DAY;
    let state = AdminState {
        telemetry,
        store: store.clone(),
        model,
        clock: Arc::new(move || now),
        memory: Some(Arc::new(|| (1234, 567))),
        group: "leadscore".into(),
        access: Access::default(),
    };
    (state, store)
}

async fn get(state: &AdminState, uri: &str) -> (StatusCode, String) {
    get_with(state, uri, None).await
}

async fn get_with(state: &AdminState, uri: &str, authorization: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get(uri);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response =
        router(state.clone()).oneshot(request.body(Body::empty()).expect("request")).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("utf8"))
}

#[tokio::test]
async fn health_is_always_ok_and_readiness_follows_consuming_restoring_and_brokers() {
    let (s, _) = state();
    assert_eq!(get(&s, "/healthz").await.0, StatusCode::OK);
    let (status, body) = get(&s, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: not consuming yet (joining the consumer group)\n")
    );
    s.telemetry.status.consuming.store(true, Ordering::Relaxed);
    assert_eq!(get(&s, "/readyz").await.0, StatusCode::OK);
    s.telemetry.status.restoring.store(2, Ordering::Relaxed);
    let (status, body) = get(&s, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("restoring 2 partition(s)"), "{body}");
    s.telemetry.status.restoring.store(0, Ordering::Relaxed);
    s.telemetry.status.brokers_down.store(true, Ordering::Relaxed);
    assert!(get(&s, "/readyz").await.1.contains("brokers are unreachable"));
}

#[tokio::test]
async fn metrics_are_described_and_probe_rocksdb_memory_on_scrape() {
    let (s, _) = state();
    let (status, body) = get(&s, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "leadscore_segment_members",
        "leadscore_build_info",
        "leadscore_rocksdb_block_cache_usage_bytes 1234",
        "leadscore_rocksdb_memtable_bytes 567",
        "leadscore_leads 0",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
    for line in body.lines().filter(|l| l.starts_with("# TYPE leadscore_")) {
        let name = line.split_whitespace().nth(2).expect("name");
        assert!(body.contains(&format!("# HELP {name} ")), "{name} has no description");
        assert!(!body.contains("lead_id="), "no lead ids as labels");
    }
    assert!(body.contains(r#"leadscore_segment_members{segment="sales-ready"} 0"#));
}

#[tokio::test]
async fn a_lead_is_looked_up_with_its_score_decayed_to_now_and_an_unknown_one_is_404() {
    let (s, _) = state();
    s.telemetry.status.set_owned([0].into_iter().collect());
    let (status, body) = get(&s, "/leads/L-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["lead_id"], "L-1");
    assert_eq!(v["partition"], 0);
    assert!(v.get("profile").is_none(), "no personal data unless exposed: {v}");
    assert_eq!(v["as_of"], "2026-01-11T00:02:00.000Z");
    assert_eq!(v["model_version"], s.model.version.as_str());
    let changes = v["recent_score_changes"].as_array().expect("changes");
    assert!(!changes.is_empty());
    let last_published = changes[0]["score"].as_f64().expect("score");
    let now = v["score"].as_f64().expect("score");
    assert!(now < last_published, "ten days of decay: {now} < {last_published}");
    assert!(v["segments"].as_array().expect("segments").iter().all(|m| m["since"].is_string()));
    assert!(v["version"].as_u64().expect("version") >= 3);

    let (status, body) = get(&s, "/leads/L-nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("not found in the partitions this instance owns (0)"), "{body}");
}

#[tokio::test]
async fn segments_are_listed_with_their_members() {
    let (s, _) = state();
    let mut counts = leadscore_store::Counts { members: vec![0; s.model.segments.len()], ..Default::default() };
    let i = s.model.segment_index("score-low").expect("segment");
    counts.members[i] = 7;
    s.telemetry.metrics.set_counts(&counts);
    let (status, body) = get(&s, "/segments").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let list = v["segments"].as_array().expect("list");
    assert_eq!(list.len(), s.model.segments.len());
    let low = list.iter().find(|x| x["segment"] == "score-low").expect("score-low");
    assert_eq!(low["members"], 7);
}

#[tokio::test]
async fn the_profile_is_shown_only_where_exposed() {
    let (mut s, _) = state();
    s.telemetry.status.set_owned([0].into_iter().collect());
    s.access.expose_profile = true;
    let (status, body) = get(&s, "/leads/L-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["profile"]["country"], "US");
    assert_eq!(v["profile"]["job_title"], "VP Marketing");
}

#[tokio::test]
async fn with_a_bearer_token_only_the_probes_are_open() {
    let (mut s, _) = state();
    s.telemetry.status.set_owned([0].into_iter().collect());
    s.telemetry.status.consuming.store(true, Ordering::Relaxed);
    s.access.bearer_token = Some("s3cret-token".into());
    for uri in ["/healthz", "/readyz"] {
        assert_eq!(get(&s, uri).await.0, StatusCode::OK, "{uri}");
    }
    for uri in ["/metrics", "/segments", "/leads/L-1"] {
        let (status, body) = get(&s, uri).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        assert!(body.contains("Authorization: Bearer"), "{body}");
        for wrong in ["Bearer s3cret-toke", "Bearer s3cret-token2", "Basic s3cret-token", "s3cret-token"] {
            assert_eq!(get_with(&s, uri, Some(wrong)).await.0, StatusCode::UNAUTHORIZED, "{uri} with {wrong:?}");
        }
        assert_eq!(get_with(&s, uri, Some("Bearer s3cret-token")).await.0, StatusCode::OK, "{uri}");
    }
}
