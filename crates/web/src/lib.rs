//! The agent's HTTP surface, as Prometheus serves it in agent mode, and the
//! operator tools Tributary adds.
//!
//! * [`server`]: routing under `--web.route-prefix`, `/-/healthy`,
//!   `/-/ready`, `/-/reload`, `/-/quit` with Prometheus's status codes and
//!   bodies, and the optional TLS/basic-auth layer.
//! * `api`: `/api/v1` with Prometheus's JSON (the query endpoints answer
//!   422 as in agent mode), plus `targets/last_scrape`, `relabel_debugger`
//!   and `status/remote_write`.
//! * `ui`: server-rendered HTML pages, no JavaScript and no build chain.
//! * [`security`]: `--web.config.file` in exporter-toolkit's format.
//! * [`relabel_debug`]: labels + rules → the labels after each rule.
//!
//! The web crate only *reads* state through [`StatusSource`]; it never
//! drives scraping or storage itself (reload and quit are requests sent to
//! the binary, which owns the lifecycle).

mod api;
mod connections;
mod metrics;
pub mod relabel_debug;
pub mod security;
mod server;
pub mod status;
mod ui;

pub use connections::{serve_plain, DEFAULT_READ_TIMEOUT};
pub use security::{load_web_config, WebConfigError, WebSecurity};
pub use server::{
    app, serve, serve_on, serve_with_security, ReloadRequest, StatusSource, WebOptions, WebState,
};
pub use status::{
    MetricMetadata, RemoteEndpointStatus, RemoteWriteStatus, TargetMetadata, WalStatus,
};
