//! `ec2_sd_configs` against a loopback EC2 query API double (axum on
//! 127.0.0.1) serving `DescribeAvailabilityZones` and paginated
//! `DescribeInstances` fixtures written from the EC2 API reference. The
//! SigV4 signature itself is checked against AWS's published test vectors
//! in the crate's unit tests; here the server checks the header's shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{flattened, harness, load, pairs, target_count, wait_for};
use tributary_discovery::testing::ec2::{serve, Shared};
use tributary_discovery::testing::fixture;

const WAIT: Duration = Duration::from_secs(10);

fn expected_i1() -> Vec<(String, String)> {
    pairs(&[
        ("__address__", "10.0.1.10:9100"),
        ("__meta_ec2_region", "us-east-1"),
        ("__meta_ec2_instance_id", "i-1"),
        ("__meta_ec2_owner_id", "123456789012"),
        ("__meta_ec2_default_ipv6_address", "2001:db8::10"),
        ("__meta_ec2_private_ip", "10.0.1.10"),
        ("__meta_ec2_private_dns_name", "ip-10-0-1-10.ec2.internal"),
        ("__meta_ec2_public_ip", "54.1.2.3"),
        (
            "__meta_ec2_public_dns_name",
            "ec2-54-1-2-3.compute-1.amazonaws.com",
        ),
        ("__meta_ec2_ami", "ami-1"),
        ("__meta_ec2_availability_zone", "us-east-1a"),
        ("__meta_ec2_availability_zone_id", "use1-az1"),
        ("__meta_ec2_instance_state", "running"),
        ("__meta_ec2_instance_type", "t3.micro"),
        ("__meta_ec2_architecture", "x86_64"),
        ("__meta_ec2_vpc_id", "vpc-1"),
        ("__meta_ec2_primary_subnet_id", "subnet-a"),
        ("__meta_ec2_subnet_id", ",subnet-a,subnet-b,"),
        ("__meta_ec2_primary_ipv6_addresses", ",2001:db8::10,"),
        ("__meta_ec2_ipv6_addresses", ",2001:db8::10,2001:db8::20,"),
        ("__meta_ec2_tag_Name", "web"),
        ("__meta_ec2_tag_aws_autoscaling_groupName", "asg-1"),
    ])
}

fn expected_i2() -> Vec<(String, String)> {
    pairs(&[
        ("__address__", "10.0.2.20:9100"),
        ("__meta_ec2_region", "us-east-1"),
        ("__meta_ec2_instance_id", "i-2"),
        ("__meta_ec2_owner_id", "210987654321"),
        ("__meta_ec2_private_ip", "10.0.2.20"),
        ("__meta_ec2_private_dns_name", "ip-10-0-2-20.ec2.internal"),
        ("__meta_ec2_platform", "windows"),
        ("__meta_ec2_ami", "ami-2"),
        ("__meta_ec2_availability_zone", "us-east-1b"),
        ("__meta_ec2_availability_zone_id", "use1-az2"),
        ("__meta_ec2_instance_state", "stopped"),
        ("__meta_ec2_instance_type", "m5.large"),
        ("__meta_ec2_instance_lifecycle", "spot"),
        ("__meta_ec2_architecture", "x86_64"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_appear_change_and_survive_failure() {
    let state = Shared::default();
    state.lock().page2 = fixture("ec2_describe_instances_page2.xml");
    let endpoint = serve(state.clone()).await;
    let mut h = harness();
    h.manager.apply_config(&load(&format!(
        "scrape_configs:\n  - job_name: ec2\n    ec2_sd_configs:\n      - region: us-east-1\n        endpoint: {endpoint}\n        access_key: AKIDTEST\n        secret_key: s3cr3t\n        port: 9100\n        refresh_interval: 100ms\n        filters:\n          - name: instance-state-name\n            values: [running, stopped]\n"
    )));

    let groups = wait_for(&mut h.rx, "ec2", WAIT, |g| target_count(g) == 2).await;
    assert_eq!(groups[0].source, "us-east-1");
    let mut want = vec![expected_i1(), expected_i2()];
    want.sort();
    assert_eq!(flattened(&groups), want);
    {
        let s = state.lock();
        assert!(
            s.bad_auth.is_empty(),
            "malformed SigV4 headers: {:?}",
            s.bad_auth
        );
        let describe = s
            .bodies
            .iter()
            .find(|b| b.contains("Action=DescribeInstances"))
            .cloned()
            .unwrap_or_default();
        assert!(describe.contains("Version=2016-11-15"), "{describe}");
        assert!(
            describe.contains("Filter.1.Name=instance-state-name"),
            "{describe}"
        );
        assert!(
            describe.contains("Filter.1.Value.1=running&Filter.1.Value.2=stopped"),
            "{describe}"
        );
        assert!(s.bodies.iter().any(|b| b.contains("NextToken=page2")));
    }

    // Change: the second page empties; i-2 disappears.
    state.lock().page2 =
        "<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>".into();
    wait_for(&mut h.rx, "ec2", WAIT, |g| target_count(g) == 1).await;

    // Failure: the API refuses the credentials; the last targets stay.
    state.lock().fail = true;
    let deadline = tokio::time::Instant::now() + WAIT;
    let error = loop {
        if let Some(e) = h.manager.status().into_iter().find_map(|s| s.last_error) {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "failure never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(error.contains("AuthFailure"), "{error}");
    assert_eq!(target_count(&h.rx.borrow()["ec2"]), 1);
    let metrics = common::metrics_text(&h.registry);
    assert!(
        metrics.contains(r#"prometheus_sd_refresh_failures_total{mechanism="ec2",config="ec2"}"#),
        "{metrics}"
    );
}
