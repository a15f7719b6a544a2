//! The deployment files cannot be run here (no Docker), so they are kept honest
//! by parsing them and checking that they agree with the code: ports, paths,
//! user ids, topic names, config keys, and the metric names the dashboard
//! queries.

use leadscore_config::service::ServiceConfig;
use leadscore_telemetry::{EventOutcome, Metrics, Observations};
use serde_yaml::Value;
use std::path::{Path, PathBuf};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn yaml(file: &str) -> Value {
    serde_yaml::from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn port_of(listen: &std::net::SocketAddr) -> u16 {
    listen.port()
}

/// Every topic a configuration reads or writes.
fn topics_of(c: &ServiceConfig) -> Vec<String> {
    let t = &c.topics;
    let mut all: Vec<String> = t.inputs.keys().cloned().collect();
    all.extend([t.score_changes.clone(), t.transitions.clone(), t.dead_letters.clone(), t.changelog.clone()]);
    all
}

#[test]
fn the_dockerfile_builds_in_two_stages_and_runs_as_a_non_root_user_on_the_admin_port() {
    let docker = read("Dockerfile");
    assert_eq!(docker.lines().filter(|l| l.starts_with("FROM ")).count(), 2, "multi-stage");
    assert!(docker.contains("USER 10001"));
    let default = ServiceConfig::load(None).expect("defaults");
    assert!(docker.contains(&format!("EXPOSE {}", port_of(&default.admin.listen))));
    assert!(docker.contains(r#"CMD ["run", "--config", "/etc/leadscore/leadscore.toml"]"#));
    assert!(docker.contains("cargo build --release --locked -p leadscore"));
    assert!(docker.contains("COPY config/leadscore.default.toml /etc/leadscore/leadscore.toml"), "a default config");
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for path in ["target/", ".git/"] {
        assert!(ignored.lines().any(|l| l.trim() == path), ".dockerignore leaves out {path}");
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `1.89`, `1.89.0` as comparable numbers.
fn rust_version(text: &str) -> (u32, u32, u32) {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().unwrap_or_else(|_| panic!("a version: {text:?}")));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn the_image_and_the_workspace_declare_at_least_the_rust_the_locked_dependencies_need() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata");
    let (needed, by) = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            Some((rust_version(v), format!("{} {} (rust-version {v})", p["name"].as_str()?, p["version"].as_str()?)))
        })
        .max()
        .expect("some package declares a rust-version");

    let docker = read("Dockerfile");
    let image = docker
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .and_then(|tag| tag.split(['-', ' ']).next())
        .expect("FROM rust:<version>-...");
    assert!(rust_version(image) >= needed, "deploy/Dockerfile builds with Rust {image}, but {by} needs more");

    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"'))
        .expect("the workspace's rust-version");
    assert!(rust_version(declared) >= needed, "Cargo.toml says rust-version {declared}, but {by} needs more");
}

#[test]
fn compose_runs_kafka_creates_every_topic_and_mounts_a_valid_config() {
    let compose = yaml("compose.yaml");
    let services = &compose["services"];
    for s in ["kafka", "kafka-init", "leadscore", "gen", "prometheus", "grafana"] {
        assert!(services.get(s).is_some(), "service {s}");
    }
    for s in ["kafka", "leadscore", "gen", "prometheus", "grafana"] {
        assert_eq!(services[s]["restart"], "unless-stopped", "{s} comes back after a crash");
    }
    // The host reaches Kafka through its own listener.
    let advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].as_str().expect("listeners");
    assert!(advertised.contains("HOST://localhost:9094"), "{advertised}");
    assert_eq!(services["kafka"]["ports"][0], "9094:9094");
    // The generator writes to the broker, each kind to its topic.
    let gen: Vec<String> = services["gen"]["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .map(|v| v.as_str().expect("argument").to_string())
        .collect();
    assert_eq!(gen[0], "gen");
    assert!(gen.windows(2).any(|w| w == ["--bootstrap-servers", "kafka:9092"]), "{gen:?}");
    assert!(gen.iter().any(|a| a == "--by-kind") && gen.windows(2).any(|w| w[0] == "--rate"), "{gen:?}");
    assert_eq!(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller", "KRaft mode");

    let config = ServiceConfig::load(Some(&deploy("leadscore.toml"))).expect("deploy/leadscore.toml is valid");
    assert_eq!(config.kafka.bootstrap_servers, "kafka:9092");
    assert!(services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        .as_str()
        .expect("listeners")
        .contains("kafka:9092"));
    let init = services["kafka-init"]["command"][0].as_str().expect("script");
    for topic in topics_of(&config) {
        assert!(init.contains(&topic), "kafka-init creates {topic}");
    }
    assert!(init.contains("leadscore-state-changelog --config cleanup.policy=compact"));

    let leadscore = &services["leadscore"];
    let port = port_of(&config.admin.listen);
    assert_eq!(leadscore["ports"][0], format!("{port}:{port}").as_str());
    let volumes: Vec<&str> =
        leadscore["volumes"].as_sequence().expect("volumes").iter().filter_map(Value::as_str).collect();
    assert!(volumes.contains(&"./leadscore.toml:/etc/leadscore/leadscore.toml:ro"), "{volumes:?}");
    assert!(volumes.iter().any(|v| v.ends_with(&format!(":{}", config.state.dir.display()))), "state on a volume");

    let prometheus = yaml("prometheus.yml");
    assert_eq!(
        prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0],
        format!("leadscore:{port}").as_str()
    );
}

/// The names of every metric leadscore exports, each labelled one touched.
fn exported_metrics() -> std::collections::BTreeSet<String> {
    exported_text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| n.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count").to_string())
        .collect()
}

/// The Prometheus text of a [`Metrics`] whose labelled metrics are touched.
fn exported_text() -> String {
    let metrics = Metrics::default();
    let model = leadscore_config::seed_model();
    metrics.describe_model(&model);
    // Touch every labelled metric so that it is exported.
    let mut o = Observations::default();
    o.events.insert((0, None, EventOutcome::Applied), 1);
    o.dead_letters.insert("not_json", 1);
    o.transitions.insert((0, leadscore_core::Direction::Entered, leadscore_core::Cause::Event), 1);
    metrics.describe_inputs(["lead-events"]);
    metrics.observe(&o, 1, 0, 0);
    metrics.rebalances.with_label_values(&["assigned"]).inc();
    metrics.consumer_lag.with_label_values(&["lead-events", "0"]).set(1);
    metrics.render()
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let exported = exported_text();

    let dashboard: serde_json::Value = serde_json::from_str(&read("grafana/dashboards/leadscore.json")).expect("json");
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (i, _) in expr.match_indices("leadscore_") {
                let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                assert!(
                    exported.lines().any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
                    "panel {:?} queries {name}, which leadscore does not export",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 14);
    let provisioning = yaml("grafana/provisioning/dashboards/leadscore.yaml");
    assert_eq!(provisioning["providers"][0]["options"]["path"], "/var/lib/grafana/dashboards");
}

#[test]
fn kubernetes_manifests_agree_with_the_config_and_the_admin_server() {
    let configmap = yaml("kubernetes/configmap.yaml");
    let secret = yaml("kubernetes/secret.yaml");
    let statefulset = yaml("kubernetes/statefulset.yaml");
    let service = yaml("kubernetes/service.yaml");
    let tmp = tempfile::tempdir().expect("dir");
    let dir = tmp.path();
    let main = dir.join("leadscore.toml");
    let secrets = dir.join("kafka-secrets.toml");
    std::fs::write(&main, configmap["data"]["leadscore.toml"].as_str().expect("config")).expect("write");
    std::fs::write(&secrets, secret["stringData"]["kafka-secrets.toml"].as_str().expect("secret")).expect("write");
    let config = ServiceConfig::load_files(&[&main, &secrets]).expect("the ConfigMap and Secret make a valid config");
    assert_eq!(config.kafka.librdkafka.get("sasl.password").map(String::as_str), Some("REPLACE-ME"));
    assert_eq!(config.kafka.librdkafka.get("sasl.username").map(String::as_str), Some("leadscore"));

    let pod = &statefulset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"].as_sequence().expect("args").iter().filter_map(Value::as_str).collect();
    assert_eq!(
        args,
        ["run", "--config", "/etc/leadscore/leadscore.toml", "--config", "/etc/leadscore-secrets/kafka-secrets.toml"]
    );
    let mounts = container["volumeMounts"].as_sequence().expect("mounts");
    let mounted =
        |name: &str| mounts.iter().find(|m| m["name"] == name).and_then(|m| m["mountPath"].as_str()).expect("mount");
    assert_eq!(mounted("config"), "/etc/leadscore");
    assert_eq!(mounted("secrets"), "/etc/leadscore-secrets");
    assert_eq!(Path::new(mounted("state")), config.state.dir, "RocksDB on the persistent volume");
    assert_eq!(statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "state");

    let port = port_of(&config.admin.listen);
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(port as u64));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(port as u64));
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(10001), "the Dockerfile's user");

    // The pod name becomes the static member id through a real config key.
    let env = container["env"].as_sequence().expect("env");
    let var = env[0]["name"].as_str().expect("name");
    assert_eq!(var, "LEADSCORE__KAFKA__GROUP_INSTANCE_ID");
    std::env::set_var(var, "leadscore-0");
    let with_env = ServiceConfig::load_files(&[&main, &secrets]);
    std::env::remove_var(var);
    assert_eq!(with_env.expect("config").kafka.group_instance_id.as_deref(), Some("leadscore-0"));
}

