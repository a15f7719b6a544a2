//! `leadscore topics check|create`: the topics a configuration needs, as a
//! platform engineer sets up a deployment: a table of what the cluster has,
//! every problem with what to change, and the missing topics created with the
//! inputs' partition count (the changelog compacted).

use anyhow::Context;
use leadscore_config::service::ServiceConfig;
use leadscore_kafka::topics::{self, CreateOptions, Found, Layout, Severity};
use std::io::Write;

/// The topics of `config`, as `run` names them.
pub fn layout(config: &ServiceConfig) -> anyhow::Result<Layout> {
    Ok(Layout::of(&crate::service::runtime_settings(config)?.topics))
}

type Admin = rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>;

/// An admin client, and a consumer to read metadata with (looking a topic up
/// must not create it).
fn clients(config: &ServiceConfig) -> anyhow::Result<(Admin, rdkafka::consumer::BaseConsumer)> {
    let client = leadscore_kafka::client_config(&crate::service::kafka_settings(config));
    let admin = topics::admin_client(&client).map_err(anyhow::Error::msg)?;
    let consumer = client.create().context("creating a consumer to read topic metadata")?;
    Ok((admin, consumer))
}

fn print_table(out: &mut impl Write, found: &[Found]) -> std::io::Result<()> {
    writeln!(out, "{:<40} {:<14} {:>10}  cleanup.policy", "topic", "role", "partitions")?;
    for f in found {
        let partitions = f.partitions.map_or("missing".to_string(), |n| n.to_string());
        let policy = match &f.cleanup_policy {
            None => "",
            Some(Ok(p)) => p.as_str(),
            Some(Err(_)) => "(unknown)",
        };
        writeln!(out, "{:<40} {:<14} {:>10}  {policy}", f.name, format!("{:?}", f.role), partitions)?;
    }
    Ok(())
}

/// Prints the table and the problems; whether none is fatal.
fn report(out: &mut impl Write, config: &ServiceConfig, found: &[Found]) -> anyhow::Result<bool> {
    writeln!(out, "{} (consumer group {:?}):", config.kafka.bootstrap_servers, config.kafka.group_id)?;
    print_table(out, found)?;
    let problems = topics::problems(found);
    for p in &problems {
        let label = if p.severity == Severity::Fatal { "error" } else { "warning" };
        writeln!(out, "{label}: {}", p.message)?;
    }
    let ok = problems.iter().all(|p| p.severity != Severity::Fatal);
    if ok {
        writeln!(out, "ok: leadscore run can start on these topics")?;
    }
    Ok(ok)
}

/// `leadscore topics check`: whether `run` could start.
pub fn check(config: &ServiceConfig, out: &mut impl Write) -> anyhow::Result<bool> {
    let (admin, consumer) = clients(config)?;
    let partitions = |topic: &str| topics::partitions_of(&consumer, topic);
    let found = topics::inspect(&partitions, &admin, &layout(config)?, true).map_err(anyhow::Error::msg)?;
    report(out, config, &found)
}

/// `leadscore topics create`: creates what is missing, then checks.
pub fn create(config: &ServiceConfig, options: &CreateOptions, out: &mut impl Write) -> anyhow::Result<bool> {
    let (admin, consumer) = clients(config)?;
    let partitions = |topic: &str| topics::partitions_of(&consumer, topic);
    let layout = layout(config)?;
    let found = topics::inspect(&partitions, &admin, &layout, false).map_err(anyhow::Error::msg)?;
    let created = topics::create(&admin, &found, options)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("creating topics on {}", config.kafka.bootstrap_servers))?;
    for name in &created {
        writeln!(out, "created {name}")?;
    }
    if created.is_empty() {
        writeln!(out, "nothing to create")?;
    }
    // A new topic's metadata may take a moment to reach every broker.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = topics::inspect(&partitions, &admin, &layout, true).map_err(anyhow::Error::msg)?;
        let pending = found.iter().any(|f| f.partitions.is_none() && created.contains(&f.name));
        if !pending || std::time::Instant::now() > deadline {
            return report(out, config, &found);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
