// Run: cargo bench -p tracker-benches --bench restart
//! What a restart of a durable tracker holding 10M (page, visitor) pairs
//! costs: the time of `DurableTracker::open` (the newest snapshot, then
//! the event log after it), the heap it needs on the way, and the bytes
//! the state takes on disk. A service that restarts is down for that
//! long, and the snapshot exists to make it short, so the bench compares
//! the ways the same state can sit on disk.
//!
//! The same 10M distinct pairs (Zipf, s = 1, over 100k pages; one page
//! view per visitor, so every event is a new pair), recorded once,
//! outside timed code, through `DurableTracker::record` with
//! `FsyncPolicy::Off` (only to build faster: the policy decides when the
//! log is synced, not what it holds), into three data directories:
//!
//! - **snapshot**: a snapshot taken after the last event, so the log
//!   after it is empty;
//! - **snapshot + log**: a snapshot after 9M pairs, the last 1M in the
//!   log after it (the state restored is the same 10M pairs);
//! - **log only**: every event in the log after the empty snapshot the
//!   first start writes: what a restart costs when no snapshot covers the
//!   events.
//!
//! Each is opened (with the default `LogOptions`, as a service would)
//! on a warm page cache, in the same run as two baselines: re-feeding
//! the same 10M events into a fresh `Tracker` with `Tracker::record`
//! (what a tracker without persistence would need to be sent again), and
//! reading the files `open` reads with `std::fs::read` (the I/O alone).
//! Every restored tracker is checked outside the timed span (10M pairs,
//! the events replayed, the hottest and the coldest page's counts), so a
//! wrong restore cannot pass as a fast one.
//!
//! Plain timed rounds, not criterion. Each round times every case once,
//! interleaved, so a change in the machine's load touches all of them
//! alike; a case gets `ROUNDS` rounds (default 5), or fewer once it has
//! taken a minute (at least one). An open takes up to seconds, and
//! criterion's warm-up and 10-sample minimum per case would make a run
//! several times longer, or hours if a restore goes slow (before a fix,
//! one open of the snapshot took ten minutes). The table gives the mean,
//! the fastest and the slowest.
//!
//! Before the warm rounds, one open per directory right after dropping
//! the page cache (as root; skipped with a note otherwise): the "cold"
//! figure. The counting allocator gives the peak heap during `open`
//! against the heap the restored tracker holds. It is installed for the
//! whole run, so every timing includes its few relaxed atomic operations
//! per allocation (the allocation counts are printed: small).
//!
//! The directories are made with `tempfile` under `$TMPDIR` (else `/tmp`);
//! the bench prints the file system they are on, which should be a real
//! disk, not a tmpfs.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracker_benches::counting_alloc::CountingAlloc;
use tracker_benches::full_run;
use tracker_benches::ratios::{human_count, human_ns, markdown_table, ratio};
use tracker_benches::workload::{CORE_PAGES, CORE_ZIPF_S, Events, ZipfWorkload};
use tracker_core::Tracker;
use tracker_core::persist::{DurableTracker, FsyncPolicy, LogOptions, RecoveryReport};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const PAIRS: usize = 10_000_000;
/// The snapshot + log case: the last tenth of the pairs is in the log.
const IN_LOG_SHARE: usize = 10;
const SEED: u64 = 0x7EAC_0003;
/// Rounds per case unless `ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 5;
/// A case that has taken this long gets no more rounds.
const CASE_BUDGET: Duration = Duration::from_secs(60);

