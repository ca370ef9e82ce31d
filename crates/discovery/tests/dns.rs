//! `dns_sd_configs` against a real dnsmasq on 127.0.0.1 (started and
//! stopped by PID in each test; CI installs `dnsmasq-base`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{flattened, harness, load, pairs, target_count, wait_for};
use tributary_discovery::testing::dns::{free_port, Dnsmasq};

const WAIT: Duration = Duration::from_secs(20);

fn job(body: &str) -> tributary_config::Config {
    load(&format!(
        "scrape_configs:\n  - job_name: dns\n    dns_sd_configs:\n{body}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_targets_appear_change_survive_failure_and_disappear() {
    let port = free_port();
    let dns = Dnsmasq::start(
        port,
        &[
            "--srv-host=_metrics._tcp.svc.test,web1.svc.test,9100",
            "--srv-host=_metrics._tcp.svc.test,web2.svc.test,9200",
        ],
    );
    let mut h = harness();
    h.manager.set_dns_nameservers(vec![dns.addr()]);
    h.manager.apply_config(&job(
        "      - names: ['_metrics._tcp.svc.test.']\n        refresh_interval: 200ms\n",
    ));

    let groups = wait_for(&mut h.rx, "dns", WAIT, |g| target_count(g) == 2).await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].source, "_metrics._tcp.svc.test.");
    assert_eq!(
        flattened(&groups),
        vec![
            pairs(&[
                ("__address__", "web1.svc.test:9100"),
                ("__meta_dns_name", "_metrics._tcp.svc.test."),
                ("__meta_dns_srv_record_port", "9100"),
                ("__meta_dns_srv_record_target", "web1.svc.test."),
            ]),
            pairs(&[
                ("__address__", "web2.svc.test:9200"),
                ("__meta_dns_name", "_metrics._tcp.svc.test."),
                ("__meta_dns_srv_record_port", "9200"),
                ("__meta_dns_srv_record_target", "web2.svc.test."),
            ]),
        ]
    );

    // Change: one record left, on another port.
    dns.stop();
    let dns = Dnsmasq::start(
        port,
        &["--srv-host=_metrics._tcp.svc.test,web3.svc.test,9300"],
    );
    let groups = wait_for(&mut h.rx, "dns", WAIT, |g| {
        flattened(g)
            .iter()
            .any(|t| t.contains(&("__address__".into(), "web3.svc.test:9300".into())))
    })
    .await;
    assert_eq!(target_count(&groups), 1);

    // Failure: the server is gone; the last good targets stay and the
    // provider reports an error.
    dns.stop();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = h.manager.status();
        if status
            .iter()
            .any(|s| s.mechanism == "dns" && s.last_error.is_some())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error reported: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let current = h.rx.borrow().get("dns").cloned().unwrap_or_default();
    assert_eq!(
        target_count(&current),
        1,
        "last good targets are kept on failure"
    );
    let metrics = common::metrics_text(&h.registry);
    assert!(
        metrics.contains("prometheus_sd_dns_lookup_failures_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"prometheus_sd_refresh_duration_seconds_count{mechanism="dns",config="dns"}"#
        ),
        "{metrics}"
    );

    // Disappear: the name no longer exists (NXDOMAIN) → empty group.
    let _dns = Dnsmasq::start(port, &["--host-record=other.svc.test,10.0.0.9"]);
    wait_for(&mut h.rx, "dns", WAIT, |g| target_count(g) == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_aaaa_and_mx_use_the_configured_port() {
    let port = free_port();
    let dns = Dnsmasq::start(
        port,
        &[
            "--host-record=api.svc.test,10.1.2.3",
            "--host-record=api6.svc.test,2001:db8::7",
            "--mx-host=svc.test,mail.svc.test,10",
            "--host-record=mail.svc.test,10.1.2.4",
        ],
    );
    let mut h = harness();
    h.manager.set_dns_nameservers(vec![dns.addr()]);
    h.manager.apply_config(&load(
        "scrape_configs:\n  - job_name: a\n    dns_sd_configs:\n      - names: ['api.svc.test.']\n        type: A\n        port: 9100\n  - job_name: aaaa\n    dns_sd_configs:\n      - names: ['api6.svc.test.']\n        type: AAAA\n        port: 9100\n  - job_name: mx\n    dns_sd_configs:\n      - names: ['svc.test.']\n        type: MX\n        port: 25\n",
    ));
    let a = wait_for(&mut h.rx, "a", WAIT, |g| target_count(g) == 1).await;
    assert_eq!(
        flattened(&a),
        vec![pairs(&[
            ("__address__", "10.1.2.3:9100"),
            ("__meta_dns_name", "api.svc.test.")
        ])]
    );
    let aaaa = wait_for(&mut h.rx, "aaaa", WAIT, |g| target_count(g) == 1).await;
    assert_eq!(
        flattened(&aaaa),
        vec![pairs(&[
            ("__address__", "[2001:db8::7]:9100"),
            ("__meta_dns_name", "api6.svc.test.")
        ])]
    );
    let mx = wait_for(&mut h.rx, "mx", WAIT, |g| target_count(g) == 1).await;
    assert_eq!(
        flattened(&mx),
        vec![pairs(&[
            ("__address__", "mail.svc.test:25"),
            ("__meta_dns_mx_record_target", "mail.svc.test."),
            ("__meta_dns_name", "svc.test."),
        ])]
    );
}
