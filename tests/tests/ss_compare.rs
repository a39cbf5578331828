//! The archive holds what the kernel reports: the last record of a quiescent connection equals,
//! field by field, what `ss -tinHe` (iproute2) prints for the same socket.
//!
//! ss prints a counter only when it is non-zero (absent = 0), times in milliseconds with `%g`
//! (six significant digits, so microsecond values come back exactly up to 1e6 µs),
//! `ssthresh` only below 0xFFFF, and `rto` only when it is not 3 s.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use tcp_info::tcpinfo::TcpInfo;
use tcp_info::wire::inet_diag::InetDiagMsg;
use tcp_info_tests::ss::{SsSocket, ss_server, state_number};
use tcp_info_tests::{Setup, archive, traffic, wait_for};

/// One compared field: its ss name, its value in the archive, and the ss scale (1000 for
/// fields ss prints in milliseconds).
fn fields(info: &TcpInfo) -> Vec<(&'static str, u64, f64)> {
    let ssthresh = if info.snd_ssthresh < 0xFFFF {
        info.snd_ssthresh
    } else {
        0
    };
    vec![
        ("rto", u64::from(info.rto), 1000.0),
        ("ato", u64::from(info.ato), 1000.0),
        ("mss", u64::from(info.snd_mss), 1.0),
        ("pmtu", u64::from(info.pmtu), 1.0),
        ("rcvmss", u64::from(info.rcv_mss), 1.0),
        ("advmss", u64::from(info.advmss), 1.0),
        ("cwnd", u64::from(info.snd_cwnd), 1.0),
        ("ssthresh", u64::from(ssthresh), 1.0),
        ("bytes_sent", info.bytes_sent, 1.0),
        ("bytes_acked", info.bytes_acked, 1.0),
        ("bytes_received", info.bytes_received, 1.0),
        ("segs_out", u64::from(info.segs_out), 1.0),
        ("segs_in", u64::from(info.segs_in), 1.0),
        ("data_segs_out", u64::from(info.data_segs_out), 1.0),
        ("data_segs_in", u64::from(info.data_segs_in), 1.0),
        ("rtt", u64::from(info.rtt), 1000.0),
        ("minrtt", u64::from(info.min_rtt), 1000.0),
        ("rcv_rtt", u64::from(info.rcv_rtt), 1000.0),
        ("rcv_space", u64::from(info.rcv_space), 1.0),
        ("rcv_ssthresh", u64::from(info.rcv_ssthresh), 1.0),
        ("delivered", u64::from(info.delivered), 1.0),
        ("snd_wnd", u64::from(info.snd_wnd), 1.0),
        ("unacked", u64::from(info.unacked), 1.0),
    ]
}

/// ss's value of `key` in archive units (absent = 0), with `rttvar` from `rtt:a/b`.
fn ss_value(ss: &SsSocket, key: &str, scale: f64) -> f64 {
    ss.num(key).map_or(0.0, |v| v * scale)
}

/// Differences between the archive's record and ss's view of the socket.
fn compare(ss: &SsSocket, idm: InetDiagMsg<'_>, info: &TcpInfo) -> Vec<String> {
    let mut diffs = Vec::new();
    let state = state_number(&ss.state);
    if state != Some(idm.state()) || state != Some(info.state) {
        diffs.push(format!(
            "state: ss {} ({state:?}), archive idiag_state {} tcpi_state {}",
            ss.state,
            idm.state(),
            info.state
        ));
    }
    let mut all = fields(info);
    all.push(("rttvar", u64::from(info.rttvar), 1000.0));
    for (key, archived, scale) in all {
        let ss_val = if key == "rttvar" {
            ss.second("rtt").map_or(0.0, |v| v * scale)
        } else if key == "rto" && archived == 3_000_000 {
            // ss hides the initial 3 s RTO.
            3_000_000.0
        } else {
            ss_value(ss, key, scale)
        };
        // Millisecond values are printed with %g: allow the last printed digit's rounding.
        let tolerance = if scale > 1.0 { 1.0 } else { 0.0 };
        if (ss_val - archived as f64).abs() > tolerance {
            diffs.push(format!("{key}: ss {ss_val}, archive {archived}"));
        }
    }
    diffs
}

