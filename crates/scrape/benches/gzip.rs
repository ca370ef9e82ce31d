//! Inflating a gzip'd scrape body: the streaming flate2 (zlib-rs) decoder
//! the scrape loop used to feed chunk by chunk, against the one-shot
//! libdeflate path that `fetch` now takes.
//!
//! The page is generated: ~2,000 series in the shape of a Kubernetes
//! node's exposition (node_exporter, cAdvisor containers with long unique
//! ids, histograms), varying numbers, ~250 KiB, gzip'd by flate2 at the
//! default level to ~4:1 — close to what real targets send.
//! Throughput is reported in *inflated* bytes, so MB/s is output speed.
//!
//! Run: `cargo bench -p tributary-scrape --bench gzip`.
//!
//! With `TRIBUTARY_BENCH_GZ=<file.gz>` set, that gzip file is measured as
//! well (e.g. a body saved from a real target); with
//! `TRIBUTARY_BENCH_DUMP=<dir>`, the generated page is written to
//! `<dir>/page.prom`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tributary_scrape::fetch::{inflate_gzip, inflate_gzip_streaming, DEFAULT_BODY_CAP};
use tributary_scrape::BodyBuf;

/// A small deterministic generator (xorshift64*): varying but repeatable
/// numbers, so the page compresses like a real one and not like a loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(len);
        s
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn node_exporter(out: &mut String, rng: &mut Rng) {
    family(
        out,
        "node_cpu_seconds_total",
        "counter",
        "Seconds the CPUs spent in each mode.",
    );
    for cpu in 0..42 {
        for mode in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ] {
            let (s, ms) = (rng.below(2_000_000), rng.below(1000));
            let _ = writeln!(
                out,
                "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {s}.{ms:03}"
            );
        }
    }
    family(out, "node_systemd_unit_state", "gauge", "Systemd unit");
    for unit in 0..41 {
        for state in [
            "activating",
            "active",
            "deactivating",
            "failed",
            "inactive",
            "reloading",
        ] {
            let _ = writeln!(
                out,
                "node_systemd_unit_state{{name=\"unit-{unit}.service\",state=\"{state}\",type=\"simple\"}} {}",
                u64::from(state == "active")
            );
        }
    }
    for (metric, devices) in [
        ("node_network_receive_bytes_total", 83),
        ("node_network_transmit_bytes_total", 82),
        ("node_network_receive_drop_total", 41),
        ("node_disk_read_bytes_total", 41),
        ("node_disk_written_bytes_total", 41),
    ] {
        family(out, metric, "counter", "Device statistic.");
        for dev in 0..devices {
            let _ = writeln!(
                out,
                "{metric}{{device=\"ens{dev}\"}} {}",
                rng.below(1 << 40)
            );
        }
    }
    family(
        out,
        "node_interrupts_total",
        "counter",
        "Interrupt details.",
    );
    for irq in 0..82 {
        let _ = writeln!(
            out,
            "node_interrupts_total{{cpu=\"{}\",devices=\"nvme0q{}\",info=\"PCI-MSI-edge\",type=\"{}\"}} {}",
            irq % 42,
            irq % 8,
            40 + irq,
            rng.below(1 << 30)
        );
    }
    // Kubelet volume mounts: a pod id and a token suffix in every path.
    for (metric, mounts) in [
        ("node_filesystem_avail_bytes", 123),
        ("node_filesystem_size_bytes", 82),
    ] {
        family(out, metric, "gauge", "Filesystem statistic in bytes.");
        for fs in 0..mounts {
            let _ = writeln!(
                out,
                "{metric}{{device=\"{}\",fstype=\"{}\",mountpoint=\"/var/lib/kubelet/pods/{}/volumes/kubernetes.io~projected/kube-api-access-{}\"}} {}",
                ["tmpfs", "overlay"][fs % 2],
                ["ext4", "xfs", "tmpfs"][fs % 3],
                rng.hex(32),
                rng.hex(7),
                rng.below(1 << 40)
            );
        }
    }
    family(
        out,
        "node_hwmon_temp_celsius",
        "gauge",
        "Hardware monitor for temperature (input)",
    );
    for sensor in 0..82 {
        let _ = writeln!(
            out,
            "node_hwmon_temp_celsius{{chip=\"platform_coretemp_{}\",sensor=\"temp{sensor}\"}} {}.{}",
            sensor % 4,
            30 + rng.below(40),
            rng.below(10_000)
        );
    }
}