fn main() {
    let full = full_run();
    // Test runs (`cargo test --benches`, a debug build) only check that
    // the bench works, on a small state of the same shape, once.
    let (pairs, pages, rounds) = if full {
        let rounds = std::env::var("ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(DEFAULT_ROUNDS)
            .max(1);
        (PAIRS, CORE_PAGES, rounds)
    } else {
        (20_000, 1_000, 1)
    };
    let generating = Instant::now();
    // One page view per visitor: exactly `pairs` distinct pairs.
    let workload = ZipfWorkload::generate(pages, pairs, pairs, CORE_ZIPF_S, SEED);
    let expected = Expected::of(&workload);
    eprintln!(
        "workload: {pairs} pairs (one view per visitor) over {pages} pages (Zipf \
         s={CORE_ZIPF_S}); generated in {:.1?}",
        generating.elapsed()
    );

    let base = tempfile::Builder::new()
        .prefix("tracker-restart-")
        .tempdir()
        .expect("a temporary directory");
    eprintln!(
        "data directories in {} (file system: {})",
        base.path().display(),
        filesystem_of(base.path()).unwrap_or_else(|| "unknown".to_owned())
    );
    let in_log = pairs / IN_LOG_SHARE;
    let cases = [
        build_case(base.path(), "snapshot", &workload.events, pairs),
        build_case(
            base.path(),
            "snapshot+log",
            &workload.events,
            pairs - in_log,
        ),
        build_case(base.path(), "log", &workload.events, 0),
    ];
    print_build(&cases, pairs, pages);
    if full {
        // Write back what the builds left dirty, so that write-back does
        // not compete with the timed opens.
        if let Err(why) = sync_disks() {
            eprintln!("note: {why}");
        }
    }

    let mut measured: Vec<Measured> = cases.iter().map(|_| Measured::default()).collect();
    // Why there is no cold-cache figure, if there is none.
    let mut cold_note = (!full).then(|| "test run: the page cache is left alone".to_owned());
    if cold_note.is_none() {
        for (case, m) in cases.iter().zip(&mut measured) {
            if let Err(why) = drop_page_cache() {
                cold_note = Some(why);
                break;
            }
            let (wall, heap) = timed_open(case, &expected);
            eprintln!("cold open of {}: {wall:.2?}; {heap}", case.key);
            m.cold = Some(wall);
            m.heap = Some(heap);
        }
    }
    let mut refeed = Measured::default();
    for round in 1.. {
        let mut ran = false;
        for (case, m) in cases.iter().zip(&mut measured) {
            if m.warm.wants_more(rounds) {
                let (wall, heap) = timed_open(case, &expected);
                eprintln!("open of {}, round {round}: {wall:.2?}; {heap}", case.key);
                m.warm.push(wall);
                m.heap.get_or_insert(heap);
                ran = true;
            }
        }
        if refeed.warm.wants_more(rounds) {
            let (wall, heap) = timed_refeed(&workload.events);
            eprintln!("re-feed, round {round}: {wall:.2?}; {heap}");
            refeed.warm.push(wall);
            refeed.heap.get_or_insert(heap);
            ran = true;
        }
        for (case, m) in cases.iter().zip(&mut measured) {
            if m.read.wants_more(rounds) {
                let start = Instant::now();
                black_box(case.files.read());
                let wall = start.elapsed();
                eprintln!("read files of {}, round {round}: {wall:.2?}", case.key);
                m.read.push(wall);
                ran = true;
            }
        }
        if !ran {
            break;
        }
    }

    print_times(&cases, &measured, &refeed, pairs, rounds);
    if let Some(why) = &cold_note {
        println!("\nNo cold-cache open: {why}.");
    }
    print_space(&cases, &measured, &refeed, pairs);
}

// ---------------------------------------------------------------------
// The data directories.
// ---------------------------------------------------------------------

/// One data directory and what it holds.
struct Case {
    /// Criterion parameter and row key.
    key: &'static str,
    dir: PathBuf,
    /// Pairs the newest snapshot holds; the rest of the events are in the
    /// log after it.
    snapshotted: usize,
    /// Events `open` should replay.
    in_log: usize,
    /// The files `open` reads.
    files: Files,
    /// The build's `DurableTracker::record` calls, all of them.
    record_time: Duration,
    /// The one `snapshot()` call of the build, if it took one.
    snapshot_time: Option<Duration>,
}

impl Case {
    fn label(&self) -> String {
        match (self.snapshotted, self.in_log) {
            (s, 0) => format!("snapshot ({} pairs)", human_count(s)),
            (0, l) => format!("log only ({} events)", human_count(l)),
            (s, l) => format!(
                "snapshot ({} pairs) + log ({} events)",
                human_count(s),
                human_count(l)
            ),
        }
    }
}

/// Records `events` into a new data directory `<base>/<key>`, taking a
/// snapshot after the first `snapshotted` of them (none for 0: then only
/// the empty one the first start writes covers anything).
fn build_case(base: &Path, key: &'static str, events: &Events, snapshotted: usize) -> Case {
    let dir = base.join(key);
    let options = LogOptions::default().sync(FsyncPolicy::Off);
    let (durable, _) =
        DurableTracker::open(&dir, Tracker::builder(), options).expect("a new data directory");
    let record = |range: std::ops::Range<usize>| {
        let start = Instant::now();
        for i in range {
            let (visitor, url) = events.get(i);
            // The workload holds only valid events: an error is a bench bug.
            durable.record(visitor, url).expect("recorded and logged");
        }
        start.elapsed()
    };
    let mut record_time = record(0..snapshotted);
    let snapshot_time = (snapshotted > 0).then(|| {
        let start = Instant::now();
        durable.snapshot().expect("snapshot written");
        start.elapsed()
    });
    record_time += record(snapshotted..events.len());
    assert_eq!(durable.tracker().stats().pairs, events.len() as u64);
    drop(durable);
    eprintln!(
        "built {} in {:.1?}",
        dir.display(),
        record_time + snapshot_time.unwrap_or_default()
    );
    Case {
        key,
        files: Files::read_by_open(&dir),
        dir,
        snapshotted,
        in_log: events.len() - snapshotted,
        record_time,
        snapshot_time,
    }
}

/// The files `DurableTracker::open` reads in a data directory: the newest
/// snapshot (the directory keeps an older one too, which is only listed)
/// and the log segments from the one holding the position that snapshot
/// covers (the older segments, still kept for the older snapshot, are
/// skipped unread).
struct Files {
    snapshot: PathBuf,
    snapshot_bytes: u64,
    segments: Vec<PathBuf>,
    log_bytes: u64,
    /// Everything in the directory, kept files included.
    dir_bytes: u64,
}

impl Files {
    fn read_by_open(dir: &Path) -> Self {
        let snapshots = numbered(&dir.join("snapshots"), "snapshot-", ".snap");
        let (covers, snapshot) = snapshots.last().cloned().expect("open writes a snapshot");
        let segments = numbered(&dir.join("log"), "log-", ".seg");
        let first = segments
            .iter()
            .rposition(|&(start, _)| start <= covers)
            .unwrap_or(0);
        let segments: Vec<PathBuf> = segments[first..].iter().map(|(_, p)| p.clone()).collect();
        let all = numbered(&dir.join("log"), "log-", ".seg")
            .into_iter()
            .chain(snapshots)
            .map(|(_, p)| p);
        Files {
            snapshot_bytes: size(&snapshot),
            log_bytes: segments.iter().map(|p| size(p)).sum(),
            dir_bytes: all.map(|p| size(&p)).sum(),
            snapshot,
            segments,
        }
    }

    /// Reads them all with `std::fs::read`, whole files: the I/O of `open`
    /// alone (which streams both the snapshot and the log segments).
    fn read(&self) -> usize {
        std::iter::once(&self.snapshot)
            .chain(&self.segments)
            .map(|p| std::fs::read(p).expect("a file of the directory").len())
            .sum()
    }
}

/// The files `<prefix><number><suffix>` in `dir`, by number.
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("a directory of the data directory")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let number = name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((number, path))
        })
        .collect();
    found.sort();
    found
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

