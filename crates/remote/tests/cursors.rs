//! The remote-write side of the WAL's cursors: an endpoint that is no
//! longer configured stops holding back truncation, also when only the
//! cursor file from an earlier run still names it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use prometheus_client::registry::Registry;
use tributary_model::Labels;
use tributary_remote::RemoteStorage;
use tributary_wal::{AgentStorage, WalOptions};

fn cursor_names(dir: &std::path::Path) -> Vec<String> {
    tributary_wal::read_cursors(dir).into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_configuration_forgets_cursors_of_endpoints_it_does_not_name() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut reg = Registry::default();
        let wal = AgentStorage::open(dir.path(), WalOptions::default(), &mut reg).unwrap();
        // A queue of an earlier configuration (unnamed entries are named
        // by a hash of their settings).
        wal.consumer("0a1b2c").unwrap();
        wal.close().unwrap();
    }
    assert_eq!(cursor_names(dir.path()), ["0a1b2c"]);

    let mut reg = Registry::default();
    let wal = AgentStorage::open(dir.path(), WalOptions::default(), &mut reg).unwrap();
    let yaml = "remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n    name: current\n";
    let cfg = tributary_config::load_str(yaml, "test.yml", std::path::Path::new(".")).unwrap();
    let mut remote = RemoteStorage::new(wal.clone(), &mut reg, "test".into());
    remote
        .apply_config(&cfg.remote_write, &Labels::default())
        .await
        .unwrap();
    remote.stop(Duration::from_millis(10)).await;
    wal.close().unwrap();
    assert_eq!(cursor_names(dir.path()), ["current"]);
}
