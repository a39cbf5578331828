//! The query API's HTTP side: routes, JSON answers, and the blocking work (exact queries,
//! reading archives for plots) moved off the runtime's workers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::runtime::Handle;

use super::live::{LiveConnection, LiveTable};
use super::query::{BadParameter, DetailQuery, ListQuery, Summary, percent_decode, select};
use super::{Anonymize, ApiError, ApiListen};
use crate::csv::{Cell, named_cells};
use crate::http::{DropHook, Handler, LocalAddr, Options, Server};
use crate::plot::PlotError;
use crate::record::{ArchivalRecord, Timestamp};
use crate::snapshot::Snapshot;
use crate::sockdiag::{Checked, DiagSocket, ExactTarget};
use crate::wire::inet_diag::InetDiagMsg;

/// The live page: one static file, no external assets.
const PAGE: &str = include_str!("page.html");
/// The OpenAPI description of the endpoints.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the handlers share.
struct State {
    table: Arc<LiveTable>,
    anonymize: Option<Anonymize>,
    /// For `?fresh=true`: a sock_diag socket in the daemon's own namespace.
    fresh: Option<Arc<Mutex<DiagSocket>>>,
    /// The archive root, for plots.
    output: PathBuf,
    /// Whether requests must name a loopback host (TCP listeners): a web page the operator's
    /// browser visits could otherwise rebind its own name to 127.0.0.1 and read the API.
    check_host: bool,
    /// One plot is drawn at a time: each reads a whole archive.
    plotting: tokio::sync::Semaphore,
}

/// The largest archive (compressed bytes, all segments) the API plots: about 50 000 records
/// at the ≤ 40 B/record the format reaches, a few tens of MB in memory while drawn. Larger
/// ones are answered 413, pointing to `tcp-info plot`, which has no such limit.
pub const MAX_PLOT_ARCHIVE_BYTES: u64 = 2 << 20;

/// The running API server.
#[derive(Debug)]
pub struct ApiServer {
    server: Server,
}

impl ApiServer {
    /// Where it listens.
    pub fn local_addr(&self) -> &LocalAddr {
        self.server.local_addr()
    }

    /// Stops it (see [`Server::shutdown`]); a unix socket file is removed.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

/// Binds `listen` and serves the API from `table` on `runtime`. `fresh` answers
/// `?fresh=true` (without it those requests get 503); `output` is the archive root; `on_drop`
/// is told of connections the server drops (the daemon counts them as the metrics endpoint's).
pub fn serve(
    listen: &ApiListen,
    table: Arc<LiveTable>,
    anonymize: Option<Anonymize>,
    fresh: Option<DiagSocket>,
    output: &Path,
    runtime: &Handle,
    on_drop: Option<DropHook>,
) -> Result<ApiServer, ApiError> {
    let listener = listen.bind()?;
    let state = Arc::new(State {
        table,
        anonymize,
        fresh: fresh.map(|s| Arc::new(Mutex::new(s))),
        output: output.to_path_buf(),
        check_host: matches!(listen, ApiListen::Tcp(_)),
        plotting: tokio::sync::Semaphore::new(1),
    });
    let handler: Handler = Arc::new(move |request: Request<Incoming>| {
        let state = Arc::clone(&state);
        Box::pin(async move { respond(&request, &state).await })
    });
    let options = Options {
        on_drop,
        ..Options::default()
    };
    let server =
        Server::start_with("api", listener, handler, runtime, options).map_err(|source| {
            ApiError::Bind {
                listen: listen.to_string(),
                source,
            }
        })?;
    tracing::info!("query API listening on {}", server.local_addr());
    Ok(ApiServer { server })
}

async fn respond(request: &Request<Incoming>, state: &Arc<State>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD", None);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if state.check_host && !loopback_host(request) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "the API answers requests for 127.0.0.1, [::1] or localhost only",
            None,
        );
    }
    let query = request.uri().query();
    let path = request.uri().path();
    let Some(segments) = path
        .trim_start_matches('/')
        .split('/')
        .map(|segment| percent_decode(segment, false))
        .collect::<Option<Vec<String>>>()
    else {
        return error(StatusCode::BAD_REQUEST, "bad %-encoding in the path", None);
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [""] => body(StatusCode::OK, "text/html; charset=utf-8", PAGE.into()),
        ["v1", "openapi.json"] => body(StatusCode::OK, "application/json", OPENAPI.into()),
        ["v1", "connections"] => match ListQuery::parse(query) {
            Ok(q) => list(state, q).await,
            Err(bad) => bad_parameter(&bad),
        },
        ["v1", "connections", uuid] => match DetailQuery::parse(query) {
            Ok(q) => detail(state, uuid, q).await,
            Err(bad) => bad_parameter(&bad),
        },
        ["v1", "connections", uuid, "plot.svg"] => match query.filter(|q| !q.is_empty()) {
            None => plot(state, uuid).await,
            Some(query) => bad_parameter(&BadParameter {
                name: query
                    .split(['=', '&'])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                reason: "unknown parameter (plot.svg takes none)".to_owned(),
            }),
        },
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no such endpoint: {path}"),
            None,
        ),
    }
}

