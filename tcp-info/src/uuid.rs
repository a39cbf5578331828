//! Connection UUIDs: `<prefix>_<cookie as %016X>` (SPEC §5.2).
//!
//! The same string appears in archive file names, `Metadata.UUID` and every event, and other
//! programs (ndt-server, the event-socket sidecars) compute it independently from the same prefix
//! file and `SO_COOKIE`, so every byte matters (SPEC §11.4): the prefix is used verbatim, never
//! trimmed, and the cookie is printed as exactly 16 upper-case hex digits.
//!
//! Everything here builds on any OS. Only [`Prefix::host_default`] probes the host, by reading
//! `/proc`; elsewhere it falls back to the documented error prefixes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// Where the kernel reports the uptime; its first field is seconds since boot.
const PROC_UPTIME: &str = "/proc/uptime";
/// Where Linux exposes the hostname (what Go's `os.Hostname` reads first).
const PROC_HOSTNAME: &str = "/proc/sys/kernel/hostname";
/// Characters m-lab/pusher accepts in a file path without a lint complaint (SPEC §11.2).
const PUSHER_SAFE_PUNCTUATION: &[char] = &['/', ':', '.', '_', '-'];

/// Why a prefix file could not be used.
#[derive(Debug, Error)]
pub enum PrefixError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file given.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not UTF-8, so they cannot appear in JSON strings.
    #[error("{} is not valid UTF-8 (first invalid byte at offset {valid_up_to})", path.display())]
    NotUtf8 {
        /// The file given.
        path: PathBuf,
        /// Length of the valid UTF-8 start of the file.
        valid_up_to: usize,
    },
}

