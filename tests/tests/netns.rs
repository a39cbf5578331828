//! Every network namespace of a node (`--netns all`): pods made of a namespace, a process and a
//! kubelet-style cgroup, with connections in each and in the daemon's own namespace. The daemon
//! runs in the mode of `TCP_INFO_E2E_MODE`, watching every namespace of the host (other tests'
//! included: this test checks its own connections by cookie, which are unique on the host).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure should fail the test where it happens"
)]

use std::io::Write as _;
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tcp_info::events::{Decoded, FlowEvent};
use tcp_info::record::NetnsTag;
use tcp_info::wire::inet_diag::{InetDiagMsg, state};
use tcp_info_tests::pods::{Naming, Pod};
use tcp_info_tests::{Daemon, Setup, archive, traffic, wait_for};

/// The tests of this file run one at a time: each daemon watches every namespace of the host,
/// so the other test's pods would change the descriptor and namespace counts it checks.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `tcpinfo_netns_watched` now.
fn watched(setup: &Setup, daemon: &mut Daemon) -> u64 {
    let value = setup
        .scrape(daemon)
        .unwrap()
        .total("tcpinfo_netns_watched", &[]);
    value as u64
}

/// Sends `bytes` from `client` to `server`, then closes both ends (client first); returns once
/// the server read everything.
fn transfer_and_close(mut client: TcpStream, mut server: TcpStream, bytes: usize) {
    let reader = std::thread::spawn(move || {
        let n = traffic::drain(&mut server).unwrap();
        drop(server);
        n
    });
    client.write_all(&vec![0x5a; bytes]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(reader.join().unwrap(), bytes);
    drop(client);
}

/// Waits for the server socket's final record (closed, every byte and the FIN received: the
/// FIN takes one sequence number, which `tcpi_bytes_received` counts) and returns the
/// `Netns` tag of its first file's Metadata line, after checking every file of it whole.
fn final_record_and_tag(setup: &Setup, cookie: u64, bytes: usize) -> Option<Arc<NetnsTag>> {
    let files = archive::wait_for_last(
        &setup.output(),
        cookie,
        Duration::from_secs(15),
        "the final record",
        |r, info| {
            let state = InetDiagMsg::new(r.raw_idm()).unwrap().state();
            (state == state::CLOSE || state == state::LAST_ACK || state == state::TIME_WAIT)
                && info.is_some_and(|i| i.bytes_received == bytes as u64 + 1)
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let first = &files[0].records[0];
    first.metadata.as_ref().unwrap().netns.clone()
}

/// The daemon's open descriptors.
fn descriptors(daemon: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", daemon.pid().unwrap()))
        .unwrap()
        .count()
}

fn inode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    u32::try_from(std::fs::metadata(path).unwrap().ino()).unwrap()
}

#[test]
fn every_pod_and_the_own_namespace_are_recorded_with_exact_counters_and_their_owner() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("netnsall") else {
        return;
    };
    let bundles = setup.dir().join("bundles");
    std::fs::create_dir(&bundles).unwrap();
    let namings = [
        Naming::Bundle(bundles.clone()),
        Naming::Environment,
        Naming::Hostname,
    ];
    let pods: Vec<Pod> = namings
        .iter()
        .map(|n| Pod::create("web", n).unwrap())
        .collect();
    let bundle_arg = format!("--netns.bundle-roots={}", bundles.display());
    let (_daemon, events) = setup
        .start_with_events(&[
            "--netns=all",
            "--netns.attribution",
            &bundle_arg,
            "--exclude-local=false",
        ])
        .unwrap();

    // One connection in each pod and one in the daemon's own namespace, each with its own
    // byte count.
    let mut expected = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let (client, server, cookie) = pod.connection().unwrap();
        let bytes = 100_000 * (i + 1) + 17;
        transfer_and_close(client, server, bytes);
        expected.push((cookie, bytes, Some(pod)));
    }
    let listener = setup.net.listen().unwrap();
    let (client, server, own_cookie) = setup.connected(&listener).unwrap();
    transfer_and_close(client, server, 54_321);
    expected.push((own_cookie, 54_321, None));

    for (cookie, bytes, pod) in &expected {
        let tag = final_record_and_tag(&setup, *cookie, *bytes)
            .unwrap_or_else(|| panic!("{cookie:016X}: no Netns key in the Metadata line"));
        let Some(pod) = pod else {
            assert_eq!(tag.inode, inode(&setup.net.server_path()));
            assert_eq!(tag.pod_uid, None, "the test's own namespace is no pod");
            continue;
        };
        assert_eq!(tag.inode, pod.inode().unwrap(), "{}", pod.name);
        assert_eq!(
            tag.pod_uid.as_deref(),
            Some(pod.uid.as_str()),
            "{}",
            pod.name
        );
        assert_eq!(
            tag.container_id.as_deref(),
            Some(pod.container.as_str()),
            "{}",
            pod.name
        );
        assert_eq!(tag.pod_name.as_deref(), Some(pod.name.as_str()));
        let namespace = match pod_naming(&namings, &pods, pod) {
            Naming::Hostname => None,
            _ => Some(pod.namespace.as_str()),
        };
        assert_eq!(tag.pod_namespace.as_deref(), namespace, "{}", pod.name);
    }

    // Every file of these connections is whole and accepted by the ETL, whose parser ignores
    // the extra key.
    for (cookie, _, _) in &expected {
        for (path, name) in archive::archive_files(&setup.output()).unwrap() {
            if name.cookie == *cookie {
                archive::check_finished_file(&setup.output(), &path).unwrap();
            }
        }
    }

    // Events carry the tag too: an Open and a Close for each pod connection.
    let first_pod = &pods[0];
    let uuid = setup.uuid(expected[0].0);
    let lines = events
        .wait_until(
            Duration::from_secs(10),
            "the pod connection's Close",
            |lines| {
                lines
                    .iter()
                    .any(|l| l.text.contains(&uuid) && l.text.contains("\"Event\":1"))
            },
        )
        .unwrap();
    for line in lines.iter().filter(|l| l.text.contains(&uuid)) {
        let Decoded::Event(FlowEvent { kind, netns, .. }) =
            FlowEvent::decode(line.text.as_bytes()).unwrap()
        else {
            panic!("unknown event {}", line.text);
        };
        let netns = netns.unwrap_or_else(|| panic!("{kind:?} without Netns: {}", line.text));
        assert_eq!(netns.pod_name.as_deref(), Some(first_pod.name.as_str()));
        assert_eq!(netns.inode, first_pod.inode().unwrap());
    }
    assert!(
        lines
            .iter()
            .any(|l| l.text.contains(&uuid) && l.text.contains("\"Event\":0")),
        "no Open event for {uuid}"
    );
}

