//! A Confluent-compatible schema registry client: `GET {url}/schemas/ids/{id}`
//! answers `{"schema": "<schema JSON text>"}`.
//!
//! On ureq: http or https (TLS from the system's OpenSSL and its roots),
//! basic or bearer authentication, a connect timeout and an overall deadline
//! per request, and a cap on the size of an answer. One call is one attempt
//! and says whether the id is known, unknown (the registry answered that it
//! does not have it: the message is bad input), or could not be asked (the
//! registry is down or misbehaving: the message is fine and must wait).
//! Retrying, caching and keeping this off the processing thread are
//! [`crate::schemas`]'s job.

use std::time::Duration;

/// How to authenticate to the registry.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::Basic { username, .. } => write!(f, "Basic({username:?}, *****)"),
            RegistryAuth::Bearer(_) => f.write_str("Bearer(*****)"),
        }
    }
}

/// Where the registry is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// `http(s)://host[:port][/path]`.
    pub url: String,
    pub auth: Option<RegistryAuth>,
    pub connect_timeout: Duration,
    /// The deadline of one request, connect to last byte.
    pub request_timeout: Duration,
    /// The largest answer read.
    pub max_response_bytes: u64,
}

impl RegistrySettings {
    pub fn new(url: impl Into<String>) -> RegistrySettings {
        RegistrySettings {
            url: url.into(),
            auth: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
        }
    }
}

/// What one request found out about a schema id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The writer schema's text.
    Schema(String),
    /// The registry answered that it has no such schema.
    Unknown(String),
    /// The registry could not be asked, or its answer made no sense.
    Unavailable(String),
}

/// See the module documentation.
pub struct RegistryClient {
    agent: ureq::Agent,
    settings: RegistrySettings,
    authorization: Option<String>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Standard base64 (RFC 4648 §4), for the basic authorization header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl RegistryClient {
    /// Checks the URL's scheme; no request is made yet.
    pub fn new(settings: RegistrySettings) -> Result<RegistryClient, String> {
        let url = settings.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{url:?}: expected an http:// or https:// URL"));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::config::Config::builder()
            .tls_config(tls)
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_global(Some(settings.request_timeout))
            .http_status_as_error(false)
            .max_redirects(3)
            .build()
            .new_agent();
        let authorization = settings.auth.as_ref().map(|a| match a {
            RegistryAuth::Basic { username, password } => {
                format!("Basic {}", base64(format!("{username}:{password}").as_bytes()))
            }
            RegistryAuth::Bearer(token) => format!("Bearer {token}"),
        });
        Ok(RegistryClient { agent, settings, authorization })
    }

    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// One request for the writer schema `id`.
    pub fn fetch(&self, id: u32) -> Fetched {
        let url = format!("{}/schemas/ids/{id}", self.settings.url.trim().trim_end_matches('/'));
        let mut request =
            self.agent.get(&url).header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(e) => return Fetched::Unavailable(format!("GET {url}: {e}")),
        };
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(self.settings.max_response_bytes).read_to_string();
        let body = match body {
            Ok(b) => b,
            Err(e) => return Fetched::Unavailable(format!("GET {url}: HTTP {status}, reading the answer: {e}")),
        };
        let excerpt = || crate::error::excerpt(body.trim());
        match status {
            200 => {}
            // The Confluent registry answers 404 with error code 40403 for an
            // id it does not have; any other 404 is a wrong URL (a proxy's,
            // say), which waiting and retrying may cure.
            404 if body.contains("40403") => {
                return Fetched::Unknown(format!("the registry has no schema id {id} ({})", excerpt()))
            }
            _ => return Fetched::Unavailable(format!("GET {url}: HTTP {status}: {}", excerpt())),
        }
        let v: serde_json::Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => return Fetched::Unavailable(format!("GET {url}: the answer is not JSON ({e})")),
        };
        match v["schema"].as_str() {
            Some(s) => Fetched::Schema(s.to_string()),
            None => Fetched::Unavailable(format!("GET {url}: no \"schema\" in the answer")),
        }
    }
}

impl RegistryClient {
    /// The id of `schema` under `subject`: registered there if `register`
    /// (Confluent's `POST /subjects/{subject}/versions`, which answers the
    /// existing id when the subject already has the schema), else looked up
    /// (`POST /subjects/{subject}`). Errors say which subject and why.
    pub fn subject_id(&self, subject: &str, schema: &str, register: bool) -> Result<u32, String> {
        let base = self.settings.url.trim().trim_end_matches('/');
        let url =
            if register { format!("{base}/subjects/{subject}/versions") } else { format!("{base}/subjects/{subject}") };
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
        if let Some(a) = &self.authorization {
            request = request.header("Authorization", a);
        }
        let body = serde_json::json!({ "schema": schema }).to_string();
        let mut response = request.send(body.as_bytes()).map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(self.settings.max_response_bytes)
            .read_to_string()
            .map_err(|e| format!("POST {url}: HTTP {status}, reading the answer: {e}"))?;
        let excerpt = crate::error::excerpt(answer.trim());
        match status {
            200 => {}
            // 40401: no such subject; 40403: the subject lacks this schema.
            404 if !register => {
                return Err(format!(
                    "subject {subject} does not have leadscore's schema ({excerpt}): register it, or set \
                     formats.auto_register_schemas = true"
                ))
            }
            409 => return Err(format!("subject {subject} refuses the schema as incompatible ({excerpt})")),
            _ => return Err(format!("POST {url}: HTTP {status}: {excerpt}")),
        }
        let v: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("POST {url}: the answer is not JSON ({e})"))?;
        v["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| format!("POST {url}: no schema \"id\" in the answer ({excerpt})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A registry that answers one request with `status` and `body`, and
    /// hands back the request it got.
    fn registry(status: &'static str, body: String) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("address"));
        let served = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let (mut request, mut buf) = (Vec::new(), [0u8; 1024]);
            // The head, then as much body as it declares (the client may
            // send both in one write or in several).
            let complete = |r: &[u8]| {
                let text = String::from_utf8_lossy(r);
                let Some(end) = text.find("\r\n\r\n") else { return false };
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                r.len() >= end + 4 + length
            };
            while !complete(&request) {
                let n = s.read(&mut buf).expect("read");
                assert!(n > 0, "the request ends early");
                request.extend_from_slice(&buf[..n]);
            }
            let response = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _ = s.write_all(response.as_bytes());
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, served)
    }