/// The compared values of an ss entry, to tell whether the socket is quiescent.
fn ss_key(ss: &SsSocket) -> Vec<(String, Option<String>)> {
    let mut keys: Vec<&str> = fields(&TcpInfo::decode(&[])).iter().map(|f| f.0).collect();
    keys.push("retrans");
    let mut out: Vec<(String, Option<String>)> = keys
        .into_iter()
        .map(|k| (k.to_owned(), ss.fields.get(k).cloned()))
        .collect();
    out.push(("state".to_owned(), Some(ss.state.clone())));
    out
}

#[test]
fn last_record_of_a_quiescent_connection_matches_ss() {
    let Some(setup) = Setup::new("ss") else {
        return;
    };
    let _daemon = setup.start(&["--flush-interval=200ms"], &[]).unwrap();
    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = setup.net.connect(port).unwrap();
    let (mut server, cookie, _) = traffic::accept(&listener).unwrap();
    // Traffic both ways in a few rounds (so cwnd, rtt, rcv_space and friends move), then
    // silence with the connection left open.
    for round in 0..5 {
        client.write_all(&vec![1; 40_000 + round]).unwrap();
        server.read_exact(&mut vec![0; 40_000 + round]).unwrap();
        server.write_all(&vec![2; 20_000 + round]).unwrap();
        client.read_exact(&mut vec![0; 20_000 + round]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }

    let filter_text = format!("sport = :{port}");
    let filter: Vec<&str> = filter_text.split(' ').collect();
    let ours = |sockets: Vec<SsSocket>| -> anyhow::Result<SsSocket> {
        sockets
            .into_iter()
            .find(|s| s.cookie == Some(cookie))
            .ok_or_else(|| anyhow::anyhow!("ss does not show cookie {cookie:x}"))
    };
    // Quiescent: the compared fields stop changing and nothing is in flight.
    let mut previous = None;
    let before = wait_for(Duration::from_secs(10), "quiescence", || {
        let now = ours(ss_server(&setup.net, &filter)?)?;
        let key = ss_key(&now);
        let same = previous.as_ref() == Some(&key) && !now.fields.contains_key("unacked");
        previous = Some(key);
        if same {
            return Ok(Some(now));
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(None)
    })
    .unwrap();

    // Give the daemon time to write and flush whatever it saw last, then read the archive and
    // ss once more; the socket did not change in between.
    std::thread::sleep(Duration::from_millis(600));
    let files = archive::cookie_files(&setup.output(), cookie)
        .unwrap()
        .expect("no archive for the connection");
    let after = ours(ss_server(&setup.net, &filter).unwrap()).unwrap();
    assert_eq!(
        ss_key(&before),
        ss_key(&after),
        "the socket changed while quiescent:\n{}\n{}",
        before.text,
        after.text
    );
    let last = files.last().unwrap().last().unwrap();
    let idm = InetDiagMsg::new(last.raw_idm()).unwrap();
    let info = archive::tcp_info(last).unwrap();
    assert_eq!(idm.cookie(), cookie);
    let diffs = compare(&after, idm, &info);
    eprintln!(
        "ss:\n{}\narchive ({}): rto {} ato {} mss {} cwnd {} ssthresh {} rtt {}/{} minrtt {} bytes_acked {} bytes_received {} rcv_space {} snd_wnd {}",
        after.text,
        last.timestamp,
        info.rto,
        info.ato,
        info.snd_mss,
        info.snd_cwnd,
        info.snd_ssthresh,
        info.rtt,
        info.rttvar,
        info.min_rtt,
        info.bytes_acked,
        info.bytes_received,
        info.rcv_space,
        info.snd_wnd
    );
    assert!(
        diffs.is_empty(),
        "archive record at {} differs from ss:\n{}\nss:\n{}",
        last.timestamp,
        diffs.join("\n"),
        after.text
    );
    // The comparison is not vacuous: the counters are the traffic's.
    assert_eq!(info.bytes_received, (0..5).map(|r| 40_000 + r).sum::<u64>());
    assert_eq!(info.bytes_acked, (0..5).map(|r| 20_000 + r).sum::<u64>());
    assert!(info.rtt > 0 && info.snd_cwnd > 0 && info.snd_mss > 0);
}
