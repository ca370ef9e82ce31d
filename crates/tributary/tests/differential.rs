//! Prometheus is the oracle. For each case below the real Prometheus agent
//! (Debian package, 2.42) and Tributary scrape the same loopback targets with
//! the same `prometheus.yml`, each writing to its own `tributary receive`
//! sink, and what arrives must be identical: the set of series, the set of
//! (series, value) pairs (all values here are constant except the volatile
//! synthetic ones), and which series got staleness markers.
//!
//! 2.x/3.x difference normalised here: 3.x normalises `le`/`quantile` label
//! values on ingest (`1` → `1.0`); 2.42 sends them as exposed, so the
//! targets expose them already normalised.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

struct Case {
    name: &'static str,
    /// The job block(s) after `scrape_configs:`; `{T0}`.. are target addresses.
    jobs: &'static str,
    /// `write_relabel_configs` entries (YAML list items), may be empty.
    write_relabel: &'static str,
    /// Expositions served by the targets (one per target).
    bodies: &'static [&'static str],
    /// Served instead of `bodies[0]` once the case has settled (staleness).
    switch_to: Option<&'static str>,
}

const BASIC: &str = "# TYPE d_requests_total counter\nd_requests_total{code=\"200\",kind=\"get\"} 10\nd_requests_total{code=\"503\",kind=\"Post\"} 2\n# TYPE d_latency histogram\nd_latency_bucket{le=\"0.5\"} 1\nd_latency_bucket{le=\"1.0\"} 2\nd_latency_bucket{le=\"+Inf\"} 3\nd_latency_sum 1.5\nd_latency_count 3\n# TYPE d_temp gauge\nd_temp{path=\"/var/lib\"} -1.5e3\nd_drop_me 1\n";
const CLASHING: &str = "d_clash{job=\"exposed\",instance=\"exp\",exported_job=\"pre\"} 5\nd_plain{team=\"exposed-team\"} 1\n";
/// `{TS}` becomes a timestamp one minute ahead, fixed for the whole case.
/// (An exposed timestamp older than the agent's start would differ on
/// purpose: Prometheus's WAL watcher never forwards samples older than its
/// own start, Tributary delivers everything it stored — see ARCHITECTURE.md.)
const TIMESTAMPED: &str = "d_ts{a=\"1\"} 3 {TS}\nd_nots 4\n";
const MANY_LABELS: &str = "d_ok{a=\"1\"} 1\nd_wide{a=\"1\",b=\"2\",c=\"3\",d=\"4\",e=\"5\"} 1\n";

