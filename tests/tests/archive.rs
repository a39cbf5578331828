//! The archive files of real connections: paths, Metadata, decoding, and exact final counters
//! (SPEC §5, §6.3, §6.4; DESIGN §1 close source).
//!
//! Byte accounting of the final record, checked with `ss -tinE` (the destroy events the close
//! source listens to) on Linux 6.18 for the server socket of the bulk transfer below:
//! `bytes_sent:1000000 bytes_acked:1000001 bytes_received:3000001`. The server is the passive
//! side: its `snd_una`/`rcv_nxt` start one past the two ISNs, so the SYNs are never counted,
//! but `bytes_acked` and `bytes_received` advance over the FIN (each takes one sequence
//! number), so a connection closed in both directions ends with payload + 1 in both;
//! `bytes_sent` counts payload only (including retransmissions, none on a veth).

use std::io::Write as _;
use std::net::{IpAddr, Shutdown};
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use tcp_info::wire::inet_diag::InetDiagMsg;
use tcp_info_tests::archive::{self, ArchiveFile, check_finished_file};
use tcp_info_tests::{Setup, traffic};

const CLIENT_SENDS: usize = 3_000_000;
const SERVER_SENDS: usize = 1_000_000;

/// Asserts the RawIDM of every snapshot names the server socket.
fn assert_endpoints(file: &ArchiveFile, setup: &Setup, server_port: u16, client_port: u16) {
    for r in file.snapshots() {
        let Ok(idm) = InetDiagMsg::new(r.raw_idm()) else {
            panic!("{}: short RawIDM", file.path.display());
        };
        assert_eq!(idm.family(), libc::AF_INET as u8, "{}", file.path.display());
        assert_eq!(idm.sport(), server_port);
        assert_eq!(idm.dport(), client_port);
        assert_eq!(idm.src(), IpAddr::V4(setup.net.server_ip()));
        assert_eq!(idm.dst(), IpAddr::V4(setup.net.client_ip()));
    }
}

#[test]
fn bulk_transfer_gets_spec_paths_metadata_and_exact_final_counters() {
    let Some(setup) = Setup::new("bulk") else {
        return;
    };
    // Started with a umask that would leave the files unreadable to others: the daemon's
    // modes must not depend on it.
    let umask_077 = ["sh", "-c", "umask 077 && exec \"$@\"", "sh"];
    let daemon = setup.start_wrapped(&umask_077, &[], &[]).unwrap();
    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();

    let server = std::thread::spawn(move || {
        let (mut s, cookie, peer) = traffic::accept(&listener)?;
        let received = traffic::drain(&mut s)?;
        s.write_all(&vec![0x5A; SERVER_SENDS])?;
        drop(s);
        anyhow::Ok((cookie, received, peer.port()))
    });
    let mut client = setup.net.connect(port).unwrap();
    // Paced over ≈150 ms so that the 10 ms sweep sees the transfer in progress too.
    for chunk in vec![0xA5; CLIENT_SENDS].chunks(CLIENT_SENDS / 30) {
        client.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(traffic::drain(&mut client).unwrap(), SERVER_SENDS);
    let (cookie, received, client_port) = server.join().unwrap().unwrap();
    assert_eq!(received, CLIENT_SENDS);
    drop(client);

    let root = setup.output();
    let files = archive::wait_for_last(
        &root,
        cookie,
        Duration::from_secs(10),
        "final record of the bulk transfer",
        |_, info| {
            info.is_some_and(|i| {
                i.bytes_received == CLIENT_SENDS as u64 + 1
                    && i.bytes_acked == SERVER_SENDS as u64 + 1
            })
        },
    )
    .unwrap();

    // Exactly one file in the whole tree: the server socket's segment 0. The listener (dst
    // 0.0.0.0) is excluded as local; the client socket lives in another namespace.
    let (all, dirs) = archive::walk(&root).unwrap();
    assert_eq!(
        all.len(),
        1,
        "unexpected files: {all:#?}\n{}",
        daemon.stderr()
    );
    assert_eq!(files.len(), 1);
    let file = check_finished_file(&root, &files[0].path).unwrap();
    assert_eq!(file.name.seq, 0);
    assert_eq!(file.name.uuid, setup.uuid(cookie));
    assert_eq!(file.name.prefix, setup.prefix);
    let file_name = files[0].path.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        file_name,
        format!("{}_{cookie:016X}.00000.jsonl.zst", setup.prefix)
    );
    let meta = file.records[0].metadata.as_ref().unwrap();
    assert_eq!(meta.uuid, setup.uuid(cookie));
    assert_eq!(meta.sequence, 0);
    assert_eq!(meta.start_time, file.snapshots()[0].timestamp);
    assert_endpoints(&file, &setup, port, client_port);

    let last = archive::tcp_info(file.last().unwrap()).unwrap();
    assert_eq!(
        last.bytes_received,
        CLIENT_SENDS as u64 + 1,
        "payload + FIN"
    );
    assert_eq!(last.bytes_acked, SERVER_SENDS as u64 + 1, "payload + FIN");
    assert_eq!(
        last.bytes_sent - last.bytes_retrans,
        SERVER_SENDS as u64,
        "bytes_sent counts payload only"
    );
    // The paced transfer, polled every 10 ms, is seen changing many times.
    assert!(
        file.snapshots().len() >= 5,
        "only {} snapshot(s)",
        file.snapshots().len()
    );

    // Modes: files 0644 and directories 0755 whatever the umask the daemon was started with
    // (D18; upstream's are 0666 and 0777 minus the umask, the same under the usual 022).
    let mode = std::fs::metadata(&file.path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644, "file mode {mode:o}");
    assert_eq!(dirs.len(), 3, "{dirs:#?}");
    for dir in &dirs {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "{} mode {mode:o}", dir.display());
    }
}

