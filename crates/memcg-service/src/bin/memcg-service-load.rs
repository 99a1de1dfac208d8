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
//! ```text
//! cargo build --release -p memcg-service
//! target/release/memcg-service-load [--requests N] [--concurrency C]
//!     [--tenants T] [--keys K] [--put-percent P] [--rounds R] [--workers W]
//! ```

use bytes::Bytes;
use memcg_service::client::Client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
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
}

/// What one timed phase measured.
#[derive(Debug, Clone)]
struct Run {
    server: &'static str,
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

async fn drive(server: &'static str, addr: SocketAddr, load: Load) -> Run {
    let mut admin = Client::connect(addr).await.expect("connect");
    for t in 0..load.tenants {
        let (status, _) = admin
            .put(&format!("/tenants/t{t}?max=1G"), Bytes::new())
            .await
            .expect("create tenant");
        assert!(status.is_success(), "create t{t}: {status}");
    }
    // Every key once, not timed.
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
    latencies.sort_unstable();
    Run {
        server,
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
        "{:<10} {:>5} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "server", "round", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    let servers = [
        ("MemcgAlloc", "memcg-service"),
        ("mimalloc", "memcg-service-mimalloc"),
    ];
    let mut runs: Vec<(usize, Run)> = Vec::new();
    for round in 0..load.rounds {
        let order: Vec<_> = if round % 2 == 0 {
            servers.to_vec()
        } else {
            servers.iter().rev().copied().collect()
        };
        for (name, binary) in order {
            let (mut child, addr) = match start(binary, load.workers) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("memcg-service-load: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let run = runtime.block_on(drive(name, addr, load));
            let _ = child.kill();
            let _ = child.wait();
            println!(
                "{:<10} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>7}",
                run.server,
                round + 1,
                run.rps(),
                ms(run.percentile(0.50)),
                ms(run.percentile(0.99)),
                ms(run.percentile(0.999)),
                run.errors
            );
            runs.push((round, run));
        }
    }
    let summary = |server: &str| {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|(_, r)| r.server == server)
            .map(|(_, r)| r)
            .collect();
        (
            median(mine.iter().map(|r| r.rps()).collect()),
            median(mine.iter().map(|r| ms(r.percentile(0.99))).collect()),
        )
    };
    let (memcg_rps, memcg_p99) = summary("MemcgAlloc");
    let (mi_rps, mi_p99) = summary("mimalloc");
    println!(
        "median of rounds: MemcgAlloc {memcg_rps:.0} req/s, p99 {memcg_p99:.3} ms; mimalloc {mi_rps:.0} req/s, p99 {mi_p99:.3} ms"
    );
    println!(
        "MemcgAlloc / mimalloc: throughput {:.3}x, p99 latency {:.3}x",
        memcg_rps / mi_rps,
        memcg_p99 / mi_p99
    );
    std::process::ExitCode::SUCCESS
}