const CASES: &[Case] = &[
    Case {
        name: "replace-and-hashmod",
        jobs: "  - job_name: c1\n    params:\n      module: [m1]\n    static_configs:\n      - targets: [\"{T0}\"]\n        labels: {env: prod, __meta_x: y}\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: \"127\\\\.0\\\\.0\\\\.1:(?P<port>\\\\d+)\"\n        target_label: port\n        replacement: \"p${port}\"\n      - source_labels: [env, job]\n        separator: \"-\"\n        target_label: combo\n      - source_labels: [__address__]\n        modulus: 8\n        target_label: shard\n        action: hashmod\n      - source_labels: [env]\n        regex: \"(.*)\"\n        target_label: \"${1}_flag\"\n        replacement: \"yes\"\n",
        write_relabel: "",
        bodies: &[BASIC],
        switch_to: None,
    },
    Case {
        name: "keep-drop-targets",
        jobs: "  - job_name: c2\n    static_configs:\n      - targets: [\"{T0}\", \"{T1}\"]\n        labels: {role: a}\n      - targets: [\"{T2}\"]\n        labels: {role: b}\n    relabel_configs:\n      - source_labels: [role]\n        regex: a\n        action: keep\n      - source_labels: [__address__]\n        regex: \"{T1}\"\n        action: drop\n",
        write_relabel: "",
        bodies: &[BASIC, BASIC, BASIC],
        switch_to: None,
    },
    Case {
        name: "keepequal-dropequal",
        jobs: "  - job_name: c3\n    static_configs:\n      - targets: [\"{T0}\"]\n        labels: {a: same, b: same, c: other}\n    relabel_configs:\n      - source_labels: [a]\n        target_label: b\n        action: keepequal\n    metric_relabel_configs:\n      - source_labels: [code]\n        target_label: kind\n        action: dropequal\n      - source_labels: [a]\n        target_label: c\n        action: dropequal\n",
        write_relabel: "",
        bodies: &[BASIC],
        switch_to: None,
    },
    Case {
        name: "labelmap-labeldrop-labelkeep",
        jobs: "  - job_name: c4\n    static_configs:\n      - targets: [\"{T0}\"]\n        labels: {__meta_az: eu-1, __meta_rack: r7, keepme: k}\n    relabel_configs:\n      - action: labelmap\n        regex: \"__meta_(.+)\"\n        replacement: \"m_$1\"\n      - action: labeldrop\n        regex: \"m_rack\"\n    metric_relabel_configs:\n      - action: labelkeep\n        regex: \"__name__|job|instance|code|m_az|le|keepme\"\n",
        write_relabel: "",
        bodies: &[BASIC],
        switch_to: None,
    },
    Case {
        name: "lowercase-uppercase",
        jobs: "  - job_name: c5\n    static_configs:\n      - targets: [\"{T0}\"]\n        labels: {Team: MixedCase}\n    relabel_configs:\n      - source_labels: [Team]\n        target_label: team_lower\n        action: lowercase\n    metric_relabel_configs:\n      - source_labels: [kind]\n        target_label: kind_upper\n        action: uppercase\n      - source_labels: [__name__, kind]\n        separator: \"/\"\n        regex: \"d_requests_total/(.*)\"\n        target_label: k2\n        action: lowercase\n",
        write_relabel: "",
        bodies: &[BASIC],
        switch_to: None,
    },
    Case {
        name: "honor-labels-true",
        jobs: "  - job_name: c6\n    honor_labels: true\n    static_configs:\n      - targets: [\"{T0}\"]\n        labels: {team: target-team}\n",
        write_relabel: "",
        bodies: &[CLASHING],
        switch_to: None,
    },
    Case {
        name: "honor-labels-false-exported",
        jobs: "  - job_name: c7\n    static_configs:\n      - targets: [\"{T0}\"]\n        labels: {team: target-team}\n",
        write_relabel: "",
        bodies: &[CLASHING],
        switch_to: None,
    },
    Case {
        name: "sample-limit",
        jobs: "  - job_name: c8\n    sample_limit: 3\n    static_configs:\n      - targets: [\"{T0}\"]\n",
        write_relabel: "",
        bodies: &[BASIC],
        switch_to: None,
    },
    Case {
        name: "label-limits",
        jobs: "  - job_name: c9\n    label_limit: 5\n    static_configs:\n      - targets: [\"{T0}\"]\n  - job_name: c9b\n    label_value_length_limit: 3\n    static_configs:\n      - targets: [\"{T1}\"]\n",
        write_relabel: "",
        bodies: &[MANY_LABELS, BASIC],
        switch_to: None,
    },
    Case {
        name: "metric-relabel-drop-and-delete",
        jobs: "  - job_name: c10\n    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: \"d_drop_.*\"\n        action: drop\n      - source_labels: [code]\n        regex: \"5..\"\n        target_label: class\n        replacement: server_error\n      - target_label: path\n        replacement: \"\"\n    static_configs:\n      - targets: [\"{T0}\"]\n",
        write_relabel: "",
        bodies: &[BASIC],
        switch_to: None,
    },
    Case {
        name: "write-relabel-and-external-labels",
        jobs: "  - job_name: c11\n    static_configs:\n      - targets: [\"{T0}\"]\n",
        write_relabel: "      - source_labels: [__name__]\n        regex: \"scrape_.*\"\n        action: drop\n      - source_labels: [region, code]\n        separator: \":\"\n        target_label: rc\n",
        bodies: &[BASIC],
        switch_to: None,
    },
    Case {
        name: "timestamps",
        jobs: "  - job_name: c12\n    static_configs:\n      - targets: [\"{T0}\"]\n  - job_name: c12b\n    honor_timestamps: false\n    static_configs:\n      - targets: [\"{T0}\"]\n",
        write_relabel: "",
        bodies: &[TIMESTAMPED],
        switch_to: None,
    },
    Case {
        name: "staleness",
        jobs: "  - job_name: c13\n    static_configs:\n      - targets: [\"{T0}\"]\n",
        write_relabel: "",
        bodies: &[BASIC],
        switch_to: Some("# TYPE d_temp gauge\nd_temp{path=\"/var/lib\"} -1.5e3\n"),
    },
];

