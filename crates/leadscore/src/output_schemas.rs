//! The schema ids written in the header of Avro outputs. Set in the config,
//! they are used as given; otherwise, with a schema registry, the two output
//! schemas are registered (or only looked up, with
//! `formats.auto_register_schemas = false`) at startup under the
//! TopicNameStrategy subjects `<topic>-value` of the configured output
//! topics, as Confluent's serializers do, so that consumers resolve them by
//! subject; without a registry, 1 and 2.

use leadscore_codec::{RegistryClient, RegistrySettings, SCORE_CHANGE_AVSC, SEGMENT_TRANSITION_AVSC};
use leadscore_config::service::ServiceConfig;
use std::time::Duration;

/// How often a registry that does not answer is asked at startup.
const ATTEMPTS: u32 = 3;

/// `(score change id, transition id)`.
pub fn ids(config: &ServiceConfig, registry: Option<&RegistrySettings>) -> anyhow::Result<(u32, u32)> {
    let f = &config.formats;
    let Some(settings) = registry else {
        return Ok((f.score_change_schema_id.unwrap_or(1), f.transition_schema_id.unwrap_or(2)));
    };
    let client =
        RegistryClient::new(settings.clone()).map_err(|e| anyhow::anyhow!("formats.schema_registry_url: {e}"))?;
    let resolve = |given: Option<u32>, topic: &str, schema: &str| -> anyhow::Result<u32> {
        if let Some(id) = given {
            return Ok(id);
        }
        let subject = format!("{topic}-value");
        let mut attempt = 1;
        loop {
            match client.subject_id(&subject, schema, f.auto_register_schemas) {
                Ok(id) => {
                    let how = if f.auto_register_schemas { "registered" } else { "found" };
                    tracing::info!(%subject, id, "Avro output schema {how} under its subject");
                    return Ok(id);
                }
                // A missing or incompatible subject does not heal by asking again.
                Err(e) if attempt >= ATTEMPTS || e.starts_with("subject ") => {
                    anyhow::bail!("the Avro output schema of topic {topic} (subject {subject}): {e}")
                }
                Err(e) => {
                    tracing::warn!(%subject, attempt, "schema registry: {e}; asking again");
                    std::thread::sleep(Duration::from_secs(u64::from(attempt)));
                    attempt += 1;
                }
            }
        }
    };
    Ok((
        resolve(f.score_change_schema_id, &config.topics.score_changes, SCORE_CHANGE_AVSC)?,
        resolve(f.transition_schema_id, &config.topics.transitions, SEGMENT_TRANSITION_AVSC)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A registry answering `answers.len()` requests in turn; the request
    /// lines it got.
    fn registry(answers: Vec<(&'static str, String)>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("address"));
        let served = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for (status, body) in answers {
                let (mut s, _) = l.accept().expect("accept");
                let (mut request, mut buf) = (Vec::new(), [0u8; 4096]);
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).expect("read");
                    assert!(n > 0, "the request ends early");
                    request.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                lines.push(text.lines().next().unwrap_or_default().to_string());
                let response =
                    format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = s.write_all(response.as_bytes());
            }
            lines
        });
        (url, served)
    }

    fn config(toml: &str) -> ServiceConfig {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leadscore.toml");
        std::fs::write(&path, toml).expect("config");
        ServiceConfig::load(Some(&path)).expect("a valid config")
    }

    #[test]
    fn output_schemas_are_registered_under_their_topics_subjects() {
        let (url, served) = registry(vec![("200 OK", r#"{"id":41}"#.into()), ("200 OK", r#"{"id":42}"#.into())]);
        let c = config("[topics]\nscore_changes = \"scores\"\n[formats]\noutput = \"avro\"\n");
        assert_eq!(ids(&c, Some(&RegistrySettings::new(url))).expect("ids"), (41, 42));
        let lines = served.join().expect("served");
        assert_eq!(
            lines,
            [
                "POST /subjects/scores-value/versions HTTP/1.1",
                "POST /subjects/lead-segment-transitions-value/versions HTTP/1.1"
            ]
        );
    }

    #[test]
    fn given_ids_are_kept_and_lookups_name_a_missing_subject() {
        let (url, served) = registry(vec![("404 Not Found", r#"{"error_code":40401}"#.into())]);
        let c = config("[formats]\noutput = \"avro\"\nscore_change_schema_id = 7\nauto_register_schemas = false\n");
        let e = ids(&c, Some(&RegistrySettings::new(url))).expect_err("not registered").to_string();
        assert!(e.contains("lead-segment-transitions-value") && e.contains("auto_register_schemas"), "{e}");
        assert_eq!(served.join().expect("served"), ["POST /subjects/lead-segment-transitions-value HTTP/1.1"]);
        let c = config("[formats]\noutput = \"avro\"\n");
        assert_eq!(ids(&c, None).expect("ids"), (1, 2), "without a registry");
    }
}