// ---------------------------------------------------------------------
// The timed part.
// ---------------------------------------------------------------------

/// The times of one thing measured, in the order taken.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    /// Whether it gets another round: fewer than `rounds` so far, and
    /// less than [`CASE_BUDGET`] spent (always a first).
    fn wants_more(&self, rounds: usize) -> bool {
        self.0.len() < rounds && self.0.iter().sum::<Duration>() < CASE_BUDGET
    }

    fn push(&mut self, time: Duration) {
        self.0.push(time);
    }

    fn ns(time: Duration) -> f64 {
        time.as_nanos() as f64
    }

    fn mean(&self) -> Option<f64> {
        (!self.0.is_empty())
            .then(|| self.0.iter().map(|&t| Self::ns(t)).sum::<f64>() / self.0.len() as f64)
    }

    fn min(&self) -> Option<f64> {
        self.0.iter().min().map(|&t| Self::ns(t))
    }

    fn max(&self) -> Option<f64> {
        self.0.iter().max().map(|&t| Self::ns(t))
    }
}

/// What was measured of one case (or of the re-feed).
#[derive(Default)]
struct Measured {
    warm: Samples,
    /// The open right after the page cache was dropped.
    cold: Option<Duration>,
    /// The heap counts of the first open (they do not change between
    /// opens).
    heap: Option<Heap>,
    /// Reading the files `open` reads.
    read: Samples,
}

/// What every restore must give, worked out from the events.
struct Expected {
    pairs: u64,
    /// The hottest and the coldest visited page, with their visitors
    /// (every event is a pair of its own).
    pages: [(String, u64); 2],
}

impl Expected {
    fn of(workload: &ZipfWorkload) -> Self {
        let page = |rank: usize| {
            let url = workload.urls[rank].clone();
            let visitors = workload.events.iter().filter(|e| e.1 == url).count() as u64;
            (url, visitors)
        };
        Expected {
            pairs: workload.events.len() as u64,
            pages: [page(0), page(workload.coldest_visited)],
        }
    }

