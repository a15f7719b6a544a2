//! Tests of the service module.

use super::*;

fn load_text(text: &str) -> Result<ServiceConfig, ConfigError> {
    // One file per call: the tests run in parallel threads of one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("leadscore-config-{}-{call}", std::process::id()));
    std::fs::write(&dir, text).expect("write");
    let r = ServiceConfig::load_with_env(&[&dir], Env::prefixed("LEADSCORE_TEST_NONE__"));
    std::fs::remove_file(&dir).ok();
    r
}

#[test]
fn defaults_are_valid_and_documented_values() {
    let none: [&Path; 0] = [];
    let c = ServiceConfig::load_with_env(&none, Env::prefixed("LEADSCORE_TEST_NONE__")).expect("defaults");
    assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
    assert_eq!(c.processing.guarantee, Guarantee::AtLeastOnce);
    assert_eq!(c.input_kinds().expect("kinds").get("page-views"), Some(&Some(Kind::PageView)));
    assert_eq!(c.input_kinds().expect("kinds").get("lead-events"), Some(&None));
    assert_eq!(c.topics.changelog, Topics::default().changelog, "topic names default to the runtime's");
    let c = load_text("[kafka]\ngroup_id = \"orders\"\n").expect("config");
    assert_eq!(c.topics.changelog, "orders-state-changelog", "named after the group");
    let c = load_text("[kafka]\ngroup_id = \"orders\"\n[topics]\nchangelog = \"mine\"\n").expect("config");
    assert_eq!(c.topics.changelog, "mine");
    let e = load_text("[topics]\nchangelog = \"lead-events\"\n").expect_err("an input");
    assert!(e.to_string().contains("topics.changelog") && e.to_string().contains("input topic"), "{e}");
    let e = load_text("[topics]\ndead_letters = \"lead-score-changes\"\n").expect_err("shared");
    assert!(e.to_string().contains("topics.dead_letters") && e.to_string().contains("topics.score_changes"), "{e}");
    assert_eq!(c.processing.max_idle, Duration::ZERO);
    assert_eq!(c.kafka.group_instance_id, None);
    assert!(c.admin.listen.ip().is_loopback(), "the admin port is this machine's unless opened");
    assert_eq!((c.admin.bearer_token.as_deref(), c.admin.expose_profile), (None, false));
    assert_eq!(c.processing.dead_letter_max_share, 1.0, "bad input alone never stops the service");
}

#[test]
fn the_admin_token_is_a_secret_and_not_empty() {
    let c = load_text("[admin]\nlisten = \"0.0.0.0:9898\"\nbearer_token = \"tok-123\"\nexpose_profile = true\n")
        .expect("config");
    assert_eq!((c.admin.bearer_token.as_deref(), c.admin.expose_profile), (Some("tok-123"), true));
    assert!(!c.to_toml().contains("tok-123"), "{}", c.to_toml());
    let e = load_text("[admin]\nbearer_token = \" \"\n").expect_err("empty");
    assert!(e.to_string().contains("admin.bearer_token"), "{e}");
}

#[test]
fn a_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
    let c =
        load_text("[kafka]\nbootstrap_servers = \"k1:9092\"\n[kafka.librdkafka]\n\"sasl.password\" = \"hunter2\"\n")
            .expect("config");
    assert_eq!(c.kafka.bootstrap_servers, "k1:9092");
    assert_eq!(c.kafka.group_id, "leadscore", "untouched keys keep their defaults");
    let printed = c.to_toml();
    assert!(printed.contains("\"sasl.password\" = \"*****\""), "{printed}");
    assert!(!printed.contains("hunter2"));
    assert!(!format!("{:?}", c.redacted()).contains("hunter2"));

    let env = Env::prefixed("LEADSCORE_ENVTEST__").split("__");
    // A variable only this test reads.
    std::env::set_var("LEADSCORE_ENVTEST__KAFKA__GROUP_ID", "from-env");
    let none: [&Path; 0] = [];
    let c = ServiceConfig::load_with_env(&none, env).expect("config");
    std::env::remove_var("LEADSCORE_ENVTEST__KAFKA__GROUP_ID");
    assert_eq!(c.kafka.group_id, "from-env");
}

#[test]
fn an_inputs_table_replaces_the_default_topics() {
    let none: [&Path; 0] = [];
    let defaults = ServiceConfig::load_with_env(&none, Env::prefixed("LEADSCORE_TEST_NONE__")).expect("defaults");
    assert_eq!(defaults.topics.inputs, default_inputs());
    let c = load_text("[topics.inputs]\n\"clicks\" = \"email_click\"\n").expect("config");
    assert_eq!(c.topics.inputs.keys().collect::<Vec<_>>(), ["clicks"]);
}

