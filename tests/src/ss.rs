//! Parsing `ss -tinHe` (iproute2), the reference the archive is compared with.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, anyhow};

use crate::netns::NetPair;

/// One socket as `ss -tinHe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsSocket {
    /// The state column (`ESTAB`, `FIN-WAIT-2`, …).
    pub state: String,
    /// `address:port` of the local end.
    pub local: String,
    /// `address:port` of the peer.
    pub peer: String,
    /// The socket cookie (`sk:<hex>`).
    pub cookie: Option<u64>,
    /// `key:value` tokens of the info line (`rtt` → `0.02/0.01`, …); `send`, `pacing_rate` and
    /// `delivery_rate` (written `key value`) are included as well.
    pub fields: BTreeMap<String, String>,
    /// The whole text, for messages.
    pub text: String,
}

impl SsSocket {
    /// A numeric field, or `None` when ss did not print it.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.fields.get(key)?.split('/').next()?.parse().ok()
    }

    /// The second half of an `a/b` field (`rtt:rtt/rttvar`).
    pub fn second(&self, key: &str) -> Option<f64> {
        self.fields.get(key)?.split('/').nth(1)?.parse().ok()
    }
}

/// Runs `ss -tinHe` with `filter` (e.g. `sport = :5000`) in the server namespace.
pub fn ss_server(net: &NetPair, filter: &[&str]) -> Result<Vec<SsSocket>> {
    let mut args = vec!["-tinHe", "state", "all"];
    args.extend_from_slice(filter);
    let out = net.exec_in_server("ss", &args)?;
    parse(&out)
}

/// Parses `ss -tinHe` output: a socket line, then indented info lines.
pub fn parse(out: &str) -> Result<Vec<SsSocket>> {
    let mut sockets: Vec<SsSocket> = Vec::new();
    for line in out.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let last = sockets
                .last_mut()
                .ok_or_else(|| anyhow!("info line before any socket line: {line:?}"))?;
            last.text.push('\n');
            last.text.push_str(line);
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let mut i = 0;
            while i < tokens.len() {
                let t = tokens[i];
                if let Some((k, v)) = t.split_once(':') {
                    last.fields.insert(k.to_owned(), v.to_owned());
                } else if matches!(t, "send" | "pacing_rate" | "delivery_rate") {
                    if let Some(v) = tokens.get(i + 1) {
                        last.fields.insert(t.to_owned(), (*v).to_owned());
                        i += 1;
                    }
                } else {
                    last.fields.insert(t.to_owned(), String::new());
                }
                i += 1;
            }
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let get = |i: usize| {
            tokens
                .get(i)
                .map(|s| (*s).to_owned())
                .ok_or_else(|| anyhow!("short ss socket line {line:?}"))
        };
        let cookie = tokens
            .iter()
            .find_map(|t| t.strip_prefix("sk:"))
            .map(|hex| u64::from_str_radix(hex, 16))
            .transpose()
            .with_context(|| format!("bad sk: in {line:?}"))?;
        sockets.push(SsSocket {
            state: get(0)?,
            local: get(3)?,
            peer: get(4)?,
            cookie,
            fields: BTreeMap::new(),
            text: line.to_owned(),
        });
    }
    Ok(sockets)
}

/// The TCP state number for ss's state name.
pub fn state_number(name: &str) -> Option<u8> {
    Some(match name {
        "ESTAB" => 1,
        "SYN-SENT" => 2,
        "SYN-RECV" => 3,
        "FIN-WAIT-1" => 4,
        "FIN-WAIT-2" => 5,
        "TIME-WAIT" => 6,
        "UNCONN" | "CLOSE" => 7,
        "CLOSE-WAIT" => 8,
        "LAST-ACK" => 9,
        "LISTEN" => 10,
        "CLOSING" => 11,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_socket_and_info_lines() {
        let out = "ESTAB  0      0      10.1.2.1:5000 10.1.2.2:51958 ino:345277 sk:22ebf cgroup:unreachable:1 <->\n\t ts sack bbr wscale:10,10 rto:204 rtt:0.02/0.01 mss:1448 cwnd:10 bytes_received:3000001 send 5792000000bps pacing_rate 16552676248bps app_limited\nLISTEN 0 128 0.0.0.0:22 0.0.0.0:* ino:1 sk:1\n";
        let s = parse(out).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].state, "ESTAB");
        assert_eq!(s[0].local, "10.1.2.1:5000");
        assert_eq!(s[0].peer, "10.1.2.2:51958");
        assert_eq!(s[0].cookie, Some(0x22ebf));
        assert_eq!(s[0].num("rto"), Some(204.0));
        assert_eq!(s[0].num("rtt"), Some(0.02));
        assert_eq!(s[0].second("rtt"), Some(0.01));
        assert_eq!(s[0].num("bytes_received"), Some(3_000_001.0));
        assert_eq!(s[0].fields["send"], "5792000000bps");
        assert!(s[0].fields.contains_key("app_limited"));
        assert_eq!(s[1].state, "LISTEN");
        assert!(s[1].fields.is_empty());
    }
}
