//! `cargo bench --bench rotation`: a rotation at scale, cold start and memory, measured the way
//! users feel them (PRODUCT.md §10; method and figures in BENCHMARKS.md).
//!
//! For each size, a sandbox with a bulk workload (`apps` apps, three targets each) and an
//! injected latency per request is started in this process, and the release binary runs
//! `apikey-rotator rotate --mapping FILE` against it as a child process, so its wall time and
//! peak memory are its own. Then the binary is started 20 times as the Functions host starts it
//! (`serve`) to time the first `200` on `GET /`, and once more to read its idle memory.
//!
//! Then the same rotation at 5,000 apps with the services' published limits on (issue 18): the
//! doubles throttle, every refill rate multiplied by one time factor, and the rotator is told
//! the same factor; its bound adds what the limits impose ([`limits_bound`]).
//!
//! Options (after `--`): `--apps 100,1000,5000`, `--latency-ms 25`, `--concurrency 32`,
//! `--limits-apps 5000` (0: no run with limits), `--limits-factor 2`, `--only limits` (only
//! the run with limits), `--check` (exit 1 when a timing or memory target of §10 or of the run
//! with limits is missed; a request count above the minimum always fails). Writes
//! `<target dir>/bench/rotation.json`.

use apikey_rotator::sandbox::workload::Workload;
use apikey_rotator::sandbox::{Sandbox, SandboxOptions, Throttling};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_apikey-rotator");
/// Spawns of `serve` whose median is the cold start.
const COLD_STARTS: usize = 20;
/// Requests of one app that must follow each other when its key is renewed: the Apigee token,
/// the app read, the key creation, its products, then the write of a target (a target's read
/// needs no key, so it runs beside the chain). Keys that `keys.create` makes start approved, and
/// the workload's products approve automatically, so no approval call is in the chain.
const CHAIN: usize = 5;
/// The run with limits may take this many times its bound at most (issue 18).
const LIMITS_RATIO: f64 = 1.15;
/// ... and meet a 429 in this share of its requests at most.
const LIMITS_THROTTLED_SHARE: f64 = 0.01;

