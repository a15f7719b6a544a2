//! The topics a deployment needs, created and checked through the Kafka admin
//! API: the inputs, the two output topics, the dead letters, and the
//! compacted changelog, every one with the inputs' partition count (partition
//! p of each is one lead's home: its state, its changelog records, its
//! outputs in order).
//!
//! [`inspect`] reads what the cluster has; [`problems`] says, for each
//! difference from what leadscore needs, what to change; `leadscore topics
//! check` prints them, `leadscore topics create` creates what is missing, and
//! `leadscore run` refuses to start on a problem that would lose or mix up
//! state (a missing input or changelog, partition counts that differ, a
//! changelog that is not compacted).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use std::time::Duration;

/// What a topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    ScoreChanges,
    Transitions,
    DeadLetters,
    Changelog,
}

impl Role {
    fn describe(self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::ScoreChanges => "score changes",
            Role::Transitions => "segment transitions",
            Role::DeadLetters => "dead letters",
            Role::Changelog => "changelog (compacted)",
        }
    }
}

/// The topics of a deployment, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub topics: Vec<(String, Role)>,
}

impl Layout {
    /// The runtime's topics, by role.
    pub fn of(t: &leadscore_pipeline::Topics) -> Layout {
        let mut topics: Vec<(String, Role)> = t.inputs.keys().map(|name| (name.clone(), Role::Input)).collect();
        topics.push((t.score_changes.clone(), Role::ScoreChanges));
        topics.push((t.transitions.clone(), Role::Transitions));
        topics.push((t.dead_letters.clone(), Role::DeadLetters));
        topics.push((t.changelog.clone(), Role::Changelog));
        Layout { topics }
    }
}

/// What the cluster has of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub role: Role,
    /// None: the topic does not exist.
    pub partitions: Option<usize>,
    /// The changelog's `cleanup.policy`; Err: why it could not be read.
    pub cleanup_policy: Option<Result<String, String>>,
}

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `run` refuses to start.
    Fatal,
    /// Worth fixing; `run` starts and logs it.
    Warning,
}

/// A difference from what leadscore needs, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub message: String,
}

/// The partition count every topic should have: the inputs' (all equal), or
/// None when no input exists yet or they differ.
pub fn partition_count(found: &[Found]) -> Option<usize> {
    let inputs: Vec<usize> = found.iter().filter(|f| f.role == Role::Input).filter_map(|f| f.partitions).collect();
    let first = *inputs.first()?;
    inputs.iter().all(|n| *n == first).then_some(first)
}

/// Every difference between `found` and what leadscore needs.
pub fn problems(found: &[Found]) -> Vec<Problem> {
    let fatal = |message: String| Problem { severity: Severity::Fatal, message };
    let warning = |message: String| Problem { severity: Severity::Warning, message };
    let mut out = Vec::new();
    let want = partition_count(found);
    for f in found {
        let needed = matches!(f.role, Role::Input | Role::Changelog);
        match (f.partitions, needed) {
            (None, true) if f.role == Role::Input => out.push(fatal(format!(
                "the input topic {:?} does not exist: create it as your producers need it (keyed by lead id), \
                 or with `leadscore topics create --config ... --inputs`{}",
                f.name,
                want.map_or(" --partitions N".to_string(), |n| format!(" ({n} partitions, as the other inputs)"))
            ))),
            (None, true) => out.push(fatal(format!(
                "the {} topic {:?} does not exist: `leadscore topics create --config ...` creates it{}",
                f.role.describe(),
                f.name,
                want.map_or(String::new(), |n| format!(" with {n} partitions"))
            ))),
            (None, false) => out.push(warning(format!(
                "the {} topic {:?} does not exist: it is created on first use only where the brokers \
                 auto-create topics; `leadscore topics create --config ...` creates it",
                f.role.describe(),
                f.name
            ))),
            (Some(_), _) => {}
        }
    }
    let counts: Vec<String> = found
        .iter()
        .filter(|f| matches!(f.role, Role::Input | Role::Changelog))
        .filter_map(|f| Some(format!("{}: {}", f.name, f.partitions?)))
        .collect();
    let distinct: std::collections::BTreeSet<usize> =
        found.iter().filter(|f| matches!(f.role, Role::Input | Role::Changelog)).filter_map(|f| f.partitions).collect();
    if distinct.len() > 1 {
        out.push(fatal(format!(
            "the input topics and the changelog must have the same number of partitions (partition p of each is \
             one lead's home); found {}. Give every input the same count (and recreate the changelog with it, \
             empty, before the first run)",
            counts.join(", ")
        )));
    }
    for f in found.iter().filter(|f| f.role == Role::Changelog && f.partitions.is_some()) {
        match &f.cleanup_policy {
            Some(Ok(policy)) if !policy.split(',').any(|p| p.trim() == "compact") => out.push(fatal(format!(
                "the changelog {:?} has cleanup.policy={policy}: it must be compacted, or the broker deletes old \
                 state and a new owner of a partition restores only part of it. Change it with: \
                 kafka-configs.sh --bootstrap-server ... --alter --entity-type topics --entity-name {} \
                 --add-config cleanup.policy=compact",
                f.name, f.name
            ))),
            Some(Err(why)) => out.push(warning(format!(
                "the cleanup.policy of the changelog {:?} could not be read ({why}): make sure it is compact",
                f.name
            ))),
            _ => {}
        }
    }
    out
}

