//! A bounded load run against the service, once with memcg as its global
//! allocator and once with mimalloc, in one invocation (BENCHMARKS.md).
//!
//! Each round starts both server binaries in turn (`memcg-service`,
//! `memcg-service-mimalloc`, found next to this one; the order alternates by
//! round) on an ephemeral port, creates the tenants, stores every key once
//! (not timed), then sends a fixed number of requests from concurrent
//! keep-alive connections: GETs and PUTs of random keys of random tenants,
//! with values of 256 B to 4 KiB. It reports requests per second over the
//! timed phase and latency percentiles of single requests.
//!
//! Each server runs two timed phases (their order alternates by round):
//! `calm`, as above, and `runaway`, the same requests while a runaway
//! tenant (`memory.max` 1M) has `--runaway-clients` clients of its own,
//! on a thread of their own, upload 1.5 MiB values to it over and over.
//! Under `MemcgAlloc` each of those uploads runs past the tenant's
//! `memory.max` and is killed (507, its memory given back); under mimalloc
//! nothing is charged and they are stored. The requests and latencies
//! reported are the other tenants', side by side for both phases.
//! `--runaway-clients 0` runs the calm phase only.
//!
//! ```text
//! cargo build --release -p memcg-service
//! target/release/memcg-service-load [--requests N] [--concurrency C]
//!     [--tenants T] [--keys K] [--put-percent P] [--rounds R] [--workers W]
//!     [--runaway-clients U]
//! ```

use bytes::Bytes;
use memcg_service::client::{upload, Client};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The client's own allocator, the same for both servers.
#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The run's parameters.
#[derive(Debug, Clone, Copy)]
struct Load {
    requests: usize,
    concurrency: usize,
    tenants: usize,
    keys: usize,
    put_percent: u64,
    rounds: usize,
    workers: Option<usize>,
    runaway_clients: usize,
}

/// The runaway tenant: its `memory.max`, and the length of each value its
/// clients upload (under the service's 2 MiB limit), sent in pieces.
const RUNAWAY_MAX: &str = "1M";
const RUNAWAY_BYTES: usize = 1536 << 10;
const RUNAWAY_PIECE: usize = 64 << 10;

/// A timed phase: with or without the runaway tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Calm,
    Runaway,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Calm => "calm",
            Phase::Runaway => "runaway",
        }
    }
}

/// What the runaway tenant's clients saw.
#[derive(Debug, Clone, Copy, Default)]
struct Runaway {
    /// 507: killed (or refused at `memory.max`).
    killed: usize,
    /// 204: stored (nothing is charged under mimalloc).
    stored: usize,
    /// Other answers, and uploads that failed on the client's side.
    other: usize,
}

/// What one timed phase measured.
#[derive(Debug, Clone)]
struct Run {
    server: &'static str,
    phase: Phase,
    runaway: Runaway,
    elapsed: Duration,
    requests: usize,
    /// Single-request latencies, sorted.
    latencies: Vec<Duration>,
    /// Responses other than 200/204.
    errors: usize,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.latencies[i.min(self.latencies.len() - 1)]
    }
}

const SIZES: [usize; 4] = [256, 1024, 2048, 4096];

fn parse_args() -> Result<Load, String> {
    let mut load = Load {
        requests: 200_000,
        concurrency: 64,
        tenants: 16,
        keys: 500,
        put_percent: 30,
        rounds: 2,
        workers: None,
        runaway_clients: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let n: usize = value.parse().map_err(|e| format!("{arg} {value}: {e}"))?;
        match arg.as_str() {
            "--requests" => load.requests = n,
            "--concurrency" => load.concurrency = n.max(1),
            "--tenants" => load.tenants = n.max(1),
            "--keys" => load.keys = n.max(1),
            "--put-percent" => load.put_percent = n.min(100) as u64,
            "--rounds" => load.rounds = n.max(1),
            "--workers" => load.workers = Some(n.max(1)),
            "--runaway-clients" => load.runaway_clients = n,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    Ok(load)
}

/// Start `binary` on an ephemeral port; the child and its address.
fn start(binary: &str, workers: Option<usize>) -> Result<(Child, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(binary);
    let mut cmd = Command::new(&path);
    cmd.args(["--addr", "127.0.0.1:0"]).stdout(Stdio::piped());
    if let Some(w) = workers {
        cmd.args(["--workers", &w.to_string()]);
    }
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "{}: {e} (build it: cargo build --release -p memcg-service)",
            path.display()
        )
    })?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{binary} printed {line:?}"))?;
    Ok((child, addr))
}

