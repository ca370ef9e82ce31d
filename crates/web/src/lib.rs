//! The agent's HTTP surface, as Prometheus serves it in agent mode:
//! `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, `/-/quit`, the
//! `/api/v1` endpoints that work in agent mode (the query ones answer 422
//! exactly as Prometheus does) and a server-rendered UI.
//!
//! The web crate only *reads* state through the handles in [`WebState`];
//! it never drives scraping or storage itself (reload and quit are requests
//! sent to the binary, which owns the lifecycle).

mod api;
mod metrics;
mod server;
mod ui;

pub use server::{serve, ReloadRequest, StatusSource, WebOptions, WebState};