/// The naming a pod was created with.
fn pod_naming<'a>(namings: &'a [Naming], pods: &[Pod], pod: &Pod) -> &'a Naming {
    let i = pods.iter().position(|p| p.ns == pod.ns).unwrap();
    &namings[i]
}

#[test]
fn namespaces_that_appear_are_recorded_and_those_that_go_release_their_sockets() {
    let _serial = one_at_a_time();
    let Some(setup) = Setup::new("netnsdyn") else {
        return;
    };
    // In eBPF mode, no safety-net sweep after start-up: what a new namespace's sockets do
    // once it is watched is recorded from marks alone.
    let mut daemon = setup
        .start(
            &[
                "--netns=all",
                "--exclude-local=false",
                "--safety-sweep-interval=1h",
            ],
            &[],
        )
        .unwrap();
    let before = descriptors(&daemon);
    let namespaces = watched(&setup, &mut daemon);
    assert!(namespaces >= 3, "the host's, and the test's two at least");

    // A pod created after start: its connection is recorded within a few seconds.
    let pod = Pod::create("late", &Naming::Hostname).unwrap();
    let (mut client, server, cookie) = pod.connection().unwrap();
    client.write_all(&[1; 1000]).unwrap();
    let found = wait_for(Duration::from_secs(5), "the new pod's connection", || {
        archive::cookie_files(&setup.output(), cookie)
    });
    found.unwrap();
    // More data: recorded at once (from a mark in eBPF mode: its socket was seen before its
    // namespace was watched, and is marked now that it is).
    client.write_all(&[2; 1000]).unwrap();
    archive::wait_for_last(
        &setup.output(),
        cookie,
        Duration::from_secs(2),
        "the second write",
        |_, info| info.is_some_and(|i| i.bytes_received == 2000),
    )
    .unwrap();
    // Its namespace holds three sockets in the daemon: dumps and queries, confirmations, and
    // destroy notifications.
    wait_for(Duration::from_secs(5), "the pod's sockets", || {
        Ok((descriptors(&daemon) >= before + 3).then_some(()))
    })
    .unwrap();
    let open = descriptors(&daemon);
    assert_eq!(watched(&setup, &mut daemon), namespaces + 1);

    // The pod goes away (its process ends, its bind mount is removed) while the test still
    // holds a connection in it: the daemon releases the namespace's sockets and ends the
    // connection, its file finished.
    drop(pod);
    wait_for(Duration::from_secs(5), "the pod's sockets released", || {
        Ok((descriptors(&daemon) <= open - 3).then_some(()))
    })
    .unwrap();
    assert_eq!(watched(&setup, &mut daemon), namespaces);
    let files = archive::cookie_files(&setup.output(), cookie)
        .unwrap()
        .unwrap();
    // Finished files are checked whole (a file still open would fail the frame check).
    let done = wait_for(
        Duration::from_secs(5),
        "the connection's file finished",
        || {
            Ok(files
                .iter()
                .all(|f| archive::check_finished_file(&setup.output(), &f.path).is_ok())
                .then_some(()))
        },
    );
    done.unwrap();
    drop((client, server));
    daemon.terminate().unwrap();
}
