//! librdkafka client configurations: the input consumer's (a group member
//! that commits its own offsets and reads committed records only), and the
//! options every other client (producer, changelog reader) shares.

use std::collections::BTreeMap;

/// Options of the group consumer only: librdkafka warns when other clients
/// (the producer, the changelog reader) are given them.
const GROUP_CONSUMER_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "group.instance.id",
    "group.protocol",
    "group.remote.assignor",
];

/// Where and how to reach the brokers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Raw librdkafka options for every client (security, tuning); group
    /// options go to the input consumer only.
    pub librdkafka: BTreeMap<String, String>,
    /// The producer's transactional.id in exactly-once mode: stable per
    /// instance, so that a restarted instance fences its crashed predecessor
    /// and aborts its open transaction at once.
    pub transactional_id: Option<String>,
    /// Whether the run asks the brokers for the changelog's `cleanup.policy`
    /// (DescribeConfigs) before it starts. librdkafka's mock broker (the demo,
    /// in-process tests) cannot answer and costs a timeout; brokers that
    /// cannot answer get a warning, not a refusal.
    pub check_changelog_policy: bool,
}

/// How long a consumer waits before fetching a partition again once its
/// local queue is full (`queued.max.messages.kbytes`, 64 MB). librdkafka
/// waits a whole second by default: a consumer that processes what it polls
/// fills the queue in one round of fetches, drains it in half a second, then
/// sat idle for the other half. That was half of `leadscore bench`'s drain
/// (150k events/s; 320k with 10 ms). A full queue is only checked again
/// sooner; no more is fetched. `kafka.librdkafka` overrides it.
pub const FETCH_QUEUE_BACKOFF: (&str, &str) = ("fetch.queue.backoff.ms", "10");

/// The most one fetch response may carry (librdkafka's default: 50 MB).
/// librdkafka receives each response into one buffer of its size; one over
/// 8 MiB is served by jemalloc's arena for oversized allocations, which gives
/// its pages back to the kernel when it is freed, so every response was
/// received into pages the kernel had just zeroed: half of the fetch
/// thread's CPU in `leadscore bench`. The changelog reader uses it too.
/// `kafka.librdkafka` overrides it.
pub const FETCH_MAX_BYTES: (&str, &str) = ("fetch.max.bytes", "4194304");

/// The input consumer's configuration: offsets committed by the loop, not
/// automatically; a new group starts at the earliest offset; only committed
/// transactional records; the range assignor unless `librdkafka` says
/// otherwise (co-partitioned topics need it). Also what `leadscore bench`'s
/// ceiling consumer uses, so that the two read alike.
pub fn group_consumer_config(
    bootstrap: &str,
    group: &str,
    librdkafka: &BTreeMap<String, String>,
) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in librdkafka {
        c.set(k, v);
    }
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    let defaults = [
        ("partition.assignment.strategy", "range"),
        ("statistics.interval.ms", "5000"),
        FETCH_QUEUE_BACKOFF,
        FETCH_MAX_BYTES,
    ];
    for (key, default) in defaults {
        if !librdkafka.contains_key(key) {
            c.set(key, default);
        }
    }
    c
}

/// The partitioner of every record leadscore keys without a partition (score
/// changes, transitions, and `leadscore gen`'s events): the Java client's
/// murmur2, so that a Java or Kafka Streams consumer joining on `lead_id` finds
/// a lead in the partition its own producers would use. librdkafka's default
/// (CRC32) differs. `kafka.librdkafka.partitioner` overrides it.
pub const JAVA_COMPATIBLE_PARTITIONER: &str = "murmur2_random";

/// The output producer's configuration: the shared options, the
/// Java-compatible partitioner unless set, and `message_max_bytes`.
pub fn producer_config(s: &KafkaSettings, message_max_bytes: usize) -> rdkafka::ClientConfig {
    let mut c = client_config(s);
    if !s.librdkafka.contains_key("partitioner") {
        c.set("partitioner", JAVA_COMPATIBLE_PARTITIONER);
    }
    c.set("message.max.bytes", message_max_bytes.to_string());
    c
}

/// The shared options (security, tuning) without the group consumer's.
pub fn client_config(s: &KafkaSettings) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &s.bootstrap_servers);
    for (k, v) in s.librdkafka.iter().filter(|(k, _)| !GROUP_CONSUMER_ONLY.contains(&k.as_str())) {
        c.set(k, v);
    }
    c
}

/// librdkafka's default `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The producer's `message.max.bytes` for records up to `largest` bytes:
/// librdkafka's default when it is enough, else `largest`. A value set in the
/// librdkafka options is kept if it is enough, and refused, naming it, if
/// not: a record the producer refuses would stop the loop at every restart.
pub fn producer_message_max_bytes(largest: usize, librdkafka: &BTreeMap<String, String>) -> Result<usize, String> {
    match librdkafka.get("message.max.bytes") {
        None => Ok(largest.max(LIBRDKAFKA_MESSAGE_MAX_BYTES)),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= largest => Ok(n),
            _ => Err(format!(
                "kafka.librdkafka.\"message.max.bytes\" = {v:?} is below the largest record leadscore may publish \
                 ({largest} bytes: a dead letter of processing.max_message_bytes, or the model's largest lead \
                 state); raise it, or leave it out to let leadscore set it"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_consumers_tuning_defaults_hold_unless_told_otherwise() {
        // Refetch a drained queue after 10 ms, not a second; fetch at most
        // 4 MiB at once (received into reused pages).
        for (key, default, told) in
            [("fetch.queue.backoff.ms", "10", "250"), ("fetch.max.bytes", "4194304", "52428800")]
        {
            assert_eq!(group_consumer_config("b:9092", "g", &BTreeMap::new()).get(key), Some(default), "{key}");
            let given = [(key.to_string(), told.to_string())].into_iter().collect();
            assert_eq!(group_consumer_config("b:9092", "g", &given).get(key), Some(told), "{key} as given");
        }
    }

    #[test]
    fn the_producer_limit_covers_the_largest_record() {
        let none = BTreeMap::new();
        assert_eq!(producer_message_max_bytes(904_096, &none), Ok(1_000_000));
        assert_eq!(producer_message_max_bytes(2_000_000, &none), Ok(2_000_000));
        let set = |v: &str| [("message.max.bytes".to_string(), v.to_string())].into_iter().collect();
        assert_eq!(producer_message_max_bytes(904_096, &set("5000000")), Ok(5_000_000));
        let e = producer_message_max_bytes(904_096, &set("100000")).unwrap_err();
        assert!(e.contains("message.max.bytes") && e.contains("100000") && e.contains("904096"), "{e}");
    }
}