#[test]
fn admission_defaults_follow_the_time_mode_and_mistakes_name_the_key() {
    let c = load_text("").expect("defaults");
    let a = c.admission().expect("admission");
    assert_eq!(a.max_future, None, "the time mode's default");
    assert_eq!(a.unknown_kinds, UnknownKinds::DeadLetter);
    let c = load_text("[processing]\ntime = \"event_time\"\n[topics]\nunknown_kinds = \"skip\"\n").expect("config");
    let a = c.admission().expect("admission");
    assert_eq!(a.max_future, None);
    assert_eq!(a.unknown_kinds, UnknownKinds::Skip);
    let c = load_text("[processing]\nmax_future_ms = 60000\n").expect("config");
    assert_eq!(c.admission().expect("admission").max_future, Some(60_000));

    let e = load_text("[processing]\nmin_timestamp = \"yesterday\"\n").unwrap_err().to_string();
    assert!(e.contains("processing.min_timestamp") && e.contains("yesterday"), "{e}");
    let e = load_text("[processing]\nmax_future_ms = 0\n").unwrap_err().to_string();
    assert!(e.contains("processing.max_future_ms") && e.contains("above 0"), "{e}");
    let e = load_text("[topics]\nunknown_kinds = \"drop\"\n").unwrap_err().to_string();
    assert!(e.contains("unknown_kinds") && e.contains("drop") && e.contains("skip"), "{e}");
}

#[test]
fn mistakes_name_the_key_the_value_and_what_was_expected() {
    let e = load_text("[processing]\nguarantee = \"exactly_twice\"\n").unwrap_err().to_string();
    assert!(e.contains("processing.guarantee") && e.contains("exactly_twice"), "{e}");
    let e = load_text("[kafka]\nbootstrap_server = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("kafka.bootstrap_server") && e.contains("unknown field"), "{e}");
    let e = load_text("[topics.inputs]\n\"web\" = \"pageview\"\n").unwrap_err().to_string();
    assert!(e.contains("topics.inputs.web") && e.contains("\"pageview\" is not an event kind"), "{e}");
    let e = load_text("[state]\nblock_cache_mb = 0\n").unwrap_err().to_string();
    assert!(e.contains("state.block_cache_mb") && e.contains("above zero"), "{e}");
    let e = load_text("[processing]\nstep_threads = 65\n").unwrap_err().to_string();
    assert!(e.contains("processing.step_threads") && e.contains("65") && e.contains("up to 64"), "{e}");
    let c = load_text("[processing]\nstep_threads = 3\n").unwrap();
    assert_eq!(c.processing.step_threads(), 3);
    let auto = load_text("").unwrap().processing.step_threads();
    assert!((1..=ProcessingConfig::AUTO_STEP_THREADS_MAX).contains(&auto), "{auto}");
    let e = load_text("[processing]\nmax_batch = \"lots\"\n").unwrap_err().to_string();
    assert!(e.contains("processing.max_batch") && e.contains("lots"), "{e}");
    let e = load_text("[formats]\ninput = \"avro\"\n").unwrap_err().to_string();
    assert!(e.contains("formats.input") && e.contains("schema_registry_url"), "{e}");
    let e = load_text("[formats.avro_schema_files]\none = \"x.avsc\"\n").unwrap_err().to_string();
    assert!(e.contains("formats.avro_schema_files.one") && e.contains("expected a schema id"), "{e}");
    let e = load_text("[formats]\nschema_registry_url = \"ftp://r\"\n").unwrap_err().to_string();
    assert!(e.contains("formats.schema_registry_url") && e.contains("https://"), "{e}");
    assert!(load_text("[formats]\nschema_registry_url = \"https://r\"\n").is_ok());
    let e = load_text("[formats]\nschema_registry_username = \"u\"\n").unwrap_err().to_string();
    assert!(e.contains("schema_registry_password"), "{e}");
    let c = load_text("[formats]\nschema_registry_username = \"u\"\nschema_registry_password = \"hunter2\"\n")
        .expect("config");
    assert!(!c.to_toml().contains("hunter2"), "secrets are never printed");
    let e = load_text("[admin]\nlisten = \"everywhere\"\n").unwrap_err().to_string();
    assert!(e.contains("admin.listen") && e.contains("everywhere"), "{e}");
    let e = load_text("[processing]\npoll_timeout_ms = -5\n").unwrap_err().to_string();
    assert!(e.contains("processing.poll_timeout_ms") && e.contains("-5"), "{e}");
}

#[test]
fn the_commit_interval_defaults_by_guarantee_and_the_example_sets_every_new_key() {
    let c = load_text("").expect("defaults");
    assert_eq!(c.processing.commit_interval(), Duration::from_millis(1000));
    assert_eq!(c.state.cache_mb, 64);
    let c = load_text("[processing]\nguarantee = \"exactly_once\"\n").expect("exactly once");
    assert_eq!(c.processing.commit_interval(), Duration::from_millis(100));
    assert!(c.to_toml().contains("commit_interval_ms = 100\n"), "{}", c.to_toml());
    let c = load_text("[processing]\ncommit_interval_ms = 0\n").expect("zero");
    assert_eq!(c.processing.commit_interval(), Duration::ZERO, "0: after every poll batch");
    assert!(c.to_toml().contains("commit_interval_ms = 0"), "the effective value is printed");
    let e = load_text("[state]\ncache_mb = 0\n").unwrap_err().to_string();
    assert!(e.contains("state.cache_mb") && e.contains("above zero"), "{e}");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/leadscore.example.toml");
    let c = ServiceConfig::load_with_env(&[&example], Env::prefixed("LEADSCORE_TEST_NONE__")).expect("the example");
    assert_eq!(c.processing.commit_interval, Some(Duration::from_millis(1000)));
    assert_eq!(c.state.cache_mb, 64);
}