struct Options {
    apps: Vec<usize>,
    latency_ms: u64,
    concurrency: usize,
    limits_apps: usize,
    limits_factor: f64,
    only_limits: bool,
    check: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        apps: vec![100, 1_000, 5_000],
        latency_ms: 25,
        concurrency: 32,
        limits_apps: 5_000,
        limits_factor: 2.0,
        only_limits: false,
        check: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--apps" => {
                o.apps = value("--apps")?
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|e| format!("--apps: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--latency-ms" => {
                o.latency_ms = value("--latency-ms")?
                    .parse()
                    .map_err(|e| format!("--latency-ms: {e}"))?
            }
            "--concurrency" => {
                o.concurrency = value("--concurrency")?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--limits-apps" => {
                o.limits_apps = value("--limits-apps")?
                    .parse()
                    .map_err(|e| format!("--limits-apps: {e}"))?
            }
            "--limits-factor" => {
                o.limits_factor = value("--limits-factor")?
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite() && *f > 0.0)
                    .ok_or("--limits-factor: a number above 0")?
            }
            "--only" => match value("--only")?.as_str() {
                "limits" => o.only_limits = true,
                other => {
                    return Err(format!(
                        "--only: \"limits\" is the one scenario, not {other}"
                    ))
                }
            },
            "--check" => o.check = true,
            // What cargo passes to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.apps.is_empty() || o.concurrency == 0 {
        return Err("--apps and --concurrency must not be empty or zero".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut runs = Vec::new();
    if !o.only_limits {
        for &apps in &o.apps {
            let run = runtime.block_on(rotation(apps, &o, None));
            eprintln!("{apps} apps: {} ms", run["wallMs"]);
            runs.push(run);
        }
    }
    let limits_run = (o.limits_apps > 0).then(|| {
        let run = runtime.block_on(rotation(o.limits_apps, &o, Some(o.limits_factor)));
        eprintln!("{} apps with limits: {} ms", o.limits_apps, run["wallMs"]);
        run
    });
    let (cold_start_ms, idle_rss_mb) = if o.only_limits {
        (f64::NAN, f64::NAN)
    } else {
        runtime.block_on(cold_start())
    };
    let result = json!({
        "runs": runs,
        "limitsRun": limits_run,
        "coldStartMs": if o.only_limits { Value::Null } else { json!(round(cold_start_ms)) },
        "idleRssMb": if o.only_limits { Value::Null } else { json!(round(idle_rss_mb)) },
    });
    let out = target_dir().join("bench").join("rotation.json");
    std::fs::create_dir_all(out.parent().unwrap()).expect("target/bench");
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap()).expect("write JSON");
    print_table(&result);
    println!("written to {}", out.display());
    let extra = extra_requests(&result);
    let mut missed = if o.only_limits {
        Vec::new()
    } else {
        missed_targets(&result)
    };
    missed.extend(missed_limits(&result));
    for m in extra.iter().chain(&missed) {
        println!("MISSED: {m}");
    }
    if extra.is_empty() && missed.is_empty() {
        println!("every target of PRODUCT.md §10 met");
    }
    // A request count is exact whatever the machine's load; timings are judged with --check.
    if !extra.is_empty() || (o.check && !missed.is_empty()) {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// One rotation over `apps` apps: wall time, requests, peak memory, and the lower bound; with
/// the services' limits on when `limits` is the time factor they are scaled by.
async fn rotation(apps: usize, o: &Options, limits: Option<f64>) -> Value {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sandbox = Sandbox::start(SandboxOptions {
        workload: Some(apps),
        latency: Duration::from_millis(o.latency_ms),
        throttling: Some(match limits {
            Some(time_factor) => Throttling::On { time_factor },
            None => Throttling::Off,
        }),
        ..SandboxOptions::new(dir.path().join("sandbox"))
    })
    .await
    .expect("the sandbox starts");
    let info = sandbox.info().clone();
    let workload: Workload = info.workload.clone().expect("a workload");
    let mut env = info.env.clone();
    let mapping = env.remove("APIKEYROTATIONAPPS").expect("a mapping");
    let mapping_file = dir.path().join("mapping.json");
    std::fs::write(&mapping_file, mapping).unwrap();
    env.insert("ROTATION_CONCURRENCY".into(), o.concurrency.to_string());
    // The bound below counts every request against one concurrency: no host gets less.
    env.insert(
        "ROTATION_CONCURRENCY_PER_HOST".into(),
        o.concurrency.to_string(),
    );
    // The rotator paces itself by the same scaled numbers (a setting for tests only); in a
    // world without limits it is told limits 10,000 times the published ones, so its own
    // pacing never binds either (at the published ones, 634 Resource Manager writes alone
    // would take 43 s).
    let factor = limits.unwrap_or(10_000.0);
    env.insert("ROTATION_RATE_LIMIT_TIME_FACTOR".into(), factor.to_string());
    let report_file = dir.path().join("report.json");
    let log_file = dir.path().join("rotate.log");

    let started = Instant::now();
    let child = Command::new(BIN)
        .args(["rotate", "--mapping"])
        .arg(&mapping_file)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&report_file).unwrap())
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    let (status, peak_kb) = tokio::task::spawn_blocking(move || wait_with_peak(pid))
        .await
        .unwrap();
    let wall = started.elapsed();
    std::mem::forget(child); // reaped by wait_with_peak
    let report: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap())
        .unwrap_or_else(|e| panic!("rotate (exit {status}) printed no report: {e}"));
    let summary = &report["summary"];
    assert_eq!(summary["failed"], 0, "{}", report["errors"]);
    assert_eq!(summary["renewed"], workload.renewals);
    assert_eq!(summary["updated"], workload.stale_targets);

    let client = reqwest::Client::new();
    let requests: Vec<Value> = client
        .get(format!("{}/requests", info.endpoints.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let buckets: Vec<Value> = client
        .get(format!("{}/limits", info.endpoints.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sandbox.shutdown().await;
    // Reads, writes, one token per audience, one Key Vault challenge per vault.
    let minimal = workload.requests();
    let latency_bound_ms =
        (CHAIN as f64).max(minimal as f64 / o.concurrency as f64) * o.latency_ms as f64;
    let wall_ms = wall.as_secs_f64() * 1000.0;
    if limits.is_some() {
        let (limits_ms, binding) = limits_bound(&buckets);
        let bound_ms = latency_bound_ms.max(limits_ms);
        let throttled = requests.iter().filter(|r| r["status"] == 429).count();
        return json!({
            "apps": apps,
            "targets": workload.targets,
            "latencyMs": o.latency_ms,
            "concurrency": o.concurrency,
            "timeFactor": o.limits_factor,
            "wallMs": round(wall_ms),
            "latencyBoundMs": round(latency_bound_ms),
            "limitsBoundMs": round(limits_ms),
            "bindingLimit": binding,
            "boundMs": round(bound_ms),
            "ratio": round(wall_ms / bound_ms),
            "requests": requests.len(),
            "minimalRequests": minimal,
            "throttled": throttled,
            "throttledShare": round(throttled as f64 / requests.len() as f64 * 100.0) / 100.0,
            "peakRssMb": round(peak_kb as f64 / 1024.0),
            "buckets": buckets,
        });
    }
    let lower_bound_ms = latency_bound_ms;
    json!({
        "apps": apps,
        "targets": workload.targets,
        "latencyMs": o.latency_ms,
        "concurrency": o.concurrency,
        "wallMs": round(wall_ms),
        "lowerBoundMs": round(lower_bound_ms),
        "ratio": round(wall_ms / lower_bound_ms),
        "requests": requests.len(),
        "minimalRequests": minimal,
        "requestsPerTarget": round(requests.len() as f64 / workload.targets as f64),
        "peakRssMb": round(peak_kb as f64 / 1024.0),
        "renewed": workload.renewals,
        "updated": workload.stale_targets,
    })
}

/// The least time the published limits allow for what the run sent: a bucket of `capacity`
/// refilled at `perSecond` (already scaled by the time factor) that admitted `n` requests
/// needs at least `(n - capacity) / perSecond` seconds, whatever the concurrency; the bound
/// is the largest over the buckets, with the bucket that sets it. (The buckets count what was
/// admitted: a minimal run's requests, each once.)
fn limits_bound(buckets: &[Value]) -> (f64, String) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    buckets
        .iter()
        .map(|b| {
            let ms =
                ((f(&b["admitted"]) - f(&b["capacity"])).max(0.0) / f(&b["perSecond"])) * 1000.0;
            let name = format!(
                "{} {} {}: {} requests, {} at once, {}/s",
                b["service"].as_str().unwrap_or_default(),
                b["scope"].as_str().unwrap_or_default(),
                b["class"].as_str().unwrap_or_default(),
                b["admitted"],
                b["capacity"],
                b["perSecond"]
            );
            (ms, name)
        })
        .fold((0.0, String::from("none")), |best, next| {
            if next.0 > best.0 {
                next
            } else {
                best
            }
        })
}

/// The targets of the run with limits this result misses: at most [`LIMITS_RATIO`] times its
/// bound, at most [`LIMITS_THROTTLED_SHARE`] of its requests answered 429.
fn missed_limits(result: &Value) -> Vec<String> {
    let run = &result["limitsRun"];
    if run.is_null() {
        return Vec::new();
    }
    let f = |v: &Value| v.as_f64().unwrap_or(f64::INFINITY);
    let mut missed = Vec::new();
    if f(&run["ratio"]) > LIMITS_RATIO {
        missed.push(format!(
            "with limits, {} apps took {} times the bound (at most {LIMITS_RATIO})",
            run["apps"], run["ratio"]
        ));
    }
    let share = f(&run["throttled"]) / f(&run["requests"]);
    if share > LIMITS_THROTTLED_SHARE {
        missed.push(format!(
            "with limits, {} of {} requests were answered 429 (at most {} %)",
            run["throttled"],
            run["requests"],
            LIMITS_THROTTLED_SHARE * 100.0
        ));
    }
    missed
}

/// Waits for child `pid` and returns its exit status and peak resident memory in KiB: the
/// last `VmHWM` (the kernel's high-water mark of the child's own address space) read while it
/// runs, every 2 ms, so at most its last 2 ms are unseen (the mark only rises).
///
/// Not `wait4`'s `ru_maxrss`: Linux carries the parent's high-water mark into a child across
/// `fork` and `exec` (the `vfork` of `posix_spawn` included), so a child of this benchmark,
/// whose process holds the sandbox and every workload it made, reported the benchmark's own
/// size (the limits run after three workloads: 120 MB, alone: 54 MB).
fn wait_with_peak(pid: u32) -> (i32, i64) {
    let mut peak = 0;
    loop {
        let mut status = 0;
        // SAFETY: `waitpid` writes only into `status`.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if r == pid as libc::pid_t {
            return (libc::WEXITSTATUS(status), peak);
        }
        assert_eq!(r, 0, "waitpid");
        peak = peak.max(status_kb(pid, "VmHWM:") as i64);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The median time from spawning `serve` to its first `200` on `GET /`, over
/// [`COLD_STARTS`] spawns, and the resident memory of one that has answered and sits idle.
async fn cold_start() -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(SandboxOptions::new(dir.path()))
        .await
        .expect("the sandbox starts");
    let env = sandbox.info().env.clone();
    let mut times = Vec::new();
    for _ in 0..COLD_STARTS {
        let (ms, mut child) = start_serve(&env).await;
        times.push(ms);
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort_by(f64::total_cmp);
    let median = (times[COLD_STARTS / 2 - 1] + times[COLD_STARTS / 2]) / 2.0;

    let (_, mut child) = start_serve(&env).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kb(child.id()) as f64 / 1024.0;
    let _ = child.kill();
    let _ = child.wait();
    sandbox.shutdown().await;
    (median, idle)
}

/// Spawns `serve` as the Functions host does and waits for `GET /` to answer 200.
async fn start_serve(env: &BTreeMap<String, String>) -> (f64, std::process::Child) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .envs(env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    while started.elapsed() < Duration::from_secs(10) {
        if get_root(port).await == Some(200) {
            return (started.elapsed().as_secs_f64() * 1000.0, child);
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve never answered GET / within 10 s");
}

/// The status of `GET /` on 127.0.0.1:`port`, over a fresh connection, or `None`.
async fn get_root(port: u16) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// The KiB of `field` (`VmRSS:`, `VmHWM:`) in process `pid`'s `/proc` status; 0 when it has
/// none (it has exited).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `target/` (or `CARGO_TARGET_DIR`): this binary lives in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the bench binary's path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn print_table(result: &Value) {
    println!(
        "{:>6} {:>7} {:>8} {:>9} {:>9} {:>6} {:>9} {:>8} {:>8}",
        "apps",
        "targets",
        "latency",
        "wall ms",
        "bound ms",
        "ratio",
        "requests",
        "req/tgt",
        "peak MB"
    );
    for r in result["runs"].as_array().unwrap() {
        let c = |name: &str| r[name].to_string();
        println!(
            "{:>6} {:>7} {:>6}ms {:>9} {:>9} {:>6} {:>9} {:>8} {:>8}",
            c("apps"),
            c("targets"),
            c("latencyMs"),
            c("wallMs"),
            c("lowerBoundMs"),
            c("ratio"),
            c("requests"),
            c("requestsPerTarget"),
            c("peakRssMb")
        );
    }
    println!(
        "cold start (median of {COLD_STARTS}): {} ms; idle memory: {} MB",
        result["coldStartMs"], result["idleRssMb"]
    );
    let r = &result["limitsRun"];
    if !r.is_null() {
        println!(
            "with limits (time factor {}): {} apps, {} ms, bound {} ms (latency {} ms, limits {} ms: {}), ratio {}, {} of {} requests answered 429, peak {} MB",
            r["timeFactor"],
            r["apps"],
            r["wallMs"],
            r["boundMs"],
            r["latencyBoundMs"],
            r["limitsBoundMs"],
            r["bindingLimit"].as_str().unwrap_or_default(),
            r["ratio"],
            r["throttled"],
            r["requests"],
            r["peakRssMb"]
        );
    }
}

/// Runs that sent more requests than the minimum.
fn extra_requests(result: &Value) -> Vec<String> {
    result["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["requests"] != r["minimalRequests"])
        .map(|r| {
            format!(
                "{} apps: {} requests, the minimum is {}",
                r["apps"], r["requests"], r["minimalRequests"]
            )
        })
        .collect()
}

/// The timing and memory targets of PRODUCT.md §10 this result misses (those its runs can
/// tell).
fn missed_targets(result: &Value) -> Vec<String> {
    let runs = result["runs"].as_array().unwrap();
    let run = |apps: u64| runs.iter().find(|r| r["apps"] == apps);
    let f = |v: &Value| v.as_f64().unwrap_or(f64::INFINITY);
    let mut missed = Vec::new();
    if let Some(r) = run(1_000) {
        if f(&r["ratio"]) > 1.25 {
            missed.push(format!(
                "ratio at 1,000 apps is {} (at most 1.25)",
                r["ratio"]
            ));
        }
    }
    if let (Some(small), Some(large)) = (run(1_000), run(5_000)) {
        let scale = f(&large["wallMs"]) / f(&small["wallMs"]);
        if scale > 5.5 {
            missed.push(format!(
                "5,000 apps took {scale:.2} times 1,000 apps (at most 5.5)"
            ));
        }
        if f(&large["peakRssMb"]) > 100.0 {
            missed.push(format!(
                "peak memory at 5,000 apps is {} MB (at most 100)",
                large["peakRssMb"]
            ));
        }
    }
    if f(&result["coldStartMs"]) > 20.0 {
        missed.push(format!(
            "cold start is {} ms (at most 20)",
            result["coldStartMs"]
        ));
    }
    if f(&result["idleRssMb"]) > 20.0 {
        missed.push(format!(
            "idle memory is {} MB (at most 20)",
            result["idleRssMb"]
        ));
    }
    missed
}
