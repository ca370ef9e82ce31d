//! Helpers for the binary's end-to-end tests: loopback HTTP targets, child
//! processes stopped by PID on drop, bounded polling.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port that was free a moment ago, for a child process to listen on.
///
/// Taken from 21000–32767, below the kernel's ephemeral range (32768+ by
/// default) and above the bench's ports: a port the kernel hands out for
/// `:0` is also where outgoing connections take their local ports, so
/// between this function releasing it and the child binding it, another
/// process's `connect()` could take it ("Address already in use", seen
/// when tests ran beside a load test). Starting points are spread by
/// process id and a counter, so parallel tests do not try the same ports.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const LOW: u64 = 21_000;
    const SPAN: u64 = 32_768 - LOW;
    let seed = u64::from(std::process::id()).wrapping_mul(7_919);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(n.wrapping_mul(104_729)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 GET returning (status, body); bounded by `timeout`.
pub fn http_get(url: &str, timeout: Duration) -> Option<(u16, String)> {
    http_request("GET", url, timeout)
}

/// Like [`http_get`] with another method and an empty body.
pub fn http_request(method: &str, url: &str, timeout: Duration) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `f` every 200 ms until it returns `Some`, at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// A scrape target on 127.0.0.1 serving whatever `body` returns, counting scrapes.
pub struct TestTarget {
    pub addr: String,
    pub scrapes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TestTarget {
    pub fn start(
        content_type: &'static str,
        body: impl Fn(u64) -> String + Send + 'static,
    ) -> TestTarget {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let scrapes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sc, st) = (scrapes.clone(), stop.clone());
        let body = Arc::new(Mutex::new(body));
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut req = [0u8; 4096];
                        let _ = conn.read(&mut req);
                        let n = sc.fetch_add(1, Ordering::SeqCst) + 1;
                        let text = (body.lock().unwrap())(n);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                            text.len()
                        );
                        let _ = conn.write_all(resp.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TestTarget {
            addr,
            scrapes,
            stop,
        }
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A child process killed (by its PID, via `Child::kill`) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child,
            name,
            log: log.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (bounded); SIGKILL if it does not exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn tributary_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tributary")
}

/// The Prometheus binary from the Debian package (installed by .ci/run).
pub fn prometheus_bin() -> String {
    for p in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("the prometheus binary is required for this test (apt-get install prometheus; .ci/run does it)");
}

/// Starts Prometheus as a remote-write receiver on `port`.
pub fn start_prometheus(dir: &Path, port: u16) -> Proc {
    let cfg = dir.join("prom.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
    let data = dir.join("prom-data");
    let mut cmd = Command::new(prometheus_bin());
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--storage.tsdb.retention.time=1d");
    let p = Proc::spawn(
        "prometheus",
        &mut cmd,
        &dir.join(format!("prometheus-{port}.log")),
    );
    wait_ready(p, &format!("http://127.0.0.1:{port}/-/ready"))
}

/// The VictoriaMetrics binary from the Debian package (installed by .ci/run).
pub fn victoria_metrics_bin() -> String {
    for p in [
        "/usr/bin/victoria-metrics",
        "/usr/local/bin/victoria-metrics",
    ] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("the victoria-metrics binary is required for this test (apt-get install victoria-metrics; .ci/run does it)");
}

/// Starts VictoriaMetrics (a remote-write receiver at `/api/v1/write`) on
/// `port`.
pub fn start_victoria_metrics(dir: &Path, port: u16) -> Proc {
    let mut cmd = Command::new(victoria_metrics_bin());
    cmd.arg(format!(
        "-storageDataPath={}",
        dir.join("vm-data").display()
    ))
    .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
    .arg("-retentionPeriod=1d");
    let p = Proc::spawn("victoria-metrics", &mut cmd, &dir.join("vm.log"));
    wait_ready(p, &format!("http://127.0.0.1:{port}/health"))
}

/// `p` once `url` answers 200 (within 30 s; panics with its log if not).
/// Waits (bounded) until `url` answers 200, failing the test with the
/// process's log if it never does.
pub fn wait_ready(p: Proc, url: &str) -> Proc {
    let ready = wait_for(Duration::from_secs(30), || {
        http_get(url, Duration::from_secs(2)).filter(|(s, _)| *s == 200)
    });
    assert!(
        ready.is_some(),
        "{} did not become ready: {}",
        p.name,
        p.log_text()
    );
    p
}

/// `text` as a URL query value: every byte but letters and digits
/// percent-encoded.
pub fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs an instant query against Prometheus and returns the `result` array.
pub fn prom_query(port: u16, query: &str) -> Option<serde_json::Value> {
    let q = query_escape(query);
    let (status, body) = http_get(
        &format!("http://127.0.0.1:{port}/api/v1/query?query={q}"),
        Duration::from_secs(5),
    )?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(v["data"]["result"].clone())
}

pub fn start_tributary(dir: &Path, config: &str, listen_port: u16, extra: &[&str]) -> Proc {
    start_tributary_env(dir, config, listen_port, extra, &[])
}

// --- a remote-write sink: `tributary receive`, its output parsed ---

/// Synthetic series whose values depend on timing, not on semantics.
pub const VOLATILE: &[&str] = &["scrape_duration_seconds", "scrape_series_added"];

#[derive(Default)]
pub struct Seen {
    /// Every series key that received a sample.
    pub series: BTreeSet<String>,
    /// `key value` pairs (volatile synthetic series left out).
    pub values: BTreeSet<String>,
    /// Series that received a staleness marker.
    pub stale: BTreeSet<String>,
}

/// Starts `tributary receive` on a free port and calls `on_sample(key,
/// value, timestamp)` for every sample line it prints (`name{labels} value
/// ts`), from a reader thread.
pub fn start_receiver(
    dir: &std::path::Path,
    name: &str,
    mut on_sample: impl FnMut(&str, &str, i64) + Send + 'static,
) -> (Proc, u16) {
    let port = free_port();
    let mut child = Command::new(tributary_bin())
        .args(["receive", &format!("--web.listen-address=127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut parts = line.rsplitn(3, ' ');
            let (Some(ts), Some(value), Some(key)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if let Ok(ts) = ts.parse() {
                on_sample(key, value, ts);
            }
        }
    });
    let log = dir.join(format!("{name}-sink.log"));
    std::fs::write(&log, "").unwrap();
    (
        Proc {
            child,
            name: "sink",
            log,
        },
        port,
    )
}

/// A sink that collects series, values and staleness markers.
pub fn start_sink(dir: &std::path::Path, name: String) -> (Proc, u16, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let (proc, port) = start_receiver(dir, &name, move |key, value, _ts| {
        let mut s = s.lock().unwrap();
        s.series.insert(key.to_string());
        if value == "StaleNaN" {
            s.stale.insert(key.to_string());
        } else if !VOLATILE.iter().any(|v| key.starts_with(&format!("{v}{{"))) {
            s.values.insert(format!("{key} {value}"));
        }
    });
    (proc, port, seen)
}

pub fn snapshot(s: &Arc<Mutex<Seen>>) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let s = s.lock().unwrap();
    (s.series.clone(), s.values.clone(), s.stale.clone())
}

// --- helpers for the SD follow tests (discovery_providers.rs) ---

/// Like [`start_tributary`], with extra environment variables for the agent.
pub fn start_tributary_env(
    dir: &Path,
    config: &str,
    listen_port: u16,
    extra: &[&str],
    env: &[(&str, String)],
) -> Proc {
    let cfg = dir.join("tributary.yml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = Command::new(tributary_bin());
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.agent.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{listen_port}"))
        .args(extra)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let p = Proc::spawn(
        "tributary",
        &mut cmd,
        &dir.join(format!(
            "tributary-{listen_port}-{}.log",
            std::process::id()
        )),
    );
    wait_ready(p, &format!("http://127.0.0.1:{listen_port}/-/ready"))
}

/// A sink key as `tributary receive` prints it: `name{a="1",b="2"}` with
/// the labels sorted by name.
pub fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut sorted = labels.to_vec();
    sorted.sort();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}