    #[test]
    fn registers_and_looks_up_a_schema_under_its_subject() {
        let schema = r#"{"type":"record","name":"R","fields":[]}"#;
        let (url, served) = registry("200 OK", r#"{"id":21}"#.to_string());
        let client = RegistryClient::new(RegistrySettings::new(url)).expect("client");
        assert_eq!(client.subject_id("lead-score-changes-value", schema, true), Ok(21));
        let request = served.join().expect("served");
        assert!(request.starts_with("POST /subjects/lead-score-changes-value/versions HTTP/1.1"), "{request}");
        assert!(request.contains("application/vnd.schemaregistry.v1+json"), "{request}");

        let answer = serde_json::json!({ "subject": "s-value", "version": 3, "id": 8, "schema": schema }).to_string();
        let (url, served) = registry("200 OK", answer);
        let client = RegistryClient::new(RegistrySettings::new(url)).expect("client");
        assert_eq!(client.subject_id("s-value", schema, false), Ok(8));
        assert!(served.join().expect("served").starts_with("POST /subjects/s-value HTTP/1.1"));

        let (url, _served) = registry("404 Not Found", r#"{"error_code":40401,"message":"Subject not found"}"#.into());
        let client = RegistryClient::new(RegistrySettings::new(url)).expect("client");
        let e = client.subject_id("s-value", schema, false).expect_err("not registered");
        assert!(e.contains("s-value") && e.contains("auto_register_schemas"), "{e}");
        let (url, _served) = registry("409 Conflict", r#"{"error_code":409,"message":"incompatible"}"#.into());
        let client = RegistryClient::new(RegistrySettings::new(url)).expect("client");
        assert!(client.subject_id("s-value", schema, true).expect_err("refused").contains("incompatible"));
    }

    #[test]
    fn fetches_a_schema_by_id_with_its_credentials() {
        let schema = r#"{"type":"string"}"#;
        let (url, served) = registry("200 OK", serde_json::json!({ "schema": schema }).to_string());
        let auth = RegistryAuth::Basic { username: "leadscore".into(), password: "s3cret".into() };
        let client =
            RegistryClient::new(RegistrySettings { auth: Some(auth), ..RegistrySettings::new(url) }).expect("client");
        assert_eq!(client.fetch(7), Fetched::Schema(schema.into()));
        let request = served.join().expect("served");
        assert!(request.starts_with("GET /schemas/ids/7 HTTP/1.1"), "{request}");
        assert!(request.contains(&format!("Basic {}", base64(b"leadscore:s3cret"))), "{request}");
        assert!(!format!("{client:?}").contains("s3cret"));
    }

    #[test]
    fn an_unknown_id_is_told_apart_from_an_unavailable_registry() {
        let (url, _) = registry("404 Not Found", r#"{"error_code":40403,"message":"Schema not found"}"#.into());
        let client = RegistryClient::new(RegistrySettings::new(url)).expect("client");
        assert!(matches!(client.fetch(7), Fetched::Unknown(m) if m.contains("no schema id 7")));
        let (url, _) = registry("503 Service Unavailable", "try later".into());
        let client = RegistryClient::new(RegistrySettings::new(url)).expect("client");
        assert!(matches!(client.fetch(7), Fetched::Unavailable(m) if m.contains("HTTP 503")));
        let (url, _) = registry("200 OK", "x".repeat(5000));
        let small = RegistrySettings { max_response_bytes: 1000, ..RegistrySettings::new(url) };
        assert!(matches!(RegistryClient::new(small).expect("client").fetch(7), Fetched::Unavailable(_)));
        assert!(RegistryClient::new(RegistrySettings::new("ftp://x")).is_err());
    }

    #[test]
    fn a_black_holed_registry_times_out() {
        // Accepts the connection, never answers.
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("address"));
        let _keep = std::thread::spawn(move || {
            let conn = l.accept();
            std::thread::sleep(Duration::from_secs(5));
            drop(conn);
        });
        let settings = RegistrySettings { request_timeout: Duration::from_millis(300), ..RegistrySettings::new(url) };
        let started = std::time::Instant::now();
        assert!(matches!(RegistryClient::new(settings).expect("client").fetch(7), Fetched::Unavailable(_)));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, encoded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
