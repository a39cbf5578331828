//! The ground-truth log: one JSON line per connection the workload made.

use std::fmt;
use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::net::SocketAddrV4;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The three kinds of connection the workload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnClass {
    /// Established and silent after a short greeting.
    Idle,
    /// Long-lived, rate-limited bulk transfer.
    Bulk,
    /// Connect, request, reply, close.
    Short,
}

impl ConnClass {
    /// All classes, in report order.
    pub const ALL: [Self; 3] = [Self::Idle, Self::Bulk, Self::Short];

    /// The lower-case name used in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Bulk => "bulk",
            Self::Short => "short",
        }
    }
}

impl fmt::Display for ConnClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The server socket's kernel counters after the close handshake (see `sock` module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalCounters {
    /// `tcpi_bytes_acked` of the server socket in `TCP_CLOSE`.
    pub bytes_acked: u64,
    /// `tcpi_bytes_received` of the server socket in `TCP_CLOSE`.
    pub bytes_received: u64,
}

/// One connection as the workload saw it, from both ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnTruth {
    /// Which workload part made it.
    pub class: ConnClass,
    /// Client address and port (the collector's "remote" end).
    pub client: SocketAddrV4,
    /// Server address and port (the collector's "local" end).
    pub server: SocketAddrV4,
    /// `SO_COOKIE` of the server socket: the key of its archive files.
    pub cookie: u64,
    /// Unix ns when the client started connecting.
    pub opened_ns: u64,
    /// Unix ns when the last end was closed.
    pub closed_ns: u64,
    /// Unix ns when the client end was closed (for the short-connection lifetime).
    pub client_closed_ns: u64,
    /// Application bytes written by the client.
    pub client_sent: u64,
    /// Application bytes read by the client.
    pub client_received: u64,
    /// Application bytes written by the server.
    pub server_sent: u64,
    /// Application bytes read by the server.
    pub server_received: u64,
    /// The server socket's final kernel counters; `None` if the close handshake did not finish.
    pub server_final: Option<FinalCounters>,
}

impl ConnTruth {
    /// Client-side lifetime, connect to close.
    pub fn client_lifetime_ns(&self) -> u64 {
        self.client_closed_ns.saturating_sub(self.opened_ns)
    }

    /// Checks the record against itself: both ends agree on every byte, and the server's
    /// final kernel counters are the application bytes plus one for each FIN.
    pub fn consistency_error(&self) -> Option<String> {
        if self.client_sent != self.server_received {
            return Some(format!(
                "client sent {} but server received {}",
                self.client_sent, self.server_received
            ));
        }
        if self.server_sent != self.client_received {
            return Some(format!(
                "server sent {} but client received {}",
                self.server_sent, self.client_received
            ));
        }
        match self.server_final {
            None => Some("no final counters (close handshake did not finish)".into()),
            Some(f) if f.bytes_acked != self.server_sent + 1 => Some(format!(
                "final bytes_acked {} != server_sent {} + FIN",
                f.bytes_acked, self.server_sent
            )),
            Some(f) if f.bytes_received != self.server_received + 1 => Some(format!(
                "final bytes_received {} != server_received {} + FIN",
                f.bytes_received, self.server_received
            )),
            Some(_) if self.cookie == 0 => Some("cookie is 0".into()),
            Some(_) => None,
        }
    }
}

/// Writes a ground-truth log (JSONL).
pub fn write_truth(path: &Path, conns: &[ConnTruth]) -> anyhow::Result<()> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(f);
    for c in conns {
        serde_json::to_writer(&mut w, c).context("encoding a ground-truth line")?;
        w.write_all(b"\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a ground-truth log (JSONL).
pub fn read_truth(path: &Path) -> anyhow::Result<Vec<ConnTruth>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: bad ground-truth line", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// A summary of a ground-truth log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthSummary {
    /// Connections per class (idle, bulk, short).
    pub per_class: [usize; 3],
    /// Short connections whose client lifetime was under 1 ms.
    pub short_under_1ms: usize,
    /// Connections failing [`ConnTruth::consistency_error`].
    pub inconsistent: usize,
    /// The first inconsistency, for the report.
    pub first_error: Option<String>,
}

impl TruthSummary {
    /// Summarises `conns`.
    pub fn of(conns: &[ConnTruth]) -> Self {
        let mut s = Self::default();
        for c in conns {
            s.per_class[c.class as usize] += 1;
            if c.class == ConnClass::Short && c.client_lifetime_ns() < 1_000_000 {
                s.short_under_1ms += 1;
            }
            if let Some(e) = c.consistency_error() {
                s.inconsistent += 1;
                if s.first_error.is_none() {
                    s.first_error = Some(format!("{} {} → {}: {e}", c.class, c.client, c.server));
                }
            }
        }
        s
    }

    /// All connections.
    pub fn total(&self) -> usize {
        self.per_class.iter().sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A consistent synthetic connection (used by coverage and fake-collector tests too).
    pub fn sample(class: ConnClass, i: u32) -> ConnTruth {
        let server_sent = 48 + u64::from(i) * 1000;
        let server_received = 32 + u64::from(i) * 7;
        ConnTruth {
            class,
            client: SocketAddrV4::new([10, 77, 1, 1 + (i % 8) as u8].into(), 20_000 + i as u16),
            server: SocketAddrV4::new([10, 77, 0, 1].into(), 5001),
            cookie: 0x1000 + u64::from(i),
            opened_ns: 1_700_000_000_000_000_000 + u64::from(i) * 1_000_000,
            closed_ns: 1_700_000_010_000_000_000 + u64::from(i) * 1_000_000,
            client_closed_ns: 1_700_000_010_000_000_000 + u64::from(i) * 1_000_000,
            client_sent: server_received,
            client_received: server_sent,
            server_sent,
            server_received,
            server_final: Some(FinalCounters {
                bytes_acked: server_sent + 1,
                bytes_received: server_received + 1,
            }),
        }
    }

    #[test]
    fn round_trip_and_consistency() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        let mut conns: Vec<_> = (0..5).map(|i| sample(ConnClass::Idle, i)).collect();
        conns.push(sample(ConnClass::Short, 9));
        write_truth(&p, &conns).unwrap();
        assert_eq!(read_truth(&p).unwrap(), conns);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains(r#""class":"idle","client":"10.77.1.1:20000""#),
            "{text}"
        );

        assert_eq!(TruthSummary::of(&conns).inconsistent, 0);
        let mut bad = conns.clone();
        bad[1].server_final = Some(FinalCounters {
            bytes_acked: bad[1].server_sent,
            bytes_received: bad[1].server_received + 1,
        });
        bad[2].client_received -= 1;
        bad[3].server_final = None;
        let s = TruthSummary::of(&bad);
        assert_eq!(s.inconsistent, 3);
        assert_eq!(s.per_class, [5, 0, 1]);
        assert!(s.first_error.unwrap().contains("bytes_acked"));
    }
}
