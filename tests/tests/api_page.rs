//! The query API's live page (`GET /`) in headless Chromium, driven over WebDriver: the table
//! lists the test's real connections by UUID and refreshes, a click on a column header sorts
//! it, and a click on a row opens that connection's plot.
//!
//! The daemon's API listens on a unix socket (the daemon runs in the server namespace; a unix
//! socket is a file, reachable from any); the browser, in the test's own namespace, reaches it
//! through a loopback TCP port forwarded to that socket ([`UnixProxy`]).
//!
//! `TCP_INFO_API_PAGE_PNG=<path>` (relative to the workspace root) saves the final screenshot
//! there: `docs/api-page.png` was made so. Without it the screenshot is only checked, so that a
//! test run leaves the tree as it was.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure should fail the test where it happens"
)]

use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use tcp_info_tests::webdriver::{self, Browser, UnixProxy};
use tcp_info_tests::{Setup, traffic, wait_for};

/// Where `TCP_INFO_API_PAGE_PNG` asks for the screenshot.
const SCREENSHOT_ENV: &str = "TCP_INFO_API_PAGE_PNG";

/// One `GET` over the API's unix socket: status and body.
fn get(socket: &Path, path: &str) -> Result<(u16, String)> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: api\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {path}: no headers in {response:?}"))?;
    Ok((head[9..12].parse()?, body.to_owned()))
}

/// The page's table as the browser shows it, read in one script (so from one rendering).
#[derive(Debug)]
struct Table {
    /// `data-key` of the header marked sorted, and its arrow.
    sorted: String,
    arrow: String,
    /// `data-key` of each column.
    keys: Vec<String>,
    rows: Vec<Row>,
    /// The page's status line and error box.
    status: String,
    error: String,
}

#[derive(Debug, Clone)]
struct Row {
    uuid: String,
    selected: bool,
    cells: Vec<String>,
}

const TABLE_SCRIPT: &str = r"
const sorted = document.querySelector('#connections thead th.sorted');
return {
  sorted: sorted ? sorted.dataset.key : '',
  arrow: sorted ? sorted.dataset.arrow : '',
  keys: Array.from(document.querySelectorAll('#connections thead th'), th => th.dataset.key),
  rows: Array.from(document.querySelectorAll('#connections tbody tr'), tr => ({
    uuid: tr.dataset.uuid,
    selected: tr.classList.contains('selected'),
    cells: Array.from(tr.cells, td => td.textContent),
  })),
  status: document.getElementById('status').textContent,
  error: document.getElementById('error').textContent,
};";

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Table {
    fn read(browser: &Browser) -> Result<Self> {
        let v = browser.execute(TABLE_SCRIPT, &[])?;
        let text = |key: &str| v[key].as_str().unwrap_or_default().to_owned();
        let rows = v["rows"]
            .as_array()
            .ok_or_else(|| anyhow!("the table script answered {v}"))?
            .iter()
            .map(|r| Row {
                uuid: r["uuid"].as_str().unwrap_or_default().to_owned(),
                selected: r["selected"] == true,
                cells: strings(&r["cells"]),
            })
            .collect();
        Ok(Self {
            sorted: text("sorted"),
            arrow: text("arrow"),
            keys: strings(&v["keys"]),
            rows,
            status: text("status"),
            error: text("error"),
        })
    }

    fn row(&self, uuid: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.uuid == uuid)
    }

    /// The cell of column `key` in `row`.
    fn cell<'a>(&self, row: &'a Row, key: &str) -> &'a str {
        let i = self.keys.iter().position(|k| k == key).unwrap();
        &row.cells[i]
    }

    /// The numbers of column `key`, top to bottom (empty cells, `–`, left out).
    fn numbers(&self, key: &str) -> Vec<f64> {
        self.rows
            .iter()
            .filter_map(|r| self.cell(r, key).parse().ok())
            .collect()
    }

    /// The position of each of `uuids` among the rows, top to bottom.
    fn order_of(&self, uuids: &[&str]) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| uuids.contains(&r.uuid.as_str()))
            .map(|r| r.uuid.clone())
            .collect()
    }
}

/// Clicks the header of column `key` and reads the table it renders.
fn sort_by(browser: &Browser, key: &str) -> Table {
    let th = browser
        .find(&format!("#connections thead th[data-key=\"{key}\"]"))
        .unwrap();
    browser.click(&th).unwrap();
    Table::read(browser).unwrap()
}

fn owned(uuids: &[&String]) -> Vec<String> {
    uuids.iter().map(|u| (*u).clone()).collect()
}

