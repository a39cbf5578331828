//! The query API (`-api.listen-address`, off by default): JSON over HTTP for programs running
//! beside the collector, and a live page for people.
//!
//! - `GET /v1/connections`: the open connections with their key figures, filtered by port and
//!   state, sorted by a figure, limited;
//! - `GET /v1/connections/{uuid}`: one connection's latest record decoded into every named
//!   field (csvtool's columns), while it is open and for `-api.retention` after it closes;
//!   `?fresh=true` asks the kernel now (an exact query, SPEC §13) instead;
//! - `GET /v1/connections/{uuid}/plot.svg`: its life drawn from its archive ([`crate::plot`]);
//! - `GET /`: the live page; `GET /v1/openapi.json`: the OpenAPI description.
//!
//! It listens on loopback or a unix socket only: it shows every connection of the host
//! (addresses anonymized as the archives are, `-anonymize.ip`).
//!
//! The pipeline feeds a [`LiveTable`] through [`LiveSink`]; the handlers run on the edges'
//! runtime, and their blocking work (exact queries, archive reads) on its blocking threads.

mod live;
mod query;
mod server;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;

pub use live::{LiveConnection, LiveSink, LiveTable};
pub use query::{
    BadParameter, DEFAULT_LIMIT, DetailQuery, ListQuery, MAX_LIMIT, SORT_KEYS, Summary,
};
pub use server::{ApiServer, OPENAPI, serve};

use crate::http::Listener;
use crate::metrics::ListenAddress;

/// The default `-api.retention`: how long a closed connection stays queryable.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(60);

/// Mode of the API's unix socket: owner and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// How the API anonymizes a `RawIDM` (the saver's rule, `-anonymize.ip`).
pub type Anonymize = Arc<dyn Fn(&[u8; 72]) -> [u8; 72] + Send + Sync>;

/// Why the API could not start.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The listen address is not allowed or does not parse.
    #[error("invalid API listen address {listen:?}: {reason}")]
    InvalidListen {
        /// What was given.
        listen: String,
        /// Why it was refused.
        reason: String,
    },
    /// Binding failed.
    #[error("cannot listen on {listen}")]
    Bind {
        /// Where.
        listen: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the API listens: a loopback `host:port`, or a unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiListen {
    /// Loopback addresses (a literal, or a name that resolves to loopback only).
    Tcp(ListenAddress),
    /// A unix socket path (absolute).
    Unix(PathBuf),
}

impl FromStr for ApiListen {
    type Err = String;

    /// `127.0.0.1:PORT`, `[::1]:PORT`, `localhost:PORT`, or an absolute path for a unix
    /// socket. Other hosts are refused: the API shows every connection of the host.
    fn from_str(text: &str) -> Result<Self, String> {
        if text.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(text)));
        }
        let address: ListenAddress = text.parse()?;
        let host = address.host();
        let loopback = host
            .parse::<IpAddr>()
            .map_or(host == "localhost", |ip| ip.is_loopback());
        if !loopback {
            return Err(
                "the API listens on loopback (127.0.0.1:PORT, [::1]:PORT, localhost:PORT) or \
                 on a unix socket (an absolute path) only"
                    .to_owned(),
            );
        }
        Ok(Self::Tcp(address))
    }
}

impl fmt::Display for ApiListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(address) => write!(f, "{address}"),
            Self::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl ApiListen {
    /// Binds it. A unix socket path holding a stale socket is replaced (anything else there is
    /// an error), and the new socket gets [`SOCKET_MODE`].
    pub fn bind(&self) -> Result<Listener, ApiError> {
        let bind_error = |source| ApiError::Bind {
            listen: self.to_string(),
            source,
        };
        match self {
            Self::Tcp(address) => {
                let addrs: Vec<SocketAddr> = address.socket_addrs().map_err(bind_error)?;
                if let Some(outside) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                    return Err(ApiError::InvalidListen {
                        listen: self.to_string(),
                        reason: format!("{} resolves to {outside}, not loopback", address.host()),
                    });
                }
                std::net::TcpListener::bind(addrs.as_slice())
                    .map(Listener::Tcp)
                    .map_err(bind_error)
            }
            Self::Unix(path) => {
                // Like the event socket's, the directory is created when missing.
                if let Some(dir) = path.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(dir)
                        .map_err(bind_error)?;
                }
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if !meta.file_type().is_socket() {
                        return Err(ApiError::InvalidListen {
                            listen: self.to_string(),
                            reason: "a file that is not a socket is in the way".to_owned(),
                        });
                    }
                    std::fs::remove_file(path).map_err(bind_error)?;
                }
                let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
                    .map_err(bind_error)?;
                Ok(Listener::Unix(listener, path.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
