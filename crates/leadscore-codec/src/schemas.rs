//! Writer schemas by Confluent schema id, fetched off the processing thread.
//!
//! A lookup never blocks: it answers from the cache, or says the schema is
//! not there yet and asks a background thread to fetch it. The thread makes
//! a few attempts with short pauses; a registry that stays unavailable is
//! asked again later, with a growing pause (up to 30 s), for as long as
//! messages wait for the id. An id the registry does not have is remembered
//! as unknown for a while (negative caching: a flood of messages with a bogus
//! id costs one request a minute, not one per message). So the processor
//! only ever sees "here is the schema", "this id does not exist" (bad input)
//! or "wait" (a registry outage: the message is held, never dead-lettered).

use crate::registry::{Fetched, RegistryClient};
use apache_avro::Schema;
use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// How long an id the registry does not have is taken as unknown.
const UNKNOWN_FOR: Duration = Duration::from_secs(60);
/// Attempts per fetch, and the pause before each retry.
const ATTEMPTS: [Duration; 3] = [Duration::ZERO, Duration::from_millis(200), Duration::from_millis(800)];
/// The longest pause between fetches of an id while the registry is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A writer schema, and whether it is leadscore's envelope schema (whose
/// datums are read directly, without apache-avro's value tree).
#[derive(Debug)]
pub struct Writer {
    pub schema: Schema,
    pub is_envelope: bool,
}

impl Writer {
    pub fn new(schema: Schema) -> Writer {
        static ENVELOPE: OnceLock<Option<String>> = OnceLock::new();
        let envelope =
            ENVELOPE.get_or_init(|| Schema::parse_str(crate::avro::LEAD_EVENT_AVSC).ok().map(|s| layout(&s)));
        let is_envelope = envelope.as_deref() == Some(layout(&schema).as_str());
        Writer { schema, is_envelope }
    }
}

/// What decides how a datum is read: the Parsing Canonical Form (which
/// leaves out docs, defaults and aliases) and, since it also leaves them
/// out, the logical types (a `timestamp-micros` long is not read as millis).
fn layout(schema: &Schema) -> String {
    fn logical(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(t) = m.get("logicalType").and_then(|t| t.as_str()) {
                    out.push_str(t);
                    out.push(' ');
                }
                m.iter().filter(|(k, _)| *k != "default").for_each(|(_, v)| logical(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| logical(v, out)),
            _ => {}
        }
    }
    let mut key = schema.canonical_form();
    key.push('\n');
    logical(&serde_json::to_value(schema).unwrap_or_default(), &mut key);
    key
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    Known(Arc<Writer>),
    /// Bad input: no such id (or its schema does not parse).
    Unknown(String),
    /// Not known yet: the registry is being asked (the reason of the last
    /// failure, if one failed).
    Wait(String),
}

#[derive(Debug, Clone)]
enum Slot {
    Known(Arc<Writer>),
    Unknown {
        why: String,
        until: Instant,
    },
    /// Being fetched, or to be fetched again after `retry_at`.
    Pending {
        why: String,
        retry_at: Option<Instant>,
        failures: u32,
    },
}

/// See the module documentation.
pub struct SchemaCache {
    slots: Arc<RwLock<HashMap<u32, Slot>>>,
    requests: Mutex<Option<Sender<u32>>>,
    registry_url: Option<String>,
}

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaCache").field("registry_url", &self.registry_url).finish_non_exhaustive()
    }
}

impl SchemaCache {
    /// A cache of `local` schemas, fetching others from `registry` (if any)
    /// on a thread of its own.
    pub fn new(local: HashMap<u32, Arc<Writer>>, registry: Option<RegistryClient>) -> SchemaCache {
        let slots: HashMap<u32, Slot> = local.into_iter().map(|(id, s)| (id, Slot::Known(s))).collect();
        let slots = Arc::new(RwLock::new(slots));
        let registry_url = registry.as_ref().map(|r| r.url().to_string());
        let requests = registry.map(|client| {
            let (tx, rx) = channel::<u32>();
            let slots = slots.clone();
            std::thread::Builder::new()
                .name("schema-registry".into())
                .spawn(move || {
                    for id in rx {
                        let failures = match slots.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
                            Some(Slot::Pending { failures, .. }) => *failures,
                            _ => 0,
                        };
                        let mut slot = fetch(&client, id);
                        if let Slot::Pending { retry_at: Some(at), failures: f, .. } = &mut slot {
                            // A registry that stays down is asked less and less often.
                            *f = failures + 1;
                            *at = Instant::now() + Duration::from_secs(1 << (*f).min(5)).min(MAX_BACKOFF);
                        }
                        slots.write().unwrap_or_else(|p| p.into_inner()).insert(id, slot);
                    }
                })
                .expect("spawning the schema registry thread");
            tx
        });
        SchemaCache { slots, requests: Mutex::new(requests), registry_url }
    }

    /// The schema of `id`, or why not (see [`Lookup`]); never blocks on the
    /// registry.
    pub fn lookup(&self, id: u32) -> Lookup {
        let now = Instant::now();
        if let Some(slot) = self.slots.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            match slot {
                Slot::Known(s) => return Lookup::Known(s.clone()),
                Slot::Unknown { why, until } if *until > now => return Lookup::Unknown(why.clone()),
                Slot::Pending { why, retry_at: None, .. } => return Lookup::Wait(why.clone()),
                Slot::Pending { why, retry_at: Some(at), .. } if *at > now => return Lookup::Wait(why.clone()),
                _ => {}
            }
        }
        let Some(url) = &self.registry_url else {
            return Lookup::Unknown(format!(
                "unknown schema id {id} (not in formats.avro_schema_files, and no schema registry)"
            ));
        };
        // Not asked yet, or due again: ask (once) and wait.
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let (why, failures) = match slots.get(&id) {
            Some(Slot::Pending { retry_at: None, why, .. }) => return Lookup::Wait(why.clone()),
            Some(Slot::Pending { why, failures, .. }) => (why.clone(), *failures),
            _ => (format!("fetching schema id {id} from {url}"), 0),
        };
        slots.insert(id, Slot::Pending { why: why.clone(), retry_at: None, failures });
        drop(slots);
        if let Some(tx) = self.requests.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(id);
        }
        Lookup::Wait(why)
    }
}