/// An admin client of `config`'s cluster.
pub fn admin_client(config: &rdkafka::ClientConfig) -> Result<AdminClient<DefaultClientContext>, String> {
    config.create().map_err(|e| format!("creating an admin client: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

/// A topic's partition count (None: no such topic), read by a consumer:
/// a consumer's metadata request never makes the brokers auto-create the
/// topic it asks about, a producer's (the admin client's) may.
pub fn partitions_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> Result<Option<usize>, String> {
    use rdkafka::consumer::Consumer;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| format!("reading the metadata of topic {topic:?}: {e}"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

/// A metadata reader: [`partitions_of`] on some consumer.
pub type Partitions<'a> = dyn Fn(&str) -> Result<Option<usize>, String> + 'a;

/// What the cluster has of every topic of `layout`; the changelog's
/// `cleanup.policy` only with `policies`.
pub fn inspect(
    partitions: &Partitions,
    admin: &AdminClient<DefaultClientContext>,
    layout: &Layout,
    policies: bool,
) -> Result<Vec<Found>, String> {
    let mut found = Vec::new();
    for (name, role) in &layout.topics {
        found.push(Found { name: name.clone(), role: *role, partitions: partitions(name)?, cleanup_policy: None });
    }
    let changelogs: Vec<String> = found
        .iter()
        .filter(|f| policies && f.role == Role::Changelog && f.partitions.is_some())
        .map(|f| f.name.clone())
        .collect();
    for name in changelogs {
        let policy = cleanup_policy(admin, &name);
        if let Some(f) = found.iter_mut().find(|f| f.name == name) {
            f.cleanup_policy = Some(policy);
        }
    }
    Ok(found)
}

/// A broker answers in milliseconds; one that cannot (librdkafka's mock) is
/// waited for this long, then warned about.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

fn cleanup_policy(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<String, String> {
    let options = AdminOptions::new().request_timeout(Some(DESCRIBE_TIMEOUT));
    let resources = [ResourceSpecifier::Topic(topic)];
    let results = runtime()?.block_on(admin.describe_configs(&resources, &options)).map_err(|e| e.to_string())?;
    let resource = results.into_iter().next().ok_or("no answer")?.map_err(|code| code.to_string())?;
    let entry = resource.get("cleanup.policy").ok_or("the broker does not report cleanup.policy")?;
    entry.value.clone().ok_or_else(|| "no value".to_string())
}

/// What [`create`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// Also create missing input topics (usually other teams' to create).
    pub inputs: bool,
    /// The partition count when no input exists to take it from.
    pub partitions: Option<usize>,
    /// None: the brokers' default.replication.factor.
    pub replication_factor: Option<i32>,
}

/// Creates every missing topic of `found` (inputs only when asked), with the
/// inputs' partition count; the changelog compacted. Returns the names
/// created.
pub fn create(
    admin: &AdminClient<DefaultClientContext>,
    found: &[Found],
    options: &CreateOptions,
) -> Result<Vec<String>, String> {
    let partitions = match (partition_count(found), options.partitions) {
        (Some(n), Some(asked)) if n != asked => {
            return Err(format!("--partitions {asked}: the input topics have {n}; every topic needs the same count"))
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => {
            let inputs: Vec<&str> = found.iter().filter(|f| f.role == Role::Input).map(|f| f.name.as_str()).collect();
            return Err(format!(
                "no partition count to follow: the input topics ({}) do not exist or differ; give --partitions",
                inputs.join(", ")
            ));
        }
    };
    // -1 asks for the brokers' default.replication.factor (Kafka 2.4+).
    let replication = options.replication_factor.unwrap_or(-1);
    let missing: Vec<&Found> =
        found.iter().filter(|f| f.partitions.is_none() && (options.inputs || f.role != Role::Input)).collect();
    let count = i32::try_from(partitions).map_err(|_| format!("{partitions} partitions is too many"))?;
    let new: Vec<NewTopic> = missing
        .iter()
        .map(|f| {
            let topic = NewTopic::new(&f.name, count, TopicReplication::Fixed(replication));
            if f.role == Role::Changelog {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime()?.block_on(admin.create_topics(&new, &options)).map_err(|e| e.to_string())?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(topic = %name, "created meanwhile by someone else");
            }
            Err((name, code)) => return Err(format!("creating topic {name:?}: {code}")),
        }
    }
    Ok(created)
}

/// The layout of `layout` checked at `run`'s start: a fatal error naming
/// every fatal problem, warnings logged; a cluster that could not be asked
/// (a metadata request that failed) is retriable, as it was before this
/// check existed, so that the supervisor tries again.
pub fn check_for_run(
    partitions: &Partitions,
    admin: &AdminClient<DefaultClientContext>,
    layout: &Layout,
    policies: bool,
) -> Result<(), leadscore_pipeline::ports::PortError> {
    use leadscore_pipeline::ports::PortError;
    let found = inspect(partitions, admin, layout, policies).map_err(PortError::Retriable)?;
    let mut fatal = Vec::new();
    for p in problems(&found) {
        match p.severity {
            Severity::Fatal => fatal.push(p.message),
            Severity::Warning => tracing::warn!("{}", p.message),
        }
    }
    if fatal.is_empty() {
        return Ok(());
    }
    Err(PortError::Fatal(fatal.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, role: Role, partitions: Option<usize>) -> Found {
        let cleanup_policy = (role == Role::Changelog && partitions.is_some()).then(|| Ok("compact".to_string()));
        Found { name: name.into(), role, partitions, cleanup_policy }
    }

    fn all(inputs: usize, changelog: Option<usize>) -> Vec<Found> {
        vec![
            f("a", Role::Input, Some(inputs)),
            f("b", Role::Input, Some(inputs)),
            f("out", Role::ScoreChanges, Some(1)),
            f("tr", Role::Transitions, Some(3)),
            f("dlq", Role::DeadLetters, Some(inputs)),
            f("cl", Role::Changelog, changelog),
        ]
    }

    #[test]
    fn a_complete_layout_has_no_problems() {
        assert_eq!(problems(&all(4, Some(4))), vec![]);
        assert_eq!(partition_count(&all(4, Some(4))), Some(4));
    }

    #[test]
    fn each_problem_says_what_to_change() {
        let p = problems(&all(4, None));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].severity, Severity::Fatal);
        assert!(p[0].message.contains("\"cl\" does not exist") && p[0].message.contains("with 4 partitions"), "{p:?}");

        let p = problems(&all(4, Some(6)));
        assert!(p[0].message.contains("a: 4, b: 4, cl: 6"), "{p:?}");

        let mut found = all(4, Some(4));
        found[5].cleanup_policy = Some(Ok("delete".into()));
        let p = problems(&found);
        assert!(p[0].message.contains("cleanup.policy=delete") && p[0].message.contains("cleanup.policy=compact"));
        found[5].cleanup_policy = Some(Ok("compact,delete".into()));
        assert_eq!(problems(&found), vec![], "compact and delete keeps the latest of each key");
        found[5].cleanup_policy = Some(Err("not supported".into()));
        assert_eq!(problems(&found)[0].severity, Severity::Warning);

        let mut found = all(4, Some(4));
        found[2].partitions = None;
        let p = problems(&found);
        assert_eq!(p[0].severity, Severity::Warning, "an output is created on first use where brokers allow");
        found[1].partitions = Some(2);
        assert_eq!(partition_count(&found), None);
        assert!(problems(&found).iter().any(|p| p.severity == Severity::Fatal));
    }
}
