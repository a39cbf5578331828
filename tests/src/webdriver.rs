//! A minimal W3C WebDriver client for headless Chromium (Debian's `chromium` and
//! `chromium-driver`): `chromedriver` runs as a child process on a free loopback port, and the
//! few commands the tests need are JSON over HTTP, written by hand.
//!
//! Also [`UnixProxy`]: a loopback TCP port forwarding to a unix socket, so the browser can reach
//! a daemon that listens on a unix socket.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

/// The browser binary (Debian's package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The driver binary (Debian's package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key of an element reference in WebDriver's JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take (starting the browser is the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the browser tests can run: both binaries present. When they are not, this prints
/// why and returns `false` (the caller skips) — except under `CI=true`, where it panics so that
/// the test fails.
pub fn available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).is_file())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} missing (Debian packages chromium and chromium-driver; scripts/setup.sh installs them)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: this browser test needs headless Chromium: {why}"
    );
    eprintln!("skipping: this browser test needs headless Chromium: {why}");
    false
}

/// An error answered by the driver: the W3C error code (such as `no such element` or `stale
/// element reference`) and its message.
#[derive(Debug, Clone)]
pub struct WebDriverError {
    /// The command, as `METHOD /path`.
    pub command: String,
    /// The HTTP status.
    pub status: u16,
    /// The W3C error code.
    pub error: String,
    /// The driver's message.
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WebDriver {} answered {} {}: {}",
            self.command, self.status, self.error, self.message
        )
    }
}

impl std::error::Error for WebDriverError {}

/// Whether `e` is the driver's error `code` (such as `stale element reference`).
pub fn is_error(e: &anyhow::Error, code: &str) -> bool {
    e.downcast_ref::<WebDriverError>()
        .is_some_and(|w| w.error == code)
}

/// An element of the page, as the driver names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