/// Whether the request's `Host` is a loopback name (with any port): `127.0.0.0/8`, `[::1]`
/// or `localhost`. A request without one (HTTP/1.0) is refused too.
fn loopback_host(request: &Request<Incoming>) -> bool {
    let Some(host) = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `record` with its addresses anonymized as the archives have them.
fn as_archived(state: &State, record: &ArchivalRecord) -> ArchivalRecord {
    let Some(anonymize) = &state.anonymize else {
        return record.clone();
    };
    let Ok(idm) = <&[u8; 72]>::try_from(record.raw_idm()) else {
        return record.clone();
    };
    let copy = anonymize(idm);
    let attributes: Vec<Option<&[u8]>> = record.attributes().collect();
    ArchivalRecord::new(record.timestamp, &copy, &attributes)
}

/// The listing. Decoding every open connection's record is work for a blocking thread; the
/// table's lock is held only to copy pointers.
async fn list(state: &Arc<State>, query: ListQuery) -> Response<Full<Bytes>> {
    let state = Arc::clone(state);
    let listed = tokio::task::spawn_blocking(move || {
        let now = Timestamp::now();
        let summaries: Vec<Summary> = state
            .table
            .open_connections()
            .iter()
            .filter_map(|c| {
                Summary::of(&c.uuid, &as_archived(&state, &c.latest), c.first_seen, now)
            })
            .collect();
        let (page, matched) = select(summaries, &query);
        json!({
            "connections": page.iter().map(Summary::to_json).collect::<Vec<_>>(),
            "matched": matched,
            "time": now.to_string(),
        })
    })
    .await;
    match listed {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the listing task failed: {e}"),
            None,
        ),
    }
}

/// A UUID as the daemon writes them: `<prefix>_<16 hex digits>`, printable, no `/`.
fn valid_uuid(uuid: &str) -> bool {
    !uuid.is_empty() && uuid.len() <= 512 && uuid.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

fn unknown_uuid(uuid: &str, retention: std::time::Duration) -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "no connection {uuid:?}: neither open nor closed within the last {}s",
            retention.as_secs()
        ),
        None,
    )
}

async fn detail(state: &Arc<State>, uuid: &str, query: DetailQuery) -> Response<Full<Bytes>> {
    if !valid_uuid(uuid) {
        return unknown_uuid(uuid, state.table.retention());
    }
    let Some(conn) = state.table.get(uuid) else {
        return unknown_uuid(uuid, state.table.retention());
    };
    let (record, source) = if query.fresh {
        match fresh_record(state, &conn).await {
            Ok(record) => (record, "kernel"),
            Err(response) => return response,
        }
    } else {
        (ArchivalRecord::clone(&conn.latest), "archive")
    };
    let record = as_archived(state, &record);
    let Ok(snapshot) = Snapshot::decode(&record) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the record does not decode",
            None,
        );
    };
    let mut fields = Map::new();
    for (name, cell) in named_cells(&snapshot) {
        let value = match cell {
            Cell::Empty => Value::Null,
            Cell::Text(text) => Value::String(text),
            Cell::Number(text) => text
                .parse::<u64>()
                .map(Value::from)
                .or_else(|_| text.parse::<i64>().map(Value::from))
                .or_else(|_| text.parse::<f64>().map(Value::from))
                .unwrap_or(Value::String(text)),
        };
        fields.insert(name.to_owned(), value);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "uuid": conn.uuid,
            "open": conn.closed.is_none(),
            "first_seen": conn.first_seen.to_string(),
            "closed": conn.closed.map(|t| t.to_string()),
            "source": source,
            "time": record.timestamp.to_string(),
            "fields": fields,
        }),
    )
}

