//! From discovered label sets to scrape targets, as Prometheus's
//! `PopulateLabels` does: defaults first, then `relabel_configs`, then the
//! checks that decide whether a target is scraped at all.

use std::time::Duration;

use tributary_config::{format_duration, parse_duration, ScrapeConfig};
use tributary_model::{Labels, LabelsBuilder};

/// Why a discovered target is not scraped. Shown on the service-discovery
/// page; `Relabeled` is the ordinary "dropped by a keep/drop rule" case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("dropped by relabeling")]
    Relabeled,
    #[error("no address")]
    NoAddress,
    #[error("invalid address {0:?}: {1}")]
    InvalidAddress(String, &'static str),
    #[error("{0}")]
    InvalidInterval(String),
    #[error("invalid label value for {0:?}: not valid UTF-8")]
    InvalidLabelValue(String),
}

/// A target to scrape: its labels and where and how often to scrape it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Labels before relabeling (for the UI's "discovered labels").
    pub discovered: Labels,
    /// Every label after relabeling, `__` ones included (address, scheme…).
    pub internal: Labels,
    /// The labels attached to every scraped series (no `__` prefix).
    pub labels: Labels,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Identity within a pool: equal hash = the same target (deduplicated).
    pub hash: u64,
}

/// A discovered target that relabeling or validation dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedTarget {
    pub discovered: Labels,
    pub reason: DropReason,
}

/// Adds the scrape config's defaults to one discovered target.
pub fn discovered_labels(target: &Labels, group: &Labels, cfg: &ScrapeConfig) -> Labels {
    let mut b = target.to_builder();
    for l in group {
        if b.get(l.name).is_none() {
            b.set(l.name, l.value);
        }
    }
    let interval = format_duration(cfg.scrape_interval);
    let timeout = format_duration(cfg.scrape_timeout);
    let bools = |v: bool| if v { "true" } else { "false" };
    let defaults: [(&str, &str); 8] = [
        ("job", &cfg.job_name),
        ("__scrape_interval__", &interval),
        ("__scrape_timeout__", &timeout),
        ("__metrics_path__", &cfg.metrics_path),
        ("__scheme__", &cfg.scheme),
        (
            "__scrape_native_histograms__",
            bools(cfg.scrape_native_histograms),
        ),
        (
            "__always_scrape_classic_histograms__",
            bools(cfg.always_scrape_classic_histograms),
        ),
        (
            "__convert_classic_histograms_to_nhcb__",
            bools(cfg.convert_classic_histograms_to_nhcb),
        ),
    ];
    for (name, value) in defaults {
        if b.get(name).is_none() {
            b.set(name, value);
        }
    }
    for (name, values) in &cfg.params {
        let label = format!("__param_{name}");
        if let Some(first) = values.first() {
            if b.get(&label).is_none() {
                b.set(&label, first);
            }
        }
    }
    b.labels()
}

/// Relabels and validates one discovered target.
pub fn build_target(discovered: Labels, cfg: &ScrapeConfig) -> Result<Target, DroppedTarget> {
    let drop = |reason| DroppedTarget {
        discovered: discovered.clone(),
        reason,
    };
    let mut b: LabelsBuilder = discovered.to_builder();
    if !tributary_relabel::relabel(&cfg.relabel_configs, &mut b) {
        return Err(drop(DropReason::Relabeled));
    }
    let address = b.get("__address__").unwrap_or("").to_string();
    if address.is_empty() {
        return Err(drop(DropReason::NoAddress));
    }
    if let Err(why) = check_address(&address) {
        return Err(drop(DropReason::InvalidAddress(address, why)));
    }
    let (interval, timeout) = intervals(&b).map_err(|e| drop(DropReason::InvalidInterval(e)))?;
    for name in [
        "__scrape_native_histograms__",
        "__always_scrape_classic_histograms__",
        "__convert_classic_histograms_to_nhcb__",
    ] {
        if let Some(v) = b.get(name) {
            if v.parse::<bool>().is_err() {
                return Err(drop(DropReason::InvalidInterval(format!(
                    "invalid {name} label value {v:?}"
                ))));
            }
        }
    }
    b.retain(|name, _| !name.starts_with("__meta_"));
    if b.get("instance").is_none() {
        b.set("instance", &address);
    }
    let internal = b.labels();
    let url = target_url(&internal, cfg);
    let labels = Labels::from_pairs(
        internal
            .iter()
            .filter(|l| !l.name.starts_with("__"))
            .map(|l| (l.name, l.value)),
    );
    let hash = target_hash(&internal, &url);
    Ok(Target {
        discovered,
        internal,
        labels,
        url,
        interval,
        timeout,
        hash,
    })
}

fn check_address(address: &str) -> Result<(), &'static str> {
    if address.contains('/') {
        return Err("address must not contain a path");
    }
    // host:port or host; IPv6 in brackets. Let the URL parser be the judge.
    url::Url::parse(&format!("http://{address}/"))
        .map(|_| ())
        .map_err(|_| "not a valid host:port")
}

fn intervals(b: &LabelsBuilder) -> Result<(Duration, Duration), String> {
    let parse = |name: &str| -> Result<Duration, String> {
        let v = b.get(name).unwrap_or("");
        parse_duration(v).map_err(|e| format!("error parsing {name} {v:?}: {e}"))
    };
    let interval = parse("__scrape_interval__")?;
    let timeout = parse("__scrape_timeout__")?;
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    if timeout.is_zero() {
        return Err("scrape timeout cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({:?} > {:?})",
            format_duration(timeout),
            format_duration(interval)
        ));
    }
    Ok((interval, timeout))
}

/// `__scheme__://__address__` + `__metrics_path__` + the config's params
/// overlaid with every `__param_<name>` label.
fn target_url(internal: &Labels, cfg: &ScrapeConfig) -> String {
    let scheme = internal.get("__scheme__").unwrap_or("http");
    let address = internal.get("__address__").unwrap_or("");
    let path = internal.get("__metrics_path__").unwrap_or("/metrics");
    let mut params: Vec<(String, Vec<String>)> = cfg.params.clone();
    for l in internal.iter() {
        let Some(name) = l.name.strip_prefix("__param_") else {
            continue;
        };
        match params.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) if !values.is_empty() => values[0] = l.value.to_string(),
            Some((_, values)) => values.push(l.value.to_string()),
            None => params.push((name.to_string(), vec![l.value.to_string()])),
        }
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut url = format!("{scheme}://{address}{path}");
    let mut first = !path.contains('?');
    for (name, values) in &params {
        for v in values {
            url.push(if first { '?' } else { '&' });
            first = false;
            url.push_str(
                &url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>(),
            );
            url.push('=');
            url.push_str(&url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>());
        }
    }
    url
}

fn target_hash(internal: &Labels, url: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&internal.stable_hash().to_le_bytes());
    h.update(url.as_bytes());
    h.digest()
}
