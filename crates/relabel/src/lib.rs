//! Prometheus-compatible relabeling (`model/relabel/relabel.go`, 3.x).
//!
//! The same engine serves `relabel_configs` (targets),
//! `metric_relabel_configs` (scraped series) and `write_relabel_configs`
//! (remote write). Its pieces:
//!
//! * [`Regex`]: a fully anchored regex with Go RE2 semantics
//!   (`^(?s:<pattern>)$`, ASCII-only `\d \w \s \b`), built on the `regex`
//!   crate after a syntax-level rewrite.
//! * [`RelabelConfig`], built through [`RelabelConfigBuilder`] from the
//!   fields as written in the config file; building parses the action,
//!   compiles the regex, pre-parses the `$1`/`${name}` templates and runs
//!   Prometheus's validation with its exact error messages.
//! * [`relabel`] (on a [`LabelsBuilder`](tributary_model::LabelsBuilder)),
//!   [`relabel_labels`] (on [`Labels`](tributary_model::Labels),
//!   copy-on-write) and [`relabel_steps`] (state after each rule, for a
//!   debugger UI).
//!
//! Nothing is cached globally: a rule owns its compiled regex and parsed
//! templates, and relabeling allocates only when a rule produces new text.

mod config;
mod engine;
mod regex;
mod template;

pub use config::{
    Action, NameValidation, RelabelConfig, RelabelConfigBuilder, RelabelError, DEFAULT_REPLACEMENT,
    DEFAULT_SEPARATOR,
};
pub use engine::{relabel, relabel_labels, relabel_steps, Step};
pub use regex::{Regex, RegexError};