/// The UUID prefix of this host (or network namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// A prefix from the raw bytes of a prefix file, kept verbatim (a trailing newline stays).
    ///
    /// On invalid UTF-8, returns the length of the valid start.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, usize> {
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|e| e.utf8_error().valid_up_to())
    }

    /// Reads a prefix file (`-uuid-prefix-file`); its bytes become the prefix verbatim.
    pub fn read_file(path: &Path) -> Result<Self, PrefixError> {
        let bytes = std::fs::read(path).map_err(|source| PrefixError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(bytes).map_err(|valid_up_to| PrefixError::NotUtf8 {
            path: path.to_owned(),
            valid_up_to,
        })
    }

    /// The "unsafe" default used when no prefix file is given: `<name>_<boottime>_unsafe`.
    ///
    /// Fallbacks, as in m-lab/uuid: `BADPREFIX` when there is no (non-empty) name, and
    /// `<name>_BADBOOTTIME` when the boot time is unknown (neither gets the `_unsafe` suffix).
    pub fn unsafe_default(name: Option<&str>, boot_time: Option<i64>) -> Self {
        match (name.filter(|n| !n.is_empty()), boot_time) {
            (None, _) => Self("BADPREFIX".to_owned()),
            (Some(name), None) => Self(format!("{name}_BADBOOTTIME")),
            (Some(name), Some(boot)) => Self(format!("{name}_{boot}_unsafe")),
        }
    }

    /// The unsafe default for this host: the name is `pod_name` (the value of `$POD_NAME`) if
    /// set and non-empty, else the hostname; the boot time comes from [`boot_time`].
    pub fn host_default(pod_name: Option<&str>) -> Self {
        let name = match pod_name.filter(|n| !n.is_empty()) {
            Some(pod) => Some(pod.to_owned()),
            None => hostname(),
        };
        Self::unsafe_default(name.as_deref(), boot_time())
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The UUID of the socket with this cookie: `<prefix>_%016X`.
    pub fn uuid(&self, cookie: u64) -> String {
        format!("{}_{cookie:016X}", self.0)
    }

    /// The distinct characters that m-lab/pusher's name lint rejects (anything outside
    /// `[a-zA-Z0-9/:._-]`), in order of first appearance. Empty when the prefix is clean.
    pub fn unsafe_chars(&self) -> Vec<char> {
        let mut bad = Vec::new();
        for c in self.0.chars() {
            let ok = c.is_ascii_alphanumeric() || PUSHER_SAFE_PUNCTUATION.contains(&c);
            if !ok && !bad.contains(&c) {
                bad.push(c);
            }
        }
        bad
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host name, as Go's `os.Hostname` finds it on Linux; `None` if unavailable or empty.
pub fn hostname() -> Option<String> {
    let raw = std::fs::read_to_string(PROC_HOSTNAME).ok()?;
    let name = raw.strip_suffix('\n').unwrap_or(&raw);
    (!name.is_empty()).then(|| name.to_owned())
}

/// The boot time in Unix seconds, `floor(now − uptime)`, computed once per process so that every
/// default prefix built by this process is the same. `None` if `/proc/uptime` is unusable.
pub fn boot_time() -> Option<i64> {
    static BOOT_TIME: OnceLock<Option<i64>> = OnceLock::new();
    *BOOT_TIME.get_or_init(|| {
        let uptime = std::fs::read_to_string(PROC_UPTIME).ok()?;
        boot_time_from(&uptime, SystemTime::now())
    })
}

/// The boot time in Unix seconds as the kernel keeps it (`btime` in `/proc/stat`): the same
/// integer for every reader during one boot, unlike [`boot_time`], whose `now − uptime` can
/// differ by a second between two processes. `None` if it cannot be read.
pub fn kernel_boot_time() -> Option<i64> {
    btime_from(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `btime` line of `/proc/stat` contents.
pub fn btime_from(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The prefix to store in a prefix file for this boot of this host: `<hostname>_<btime>`, as
/// m-lab's prefix-file generator writes it (no `_unsafe`: it is unique per boot and stable
/// across restarts of the daemon). `None` without a hostname or a boot time.
pub fn host_prefix_for_file() -> Option<Prefix> {
    Some(Prefix(format!("{}_{}", hostname()?, kernel_boot_time()?)))
}

/// `floor(now − uptime)` in Unix seconds, from the contents of `/proc/uptime`
/// (`"<uptime> <idle>\n"`, seconds with a fraction). The uptime is taken at microsecond
/// resolution, like m-lab/uuid. `None` if the contents do not parse.
pub fn boot_time_from(proc_uptime: &str, now: SystemTime) -> Option<i64> {
    let mut fields = proc_uptime.split_whitespace();
    let uptime: f64 = fields.next()?.parse().ok()?;
    fields.next()?;
    if !uptime.is_finite() || uptime < 0.0 {
        return None;
    }
    // f64 → i128 saturates, so an absurd uptime must not overflow the arithmetic below; it
    // gives `None` (a BADBOOTTIME prefix) instead of a panic.
    let uptime_ns = ((uptime * 1e6) as i128).checked_mul(1000)?;
    let now_ns = match now.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    i64::try_from(now_ns.checked_sub(uptime_ns)?.div_euclid(1_000_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::*;

    #[test]
    fn btime_is_read_from_proc_stat() {
        let stat = "cpu  1 2 3\nintr 5 6\nctxt 7\nbtime 1764662400\nprocesses 9\n";
        assert_eq!(btime_from(stat), Some(1_764_662_400));
        assert_eq!(btime_from("cpu 1\n"), None);
        assert_eq!(btime_from("btime x\n"), None);
        if let Some(prefix) = host_prefix_for_file() {
            let (name, boot) = prefix.as_str().rsplit_once('_').unwrap();
            assert_eq!(Some(name.to_owned()), hostname());
            assert_eq!(boot.parse::<i64>().ok(), kernel_boot_time());
        }
    }

    #[test]
    fn uuid_formats_cookie_as_16_upper_hex_digits() {
        let p = Prefix::from_bytes(b"ndt-jdczh_1553815964".to_vec()).unwrap();
        assert_eq!(p.uuid(0x3E8), "ndt-jdczh_1553815964_00000000000003E8");
        assert_eq!(p.uuid(0), "ndt-jdczh_1553815964_0000000000000000");
        assert_eq!(p.uuid(u64::MAX), "ndt-jdczh_1553815964_FFFFFFFFFFFFFFFF");
        assert_eq!(p.uuid(0xabc_def0), "ndt-jdczh_1553815964_000000000ABCDEF0");
    }

    #[test]
    fn prefix_bytes_are_kept_verbatim() {
        let p = Prefix::from_bytes(b" host_1\n".to_vec()).unwrap();
        assert_eq!(p.as_str(), " host_1\n");
        assert_eq!(p.uuid(1), " host_1\n_0000000000000001");
        assert_eq!(p.to_string(), " host_1\n");
    }

    #[test]
    fn invalid_utf8_reports_where() {
        assert_eq!(Prefix::from_bytes(b"ab\xffcd".to_vec()), Err(2));
    }

    #[test]
    fn read_file_keeps_trailing_newline() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"mlab1-lga03_1700000000\n").unwrap();
        let p = Prefix::read_file(f.path()).unwrap();
        assert_eq!(p.as_str(), "mlab1-lga03_1700000000\n");
    }

    #[test]
    fn read_file_errors_name_the_path() {
        let missing = Path::new("/nonexistent/tcp-info-test/prefix");
        let err = Prefix::read_file(missing).unwrap_err();
        assert!(matches!(err, PrefixError::Read { .. }));
        assert!(
            err.to_string()
                .contains("/nonexistent/tcp-info-test/prefix"),
            "{err}"
        );

        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"abc\xc3").unwrap();
        let err = Prefix::read_file(f.path()).unwrap_err();
        assert!(
            matches!(err, PrefixError::NotUtf8 { valid_up_to: 3, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&f.path().display().to_string()));
    }

    #[test]
    fn unsafe_default_and_fallbacks() {
        let cases: &[(Option<&str>, Option<i64>, &str)] = &[
            (
                Some("gfr14.nyc"),
                Some(1_554_836_592),
                "gfr14.nyc_1554836592_unsafe",
            ),
            (Some("pod-x"), None, "pod-x_BADBOOTTIME"),
            (None, Some(1), "BADPREFIX"),
            (Some(""), Some(1), "BADPREFIX"),
            (None, None, "BADPREFIX"),
        ];
        for &(name, boot, want) in cases {
            assert_eq!(
                Prefix::unsafe_default(name, boot).as_str(),
                want,
                "{name:?} {boot:?}"
            );
        }
    }

    #[test]
    fn host_default_prefers_pod_name() {
        let p = Prefix::host_default(Some("ndt-abcde"));
        let boot = boot_time().expect("/proc/uptime readable on the test host");
        assert_eq!(p.as_str(), format!("ndt-abcde_{boot}_unsafe"));
        // Computed once: the same value every time.
        assert_eq!(Prefix::host_default(Some("ndt-abcde")), p);
    }

    #[test]
    fn host_default_falls_back_to_hostname() {
        let host = hostname().expect("hostname readable on the test host");
        let boot = boot_time().unwrap();
        let want = format!("{host}_{boot}_unsafe");
        assert_eq!(Prefix::host_default(None).as_str(), want);
        assert_eq!(Prefix::host_default(Some("")).as_str(), want);
    }

    #[test]
    fn boot_time_is_floor_of_now_minus_uptime() {
        let now = UNIX_EPOCH + Duration::new(1_000_000, 250_000_000);
        assert_eq!(boot_time_from("100.00 5.0\n", now), Some(999_900));
        // 1_000_000.25 - 100.5 = 999_899.75 → floor 999_899.
        assert_eq!(boot_time_from("100.50 5.0\n", now), Some(999_899));
        assert_eq!(boot_time_from("0.25 0.0", now), Some(1_000_000));
        for bad in ["", "abc 1", "12.5", "-1 2", "NaN 1", "inf 1", "1e300 1"] {
            assert_eq!(boot_time_from(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn boot_time_matches_proc_uptime() {
        let uptime: f64 = std::fs::read_to_string(PROC_UPTIME)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let boot = boot_time().unwrap() as f64;
        assert!(
            (now - uptime - boot).abs() < 5.0,
            "boot {boot} now {now} uptime {uptime}"
        );
    }

    #[test]
    fn unsafe_chars_lists_what_pusher_lints() {
        let clean =
            Prefix::from_bytes(b"mlab1-lga03.measurement-lab.org_1700000000".to_vec()).unwrap();
        assert!(clean.unsafe_chars().is_empty());
        let p = Prefix::from_bytes("a b\nc d+é\n".as_bytes().to_vec()).unwrap();
        assert_eq!(p.unsafe_chars(), vec![' ', '\n', '+', 'é']);
        let p = Prefix::from_bytes(b"a/b:c".to_vec()).unwrap();
        assert!(p.unsafe_chars().is_empty());
    }
}