    fn check(&self, case: &Case, durable: &DurableTracker, report: &RecoveryReport) {
        let tracker = durable.tracker();
        assert_eq!(tracker.stats().pairs, self.pairs, "{}", case.key);
        for (url, visitors) in &self.pages {
            let found = tracker.distinct(url).expect("a valid URL");
            assert_eq!(found.visitors, *visitors, "{} {url}", case.key);
        }
        assert_eq!(report.replayed, case.in_log as u64, "{}", case.key);
        assert_eq!(report.refused, 0, "{}", case.key);
        assert!(report.log.torn_tail.is_none(), "{}", case.key);
    }
}

/// Opens the case's directory; returns the open's wall time and heap.
/// The restored tracker is checked and dropped outside the timed span.
fn timed_open(case: &Case, expected: &Expected) -> (Duration, Heap) {
    let start = Instant::now();
    let ((durable, report), counts) = counted(|| {
        DurableTracker::open(&case.dir, Tracker::builder(), LogOptions::default())
            .expect("the data directory opens")
    });
    let wall = start.elapsed();
    expected.check(case, &durable, &report);
    let heap = counts.with_own(durable.tracker().stats().bytes);
    drop(black_box(durable));
    (wall, heap)
}

/// The baseline: every event sent again to a fresh tracker in memory.
fn timed_refeed(events: &Events) -> (Duration, Heap) {
    let start = Instant::now();
    let (tracker, counts) = counted(|| {
        let tracker = Tracker::builder().build().expect("default settings");
        for (visitor, url) in events.iter() {
            // The workload holds only valid events: an error is a bench bug.
            black_box(tracker.record(visitor, url).expect("valid event"));
        }
        tracker
    });
    let wall = start.elapsed();
    let stats = tracker.stats();
    assert_eq!(stats.pairs, events.len() as u64);
    drop(black_box(tracker));
    (wall, counts.with_own(stats.bytes))
}

/// Heap counts over one piece of work, in bytes beyond what was live
/// before it.
struct Heap {
    peak: usize,
    live: usize,
    allocations: usize,
    /// The tracker's own accounting, `stats().bytes`.
    own: u64,
}

/// For the progress lines on stderr (partial results survive a killed
/// run).
impl std::fmt::Display for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "heap peak {}, after {}, own {}, {} allocations",
            bytes(self.peak as u64),
            bytes(self.live as u64),
            bytes(self.own),
            self.allocations
        )
    }
}

impl Heap {
    fn with_own(mut self, own: u64) -> Self {
        self.own = own;
        self
    }
}

fn counted<T>(work: impl FnOnce() -> T) -> (T, Heap) {
    let (before, allocations) = (ALLOC.live(), ALLOC.allocations());
    ALLOC.reset_peak();
    let out = work();
    let heap = Heap {
        peak: ALLOC.peak() - before,
        live: ALLOC.live().saturating_sub(before),
        allocations: ALLOC.allocations() - allocations,
        own: 0,
    };
    (out, heap)
}

/// Writes dirty pages back (`sync(1)`).
fn sync_disks() -> Result<(), String> {
    let status = std::process::Command::new("sync")
        .status()
        .map_err(|e| format!("running sync failed ({e})"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("sync exited with {status}"))
    }
}

/// Empties the page cache, so the next open reads from the disk
/// (`sync; echo 3 > /proc/sys/vm/drop_caches`, which needs root).
fn drop_page_cache() -> Result<(), String> {
    sync_disks()?;
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| format!("writing /proc/sys/vm/drop_caches failed ({e})"))
}

/// The file system `path` is on, from `/proc/self/mounts` (Linux): its
/// type and device, as in `ext4 /dev/vda on /`.
fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point)
                .then(|| (point.len(), format!("{kind} {device} on {point}")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, described)| described)
}

// ---------------------------------------------------------------------
// Tables.
// ---------------------------------------------------------------------

/// Bytes in a readable unit.
fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let n = n as f64;
    if n >= KIB * KIB {
        format!("{:.1} MiB", n / (KIB * KIB))
    } else if n >= KIB {
        format!("{:.1} KiB", n / KIB)
    } else {
        format!("{n} B")
    }
}