/// Create the tenants (and the runaway one) and store every key once: not
/// timed.
async fn setup(addr: SocketAddr, load: Load) {
    let mut admin = Client::connect(addr).await.expect("connect");
    for t in 0..load.tenants {
        let (status, _) = admin
            .put(&format!("/tenants/t{t}?max=1G"), Bytes::new())
            .await
            .expect("create tenant");
        assert!(status.is_success(), "create t{t}: {status}");
    }
    let path = format!("/tenants/runaway?max={RUNAWAY_MAX}");
    let (status, _) = admin.put(&path, Bytes::new()).await.expect("create");
    assert!(status.is_success(), "create runaway: {status}");
    let preload: Vec<_> = (0..load.concurrency)
        .map(|task| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await.expect("connect");
                let all = load.tenants * load.keys;
                for i in (task..all).step_by(load.concurrency) {
                    let (t, k) = (i % load.tenants, i / load.tenants);
                    let value = Bytes::from(vec![k as u8; SIZES[i % SIZES.len()]]);
                    c.put(&format!("/tenants/t{t}/values/k{k}"), value)
                        .await
                        .expect("preload");
                }
            })
        })
        .collect();
    for p in preload {
        p.await.expect("preload task");
    }
}

/// The runaway tenant's clients, on a thread and runtime of their own (the
/// other tenants' client is not slowed by theirs), until `stop`: each
/// uploads a value of `RUNAWAY_BYTES` to the runaway tenant, again and
/// again, each on a new connection.
fn start_runaway(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Runaway> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runaway runtime");
        runtime.block_on(async move {
            let tasks: Vec<_> = (0..clients)
                .map(|i| {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let mut seen = Runaway::default();
                        let path = format!("/tenants/runaway/values/big{i}");
                        while !stop.load(Relaxed) {
                            let status =
                                upload(addr, &path, RUNAWAY_BYTES, RUNAWAY_PIECE, Duration::ZERO)
                                    .await;
                            match status.map(|s| s.as_u16()) {
                                Ok(507) => seen.killed += 1,
                                Ok(204) => seen.stored += 1,
                                _ => seen.other += 1,
                            }
                        }
                        seen
                    })
                })
                .collect();
            let mut all = Runaway::default();
            for t in tasks {
                let seen = t.await.expect("runaway task");
                all.killed += seen.killed;
                all.stored += seen.stored;
                all.other += seen.other;
            }
            all
        })
    })
}

