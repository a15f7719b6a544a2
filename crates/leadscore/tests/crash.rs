//! Crashes: `leadscore run` is killed with SIGKILL twice mid-stream (the broker
//! lives in its own process, `leadscore dev-broker`) and restarted on the same
//! state directory. At least once: every record published, deduplicated by
//! `(lead_id, version)`, equals what `leadscore score` prints for the same
//! input; repeats are byte-identical; no event is applied twice (a second
//! application would publish records the reference does not have).

use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

mod support;
use support::{
    applied, assert_same, bin, free_address, produce_sample, read_outputs, reference, start, stop, wait_until,
};

#[test]
fn killed_twice_mid_stream_the_published_records_equal_the_offline_reference() {
    let reference = reference();
    let mut broker = bin()
        .args(["dev-broker", "--partitions", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    let mut bootstrap = String::new();
    std::io::BufReader::new(broker.stdout.take().expect("stdout")).read_line(&mut bootstrap).expect("address");
    let bootstrap = bootstrap.trim().to_string();
    produce_sample(&bootstrap);

    let dir = tempfile::tempdir().expect("dir");
    // Killed twice, each time after it has applied some hundreds of events.
    for _ in 0..2 {
        let admin = free_address();
        let mut run = start(dir.path(), &bootstrap, &admin);
        wait_until("progress before the kill", Duration::from_secs(60), || applied(&admin) >= 700);
        run.kill().expect("SIGKILL");
        run.wait().expect("killed");
    }
    let admin = free_address();
    let run = start(dir.path(), &bootstrap, &admin);

    let (got, repeats) = read_outputs(&bootstrap, reference.len());
    let clean = stop(run);
    broker.kill().ok();
    broker.wait().ok();
    assert!(clean, "the last run stops cleanly");
    assert_same(&got, &reference);
    eprintln!("{} records, {repeats} repeated by the crashes", got.len());
}
