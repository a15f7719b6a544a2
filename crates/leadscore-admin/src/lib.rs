//! leadscore's admin HTTP server, for dashboards, orchestrators and people:
//!
//! - `GET /metrics`: Prometheus text exposition ([`leadscore_telemetry::Metrics`]).
//! - `GET /healthz`: the process is alive (always 200 while it serves).
//! - `GET /readyz`: 200 once the assigned partitions are restored and consumed;
//!   503 with the reason while restoring, before the first assignment, or while
//!   every broker is unreachable.
//! - `GET /segments`: each segment of the model with its number of members
//!   over the partitions this instance owns.
//! - `GET /leads/{lead_id}`: the lead's score decayed to now, grade, segments
//!   with when each was entered, version (of its last published record) and
//!   model version, and the last score changes (with reasons) this instance
//!   published for it since it started; its profile (personal data: e-mail,
//!   job title, company) only where [`Access::expose_profile`] says so;
//!   404 when the lead is in none of the partitions this instance owns (saying
//!   which those are).
//!
//! With a [`Access::bearer_token`], every route but the two probes
//! answers 401 unless the request carries `Authorization: Bearer <token>`:
//! probes come from orchestrators that hold no secrets, and say nothing about
//! leads.
//!
//! The router is built from an [`AdminState`] and served by [`serve`]; tests
//! call it without a socket.

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use leadscore_core::event::OwnedValue;
use leadscore_core::time::format_rfc3339;
use leadscore_core::{Millis, Model};
use leadscore_store::{decode_migrating, StateStore};
use leadscore_telemetry::Telemetry;
use serde_json::{json, Value};
use std::sync::Arc;

/// Reads RocksDB's memory use (block cache, memtables) when metrics are scraped.
pub type MemoryProbe = Arc<dyn Fn() -> (u64, u64) + Send + Sync>;

/// What the routes read.
#[derive(Clone)]
pub struct AdminState {
    pub telemetry: Arc<Telemetry>,
    pub store: Arc<dyn StateStore>,
    pub model: Arc<Model>,
    pub clock: Arc<dyn Fn() -> Millis + Send + Sync>,
    pub memory: Option<MemoryProbe>,
    /// The consumer group, named in answers about leads owned elsewhere.
    pub group: String,
    pub access: Access,
}

/// Who may read what.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Required on every route but the probes, when set.
    pub bearer_token: Option<Arc<str>>,
    /// Whether `/leads/{lead_id}` includes the lead's profile.
    pub expose_profile: bool,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/segments", get(segments))
        .route("/leads/{lead_id}", get(lead))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(state)
}

/// Lets a request through when no token is set or it carries the token.
async fn authorize(State(s): State<AdminState>, request: Request, next: Next) -> Response {
    let Some(token) = &s.access.bearer_token else { return next.run(request).await };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let status = StatusCode::UNAUTHORIZED;
    let body = Json(json!({ "error": "this route needs Authorization: Bearer <admin.bearer_token>" }));
    (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
}

/// Compares without stopping at the first difference, so that the time an
/// answer takes does not tell how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(s): State<AdminState>) -> Response {
    if let Some(probe) = &s.memory {
        let (cache, memtables) = probe();
        s.telemetry.metrics.block_cache_bytes.set(cache as i64);
        s.telemetry.metrics.memtable_bytes.set(memtables as i64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.telemetry.metrics.render()).into_response()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    match s.telemetry.status.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn segments(State(s): State<AdminState>) -> Json<Value> {
    let members = s.telemetry.metrics.segment_members();
    let list: Vec<Value> = s
        .model
        .segments
        .iter()
        .map(|seg| {
            let n = members.iter().find(|(name, _)| *name == seg.name).map_or(0, |(_, n)| *n);
            json!({ "segment": seg.name, "description": seg.description, "members": n })
        })
        .collect();
    Json(json!({ "owned_partitions": s.telemetry.status.owned(), "segments": list }))
}

fn profile_value(v: &OwnedValue) -> Value {
    match v {
        OwnedValue::Text(t) => json!(t.as_ref()),
        OwnedValue::Integer(i) => json!(i),
        OwnedValue::Number(n) => json!(n),
        OwnedValue::TextList(l) => json!(l.iter().map(|s| s.as_ref()).collect::<Vec<&str>>()),
    }
}

async fn lead(State(s): State<AdminState>, Path(lead_id): Path<String>) -> Response {
    let owned = s.telemetry.status.owned();
    for &partition in &owned {
        let found = match s.store.get_states(partition, &[lead_id.as_str()]) {
            Ok(mut v) => v.pop().flatten(),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let Some(bytes) = found else { continue };
        // A lead not touched since a model change is shown migrated to the
        // current model's layout (its segments are re-evaluated when next touched).
        let known = match s.store.checkpoint(partition) {
            Ok(c) => c.map(|c| c.layouts).unwrap_or_default(),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let state = match decode_migrating(&bytes, &s.model, &known) {
            Ok((state, _)) => state,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("state of {lead_id}: {e}")),
        };
        // The score is decayed to now; segments and version are as last
        // published (time-driven changes are published by the timers, within
        // a tick interval).
        let now = (s.clock)().max(state.clock);
        let segments: Vec<Value> = state
            .segments
            .iter()
            .map(|m| {
                let name = s.model.segments.get(m.segment as usize).map_or("?", |seg| seg.name.as_str());
                json!({ "segment": name, "since": format_rfc3339(m.since) })
            })
            .collect();
        let profile: Option<serde_json::Map<String, Value>> = s
            .access
            .expose_profile
            .then(|| state.profile.iter().map(|(f, v)| (f.as_str().to_string(), profile_value(v))).collect());
        let changes: Vec<Value> = s
            .telemetry
            .history
            .score_changes_of(&lead_id)
            .iter()
            .rev()
            .filter_map(|r| serde_json::from_str(&r.to_json(&s.model)).ok())
            .collect();
        let mut answer = json!({
            "lead_id": lead_id,
            "partition": partition,
            "score": leadscore_core::decay::round2(state.score_at_time(&s.model, now)),
            "as_of": format_rfc3339(now),
            "grade": state.grade.as_str(),
            "segments": segments,
            "version": state.version,
            "model_version": s.model.version,
            "recent_score_changes": changes,
        });
        if let Some(profile) = profile {
            answer["profile"] = Value::Object(profile);
        }
        return Json(answer).into_response();
    }
    let message = if owned.is_empty() {
        "lead not found: this instance owns no partitions yet".to_string()
    } else {
        let list: Vec<String> = owned.iter().map(|p| p.to_string()).collect();
        format!(
            "lead not found in the partitions this instance owns ({}); a lead of another partition is served by \
             the instance of consumer group {:?} that owns it",
            list.join(", "),
            s.group
        )
    };
    (StatusCode::NOT_FOUND, Json(json!({ "lead_id": lead_id, "error": message, "owned_partitions": owned })))
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    tracing::error!(error = message, "admin request failed");
    (status, Json(json!({ "error": message }))).into_response()
}