/// cAdvisor: long labels, with container and pod ids unique to each line.
fn cadvisor(out: &mut String, rng: &mut Rng) {
    const APPS: [(&str, &str); 5] = [
        ("fluent-bit", "logging"),
        ("cert-manager", "cert-manager"),
        ("api-gateway", "monitoring"),
        ("ingress-nginx-controller", "kube-system"),
        ("redis", "cache"),
    ];
    for (metric, lines) in [
        ("container_memory_working_set_bytes", 123),
        ("container_cpu_usage_seconds_total", 82),
    ] {
        family(
            out,
            metric,
            "gauge",
            "Container metric reported by cAdvisor.",
        );
        for i in 0..lines {
            let (app, ns) = APPS[i % APPS.len()];
            let pod = format!("{app}-{}-{}", rng.hex(10), rng.hex(5));
            let _ = writeln!(
                out,
                "{metric}{{container=\"{app}\",id=\"/kubepods/burstable/pod{}/{}\",image=\"registry.example.internal/{ns}/{app}:v1.{}.{}\",name=\"k8s_{app}_{pod}_{ns}_{}_0\",namespace=\"{ns}\",pod=\"{pod}\"}} {}",
                rng.hex(32),
                rng.hex(64),
                rng.below(20),
                rng.below(10),
                rng.hex(32),
                rng.below(1 << 33)
            );
        }
    }
}

fn histograms(out: &mut String, rng: &mut Rng) {
    const LE: [&str; 12] = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    for (name, labels) in [
        (
            "grpc_server_handling_seconds",
            "grpc_service=\"payments.v2.PaymentGateway\",grpc_type=\"unary\",grpc_method",
        ),
        ("http_request_duration_seconds", "handler"),
    ] {
        family(
            out,
            name,
            "histogram",
            "Histogram of response latency (seconds).",
        );
        for m in 0..10 {
            let labels = format!("{labels}=\"/api/v1/method{m}\"");
            let mut count = rng.below(1000);
            for le in LE {
                count += rng.below(100_000);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {count}");
            }
            let _ = writeln!(
                out,
                "{name}_sum{{{labels}}} {}.{}",
                rng.below(1 << 20),
                rng.below(1000)
            );
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
    family(
        out,
        "rpc_durations_seconds",
        "summary",
        "RPC latency distributions.",
    );
    for service in 0..20 {
        for q in ["0.5", "0.9", "0.99"] {
            let _ = writeln!(
                out,
                "rpc_durations_seconds{{service=\"exponential{service}\",quantile=\"{q}\"}} 0.{}",
                rng.below(1_000_000)
            );
        }
        let _ = writeln!(
            out,
            "rpc_durations_seconds_sum{{service=\"exponential{service}\"}} {}.{}",
            rng.below(1 << 20),
            rng.below(1000)
        );
        let _ = writeln!(
            out,
            "rpc_durations_seconds_count{{service=\"exponential{service}\"}} {}",
            rng.below(1 << 24)
        );
    }
    family(
        out,
        "http_requests_total",
        "counter",
        "Requests by code, handler and method.",
    );
    for i in 0..164 {
        let _ = writeln!(
            out,
            "http_requests_total{{code=\"{}\",handler=\"/api/v1/h{}\",method=\"{}\"}} {}",
            [200, 201, 204, 400, 500][i % 5],
            i / 4,
            ["GET", "POST", "PUT", "DELETE"][i % 4],
            rng.below(10_000)
        );
    }
}

/// ~250 KiB, ~2,000 series, ~4:1 with gzip.
fn realistic_page() -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    family(
        &mut out,
        "go_goroutines",
        "gauge",
        "Number of goroutines that currently exist.",
    );
    let _ = writeln!(out, "go_goroutines {}", rng.below(500));
    node_exporter(&mut out, &mut rng);
    cadvisor(&mut out, &mut rng);
    histograms(&mut out, &mut rng);
    out.into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

fn bench_body(c: &mut Criterion, name: &str, gz: &[u8]) {
    let mut out = BodyBuf::default();
    if let Err(e) = inflate_gzip(gz, &mut out, DEFAULT_BODY_CAP) {
        eprintln!("{name}: cannot inflate: {e}");
        return;
    }
    eprintln!("{name}: {} bytes gzip'd -> {} bytes", gz.len(), out.len());
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(out.len() as u64));
    // Both reuse `out` as the scrape loop reuses its pooled body buffer.
    group.bench_function("streaming_flate2", |b| {
        b.iter(|| inflate_gzip_streaming(black_box(gz), &mut out, DEFAULT_BODY_CAP))
    });
    group.bench_function("one_shot_libdeflate", |b| {
        b.iter(|| inflate_gzip(black_box(gz), &mut out, DEFAULT_BODY_CAP))
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let page = realistic_page();
    if let Some(dir) = std::env::var_os("TRIBUTARY_BENCH_DUMP") {
        let path = std::path::Path::new(&dir).join("page.prom");
        match std::fs::write(&path, &page) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
    bench_body(c, "inflate_page", &gzip(&page));
    if let Some(path) = std::env::var_os("TRIBUTARY_BENCH_GZ") {
        match std::fs::read(&path) {
            Ok(gz) => bench_body(c, "inflate_file", &gz),
            Err(e) => eprintln!("cannot read {}: {e}", path.to_string_lossy()),
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