/// One fetch of `id`, with a few attempts; the slot it leaves.
fn fetch(client: &RegistryClient, id: u32) -> Slot {
    let mut last = String::new();
    for pause in ATTEMPTS {
        std::thread::sleep(pause);
        match client.fetch(id) {
            Fetched::Schema(text) => {
                return match Schema::parse_str(&text) {
                    Ok(s) => Slot::Known(Arc::new(Writer::new(s))),
                    Err(e) => Slot::Unknown {
                        why: format!("schema id {id} from {}: not a valid Avro schema: {e}", client.url()),
                        until: Instant::now() + UNKNOWN_FOR,
                    },
                };
            }
            Fetched::Unknown(why) => return Slot::Unknown { why, until: Instant::now() + UNKNOWN_FOR },
            Fetched::Unavailable(why) => last = why,
        }
    }
    tracing::warn!(schema_id = id, error = %last, "the schema registry is unavailable; messages with this schema id wait");
    Slot::Pending {
        why: format!("waiting for the schema registry: {last}"),
        retry_at: Some(Instant::now()),
        failures: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistrySettings;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A registry whose answers `answer(request number)` decides.
    fn registry(answer: impl Fn(usize) -> (u16, String) + Send + 'static) -> (String, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("address"));
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let (mut request, mut buf) = (Vec::new(), [0u8; 1024]);
                while !request.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = answer(seen.fetch_add(1, Ordering::SeqCst));
                let response =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(response.as_bytes());
            }
        });
        (url, count)
    }

    fn cache(url: String) -> SchemaCache {
        SchemaCache::new(HashMap::new(), Some(RegistryClient::new(RegistrySettings::new(url)).expect("client")))
    }

    fn settle(c: &SchemaCache, id: u32) -> Lookup {
        for _ in 0..500 {
            match c.lookup(id) {
                Lookup::Wait(_) => std::thread::sleep(Duration::from_millis(10)),
                other => return other,
            }
        }
        c.lookup(id)
    }

    #[test]
    fn a_schema_is_fetched_once_off_the_caller_and_then_served_from_the_cache() {
        let schema = serde_json::json!({ "schema": "\"string\"" }).to_string();
        let (url, count) = registry(move |_| (200, schema.clone()));
        let c = cache(url);
        assert!(matches!(c.lookup(3), Lookup::Wait(_)), "the first lookup does not block");
        assert!(matches!(settle(&c, 3), Lookup::Known(_)));
        for _ in 0..100 {
            assert!(matches!(c.lookup(3), Lookup::Known(_)));
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn unknown_ids_are_remembered_and_an_outage_is_a_wait_not_an_error() {
        let (url, count) = registry(|n| match n {
            0 => (404, r#"{"error_code":40403,"message":"Schema not found"}"#.into()),
            // Then down for three attempts, then back.
            1..=3 => (503, "down".into()),
            _ => (200, serde_json::json!({ "schema": "\"long\"" }).to_string()),
        });
        let c = cache(url);
        assert!(matches!(settle(&c, 9), Lookup::Unknown(m) if m.contains("no schema id 9")));
        for _ in 0..100 {
            assert!(matches!(c.lookup(9), Lookup::Unknown(_)), "negative cache");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Id 10 meets the outage: it waits, with the reason, and is fetched
        // once the registry is back (after the backoff).
        c.lookup(10);
        std::thread::sleep(Duration::from_millis(1500));
        match c.lookup(10) {
            Lookup::Wait(why) => assert!(why.contains("HTTP 503"), "{why}"),
            other => panic!("expected a wait, got {other:?}"),
        }
        let mut known = false;
        for _ in 0..80 {
            if matches!(c.lookup(10), Lookup::Known(_)) {
                known = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(known, "fetched after the outage");
    }

    #[test]
    fn without_a_registry_an_id_not_given_is_unknown() {
        let c = SchemaCache::new(HashMap::new(), None);
        assert!(matches!(c.lookup(1), Lookup::Unknown(m) if m.contains("avro_schema_files")));
    }
}