fn diff(what: &str, p: &BTreeSet<String>, t: &BTreeSet<String>) -> String {
    let only_p: Vec<_> = p.difference(t).collect();
    let only_t: Vec<_> = t.difference(p).collect();
    format!("{what}: only Prometheus {only_p:#?}\n  only Tributary {only_t:#?}\n")
}

fn run_case(case: &Case) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let switched = Arc::new(AtomicBool::new(false));
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    let targets: Vec<TestTarget> = case
        .bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let (body, switch_to, sw) = (*body, case.switch_to, switched.clone());
            TestTarget::start("text/plain; version=0.0.4", move |_| match (i, switch_to) {
                (0, Some(alt)) if sw.load(Ordering::SeqCst) => alt.to_string(),
                _ => body.replace("{TS}", &ts.to_string()),
            })
        })
        .collect();
    let (_sp, port_p, seen_p) = start_sink(dir.path(), format!("{}-prom", case.name));
    let (_st, port_t, seen_t) = start_sink(dir.path(), format!("{}-trib", case.name));
    let cfg = |rw: u16| {
        let mut jobs = case.jobs.to_string();
        for (i, t) in targets.iter().enumerate() {
            jobs = jobs.replace(&format!("{{T{i}}}"), &t.addr);
        }
        let wr = if case.write_relabel.is_empty() {
            String::new()
        } else {
            format!("    write_relabel_configs:\n{}", case.write_relabel)
        };
        format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\n  external_labels:\n    region: eu\nscrape_configs:\n{jobs}remote_write:\n  - url: http://127.0.0.1:{rw}/api/v1/write\n    queue_config:\n      batch_send_deadline: 500ms\n{wr}")
    };
    let prom_cfg = dir.path().join("prom-agent.yml");
    std::fs::write(&prom_cfg, cfg(port_p)).unwrap();
    let mut prom_cmd = Command::new(prometheus_bin());
    prom_cmd
        .arg("--enable-feature=agent")
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.agent.path={}",
            dir.path().join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()));
    let mut prom = Proc::spawn(
        "prometheus-agent",
        &mut prom_cmd,
        &dir.path().join("prom-agent.log"),
    );
    let _trib = start_tributary(dir.path(), &cfg(port_t), free_port(), &[]);

    // Settled: both sides equal and unchanged over a 3 s look, bounded.
    let settle = |want_stale: bool| {
        let mut last = None;
        wait_for(Duration::from_secs(90), || {
            std::thread::sleep(Duration::from_secs(3));
            let (p, t) = (snapshot(&seen_p), snapshot(&seen_t));
            let ok = !p.0.is_empty()
                && p == t
                && (!want_stale || !p.2.is_empty())
                && last.as_ref() == Some(&p);
            last = Some(p);
            ok.then_some(())
        })
    };
    let mut settled = settle(false);
    if settled.is_some() && case.switch_to.is_some() {
        switched.store(true, Ordering::SeqCst);
        settled = settle(true);
    }
    if settled.is_some() {
        return Ok(());
    }
    let (p, t) = (snapshot(&seen_p), snapshot(&seen_t));
    let prom_state = match prom.child.try_wait() {
        Ok(Some(status)) => format!("Prometheus exited ({status}): {}", prom.log_text()),
        _ => String::new(),
    };
    Err(format!(
        "case {}: {prom_state}\n{}{}{}",
        case.name,
        diff("series", &p.0, &t.0),
        diff("values", &p.1, &t.1),
        diff("stale markers", &p.2, &t.2)
    ))
}

#[test]
fn same_series_values_and_staleness_as_the_prometheus_agent() {
    // Cases run a few at a time: each is two agents and two sinks.
    let failures = Mutex::new(Vec::new());
    for chunk in CASES.chunks(3) {
        std::thread::scope(|s| {
            for case in chunk {
                let f = &failures;
                s.spawn(move || {
                    // One retry absorbs a starved machine or a port taken
                    // between choosing and binding it; a real difference
                    // fails both runs.
                    if let Err(first) = run_case(case) {
                        if let Err(second) = run_case(case) {
                            f.lock().unwrap().push(format!("{first}\nretry: {second}"));
                        }
                    }
                });
            }
        });
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
