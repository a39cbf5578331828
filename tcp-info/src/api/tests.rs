//! The API over real loopback and unix sockets, with a table filled by hand. The daemon-level
//! tests (real connections, fresh queries, plots of recorded archives, the OpenAPI check, the
//! page in Chromium) are in `tests/tests/api.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::http::LocalAddr;
use crate::record::{ArchivalRecord, Timestamp};
use crate::test_runtime::handle as rt;

/// A record of an ESTABLISHED IPv4 socket 10.0.0.1:`sport` → 192.0.2.7:`dport` with a
/// tcp_info whose rtt is `rtt` µs and bytes_acked `acked`.
fn record(cookie: u64, sport: u16, dport: u16, rtt: u32, acked: u64) -> ArchivalRecord {
    let mut idm = [0u8; 72];
    idm[0] = 2;
    idm[1] = 1;
    idm[4..6].copy_from_slice(&sport.to_be_bytes());
    idm[6..8].copy_from_slice(&dport.to_be_bytes());
    idm[8..12].copy_from_slice(&[10, 0, 0, 1]);
    idm[24..28].copy_from_slice(&[192, 0, 2, 7]);
    idm[44..52].copy_from_slice(&cookie.to_ne_bytes());
    let mut info = vec![0u8; 232];
    info[0] = 1; // tcpi_state
    info[68..72].copy_from_slice(&rtt.to_ne_bytes()); // tcpi_rtt
    info[120..128].copy_from_slice(&acked.to_ne_bytes()); // tcpi_bytes_acked
    ArchivalRecord::new(Timestamp::now(), &idm, &[None, None, Some(&info)])
}

fn get(addr: &LocalAddr, path: &str) -> (u16, Value, String) {
    get_for(addr, path, "127.0.0.1")
}

/// `get` naming `host` in the request.
fn get_for(addr: &LocalAddr, path: &str, host: &str) -> (u16, Value, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut response = Vec::new();
    match addr {
        LocalAddr::Tcp(addr) => {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            s.read_to_end(&mut response).unwrap();
        }
        LocalAddr::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(request.as_bytes()).unwrap();
            s.read_to_end(&mut response).unwrap();
        }
    }
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json, text)
}

fn start(table: &Arc<LiveTable>, listen: &str) -> ApiServer {
    let listen: ApiListen = listen.parse().unwrap();
    serve(
        &listen,
        Arc::clone(table),
        None,
        None,
        std::path::Path::new("."),
        rt(),
        None,
    )
    .unwrap()
}

#[test]
fn listing_filters_sorts_and_limits() {
    let table = Arc::new(LiveTable::new(Duration::from_secs(60)));
    table.update("h_01", &record(1, 80, 5001, 1500, 10));
    table.update("h_02", &record(2, 443, 5002, 500, 30));
    table.update("h_03", &record(3, 443, 5003, 900, 20));
    let server = start(&table, "127.0.0.1:0");
    let addr = server.local_addr().clone();

    let (status, body, _) = get(&addr, "/v1/connections");
    assert_eq!(status, 200);
    assert_eq!(body["matched"], 3);
    let first = &body["connections"][0];
    assert_eq!(first["uuid"], "h_01");
    assert_eq!(first["state"], "ESTABLISHED");
    assert_eq!(first["local"], "10.0.0.1:80");
    assert_eq!(first["remote"], "192.0.2.7:5001");
    assert_eq!(first["rtt_ms"], 1.5);
    assert_eq!(first["bytes_acked"], 10);

    let (_, body, _) = get(&addr, "/v1/connections?port=443&sort=bytes_acked&limit=1");
    assert_eq!(body["matched"], 2);
    assert_eq!(body["connections"].as_array().unwrap().len(), 1);
    assert_eq!(body["connections"][0]["uuid"], "h_02");
    let (_, body, _) = get(&addr, "/v1/connections?sort=rtt&order=asc");
    let order: Vec<&str> = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["uuid"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["h_02", "h_03", "h_01"]);
    let (_, body, _) = get(&addr, "/v1/connections?state=LISTEN");
    assert_eq!(body["matched"], 0);

    for (query, parameter) in [
        ("port=x", "port"),
        ("sort=speed", "sort"),
        ("limit=0", "limit"),
        ("bogus=1", "bogus"),
    ] {
        let (status, body, _) = get(&addr, &format!("/v1/connections?{query}"));
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["parameter"], parameter, "{query}");
        assert!(body["error"].as_str().unwrap().contains(parameter));
    }
}

