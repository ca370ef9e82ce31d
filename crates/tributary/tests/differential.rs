//! Prometheus is the oracle: the real Prometheus agent (Debian package,
//! 2.42) and Tributary scrape the same targets with the same relabeling
//! config, each writing to its own `tributary receive` sink; the sets of
//! series that arrive must be identical.
//!
//! 2.x/3.x difference normalised here: 3.x normalises `le`/`quantile`
//! values on ingest (`1` → `1.0`); 2.42 sends them as exposed, so the test
//! target exposes them already normalised.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const CONFIG: &str = r#"
global:
  scrape_interval: 1s
  scrape_timeout: 800ms
  external_labels:
    region: eu
scrape_configs:
  - job_name: diff
    honor_labels: false
    params:
      module: [m1]
    static_configs:
      - targets: ["{T0}", "{T1}"]
        labels:
          env: prod
          __meta_ignored: x
    relabel_configs:
      - source_labels: [__address__]
        regex: "127\\.0\\.0\\.1:(\\d+)"
        target_label: port
        replacement: "p$1"
      - source_labels: [env]
        target_label: tier
        replacement: "${1}-tier"
      - action: labelmap
        regex: "__param_(.+)"
        replacement: "param_$1"
      - source_labels: [__address__]
        modulus: 4
        target_label: shard
        action: hashmod
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: "diff_drop_.*"
        action: drop
      - source_labels: [code]
        regex: "5.."
        target_label: class
        replacement: server_error
      - action: labeldrop
        regex: "noise"
      - source_labels: [__name__, kind]
        separator: "/"
        regex: "diff_requests_total/(.*)"
        target_label: kind_upper
        action: uppercase
remote_write:
  - url: http://127.0.0.1:{RW}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
    write_relabel_configs:
      - source_labels: [__name__]
        regex: "scrape_series_added"
        action: drop
"#;

fn exposition(n: u64) -> String {
    format!(
        "# TYPE diff_requests_total counter\n\
         diff_requests_total{{code=\"200\",kind=\"get\",noise=\"x\"}} {n}\n\
         diff_requests_total{{code=\"503\",kind=\"post\"}} 2\n\
         diff_requests_total{{code=\"200\",kind=\"put\",job=\"exposed\",instance=\"exp\"}} 3\n\
         # TYPE diff_latency histogram\n\
         diff_latency_bucket{{le=\"0.5\"}} 1\n\
         diff_latency_bucket{{le=\"1.0\"}} 2\n\
         diff_latency_bucket{{le=\"+Inf\"}} 3\n\
         diff_latency_sum 1.5\n\
         diff_latency_count 3\n\
         diff_drop_me 1\n\
         diff_gauge{{path=\"/var/lib\",exported_job=\"pre\"}} -1.5e3\n"
    )
}

/// Starts `tributary receive` on a free port; collects the series keys.
fn start_sink(dir: &std::path::Path, name: &'static str) -> (Proc, u16, Arc<Mutex<BTreeSet<String>>>) {
    let port = free_port();
    let mut child = Command::new(tributary_bin())
        .args(["receive", &format!("--web.listen-address=127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // `name{labels} value ts`: the key is everything before the value.
            let mut parts = line.rsplitn(3, ' ');
            let (_, _, key) = (parts.next(), parts.next(), parts.next());
            if let Some(k) = key {
                s.lock().unwrap().insert(k.to_string());
            }
        }
    });
    let log = dir.join(format!("{name}-sink.log"));
    std::fs::write(&log, "").unwrap();
    (Proc { child, name, log }, port, seen)
}

#[test]
fn same_series_as_the_prometheus_agent() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = TestTarget::start("text/plain; version=0.0.4", exposition);
    let t1 = TestTarget::start("text/plain; version=0.0.4", exposition);
    let (_sink_p, port_p, seen_p) = start_sink(dir.path(), "prom");
    let (_sink_t, port_t, seen_t) = start_sink(dir.path(), "trib");
    let cfg = |rw: u16| CONFIG.replace("{T0}", &t0.addr).replace("{T1}", &t1.addr).replace("{RW}", &rw.to_string());

    let prom_cfg = dir.path().join("prom-agent.yml");
    std::fs::write(&prom_cfg, cfg(port_p)).unwrap();
    let prom_port = free_port();
    let mut prom_cmd = Command::new(prometheus_bin());
    prom_cmd
        .arg("--enable-feature=agent")
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!("--storage.agent.path={}", dir.path().join("prom-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let _prom = Proc::spawn("prometheus-agent", &mut prom_cmd, &dir.path().join("prom-agent.log"));
    let _trib = start_tributary(dir.path(), &cfg(port_t), free_port(), &[]);

    // Both settle: every series seen in two consecutive looks, bounded.
    let settled = wait_for(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_secs(3));
        let (p, t) = (seen_p.lock().unwrap().clone(), seen_t.lock().unwrap().clone());
        (p.len() >= 20 && p == t).then_some(p)
    });
    let (p, t) = (seen_p.lock().unwrap().clone(), seen_t.lock().unwrap().clone());
    let only_p: Vec<_> = p.difference(&t).collect();
    let only_t: Vec<_> = t.difference(&p).collect();
    assert!(
        settled.is_some(),
        "series differ:\nonly Prometheus ({}): {only_p:#?}\nonly Tributary ({}): {only_t:#?}",
        only_p.len(),
        only_t.len()
    );
    // Spot checks that the comparison covered what it should.
    let all = settled.unwrap();
    assert!(all.iter().any(|k| k.contains("class=\"server_error\"")));
    assert!(all.iter().any(|k| k.starts_with("up{")));
    assert!(!all.iter().any(|k| k.starts_with("scrape_series_added")));
    assert!(!all.iter().any(|k| k.starts_with("diff_drop_me")));
}