fn print_build(cases: &[Case], pairs: usize, pages: usize) {
    println!(
        "\nBuilding the directories ({pairs} pairs over {pages} Zipf pages, s={CORE_ZIPF_S}, one \
         view per visitor), once each, through DurableTracker::record with FsyncPolicy::Off:"
    );
    for case in cases {
        let rate = pairs as f64 / case.record_time.as_secs_f64();
        let snapshot = case.snapshot_time.map_or_else(String::new, |t| {
            format!(
                "; snapshot() of {} pairs {t:.2?}",
                human_count(case.snapshotted)
            )
        });
        println!(
            "- {}: records {:.2?} ({:.2} M/s){snapshot}",
            case.label(),
            case.record_time,
            rate / 1e6
        );
    }
}

fn print_times(
    cases: &[Case],
    measured: &[Measured],
    refeed: &Measured,
    pairs: usize,
    rounds: usize,
) {
    let show = |t: Option<f64>| t.map_or_else(|| "n/a".to_owned(), human_ns);
    let spread = |s: &Samples| match (s.min(), s.max()) {
        (Some(min), Some(max)) if s.0.len() > 1 => format!("{} – {}", human_ns(min), human_ns(max)),
        _ => "-".to_owned(),
    };
    let row = |label: String, m: &Measured| {
        let open = m.warm.mean();
        vec![
            label,
            show(open),
            spread(&m.warm),
            m.warm.0.len().to_string(),
            show(open.map(|t| t / pairs as f64)),
            m.cold
                .map_or_else(|| "-".to_owned(), |t| human_ns(Samples::ns(t))),
            m.read.mean().map_or_else(|| "-".to_owned(), human_ns),
            ratio(refeed.warm.mean(), open),
        ]
    };
    let mut rows: Vec<Vec<String>> = cases
        .iter()
        .zip(measured)
        .map(|(case, m)| row(case.label(), m))
        .collect();
    rows.push(row(
        format!(
            "re-feed in memory (Tracker::record x {})",
            human_count(pairs)
        ),
        refeed,
    ));
    println!(
        "\nRestart: DurableTracker::open of {pairs} pairs, warm page cache (mean of up to {rounds} \
         interleaved rounds; a case stops after {} s), against re-feeding the events to a fresh \
         Tracker. \"cold\" = one open right after dropping the page cache; \"read files\" = \
         std::fs::read of the files open reads, warm; \"re-feed / open\" = the re-feed's time over \
         the open's (above 1: the restart is faster).\n",
        CASE_BUDGET.as_secs()
    );
    print!(
        "{}",
        markdown_table(
            &[
                "restart from",
                "open",
                "fastest – slowest",
                "rounds",
                "per pair",
                "open, cold cache",
                "read files",
                "re-feed / open",
            ],
            &rows,
        )
    );
}

fn print_space(cases: &[Case], measured: &[Measured], refeed: &Measured, pairs: usize) {
    let per = |bytes: u64, n: usize| {
        if n == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", bytes as f64 / n as f64)
        }
    };
    let heap_cells = |heap: Option<&Heap>| match heap {
        Some(heap) => vec![
            bytes(heap.peak as u64),
            bytes(heap.live as u64),
            format!("{:.2}x", heap.peak as f64 / heap.live.max(1) as f64),
            bytes(heap.own),
            heap.allocations.to_string(),
        ],
        None => vec!["n/a".to_owned(); 5],
    };
    let mut rows: Vec<Vec<String>> = cases
        .iter()
        .zip(measured)
        .map(|(case, m)| {
            let files = &case.files;
            let mut row = vec![
                case.label(),
                bytes(files.snapshot_bytes),
                per(files.snapshot_bytes, case.snapshotted),
                bytes(files.log_bytes),
                per(files.log_bytes, case.in_log),
                bytes(files.dir_bytes),
            ];
            row.extend(heap_cells(m.heap.as_ref()));
            row
        })
        .collect();
    let mut row = vec![format!(
        "re-feed in memory (Tracker::record x {})",
        human_count(pairs)
    )];
    row.extend(["-"; 5].map(str::to_owned));
    row.extend(heap_cells(refeed.heap.as_ref()));
    rows.push(row);
    println!(
        "\nOn disk (the files open reads; \"directory\" adds the older snapshot and log segments \
         kept beside them) and on the heap (counting allocator, bytes requested, beyond what was \
         live before: the peak during open, and what the restored DurableTracker holds after it; \
         \"own\" = stats().bytes):\n"
    );
    print!(
        "{}",
        markdown_table(
            &[
                "restart from",
                "snapshot",
                "B/pair",
                "log read",
                "B/event",
                "directory",
                "peak heap",
                "heap after",
                "peak / after",
                "own",
                "allocations",
            ],
            &rows,
        )
    );
}