#[test]
fn detail_names_every_field_and_closed_ones_stay_for_the_retention() {
    let table = Arc::new(LiveTable::new(Duration::from_secs(60)));
    table.update("h_0000000000000005", &record(5, 80, 5005, 2000, 77));
    let server = start(&table, "127.0.0.1:0");
    let addr = server.local_addr().clone();

    let (status, body, _) = get(&addr, "/v1/connections/h_0000000000000005");
    assert_eq!(status, 200);
    assert_eq!(body["open"], true);
    assert_eq!(body["source"], "archive");
    let fields = body["fields"].as_object().unwrap();
    assert_eq!(fields.len(), crate::csv::COLUMNS.len());
    assert_eq!(fields["TCP.RTT"], 2000);
    assert_eq!(fields["TCP.BytesAcked"], 77);
    assert_eq!(fields["IDM.SockID.Src"], "10.0.0.1");
    assert_eq!(fields["IDM.SockID.Cookie"], "5");
    assert_eq!(fields["BBR.BW"], Value::Null);

    let t0 = Instant::now();
    table.close("h_0000000000000005", Timestamp::now(), t0);
    let (status, body, _) = get(&addr, "/v1/connections/h_0000000000000005");
    assert_eq!((status, &body["open"]), (200, &Value::Bool(false)));
    assert!(body["closed"].is_string());
    let (status, body, _) = get(&addr, "/v1/connections");
    assert_eq!(
        (status, &body["matched"]),
        (200, &Value::from(0)),
        "closed: not listed"
    );
    let (status, body, _) = get(&addr, "/v1/connections/h_0000000000000005?fresh=true");
    assert_eq!((status, &body["parameter"]), (409, &Value::from("fresh")));

    table.expire(t0 + Duration::from_secs(61));
    let (status, body, _) = get(&addr, "/v1/connections/h_0000000000000005");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("60s"));
}

#[test]
fn unknown_paths_methods_and_parameters() {
    let table = Arc::new(LiveTable::new(Duration::from_secs(60)));
    table.update("h_1", &record(1, 80, 5001, 1, 1));
    let server = start(&table, "[::1]:0");
    let addr = server.local_addr().clone();
    let (status, body, _) = get(&addr, "/v1/nothing");
    assert_eq!(status, 404);
    assert!(body["error"].is_string());
    let (status, _, _) = get(&addr, "/v1/connections/nope");
    assert_eq!(status, 404);
    // Percent-encoded UUIDs (as the page sends them) are decoded.
    let (status, body, _) = get(&addr, "/v1/connections/h%5F1");
    assert_eq!((status, &body["uuid"]), (200, &Value::from("h_1")));
    let (status, _, _) = get(&addr, "/v1/connections/h%zz");
    assert_eq!(status, 400);
    // Only loopback names: a page that rebinds its own name to 127.0.0.1 gets nothing.
    for host in ["[::1]:9991", "127.0.0.1", "LOCALHOST:80", "127.1.2.3:1"] {
        assert_eq!(get_for(&addr, "/v1/connections", host).0, 200, "{host}");
    }
    for host in ["evil.example:9991", "evil.example", "10.0.0.1:80", ""] {
        let (status, body, _) = get_for(&addr, "/v1/connections", host);
        assert_eq!(status, 421, "{host}");
        assert!(body["error"].as_str().unwrap().contains("127.0.0.1"));
    }
    let (status, body, _) = get(&addr, "/v1/connections/h_1?fresh=maybe");
    assert_eq!((status, &body["parameter"]), (400, &Value::from("fresh")));
    let (status, body, _) = get(&addr, "/v1/connections/h_1?fresh=true");
    assert_eq!(status, 503, "no socket for fresh queries: {body}");
    let (status, _, text) = get(&addr, "/");
    assert_eq!(status, 200);
    assert!(text.contains("<title>tcp-info: live connections</title>"));
    let (status, body, _) = get(&addr, "/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(body["paths"]["/v1/connections/{uuid}"].is_object());

    let LocalAddr::Tcp(tcp) = addr else {
        panic!("{addr:?}")
    };
    let mut s = TcpStream::connect(tcp).unwrap();
    s.write_all(b"POST /v1/connections HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
}

#[test]
fn listens_on_loopback_or_a_unix_socket_only() {
    for refused in ["0.0.0.0:1", ":1", "192.0.2.1:80", "example.com:80"] {
        assert!(refused.parse::<ApiListen>().is_err(), "{refused}");
    }
    for allowed in [
        "127.0.0.1:0",
        "[::1]:0",
        "localhost:0",
        "/run/tcpinfo/api.sock",
    ] {
        assert!(allowed.parse::<ApiListen>().is_ok(), "{allowed}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/tcpinfo/api.sock");
    let table = Arc::new(LiveTable::new(Duration::from_secs(60)));
    let listen = path.display().to_string();
    let server = start(&table, &listen);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // Over a unix socket any Host is accepted (no browser reaches it).
    let (status, body, _) = get_for(server.local_addr(), "/v1/connections", "api");
    assert_eq!((status, &body["matched"]), (200, &Value::from(0)));
    drop(server);
    assert!(!path.exists(), "the socket file is removed at shutdown");
    // A stale socket is replaced; a regular file is refused.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    drop(start(&table, &listen));
    std::fs::write(&path, "").unwrap();
    let listen: ApiListen = listen.parse().unwrap();
    assert!(matches!(listen.bind(), Err(ApiError::InvalidListen { .. })));
}
