//! Fetching a writer schema from a Confluent-compatible schema registry:
//! `GET {url}/schemas/ids/{id}` answers `{"schema": "<schema JSON text>"}`.
//!
//! Plain `http://` only, with a blocking request and a 10 s timeout: schemas
//! are fetched once per id and cached by the caller. A registry behind TLS or
//! authentication is reached through a local proxy, or its schemas are given as
//! files (`formats.avro_schema_files`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The schema text of `id`, or an error naming the registry and the id.
pub fn fetch_schema(url: &str, id: u32) -> Result<String, String> {
    let fail = |m: String| format!("schema id {id} from registry {url}: {m}");
    let rest = url.strip_prefix("http://").ok_or_else(|| fail("only http:// registry URLs are supported".into()))?;
    let (host, base) = rest.split_once('/').map_or((rest, String::new()), |(h, p)| (h, format!("/{p}")));
    let base = base.trim_end_matches('/');
    let address = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let mut stream = TcpStream::connect(&address).map_err(|e| fail(e.to_string()))?;
    let timeout = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(timeout)
        .and_then(|_| stream.set_write_timeout(timeout))
        .map_err(|e| fail(e.to_string()))?;
    let request = format!(
        "GET {base}/schemas/ids/{id} HTTP/1.1\r\nHost: {host}\r\nAccept: application/vnd.schemaregistry.v1+json, application/json\r\nConnection: close\r\n\r\n"
    );
    // One write: `write!` on a socket would send the request in pieces.
    stream.write_all(request.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| fail("malformed HTTP response".into()))?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        return Err(fail(format!("HTTP {status}: {}", body.trim())));
    }
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| fail(format!("not JSON: {e}")))?;
    v["schema"].as_str().map(String::from).ok_or_else(|| fail("no \"schema\" in the answer".into()))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A registry that answers one request with `status` and `body`.
    fn registry(status: &'static str, body: String) -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("address"));
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            // Read the whole request head, however it arrives.
            let (mut request, mut buf) = (Vec::new(), [0u8; 1024]);
            while !request.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).expect("read");
                assert!(n > 0, "the request ends early");
                request.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&request).starts_with("GET /schemas/ids/7 HTTP/1.1"));
            let response = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            s.write_all(response.as_bytes()).expect("write");
        });
        url
    }

    #[test]
    fn fetches_a_schema_by_id_and_names_failures() {
        let schema = r#"{"type":"string"}"#;
        let url = registry("200 OK", serde_json::json!({ "schema": schema }).to_string());
        assert_eq!(fetch_schema(&url, 7).as_deref(), Ok(schema));
        let url = registry("404 Not Found", r#"{"error_code":40403,"message":"Schema not found"}"#.into());
        let e = fetch_schema(&url, 7).unwrap_err();
        assert!(e.contains("schema id 7") && e.contains("HTTP 404") && e.contains("Schema not found"), "{e}");
        assert!(fetch_schema("https://x", 7).unwrap_err().contains("only http://"));
    }
}