/// One timed phase: the other tenants' requests, with the runaway tenant's
/// clients running meanwhile in the `Runaway` phase.
async fn drive(server: &'static str, addr: SocketAddr, load: Load, phase: Phase) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let runaway =
        (phase == Phase::Runaway).then(|| start_runaway(addr, load.runaway_clients, stop.clone()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..load.concurrency)
        .map(|task| {
            let count = load.requests / load.concurrency
                + usize::from(task < load.requests % load.concurrency);
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await.expect("connect");
                // A reproducible key and operation mix per client task.
                let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15 ^ (task as u64 + 1));
                let mut latencies = Vec::with_capacity(count);
                let mut errors = 0;
                for _ in 0..count {
                    let (t, k) = (rng.usize(..load.tenants), rng.usize(..load.keys));
                    let path = format!("/tenants/t{t}/values/k{k}");
                    let put = rng.u64(..100) < load.put_percent;
                    let body = if put {
                        Bytes::from(vec![t as u8; SIZES[rng.usize(..SIZES.len())]])
                    } else {
                        Bytes::new()
                    };
                    let sent = Instant::now();
                    let (status, _) = if put {
                        c.put(&path, body).await
                    } else {
                        c.get(&path).await
                    }
                    .expect("request");
                    latencies.push(sent.elapsed());
                    errors += usize::from(!status.is_success());
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(load.requests);
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("client task");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    stop.store(true, Relaxed);
    let runaway = runaway
        .map(|t| t.join().expect("runaway thread"))
        .unwrap_or_default();
    latencies.sort_unstable();
    Run {
        server,
        phase,
        runaway,
        elapsed,
        requests: latencies.len(),
        latencies,
        errors,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> std::process::ExitCode {
    let load = match parse_args() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("memcg-service-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    println!(
        "{} requests ({}% PUT, values 256 B-4 KiB), {} connections, {} tenants x {} keys, {} rounds",
        load.requests, load.put_percent, load.concurrency, load.tenants, load.keys, load.rounds
    );
    println!(
        "{:<10} {:<8} {:>5} {:>10} {:>9} {:>9} {:>9} {:>7} {:>17}",
        "server",
        "phase",
        "round",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "runaway 507/204/-"
    );
    let servers = [
        ("MemcgAlloc", "memcg-service"),
        ("mimalloc", "memcg-service-mimalloc"),
    ];
    let mut phases = vec![Phase::Calm];
    if load.runaway_clients > 0 {
        phases.push(Phase::Runaway);
    }
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..load.rounds {
        let mut order = servers.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for (name, binary) in order {
            let (mut child, addr) = match start(binary, load.workers) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("memcg-service-load: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            runtime.block_on(setup(addr, load));
            let mut order = phases.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for phase in order {
                let run = runtime.block_on(drive(name, addr, load, phase));
                let r = run.runaway;
                let runaway = match phase {
                    Phase::Calm => String::new(),
                    Phase::Runaway => format!("{}/{}/{}", r.killed, r.stored, r.other),
                };
                println!(
                    "{:<10} {:<8} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>17}",
                    run.server,
                    phase.name(),
                    round + 1,
                    run.rps(),
                    ms(run.percentile(0.50)),
                    ms(run.percentile(0.99)),
                    ms(run.percentile(0.999)),
                    run.errors,
                    runaway
                );
                runs.push(run);
            }
            if load.runaway_clients > 0 {
                let mut admin = runtime.block_on(Client::connect(addr)).expect("connect");
                let (_, stats) = runtime
                    .block_on(admin.get("/tenants/runaway/stats"))
                    .expect("runaway stats");
                let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap_or_default();
                println!(
                    "  {name} runaway tenant: memory.peak {}, memory.current {}, memory.events oom_kill {}, oom_group_kill {}",
                    stats["memory.peak"],
                    stats["memory.current"],
                    stats["memory.events"]["oom_kill"],
                    stats["memory.events"]["oom_group_kill"]
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let summary = |server: &str, phase: Phase| {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.server == server && r.phase == phase)
            .collect();
        (
            median(mine.iter().map(|r| r.rps()).collect()),
            median(mine.iter().map(|r| ms(r.percentile(0.99))).collect()),
        )
    };
    println!("median of rounds, the other tenants' requests:");
    for &phase in &phases {
        let (memcg_rps, memcg_p99) = summary("MemcgAlloc", phase);
        let (mi_rps, mi_p99) = summary("mimalloc", phase);
        println!(
            "  {:<8} MemcgAlloc {memcg_rps:.0} req/s, p99 {memcg_p99:.3} ms; mimalloc {mi_rps:.0} req/s, p99 {mi_p99:.3} ms; MemcgAlloc / mimalloc: throughput {:.3}x, p99 {:.3}x",
            phase.name(),
            memcg_rps / mi_rps,
            memcg_p99 / mi_p99
        );
    }
    if load.runaway_clients > 0 {
        for server in ["MemcgAlloc", "mimalloc"] {
            let (calm_rps, calm_p99) = summary(server, Phase::Calm);
            let (run_rps, run_p99) = summary(server, Phase::Runaway);
            println!(
                "  {server}: with the runaway / without: throughput {:.3}x, p99 {:.3}x",
                run_rps / calm_rps,
                run_p99 / calm_p99
            );
        }
    }
    std::process::ExitCode::SUCCESS
}