/// A pinned image, the restricted Pod Security Standard, the admin token from
/// its Secret through a real config key (and sent by the ServiceMonitor), a
/// PodDisruptionBudget over the same pods, and alert rules on metrics that
/// exist.
#[test]
fn kubernetes_pods_are_locked_down_budgeted_scraped_with_the_token_and_alerted_on() {
    let statefulset = yaml("kubernetes/statefulset.yaml");
    let pod = &statefulset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let image = container["image"].as_str().expect("image");
    assert!(!image.ends_with(":latest") && image.contains(':'), "a pinned tag: {image}");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");

    let labels = &statefulset["spec"]["selector"]["matchLabels"];
    let pdb = yaml("kubernetes/pdb.yaml");
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);

    let admin_secret = yaml("kubernetes/admin-secret.yaml");
    let secret_name = admin_secret["metadata"]["name"].as_str().expect("name");
    let env = container["env"].as_sequence().expect("env");
    let token = env.iter().find(|e| e["name"] == "LEADSCORE__ADMIN__BEARER_TOKEN").expect("the token variable");
    assert_eq!(token["valueFrom"]["secretKeyRef"]["name"].as_str(), Some(secret_name));
    let key = token["valueFrom"]["secretKeyRef"]["key"].as_str().expect("key");
    assert!(admin_secret["stringData"][key].is_string());
    std::env::set_var("LEADSCORE__ADMIN__BEARER_TOKEN", "from-the-secret");
    let with_env = ServiceConfig::load(None);
    std::env::remove_var("LEADSCORE__ADMIN__BEARER_TOKEN");
    assert_eq!(with_env.expect("config").admin.bearer_token.as_deref(), Some("from-the-secret"));

    let service = yaml("kubernetes/service.yaml");
    let monitor = yaml("kubernetes/servicemonitor.yaml");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]);
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["authorization"]["credentials"]["name"].as_str(), Some(secret_name));
    assert_eq!(endpoint["authorization"]["credentials"]["key"].as_str(), Some(key));

    let rules = yaml("kubernetes/alerts.yaml");
    let exported = exported_metrics();
    let mut alerts = Vec::new();
    for rule in rules["spec"]["groups"][0]["rules"].as_sequence().expect("rules") {
        let expr = rule["expr"].as_str().expect("expr");
        for (i, _) in expr.match_indices("leadscore_") {
            let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            assert!(exported.contains(&name), "alert {:?} uses {name}, which leadscore does not export", rule["alert"]);
        }
        alerts.push(rule["alert"].as_str().expect("alert").to_string());
    }
    for wanted in ["ConsumerLag", "DeadLetter", "RestoreStalled", "NotReady"] {
        assert!(alerts.iter().any(|a| a.contains(wanted)), "an alert on {wanted}: {alerts:?}");
    }
}

#[test]
fn the_example_config_documents_every_key_and_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example_path = root.join("config/leadscore.example.toml");
    let example = ServiceConfig::load(Some(&example_path)).expect("the example is valid");
    let text = std::fs::read_to_string(&example_path).expect("example");
    let defaults = std::fs::read_to_string(root.join("config/leadscore.default.toml")).expect("defaults");
    // Every key of the defaults, set or shown commented out (an option not set
    // by default), appears set in the example.
    let keys = defaults.lines().filter_map(|l| {
        let l = l.strip_prefix("# ").unwrap_or(l);
        let key = l.split(" = ").next().filter(|k| l.contains(" = ") && !k.contains(' '))?;
        Some(key.to_string())
    });
    for key in keys {
        assert!(text.lines().any(|l| l.starts_with(&format!("{key} = "))), "the example lacks {key}");
    }
    assert_eq!(example.kafka.group_id, "leadscore");
}