#[test]
fn the_live_page_in_headless_chromium_lists_sorts_and_plots_the_connections() {
    let Some(setup) = Setup::new("apipage") else {
        return;
    };
    if !webdriver::available() {
        return;
    }
    let t0 = Instant::now();
    let socket = setup.dir().join("api.sock");
    let api_arg = format!("--api.listen-address={}", socket.display());
    let _daemon = setup
        .start(&[&api_arg, "--flush-interval=1s"], &[])
        .unwrap();
    wait_for(Duration::from_secs(10), "the API up", || {
        Ok((get(&socket, "/")?.0 == 200).then_some(()))
    })
    .unwrap();

    // Three connections, a little apart in age: one idle, one that exchanged a few bytes, and
    // a bulk flow server → client, paced (64 KiB every 20 ms) until the test ends.
    let listener = setup.net.listen().unwrap();
    let port = listener.local_addr().unwrap().port();
    let (idle_client, idle_server, idle_cookie) = setup.connected(&listener).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (mut small_client, mut small_server, small_cookie) = setup.connected(&listener).unwrap();
    small_client.write_all(&[1; 1000]).unwrap();
    small_server.read_exact(&mut [0; 1000]).unwrap();
    small_server.write_all(&vec![2; 20_000]).unwrap();
    small_client.read_exact(&mut vec![0; 20_000]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (mut bulk_client, mut bulk_server, bulk_cookie) = setup.connected(&listener).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let sender = std::thread::spawn(move || {
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut sent = 0;
        while !flag.load(Ordering::Relaxed) {
            bulk_server.write_all(&chunk).unwrap();
            sent += chunk.len();
            std::thread::sleep(Duration::from_millis(20));
        }
        bulk_server.shutdown(Shutdown::Write).unwrap();
        sent
    });
    let receiver = std::thread::spawn(move || traffic::drain(&mut bulk_client).unwrap());
    let (idle, small, bulk) = (
        setup.uuid(idle_cookie),
        setup.uuid(small_cookie),
        setup.uuid(bulk_cookie),
    );
    let mine = [idle.as_str(), small.as_str(), bulk.as_str()];

    // The browser, reaching the API's unix socket through a loopback port.
    let proxy = UnixProxy::start(&socket).unwrap();
    let t_browser = Instant::now();
    let mut browser = Browser::start(setup.dir()).unwrap();
    browser.navigate(&format!("{}/", proxy.url())).unwrap();
    eprintln!("browser up and page loaded in {:?}", t_browser.elapsed());

    // The table lists the test's connections, established, on the listener's port, sorted
    // by age (oldest first) until told otherwise.
    let t_listed = Instant::now();
    let table = wait_for(
        Duration::from_secs(15),
        "the connections on the page",
        || {
            let table = Table::read(&browser)?;
            if !table.error.is_empty() {
                bail!("the page shows an error: {}", table.error);
            }
            Ok(mine.iter().all(|u| table.row(u).is_some()).then_some(table))
        },
    )
    .unwrap();
    eprintln!("listed in {:?}: {}", t_listed.elapsed(), table.status);
    let local = format!("{}:{port}", setup.net.server_ip());
    for uuid in mine {
        let row = table.row(uuid).unwrap();
        assert_eq!(table.cell(row, "uuid"), uuid);
        assert_eq!(table.cell(row, "state"), "ESTABLISHED", "{row:?}");
        assert_eq!(table.cell(row, "local"), local, "{row:?}");
    }
    assert_eq!(
        (table.sorted.as_str(), table.arrow.as_str()),
        ("age_s", " ▼")
    );
    assert_eq!(
        table.order_of(&mine),
        owned(&[&idle, &small, &bulk]),
        "oldest first"
    );

    // It refreshes: the bulk flow's acknowledged bytes grow on the page.
    let acked = |table: &Table| -> f64 {
        table
            .cell(table.row(&bulk).unwrap(), "bytes_acked")
            .parse()
            .unwrap_or(0.0)
    };
    let first = acked(&table);
    let t_refresh = Instant::now();
    wait_for(Duration::from_secs(8), "the table refreshed", || {
        let table = Table::read(&browser)?;
        Ok((table.row(&bulk).is_some() && acked(&table) > first).then_some(()))
    })
    .unwrap();
    eprintln!("refreshed after {:?}", t_refresh.elapsed());

    // A click on "acked" sorts by it, largest first; another, smallest first; a text column
    // sorts ascending.
    let by_acked = sort_by(&browser, "bytes_acked");
    assert_eq!(
        (by_acked.sorted.as_str(), by_acked.arrow.as_str()),
        ("bytes_acked", " ▼")
    );
    let numbers = by_acked.numbers("bytes_acked");
    assert!(numbers.is_sorted_by(|a, b| a >= b), "{numbers:?}");
    assert_eq!(by_acked.order_of(&mine), owned(&[&bulk, &small, &idle]));
    let ascending = sort_by(&browser, "bytes_acked");
    assert_eq!(ascending.arrow, " ▲");
    let numbers = ascending.numbers("bytes_acked");
    assert!(numbers.is_sorted_by(|a, b| a <= b), "{numbers:?}");
    assert_eq!(ascending.order_of(&mine), owned(&[&idle, &small, &bulk]));
    let by_uuid = sort_by(&browser, "uuid");
    assert_eq!(
        (by_uuid.sorted.as_str(), by_uuid.arrow.as_str()),
        ("uuid", " ▲")
    );
    let uuids: Vec<&str> = by_uuid.rows.iter().map(|r| r.uuid.as_str()).collect();
    assert!(uuids.is_sorted(), "{uuids:?}");
    let mut expected = owned(&[&idle, &small, &bulk]);
    expected.sort();
    assert_eq!(by_uuid.order_of(&mine), expected);
    // Back to the largest transfer first, for the screenshot.
    sort_by(&browser, "bytes_acked");

    // The bulk flow's row opens its plot, once its archive has records to draw.
    let plot_path = format!("/v1/connections/{bulk}/plot.svg");
    wait_for(Duration::from_secs(10), "the plot served", || {
        Ok((get(&socket, &plot_path)?.0 == 200).then_some(()))
    })
    .unwrap();
    let t_plot = Instant::now();
    // The table is re-rendered every 2 s: a row found just before may be gone (stale) when
    // clicked, then it is found again.
    wait_for(Duration::from_secs(10), "a click on the bulk row", || {
        let row = browser.find(&format!("#connections tbody tr[data-uuid=\"{bulk}\"]"))?;
        browser.click(&row)?;
        Ok(Some(()))
    })
    .unwrap();
    let img = wait_for(Duration::from_secs(15), "the plot image loaded", || {
        let v = browser.execute(
            "const img = document.querySelector('#plot img');
             return img && { loaded: img.dataset.loaded || null, uuid: img.dataset.uuid,
                             src: img.getAttribute('src'), width: img.naturalWidth,
                             height: img.naturalHeight };",
            &[],
        )?;
        Ok((!v.is_null() && !v["loaded"].is_null()).then_some(v))
    })
    .unwrap();
    eprintln!("plot loaded {:?} after the click: {img}", t_plot.elapsed());
    assert_eq!(
        img["loaded"],
        "true",
        "the plot failed to load: {:?}",
        get(&socket, &plot_path)
    );
    assert_eq!(img["uuid"], json!(bulk));
    assert!(img["width"].as_u64().unwrap() > 0 && img["height"].as_u64().unwrap() > 0);
    let element = browser.find("#plot img").unwrap();
    assert_eq!(
        browser
            .attribute(&element, "data-loaded")
            .unwrap()
            .as_deref(),
        Some("true")
    );
    let caption = browser.text(&browser.find("#plot p").unwrap()).unwrap();
    assert_eq!(caption, bulk);
    let url = browser.current_url().unwrap();
    assert!(url.ends_with(&format!("/#{bulk}")), "{url}");
    let table = Table::read(&browser).unwrap();
    let selected: Vec<&str> = table
        .rows
        .iter()
        .filter(|r| r.selected)
        .map(|r| r.uuid.as_str())
        .collect();
    assert_eq!(selected, [bulk.as_str()]);

    // The screenshot: the table, sorted, the bulk row selected and its plot.
    let png = browser.screenshot().unwrap();
    let (width, height) = webdriver::png_size(&png).unwrap();
    assert!(width >= 1000 && height >= 500, "{width}×{height}");
    if let Some(path) = std::env::var_os(SCREENSHOT_ENV) {
        // Relative to the workspace root (cargo runs the tests in the crate's directory).
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        std::fs::write(&path, &png).unwrap();
        eprintln!("screenshot ({width}×{height}) saved to {}", path.display());
    }
    browser.quit().unwrap();
    drop(browser);
    drop(proxy);

    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert_eq!(receiver.join().unwrap(), sent);
    drop((idle_client, idle_server, small_client, small_server));
    eprintln!("done in {:?}", t0.elapsed());
}