/// Connections whose server socket lives well under a millisecond — invisible to a 10 ms
/// sweep — still get a file, and its final record carries the exact counters (the close
/// source's last `tcp_info`).
#[test]
fn sub_millisecond_connections_get_files_with_exact_final_counters() {
    const REQUEST: usize = 1234;
    const REPLY: usize = 567;
    const WANT_FAST: usize = 20;
    const MAX_ATTEMPTS: usize = 400;
    let Some(setup) = Setup::new("short") else {
        return;
    };
    let _daemon = setup.start(&[], &[]).unwrap();
    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_addr = listener.local_addr().unwrap();

    let (cookie_tx, cookie_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        loop {
            let (mut s, cookie, peer) = traffic::accept(&listener)?;
            let got = traffic::drain(&mut s)?;
            if got == 0 {
                // The client's "done" connection (it has a file too).
                return anyhow::Ok(cookie);
            }
            s.write_all(&[0x42; REPLY])?;
            drop(s);
            cookie_tx.send((cookie, got, peer.port()))?;
        }
    });

    // The whole client loop runs on one thread inside the client namespace, so that the
    // measured lifetimes contain no thread start-up.
    let lifetimes = setup
        .net
        .in_client(move || {
            let mut lifetimes = Vec::new();
            let mut fast = 0;
            while fast < WANT_FAST && lifetimes.len() < MAX_ATTEMPTS {
                let start = Instant::now();
                let mut c = std::net::TcpStream::connect(server_addr)?;
                c.set_nodelay(true)?;
                c.write_all(&[0x17; REQUEST])?;
                c.shutdown(Shutdown::Write)?;
                let got = traffic::drain(&mut c)?;
                let lifetime = start.elapsed();
                drop(c);
                anyhow::ensure!(got == REPLY, "reply of {got} bytes");
                if lifetime < Duration::from_millis(1) {
                    fast += 1;
                }
                lifetimes.push(lifetime);
            }
            // Tell the server to stop.
            drop(std::net::TcpStream::connect(server_addr)?);
            anyhow::Ok(lifetimes)
        })
        .unwrap()
        .unwrap();
    let stop_cookie = server.join().unwrap().unwrap();
    let fast = lifetimes
        .iter()
        .filter(|l| **l < Duration::from_millis(1))
        .count();
    eprintln!(
        "{} connections, {fast} under 1 ms; lifetimes: {:?}",
        lifetimes.len(),
        lifetimes
    );
    assert!(
        fast >= WANT_FAST,
        "could not make {WANT_FAST} sub-millisecond connections in {MAX_ATTEMPTS} attempts"
    );

    let root = setup.output();
    let cookies: Vec<(u64, usize, u16)> = cookie_rx.try_iter().collect();
    assert_eq!(cookies.len(), lifetimes.len());
    for (i, (cookie, got, client_port)) in cookies.iter().enumerate() {
        assert_eq!(*got, REQUEST);
        let files = archive::wait_for_last(
            &root,
            *cookie,
            Duration::from_secs(10),
            &format!("file of short connection #{i} ({:?})", lifetimes[i]),
            |_, info| {
                info.is_some_and(|i| {
                    i.bytes_received == REQUEST as u64 + 1 && i.bytes_acked == REPLY as u64 + 1
                })
            },
        )
        .unwrap();
        assert_eq!(files.len(), 1, "connection #{i}: {files:#?}");
        let file = check_finished_file(&root, &files[0].path).unwrap();
        assert_eq!(file.name.uuid, setup.uuid(*cookie));
        assert_endpoints(&file, &setup, port, *client_port);
        let last = archive::tcp_info(file.last().unwrap()).unwrap();
        assert_eq!(last.bytes_sent - last.bytes_retrans, REPLY as u64);
    }
    archive::wait_for_last(
        &root,
        stop_cookie,
        Duration::from_secs(10),
        "file of the final (empty) connection",
        |_, _| true,
    )
    .unwrap();
    let (all, _) = archive::walk(&root).unwrap();
    assert_eq!(
        all.len(),
        cookies.len() + 1,
        "the tree holds files other than the connections' own: {all:#?}"
    );
}
