use std::io;
use std::path::PathBuf;

use crate::record::DecodeError;

/// Errors of the WAL: opening, writing, reading and truncating.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
    #[error("storage directory {0} is locked by another process")]
    Locked(PathBuf),
    #[error("decoding record: {0}")]
    Decode(#[from] DecodeError),
    #[error("corrupt record in segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        segment: u32,
        offset: u64,
        reason: &'static str,
    },
    #[error("WAL is closed")]
    Closed,
}

impl WalError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }
}
