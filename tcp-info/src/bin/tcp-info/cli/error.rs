//! Configuration errors, each with the exit code the daemon should use.

use std::fmt;

use thiserror::Error;

use tcp_info::uuid::PrefixError;

/// Where a value came from: a command-line flag or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The command line; the flag name without dashes.
    Flag(&'static str),
    /// The environment; the variable name.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(name) => write!(f, "flag -{name}"),
            Self::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// Why the configuration could not be built. [`CliError::exit_code`] gives the process exit
/// status: 0 for a help request, 2 (Go's `flag` convention) for everything else.
#[derive(Debug, Error)]
pub enum CliError {
    /// `-h`/`-help` was given: print `usage` on stdout and exit 0.
    #[error("{usage}")]
    Help {
        /// The usage text.
        usage: String,
    },
    /// `-version`/`--version` was given: print the version report on stdout and exit 0.
    #[error("version requested")]
    Version,
    /// The command line is malformed: an unknown flag, a missing value, a positional argument.
    #[error("{message} (run with -help for usage)")]
    Usage {
        /// What is wrong.
        message: String,
    },
    /// A flag or environment value does not parse or is not allowed.
    #[error("invalid value {value:?} for {origin}: {reason}")]
    InvalidValue {
        /// The flag or variable.
        origin: Origin,
        /// The offending value (lossily converted if it was not UTF-8).
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The UUID prefix file could not be used.
    #[error("{origin}: {source}")]
    PrefixFile {
        /// The flag or variable naming the file.
        origin: Origin,
        /// What went wrong, with the path.
        #[source]
        source: PrefixError,
    },
    /// No prefix file was given, and the unsafe default built from `$POD_NAME` or the hostname
    /// cannot be a prefix.
    #[error(
        "no -uuid-prefix-file, and the default cannot be used: {source}; give -uuid-prefix-file"
    )]
    DefaultPrefix {
        /// What is wrong with the default, naming where its name came from.
        #[source]
        source: PrefixError,
    },
}

impl CliError {
    /// A usage error with this message.
    pub(super) fn usage(message: String) -> Self {
        Self::Usage { message }
    }

    /// The exit status for this outcome: 0 for help and version, 2 for usage and value errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Help { .. } | Self::Version => 0,
            Self::Usage { .. }
            | Self::InvalidValue { .. }
            | Self::PrefixFile { .. }
            | Self::DefaultPrefix { .. } => 2,
        }
    }
}
