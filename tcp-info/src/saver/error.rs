//! Saver errors, grouped into the classes exported as metrics (SPEC §12 D17).

use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// The class of a saver failure; [`as_str`](Self::as_str) is the `type` label value of
/// `tcpinfo_saver_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Creating an archive file (or its date directory) failed.
    Open,
    /// A record could not be turned into a valid archive line, so it was not written.
    Encode,
    /// Compressing buffered lines into a zstd frame failed.
    Write,
    /// Appending a compressed frame to its file failed.
    Flush,
    /// `close(2)` of an archive file reported an error.
    Close,
}

impl ErrorClass {
    /// Every class, in [`index`](Self::index) order.
    pub const ALL: [Self; 5] = [
        Self::Open,
        Self::Encode,
        Self::Write,
        Self::Flush,
        Self::Close,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Encode => "encode",
            Self::Write => "write",
            Self::Flush => "flush",
            Self::Close => "close",
        }
    }

    /// Position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why the saver could not do what it was asked.
#[derive(Debug, Error)]
pub enum SaveError {
    /// The saver configuration is unusable.
    #[error("invalid saver configuration: {0}")]
    Config(String),
    /// The existing archive tree could not be read at start-up.
    #[error("cannot scan the archive tree {}: {source}", path.display())]
    Scan {
        /// The directory that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The zstd context could not be created.
    #[error("cannot create the zstd compressor: {0}")]
    Compressor(#[source] io::Error),
    /// An archive file could not be created; the record was not written.
    #[error("cannot create archive file {}: {source}", path.display())]
    Open {
        /// The file (or directory) that could not be created.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The record cannot be written as a valid archive line; it was not written.
    #[error("record for cookie {cookie:016X} not written: {reason}")]
    Encode {
        /// The connection's cookie.
        cookie: u64,
        /// What is wrong with the record.
        reason: &'static str,
    },
    /// Compressing the buffered lines of a file failed; those lines are lost and the file was
    /// closed at its last complete frame.
    #[error("cannot compress {lines} buffered lines for {}: {source}", path.display())]
    Write {
        /// The archive file.
        path: PathBuf,
        /// Lines lost.
        lines: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Appending a frame to a file failed; its lines are lost, the partial frame was cut off
    /// again and the file was closed at its last complete frame.
    #[error("cannot append to {} ({lines} lines lost): {source}", path.display())]
    Flush {
        /// The archive file.
        path: PathBuf,
        /// Lines lost.
        lines: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `close(2)` failed (the data was already written).
    #[error("closing {} failed: {source}", path.display())]
    Close {
        /// The archive file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SaveError {
    /// The metric class of a run-time failure; `None` for set-up errors from
    /// [`Saver::new`](super::Saver::new).
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            Self::Config(_) | Self::Scan { .. } | Self::Compressor(_) => None,
            Self::Open { .. } => Some(ErrorClass::Open),
            Self::Encode { .. } => Some(ErrorClass::Encode),
            Self::Write { .. } => Some(ErrorClass::Write),
            Self::Flush { .. } => Some(ErrorClass::Flush),
            Self::Close { .. } => Some(ErrorClass::Close),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_index_their_list_and_match_metric_labels() {
        for (i, class) in ErrorClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
        let labels: Vec<_> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels, ["open", "encode", "write", "flush", "close"]);
    }

    #[test]
    fn messages_name_the_file() {
        let e = SaveError::Flush {
            path: PathBuf::from("2024/01/02/x_0000000000000001.00000.jsonl.zst"),
            lines: 3,
            source: io::Error::from_raw_os_error(28),
        };
        let text = e.to_string();
        assert!(
            text.contains("2024/01/02/x_0000000000000001.00000.jsonl.zst"),
            "{text}"
        );
        assert!(text.contains("3 lines lost"), "{text}");
        assert_eq!(e.class(), Some(ErrorClass::Flush));
        let e = SaveError::Encode {
            cookie: 0xEB,
            reason: "x",
        };
        assert!(e.to_string().contains("00000000000000EB"));
        assert_eq!(SaveError::Config("x".into()).class(), None);
    }
}