/// An exact query for `conn` now (SPEC §13), checked against its cookie.
async fn fresh_record(
    state: &Arc<State>,
    conn: &LiveConnection,
) -> Result<ArchivalRecord, Response<Full<Bytes>>> {
    if conn.closed.is_some() {
        return Err(error(
            StatusCode::CONFLICT,
            "the connection is closed: there is nothing to query (ask without fresh=true)",
            Some("fresh"),
        ));
    }
    let Some(socket) = state.fresh.clone() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "fresh queries are unavailable: the API has no sock_diag socket",
            Some("fresh"),
        ));
    };
    let target = InetDiagMsg::new(conn.latest.raw_idm())
        .ok()
        .and_then(|idm| ExactTarget::of(&idm));
    let Some(target) = target else {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the connection's record names no socket to query",
            None,
        ));
    };
    let asked = target;
    let answer = tokio::task::spawn_blocking(move || {
        let mut socket = socket.lock().unwrap_or_else(PoisonError::into_inner);
        let mut replies = Vec::new();
        socket
            .query_exact(std::slice::from_ref(&asked), &mut replies)
            .map(|_| replies)
            .map_err(|e| e.to_string())
    })
    .await;
    let replies = match answer {
        Ok(Ok(replies)) => replies,
        Ok(Err(e)) => {
            return Err(error(
                StatusCode::BAD_GATEWAY,
                &format!("the exact query failed: {e}"),
                None,
            ));
        }
        Err(e) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the exact query task failed: {e}"),
                None,
            ));
        }
    };
    let now = Timestamp::now();
    for reply in &replies {
        match target.check(&reply.outcome) {
            Checked::Live(payload) => {
                return ArchivalRecord::from_diag_payload(payload, now)
                    .map(|(record, _)| record)
                    .map_err(|e| {
                        error(
                            StatusCode::BAD_GATEWAY,
                            &format!("the kernel's reply does not parse: {e}"),
                            None,
                        )
                    });
            }
            Checked::Gone | Checked::Mismatch => {}
            Checked::Failed(errno) => {
                return Err(error(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "the exact query failed: {}",
                        std::io::Error::from_raw_os_error(errno)
                    ),
                    None,
                ));
            }
        }
    }
    Err(error(
        StatusCode::GONE,
        "the kernel no longer has this socket in the daemon's network namespace (it is closing, \
         or lives in another namespace: fresh queries reach the daemon's own only)",
        Some("fresh"),
    ))
}

async fn plot(state: &Arc<State>, uuid: &str) -> Response<Full<Bytes>> {
    if !valid_uuid(uuid) {
        return unknown_uuid(uuid, state.table.retention());
    }
    let Some(conn) = state.table.get(uuid) else {
        return unknown_uuid(uuid, state.table.retention());
    };
    let Ok(_permit) = state.plotting.try_acquire() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "another plot is being drawn; ask again in a moment",
            None,
        );
    };
    let (root, uuid_owned) = (state.output.clone(), uuid.to_owned());
    // Segment 0 is in its first record's date directory (UTC), later ones after it.
    let since = conn.first_seen.utc_date();
    let drawn = tokio::task::spawn_blocking(move || -> Result<String, (StatusCode, String)> {
        let segments = crate::plot::find_segments_since(&root, &uuid_owned, since)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let bytes: u64 = segments
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        if bytes > MAX_PLOT_ARCHIVE_BYTES {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "its archive is {bytes} bytes, more than the API plots                      ({MAX_PLOT_ARCHIVE_BYTES}); use `tcp-info plot` on its files"
                ),
            ));
        }
        let nothing = |e: PlotError| match e {
            PlotError::NoArchive | PlotError::NoSnapshots => {
                (StatusCode::NOT_FOUND, format!("nothing archived yet: {e}"))
            }
            e => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let records = crate::plot::read_segments_so_far(&segments).map_err(nothing)?;
        let series = crate::plot::Series::from_records(&records).map_err(nothing)?;
        crate::plot::svg(&series).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await;
    match drawn {
        Ok(Ok(svg)) => body(StatusCode::OK, "image/svg+xml", svg.into()),
        Ok(Err((status, text))) => error(status, &format!("no plot for {uuid:?}: {text}"), None),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the plot task failed: {e}"),
            None,
        ),
    }
}

fn body(status: StatusCode, content_type: &'static str, bytes: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut text = value.to_string();
    text.push('\n');
    body(status, "application/json", text.into())
}

/// A JSON error: `{"error": text}`, with the parameter at fault when there is one.
fn error(status: StatusCode, text: &str, parameter: Option<&str>) -> Response<Full<Bytes>> {
    let mut value = json!({ "error": text });
    if let Some(parameter) = parameter {
        value["parameter"] = json!(parameter);
    }
    json_response(status, &value)
}

fn bad_parameter(bad: &BadParameter) -> Response<Full<Bytes>> {
    error(
        StatusCode::BAD_REQUEST,
        &format!("parameter {:?}: {}", bad.name, bad.reason),
        Some(&bad.name),
    )
}
