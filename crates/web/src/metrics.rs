//! `/metrics`: the registry in the Prometheus text format, plus the
//! `process_*` metrics read from /proc at request time.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::server::WebState;

pub(crate) async fn metrics(State(s): State<Arc<WebState>>) -> Response {
    let mut out = String::with_capacity(64 << 10);
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &s.registry).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed").into_response();
    }
    process_metrics(&mut out, &s);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn process_metrics(out: &mut String, s: &WebState) {
    let start = s
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut gauge = |name: &str, help: &str, kind: &str, v: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        "gauge",
        start,
    );
    if let Some(p) = read_proc_stat() {
        gauge(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            p.cpu_seconds,
        );
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            p.rss_bytes,
        );
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            p.vsize_bytes,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            fds.count() as f64,
        );
    }
    // The allocator's two ranges, each once it exists: bytes in live
    // blocks and bytes committed.
    #[cfg(target_os = "linux")]
    for (name, help, occupancy) in [
        (
            "tributary_allocator_region_bytes",
            "The huge-page region of the allocator (blocks of 16 KiB and more): bytes in live blocks, and bytes committed (of which whole free huge pages are given back).",
            tributary_alloc::region_stats(),
        ),
        (
            "tributary_allocator_small_bytes",
            "The allocator's small blocks (under 16 KiB, in size classes): bytes in live blocks, and bytes committed (kept at their peak).",
            tributary_alloc::small_stats(),
        ),
    ] {
        if let Some(o) = occupancy {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{state=\"used\"}} {}\n{name}{{state=\"committed\"}} {}",
                o.used, o.committed
            );
        }
    }
}

struct ProcStat {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
}

fn read_proc_stat() -> Option<ProcStat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // rest[0] is field 3 (state): utime=14, stime=15, vsize=23, rss=24.
    let ticks = 100.0;
    Some(ProcStat {
        cpu_seconds: (num(11)? + num(12)?) / ticks,
        vsize_bytes: num(20)?,
        rss_bytes: num(21)? * 4096.0,
    })
}
