//! A loopback Kubernetes API server (list + watch, paged LISTs, bookmarks)
//! serving N Running pods, for measuring `kubernetes_sd_configs` in a real
//! agent process without the API server's memory counted in it.
//!
//! ```text
//! cargo run -p tributary-discovery --features testing --example fake_kube_api -- \
//!     --pods 5000 --port 18080 [--pod-ip 127.0.0.1] [--base-port 20000]
//! ```
//!
//! Pod `i` is `ns-<i%50>/app-<i>` on `node-<i%100>`, labelled
//! `app=app, instance=i<i>`, with one container port `metrics` =
//! base-port + i (closed ports on 127.0.0.1 by default: scrapes fail fast)
//! and the usual bulk of a real pod (annotations, owner reference,
//! managedFields, env, resources) that discovery must skip.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tributary_discovery::testing::kube::FakeKube;

struct Args {
    pods: usize,
    port: u16,
    pod_ip: String,
    base_port: u16,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pods: 5000,
        port: 18080,
        pod_ip: "127.0.0.1".into(),
        base_port: 20000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--pods" => args.pods = value.parse().map_err(bad)?,
            "--port" => args.port = value.parse().map_err(bad)?,
            "--base-port" => args.base_port = value.parse().map_err(bad)?,
            "--pod-ip" => args.pod_ip = value,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if usize::from(args.base_port) + args.pods > usize::from(u16::MAX) {
        return Err("--base-port + --pods exceeds the port range".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake_kube_api: {e}");
            std::process::exit(2);
        }
    };
    // Long watches: the agent should sit idle on them, as against a real
    // API server (which ends watches after minutes).
    let fake = FakeKube::with_watch_len(Duration::from_secs(300));
    for i in 0..args.pods {
        let port = usize::from(args.base_port) + i;
        fake.put_quiet(
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("app-{i}"), "namespace": format!("ns-{}", i % 50),
                    "uid": format!("00000000-0000-0000-0000-{i:012}"),
                    "labels": {"app": "app", "pod-template-hash": "5d8f7c9b6", "instance": format!("i{i}")},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": port.to_string()},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "app-5d8f7c9b6", "controller": true}],
                    "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {"f:conditions": {}}}}]
                },
                "spec": {
                    "nodeName": format!("node-{}", i % 100),
                    "containers": [{"name": "app", "image": "example/app:1.0", "ports": [
                        {"name": "metrics", "containerPort": port, "protocol": "TCP"}],
                        "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}}}]
                },
                "status": {
                    "phase": "Running", "podIP": args.pod_ip,
                    "hostIP": format!("192.168.0.{}", i % 100),
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "app", "containerID": format!("containerd://{i:064x}"), "ready": true}]
                }
            }),
        );
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    fake.serve_at(addr).await;
    println!("serving {} pods on http://{addr}", args.pods);
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling available: serve until killed.
        std::future::pending::<()>().await;
    }
}
