//! The query API against a running daemon with real connections: listing, the detail of a
//! connection by UUID (within and after the retention), `fresh=true` during a bulk flow, the
//! plot, and every answer checked against the OpenAPI description the daemon serves.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure should fail the test where it happens"
)]

use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tcp_info_tests::openapi::OpenApi;
use tcp_info_tests::{Setup, archive, traffic, wait_for};

/// One `GET` over the API's unix socket: status, content type, body.
fn get(socket: &Path, path: &str) -> (u16, String, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: api\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_default()
        .to_owned();
    (status, content_type, body.to_owned())
}

/// `get`, checked against the description; the JSON body.
fn checked(api: &OpenApi, socket: &Path, path: &str, status: u16) -> Value {
    let (got, content_type, body) = get(socket, path);
    assert_eq!(got, status, "{path}: {body}");
    let bare = path.split('?').next().unwrap();
    api.check(bare, got, &content_type, &body)
        .unwrap_or_else(|e| panic!("{path}: {e:#}\n{body}"));
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

#[test]
fn connections_by_uuid_fresh_queries_retention_and_plots_match_the_openapi_description() {
    let Some(setup) = Setup::new("api") else {
        return;
    };
    let socket = setup.dir().join("api.sock");
    let api_arg = format!("--api.listen-address={}", socket.display());
    let _daemon = setup
        .start(
            &[&api_arg, "--api.retention=3s", "--flush-interval=2s"],
            &[],
        )
        .unwrap();
    // The API starts after the metrics endpoint the start-up waited for.
    wait_for(Duration::from_secs(10), "the API socket", || {
        Ok(UnixStream::connect(&socket).is_ok().then_some(()))
    })
    .unwrap();
    let (_, _, description) = get(&socket, "/v1/openapi.json");
    let api = OpenApi::parse(&description).unwrap();

    // A bulk flow paced over about 3 s, client → server.
    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = setup.net.connect(port).unwrap();
    let (mut server, cookie, _) = traffic::accept(&listener).unwrap();
    let uuid = setup.uuid(cookie);
    let receiver = std::thread::spawn(move || {
        let n = traffic::drain(&mut server).unwrap();
        drop(server);
        n
    });
    let sender = std::thread::spawn(move || {
        let chunk = vec![0x5a_u8; 100_000];
        for _ in 0..60 {
            client.write_all(&chunk).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        client.shutdown(Shutdown::Write).unwrap();
        client
    });

    // Listed while it runs, with its figures, found by port.
    let listed = wait_for(Duration::from_secs(5), "the connection listed", || {
        let body = checked(&api, &socket, &format!("/v1/connections?port={port}"), 200);
        Ok(body["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["uuid"] == uuid.as_str())
            .cloned())
    })
    .unwrap();
    assert_eq!(listed["state"], "ESTABLISHED");
    assert_eq!(
        listed["local"],
        format!("{}:{port}", setup.net.server_ip()).as_str()
    );
    checked(
        &api,
        &socket,
        "/v1/connections?sort=bytes_received&limit=1",
        200,
    );
    checked(&api, &socket, "/v1/connections?state=LISTEN", 200);

    // During the flow, fresh=true answers with the kernel's record of now: newer than the
    // archive's last line (asked for first; the files on disk, flushed every 2 s here, are
    // older still), with at least as many bytes received.
    std::thread::sleep(Duration::from_millis(1500));
    let archived = checked(&api, &socket, &format!("/v1/connections/{uuid}"), 200);
    assert_eq!(archived["source"], "archive");
    assert_eq!(archived["fields"].as_object().unwrap().len(), 105);
    let fresh = checked(
        &api,
        &socket,
        &format!("/v1/connections/{uuid}?fresh=true"),
        200,
    );
    assert_eq!(fresh["source"], "kernel");
    let time = |v: &Value| {
        v["time"]
            .as_str()
            .unwrap()
            .parse::<tcp_info::record::Timestamp>()
            .unwrap()
            .unix_nanos()
    };
    assert!(
        time(&fresh) > time(&archived),
        "fresh {} vs archived {}",
        fresh["time"],
        archived["time"]
    );
    // An error here is a file with no frame flushed yet: nothing on disk.
    let files = archive::cookie_files(&setup.output(), cookie)
        .ok()
        .flatten()
        .unwrap_or_default();
    let on_disk = files
        .iter()
        .flat_map(archive::ArchiveFile::snapshots)
        .map(|r| r.timestamp.unix_nanos())
        .max()
        .unwrap_or(0);
    assert!(time(&fresh) > on_disk, "fresh vs the archive on disk");
    let received = |v: &Value| v["fields"]["TCP.BytesReceived"].as_u64().unwrap();
    assert!(received(&fresh) >= received(&archived));
    assert!(received(&fresh) > 0);

    // The plot of the live connection, once its archive has a first flush (2 s).
    let svg = wait_for(
        Duration::from_secs(4),
        "a plot of the open connection",
        || {
            let (status, content_type, svg) =
                get(&socket, &format!("/v1/connections/{uuid}/plot.svg"));
            api.check(
                &format!("/v1/connections/{uuid}/plot.svg"),
                status,
                &content_type,
                &svg,
            )?;
            Ok((status == 200 && content_type == "image/svg+xml").then_some(svg))
        },
    )
    .unwrap();
    assert!(svg.contains("<svg") && svg.contains(&uuid));
    let still_open = checked(&api, &socket, &format!("/v1/connections/{uuid}"), 200);
    assert_eq!(still_open["open"], true, "plotted while open");

    // It ends: closed, still answered within the retention, with its final counters.
    let client = sender.join().unwrap();
    assert_eq!(receiver.join().unwrap(), 6_000_000);
    drop(client);
    let closed = wait_for(Duration::from_secs(5), "the connection closed", || {
        let body = checked(&api, &socket, &format!("/v1/connections/{uuid}"), 200);
        Ok((body["open"] == false).then_some(body))
    })
    .unwrap();
    let closed_at = Instant::now();
    assert!(closed["closed"].is_string());
    assert_eq!(received(&closed), 6_000_001, "every byte and the FIN");
    let body = checked(&api, &socket, &format!("/v1/connections?port={port}"), 200);
    assert!(
        !body["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["uuid"] == uuid.as_str()),
        "a closed connection is not listed"
    );
    let refused = checked(
        &api,
        &socket,
        &format!("/v1/connections/{uuid}?fresh=true"),
        409,
    );
    assert_eq!(refused["parameter"], "fresh");
    checked(
        &api,
        &socket,
        &format!("/v1/connections/{uuid}/plot.svg?x=1"),
        400,
    );

    // After the retention (3 s, expired at most a second late): 404, for the plot too.
    let gone = wait_for(Duration::from_secs(8), "the retention to pass", || {
        let (status, _, _) = get(&socket, &format!("/v1/connections/{uuid}"));
        Ok((status == 404).then_some(()))
    });
    gone.unwrap();
    assert!(
        closed_at.elapsed() >= Duration::from_secs(2),
        "kept for the retention"
    );
    let missing = checked(&api, &socket, &format!("/v1/connections/{uuid}"), 404);
    assert!(missing["error"].as_str().unwrap().contains(&uuid));
    checked(
        &api,
        &socket,
        &format!("/v1/connections/{uuid}/plot.svg"),
        404,
    );

    // Bad parameters name themselves.
    for (query, parameter) in [
        ("port=99999", "port"),
        ("state=NOPE", "state"),
        ("sort=speed", "sort"),
        ("order=asc", "order"),
        ("limit=-1", "limit"),
        ("colour=red", "colour"),
    ] {
        let body = checked(&api, &socket, &format!("/v1/connections?{query}"), 400);
        assert_eq!(body["parameter"], parameter, "{query}");
    }
    let body = checked(
        &api,
        &socket,
        &format!("/v1/connections/{uuid}?fresh=perhaps"),
        400,
    );
    assert_eq!(body["parameter"], "fresh");

    // Every operation the description lists was exercised above, with every parameter.
    let exercised = [
        (
            "/v1/connections",
            vec!["port", "state", "sort", "order", "limit"],
        ),
        ("/v1/connections/{uuid}", vec!["uuid", "fresh"]),
        ("/v1/connections/{uuid}/plot.svg", vec!["uuid"]),
    ];
    let operations = api.operations();
    assert_eq!(operations.len(), exercised.len(), "{operations:?}");
    for (template, parameters) in exercised {
        assert!(
            operations.contains(&(template.to_owned(), "get".to_owned())),
            "{template}"
        );
        assert_eq!(
            api.parameters(template, "get").unwrap(),
            parameters,
            "{template}"
        );
    }
}

#[test]
fn the_api_is_off_by_default() {
    let Some(setup) = Setup::new("apioff") else {
        return;
    };
    let daemon = setup.start(&[], &[]).unwrap();
    // Everything has started once the capabilities are dropped: no API by then.
    wait_for(Duration::from_secs(10), "the start-up", || {
        Ok(daemon.stderr().contains("capabilit").then_some(()))
    })
    .unwrap();
    assert!(
        !daemon.stderr().contains("query API"),
        "{}",
        daemon.stderr()
    );
}

/// The API's server counts the connections it drops beside the metrics endpoint's, under
/// `server="api"`: a fifth silent client of one user pushes out the oldest of four that have
/// waited for their request heads over half a second.
#[test]
fn connections_the_api_drops_are_counted() {
    let Some(setup) = Setup::new("apidrop") else {
        return;
    };
    let socket = setup.dir().join("api.sock");
    let api_arg = format!("--api.listen-address={}", socket.display());
    let mut daemon = setup.start(&[&api_arg], &[]).unwrap();
    let name = "tcpinfo_http_connections_dropped_total";
    let evicted = [("server", "api"), ("reason", "evicted_waiting")];
    let before = setup.scrape(&mut daemon).unwrap();
    assert_eq!(
        before.select(name, &[("server", "api")]).count(),
        6,
        "one series per reason for the API"
    );
    assert!(before.total(name, &evicted) < 0.5, "nothing dropped yet");
    wait_for(Duration::from_secs(10), "the API socket", || {
        Ok(socket.exists().then_some(()))
    })
    .unwrap();
    let silent: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    // Until the daemon has held the silent ones for half a second a fifth is refused (counted
    // as peer_limit); then one pushes out the oldest.
    wait_for(Duration::from_secs(10), "a fifth client admitted", || {
        let mut stream = UnixStream::connect(&socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _ = stream.write_all(b"GET /v1/connections HTTP/1.1\r\nHost: api\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        if answer.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(answer.starts_with("HTTP/1.1 200").then_some(()))
    })
    .unwrap();
    let after = setup.scrape(&mut daemon).unwrap();
    let dropped = after.total(name, &evicted);
    assert!((dropped - 1.0).abs() < 0.5, "{dropped} dropped, 1 expected");
    drop(silent);
}
