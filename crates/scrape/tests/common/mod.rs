//! Set-up shared by the scrape integration tests: a scrape manager with
//! test defaults whose job `j` scrapes a fixed list of targets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_discovery::TargetGroup;
use tributary_model::Storage;
use tributary_scrape::{ScrapeManager, ScrapeMetrics};

/// Serves `app` on a free port of 127.0.0.1; its `host:port`.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A manager writing into `storage`, not yet configured.
pub fn new_manager(storage: Arc<dyn Storage>) -> ScrapeManager {
    let mut registry = prometheus_client::registry::Registry::default();
    new_manager_counting(storage, ScrapeMetrics::new(&mut registry))
}

/// [`new_manager`] counting into `metrics` (a clone shares the counters).
#[allow(dead_code)] // not every test binary reads the counters
pub fn new_manager_counting(storage: Arc<dyn Storage>, metrics: ScrapeMetrics) -> ScrapeManager {
    ScrapeManager::new(
        storage,
        "test".into(),
        true,
        Duration::from_millis(2),
        metrics,
        CancellationToken::new(),
    )
}

/// Applies `cfg` to `m` and hands its job `j` one static group of
/// `targets` with the extra target `labels`.
pub fn run_job_j(
    m: &mut ScrapeManager,
    cfg: &tributary_config::Config,
    targets: &[String],
    labels: &[(String, String)],
) {
    m.apply_config(cfg).map_err(|e| format!("{e:?}")).unwrap();
    let mut groups = BTreeMap::new();
    groups.insert(
        "j".to_string(),
        vec![TargetGroup::from_static("0".into(), targets, labels)],
    );
    m.sync(Arc::new(groups));
}
