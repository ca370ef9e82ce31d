//! The process's open-file limit, raised as Prometheus has it raised.
//!
//! Go's runtime (1.19 on) lifts a program's soft `RLIMIT_NOFILE` to its hard
//! limit at start, so Prometheus holds a socket per target well past the
//! soft limit of 1,024 that shells and systemd services start with. Tributary
//! keeps one kept-alive connection per target too: without the same lift, an
//! agent that replaced Prometheus on a host of a thousand targets would fail
//! its scrapes with "too many open files" where Prometheus did not.

use std::fmt;

/// The open-file limits after [`raise_open_files`], for the start-up log
/// (Prometheus's `fd_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimits {
    soft: Option<u64>,
    hard: Option<u64>,
}

impl fmt::Display for FdLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = |l: Option<u64>| l.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
        write!(f, "(soft={}, hard={})", limit(self.soft), limit(self.hard))
    }
}

/// Lifts the soft open-file limit to the hard one. A refusal (a hard limit
/// the kernel will not grant as soft, say) leaves the limits as they were:
/// the limits are logged either way, and scraping works up to them.
#[cfg(unix)]
pub fn raise_open_files() -> FdLimits {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(err = %e, "could not raise the open-file soft limit to the hard limit");
        }
    }
    let now = getrlimit(Resource::Nofile);
    FdLimits {
        soft: now.current,
        hard: now.maximum,
    }
}

#[cfg(not(unix))]
pub fn raise_open_files() -> FdLimits {
    FdLimits {
        soft: None,
        hard: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_print_as_prometheus_prints_them() {
        let l = FdLimits {
            soft: Some(1024),
            hard: None,
        };
        assert_eq!(l.to_string(), "(soft=1024, hard=unlimited)");
    }
}