/// A running `chromedriver` with one headless Chromium session. Dropping it deletes the
/// session (the browser quits) and kills the driver's process group.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    port: u16,
    session: Option<String>,
    log: PathBuf,
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port (its log in `log_dir/chromedriver.log`),
    /// waits until it is ready and opens a session: headless Chromium, no sandbox (the tests
    /// run as root), a 1400×1000 window.
    pub fn start(log_dir: &Path) -> Result<Self> {
        let log = log_dir.join("chromedriver.log");
        let mut last = None;
        // A free port is only free until someone takes it: try again on another if the driver
        // could not listen.
        for _ in 0..3 {
            let port = free_port()?;
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so that Drop reaches the browser processes too.
                .process_group(0)
                .spawn()
                .with_context(|| format!("spawning {CHROMEDRIVER}"))?;
            let mut browser = Self {
                child,
                port,
                session: None,
                log: log.clone(),
            };
            match browser.wait_ready(Duration::from_secs(20)) {
                Ok(()) => {
                    browser.new_session()?;
                    return Ok(browser);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("chromedriver did not start")))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "chromedriver exited ({status}) before it was ready; its log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(status) = self.command("GET", "/status", None)
                && status["ready"] == true
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "chromedriver was not ready on port {} within {timeout:?}; its log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn new_session(&mut self) -> Result<()> {
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1400,1000",
                        ],
                    },
                },
            },
        });
        let value = self
            .command("POST", "/session", Some(&capabilities))
            .with_context(|| format!("starting headless {CHROMIUM}"))?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("the new session has no sessionId: {value}"))?;
        self.session = Some(id.to_owned());
        Ok(())
    }

    /// The last lines of the driver's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// One command: `method` on `path` with an optional JSON body; the answer's `value`, or
    /// the driver's error as a [`WebDriverError`].
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(Value::to_string);
        let (status, text) = http(self.port, method, path, body.as_deref())
            .with_context(|| format!("WebDriver {method} {path}"))?;
        let answer: Value = serde_json::from_str(&text).with_context(|| {
            format!("WebDriver {method} {path} answered {status} with no JSON: {text:?}")
        })?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        Err(WebDriverError {
            command: format!("{method} {path}"),
            status,
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"].as_str().unwrap_or(&text).to_owned(),
        }
        .into())
    }

    /// A command of the session: `path` is relative to `/session/{id}`.
    fn session_command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let id = self
            .session
            .as_deref()
            .ok_or_else(|| anyhow!("no WebDriver session"))?;
        self.command(method, &format!("/session/{id}{path}"), body)
    }

    /// Loads `url` (and waits for the document to load).
    pub fn navigate(&self, url: &str) -> Result<()> {
        self.session_command("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// The current URL, fragment included.
    pub fn current_url(&self) -> Result<String> {
        let value = self.session_command("GET", "/url", None)?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the URL is not a string: {value}"))
    }

    /// The first element matching the CSS selector; the driver's `no such element` error when
    /// none does.
    pub fn find(&self, css: &str) -> Result<Element> {
        let value = self.session_command(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        element(&value)
    }

    /// Every element matching the CSS selector, in document order.
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let value = self.session_command(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        value
            .as_array()
            .ok_or_else(|| anyhow!("find elements answered {value}"))?
            .iter()
            .map(element)
            .collect()
    }

    /// Clicks `element` (scrolled into view first, as a user would).
    pub fn click(&self, element: &Element) -> Result<()> {
        self.session_command(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(&json!({})),
        )
        .map(drop)
    }

    /// The rendered text of `element`.
    pub fn text(&self, element: &Element) -> Result<String> {
        let value = self.session_command("GET", &format!("/element/{}/text", element.0), None)?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the text is not a string: {value}"))
    }

    /// An attribute of `element`; `None` when it has none of that name.
    pub fn attribute(&self, element: &Element, name: &str) -> Result<Option<String>> {
        let value = self.session_command(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        )?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// Runs `script` (a function body: `arguments` are `args`, `return` gives the result) in
    /// the page, synchronously; its result as JSON.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.session_command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// A screenshot of the window, as PNG bytes.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let value = self.session_command("GET", "/screenshot", None)?;
        let text = value
            .as_str()
            .ok_or_else(|| anyhow!("the screenshot is not a string"))?;
        let png = base64_decode(text)?;
        if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            bail!("the screenshot is not a PNG");
        }
        Ok(png)
    }

    /// [`Self::screenshot`] written to `path` (its directory created when missing).
    pub fn save_screenshot(&self, path: &Path) -> Result<()> {
        let png = self.screenshot()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Deletes the session: the browser quits.
    pub fn quit(&mut self) -> Result<()> {
        if self.session.is_none() {
            return Ok(());
        }
        let result = self.session_command("DELETE", "", None).map(drop);
        self.session = None;
        result
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Err(e) = self.quit() {
            eprintln!("warning: could not end the browser session: {e:#}");
        }
        // The driver's process group: the driver and whatever browser processes are left.
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill has no memory preconditions; the group is the child's own.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

fn element(value: &Value) -> Result<Element> {
    value[ELEMENT_KEY]
        .as_str()
        .map(|id| Element(id.to_owned()))
        .ok_or_else(|| anyhow!("not an element reference: {value}"))
}

/// A loopback port nobody listens on now.
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// One HTTP/1.1 request to `127.0.0.1:port` (one connection each): status and body. The
/// answer is framed by its `Content-Length` or chunks (chromedriver keeps the connection open
/// whatever `Connection: close` says), else by the end of the stream.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to chromedriver at {addr}"))?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(answer) = framed(&response)? {
            return Ok(answer);
        }
        let n = stream.read(&mut buf).context("reading the answer")?;
        if n == 0 {
            return parse_answer(&response, None)?
                .ok_or_else(|| anyhow!("an answer without headers ({} bytes)", response.len()));
        }
        response.extend_from_slice(&buf[..n]);
    }
}

/// The answer in `response` when it is complete by its framing (`Content-Length` or a last
/// chunk); `None` while more is needed or when only the end of the stream frames it.
fn framed(response: &[u8]) -> Result<Option<(u16, String)>> {
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let payload = &response[split + 4..];
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    if let Some(length) = header("content-length:") {
        let length: usize = length.parse().context("a bad Content-Length")?;
        if payload.len() < length {
            return Ok(None);
        }
        return parse_answer(response, Some(&payload[..length]));
    }
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        return match dechunk(payload) {
            Ok(Some(body)) => parse_answer(response, Some(&body)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
    }
    Ok(None)
}

/// Status and body of `response`, the body being `body` or else everything after the headers.
fn parse_answer(response: &[u8], body: Option<&[u8]>) -> Result<Option<(u16, String)>> {
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&response[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status in {head:?}"))?;
    let body = body.unwrap_or(&response[split + 4..]).to_vec();
    let text = String::from_utf8(body).context("the answer is not UTF-8")?;
    Ok(Some((status, text)))
}

/// The payload of a `Transfer-Encoding: chunked` body; `None` until its last chunk is there.
fn dechunk(mut body: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("a bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if body.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Standard base64 (RFC 4648, padded or not; whitespace ignored).
pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => bail!("not base64: byte {c:#04x}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Width and height of a PNG (from its IHDR chunk).
pub fn png_size(png: &[u8]) -> Result<(u32, u32)> {
    if png.len() < 24 || !png.starts_with(b"\x89PNG\r\n\x1a\n") || &png[12..16] != b"IHDR" {
        bail!("not a PNG");
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Ok((be(&png[16..20]), be(&png[20..24])))
}

/// A loopback TCP port whose connections are forwarded to a unix socket: the browser speaks
/// TCP only, the daemon's API may listen on a unix socket. Stops accepting on drop.
#[derive(Debug)]
pub struct UnixProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl UnixProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards each connection to `socket`.
    pub fn start(socket: &Path) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the proxy's loopback port")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (socket, flag) = (socket.to_path_buf(), Arc::clone(&stop));
        let acceptor = std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(tcp) = tcp else { continue };
                let socket = socket.clone();
                std::thread::spawn(move || {
                    if let Err(e) = forward(tcp, &socket) {
                        eprintln!("proxy to {}: {e:#}", socket.display());
                    }
                });
            }
        });
        Ok(Self {
            addr,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, with no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for UnixProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Copies both ways between `tcp` and a new connection to `socket` until both sides end.
fn forward(tcp: TcpStream, socket: &Path) -> Result<()> {
    let unix = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let (mut tcp_in, mut unix_out) = (tcp.try_clone()?, unix.try_clone()?);
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut tcp_in, &mut unix_out);
        let _ = unix_out.shutdown(Shutdown::Write);
    });
    let (mut unix_in, mut tcp_out) = (unix, tcp);
    let _ = std::io::copy(&mut unix_in, &mut tcp_out);
    let _ = tcp_out.shutdown(Shutdown::Write);
    let _ = upstream.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_padded_and_unpadded() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64_decode("a*b").is_err());
    }

    #[test]
    fn answers_are_framed_by_their_length_or_chunks() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length:4\r\n\r\n{}\r\n";
        assert_eq!(framed(&answer[..answer.len() - 1]).unwrap(), None);
        assert_eq!(framed(answer).unwrap(), Some((200, "{}\r\n".to_owned())));
        let answer =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(framed(answer).unwrap(), Some((404, "{}".to_owned())));
        assert_eq!(framed(b"HTTP/1.1 200 OK\r\n\r\n{}").unwrap(), None);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let body = dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(body.as_deref(), Some(&b"abcde"[..]));
        assert_eq!(dechunk(b"5\r\nab").unwrap(), None);
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
