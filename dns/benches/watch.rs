//! How long one record change takes to reach the name table with 10,000 records present:
//! the time from the rename that puts a record in place to its name resolving, through the
//! real watcher and inotify. Not a test (no root needed):
//!
//!     cargo bench -p weave-dns --bench watch
//!
//! Also prints the time of one full re-read of the records (what every change cost before
//! updates were incremental, and what an overflow still costs). Figures in BENCH.md.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use weave_core::process::ProcessId;
use weave_core::store::{Record, Store};
use weave_dns::records::{Names, Table};
use weave_dns::watch;

const RECORDS: usize = 10_000;
const CHANGES: usize = 200;
const RELOADS: usize = 10;

fn main() {
    let tmp = tempfile::tempdir().expect("a temp directory");
    let store = Store::open(tmp.path()).expect("a store");
    let dir = store.records_dir();
    for i in 0..RECORDS {
        put(&dir, &record(&format!("c{i}"), i, &format!("n{i}")));
    }
    let started = Instant::now();
    let names = Names::new(Table::empty());
    watch::start(Store::open(tmp.path()).expect("a store"), names.clone()).expect("the watcher");
    println!("{RECORDS} records read at start in {:?}", started.elapsed());

    let mut reloads: Vec<Duration> = (0..RELOADS)
        .map(|_| {
            let start = Instant::now();
            let (table, _) = Table::load(&store).expect("records");
            names.replace(table);
            start.elapsed()
        })
        .collect();
    report("one full re-read", &mut reloads);

    let mut changes: Vec<Duration> = (0..CHANGES)
        .map(|k| {
            let name = format!("probe{k}");
            let start = Instant::now();
            // Alternately a new record and a replacement of an existing one.
            put(
                &dir,
                &record(&format!("p{}", k % 2), RECORDS + k % 2, &name),
            );
            while names.current().addresses(&name).is_empty() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{name} never seen"
                );
                thread::yield_now();
            }
            start.elapsed()
        })
        .collect();
    report("one change, rename to resolving", &mut changes);
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{what} with {RECORDS} records: median {:?}, p90 {:?}, max {:?} ({} samples)",
        at(0.5),
        at(0.9),
        at(1.0),
        samples.len()
    );
}

fn record(id: &str, i: usize, name: &str) -> Record {
    Record {
        id: id.into(),
        veth_index: None,
        mac: None,
        bridge: "weave".into(),
        veth: "vethwe0".into(),
        addrs: vec![format!("10.32.{}.{}/12", i / 250, i % 250 + 2)
            .parse()
            .expect("an address")],
        owner: ProcessId::of(std::process::id() as i32).ok(),
        names: vec![name.into()],
        shared: false,
        route: false,
        netns: None,
    }
}

/// As the hook writes a record: a temp file renamed into place.
fn put(dir: &Path, record: &Record) {
    let tmp = dir.join(format!("{}.tmp1", record.id));
    std::fs::write(&tmp, serde_json::to_vec(record).expect("json")).expect("write");
    std::fs::rename(&tmp, dir.join(format!("{}.json", record.id))).expect("rename");
}
