//! Connection UUIDs: `<prefix>_<cookie as %016X>` (SPEC §5.2).
//!
//! The same string appears in archive file names, `Metadata.UUID` and every event, and other
//! programs (ndt-server, the event-socket sidecars) compute it independently from the same prefix
//! file and `SO_COOKIE`, so every byte matters (SPEC §11.4): the prefix is used verbatim, never
//! trimmed or escaped, and the cookie is printed as exactly 16 upper-case hex digits.
//!
//! Because the prefix is also the start of every archive's file name, a [`Prefix`] can only be
//! built from text that is safe there (SPEC §12 D19): no `/`, no control character, valid UTF-8,
//! and short enough for the longest archive name to fit in `NAME_MAX`. Anything else is rejected
//! with the byte offset of the culprit; escaping it instead would make our UUIDs differ from the
//! ones other programs compute from the same file.
//!
//! Everything here builds on any OS. Only [`Prefix::host_default`] and [`host_prefix_for_file`]
//! probe the host, by reading `/proc`; elsewhere they fall back to the documented error prefixes.

use std::fmt;
use std::io::Read as _;
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

/// Longest prefix accepted, in bytes. An archive is named
/// `<prefix>_<16 hex digits>.<sequence>.jsonl.zst`, the sequence (a `u32`) taking up to 10
/// digits: 1 + 16 + 1 + 10 + 10 = 38 bytes besides the prefix. Linux refuses file names over
/// `NAME_MAX` (255 bytes), so a longer prefix would make every archive creation fail; it is
/// refused at start-up instead.
pub const MAX_PREFIX_LEN: usize = 255 - 38;

/// Why some text cannot be a UUID prefix. Offsets count bytes from the start of the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidPrefix {
    /// The bytes are not UTF-8, so they cannot appear in JSON strings.
    #[error("is not valid UTF-8 (first invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid UTF-8 start.
        valid_up_to: usize,
    },
    /// `/` would turn the archive name into a path, possibly outside the output tree.
    #[error(
        "contains '/' at byte offset {offset}: archive names would become paths, possibly \
         outside the output directory"
    )]
    Slash {
        /// Where the `/` is.
        offset: usize,
    },
    /// A control character (Unicode category Cc: U+0000–U+001F, U+007F–U+009F) would end up
    /// in file names, UUIDs and logs.
    #[error(
        "contains the control character {} at byte offset {offset}{}",
        control_name(*.character),
        if *.trailing_newline {
            ": the file ends with a newline; write it without one, e.g. \
             `printf %s NAME > FILE`"
        } else {
            ""
        }
    )]
    Control {
        /// The character.
        character: char,
        /// Where it is.
        offset: usize,
        /// Whether it is the `\n` (or `\r\n`) that ends the text: the usual mistake of writing
        /// the file with `echo`.
        trailing_newline: bool,
    },
    /// Archive names would be longer than `NAME_MAX`.
    #[error(
        "is longer than {MAX_PREFIX_LEN} bytes: archive names would exceed the 255-byte limit \
         of a file name"
    )]
    TooLong,
}

/// How a control character is shown in messages: `U+000A (\n)`, `U+0000 (NUL)`.
fn control_name(c: char) -> String {
    let name = match c {
        '\0' => "NUL".to_owned(),
        '\u{7f}' => "DEL".to_owned(),
        c => c.escape_debug().to_string(),
    };
    format!("U+{:04X} ({name})", u32::from(c))
}

/// The first reason `bytes` cannot be a prefix, by offset, or `None` if they can. `complete`
/// is false when `bytes` is only the start of a longer file: a UTF-8 sequence cut at its end
/// is then no error of the file's, and the length alone is reported.
fn first_culprit(bytes: &[u8], complete: bool) -> Option<InvalidPrefix> {
    let (text, not_utf8) = match std::str::from_utf8(bytes) {
        Ok(text) => (text, None),
        Err(e) => {
            let valid_up_to = e.valid_up_to();
            let text = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or("");
            let real = complete || e.error_len().is_some();
            (text, real.then_some(InvalidPrefix::NotUtf8 { valid_up_to }))
        }
    };
    for (offset, character) in text.char_indices() {
        if character == '/' {
            return Some(InvalidPrefix::Slash { offset });
        }
        if character.is_control() {
            let rest = &text[offset..];
            let trailing_newline =
                complete && not_utf8.is_none() && (rest == "\n" || rest == "\r\n");
            return Some(InvalidPrefix::Control {
                character,
                offset,
                trailing_newline,
            });
        }
    }
    not_utf8.or((bytes.len() > MAX_PREFIX_LEN || !complete).then_some(InvalidPrefix::TooLong))
}

/// Why a prefix file (or the host's name, for a prefix built from it) could not be used.
///
/// The messages of `Invalid` and `InvalidName` include their reason, which is therefore not
/// also their `source()`: a chain printed whole (`{:#}` of anyhow) would say it twice.
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
    /// The file's contents cannot be a prefix.
    #[error("the UUID prefix in {} {reason}", path.display())]
    Invalid {
        /// The file given.
        path: PathBuf,
        /// What is wrong with its contents.
        reason: InvalidPrefix,
    },
    /// A prefix built from the host's name (`$POD_NAME` or the hostname) cannot be used.
    #[error("the UUID prefix {prefix:?}, built from {name_from}, {reason}")]
    InvalidName {
        /// Where the name came from, e.g. `the hostname (/proc/sys/kernel/hostname)`.
        name_from: String,
        /// The prefix that was built (the name's offsets are the same).
        prefix: String,
        /// What is wrong with it.
        reason: InvalidPrefix,
    },
}

/// The UUID prefix of this host (or network namespace). Always safe as the start of a file
/// name: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// A prefix from text, refused if it cannot start an archive name (see [`InvalidPrefix`]).
    pub fn new(text: String) -> Result<Self, InvalidPrefix> {
        match first_culprit(text.as_bytes(), true) {
            Some(reason) => Err(reason),
            None => Ok(Self(text)),
        }
    }

    /// A prefix from the raw bytes of a prefix file, kept verbatim: nothing is trimmed, and
    /// bytes that cannot be a prefix (invalid UTF-8, `/`, control characters such as a trailing
    /// newline, more than [`MAX_PREFIX_LEN`] bytes) are an error, the first culprit reported.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, InvalidPrefix> {
        if let Some(reason) = first_culprit(&bytes, true) {
            return Err(reason);
        }
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|e| InvalidPrefix::NotUtf8 {
                valid_up_to: e.utf8_error().valid_up_to(),
            })
    }

    /// Reads a prefix file (`-uuid-prefix-file`); its bytes become the prefix verbatim, or are
    /// refused as [`from_bytes`](Self::from_bytes) says. At most [`MAX_PREFIX_LEN`] + 1 bytes
    /// are read, so a huge file (or `/dev/zero`) is refused without being read whole.
    pub fn read_file(path: &Path) -> Result<Self, PrefixError> {
        let mut bytes = Vec::with_capacity(MAX_PREFIX_LEN + 1);
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_PREFIX_LEN as u64 + 1).read_to_end(&mut bytes))
            .map_err(|source| PrefixError::Read {
                path: path.to_owned(),
                source,
            })?;
        let complete = bytes.len() <= MAX_PREFIX_LEN;
        let checked = match first_culprit(&bytes, complete) {
            Some(reason) => Err(reason),
            None => Self::from_bytes(bytes),
        };
        checked.map_err(|reason| PrefixError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// The "unsafe" default used when no prefix file is given: `<name>_<boottime>_unsafe`.
    ///
    /// Fallbacks, as in m-lab/uuid: `BADPREFIX` when there is no (non-empty) name, and
    /// `<name>_BADBOOTTIME` when the boot time is unknown (neither gets the `_unsafe` suffix).
    /// A name that makes the prefix unusable (a `/`, a control character, too long) is an error.
    pub fn unsafe_default(
        name: Option<&str>,
        boot_time: Option<i64>,
    ) -> Result<Self, InvalidPrefix> {
        Self::new(match (name.filter(|n| !n.is_empty()), boot_time) {
            (None, _) => "BADPREFIX".to_owned(),
            (Some(name), None) => format!("{name}_BADBOOTTIME"),
            (Some(name), Some(boot)) => format!("{name}_{boot}_unsafe"),
        })
    }

    /// The unsafe default for this host: the name is `pod_name` (the value of `$POD_NAME`) if
    /// set and non-empty, else the hostname; the boot time comes from [`boot_time`]. An error
    /// names where the name came from: Linux lets root set any bytes as the hostname, and
    /// `$POD_NAME` is whatever the environment says.
    pub fn host_default(pod_name: Option<&str>) -> Result<Self, PrefixError> {
        let (name, name_from) = match pod_name.filter(|n| !n.is_empty()) {
            Some(pod) => (Some(pod.to_owned()), "$POD_NAME"),
            None => (hostname(), HOSTNAME_FROM),
        };
        let boot = boot_time();
        Self::unsafe_default(name.as_deref(), boot).map_err(|reason| PrefixError::InvalidName {
            name_from: name_from.to_owned(),
            prefix: match (name, boot) {
                (Some(name), Some(boot)) => format!("{name}_{boot}_unsafe"),
                (Some(name), None) => format!("{name}_BADBOOTTIME"),
                (None, _) => String::new(),
            },
            reason,
        })
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

/// How errors name the hostname as the source of a prefix.
const HOSTNAME_FROM: &str = "the hostname (/proc/sys/kernel/hostname)";

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
/// across restarts of the daemon). `Ok(None)` without a hostname or a boot time; an error if
/// the hostname cannot be part of a prefix (Linux lets root set any bytes but NUL as the
/// hostname, `/` and newlines included), so that the command writing the file fails instead of
/// the daemon that reads it.
pub fn host_prefix_for_file() -> Result<Option<Prefix>, PrefixError> {
    let (Some(name), Some(boot)) = (hostname(), kernel_boot_time()) else {
        return Ok(None);
    };
    let text = format!("{name}_{boot}");
    match Prefix::new(text.clone()) {
        Ok(prefix) => Ok(Some(prefix)),
        Err(reason) => Err(PrefixError::InvalidName {
            name_from: HOSTNAME_FROM.to_owned(),
            prefix: text,
            reason,
        }),
    }
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
        if let Some(prefix) = host_prefix_for_file().unwrap() {
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
        // Nothing is trimmed or escaped: leading spaces, `..`, `:` and non-ASCII letters stay.
        for text in [
            " host_1",
            "mlab1-lga03.measurement-lab.org_1700000000",
            "a..b:c.d-e_f",
            "..",
            ".hidden_1",
            "héllo-wörld_東京_1",
            "back\\slash",
            "",
        ] {
            let p = Prefix::from_bytes(text.as_bytes().to_vec()).unwrap();
            assert_eq!(p.as_str(), text);
            assert_eq!(p.uuid(1), format!("{text}_0000000000000001"));
            assert_eq!(p.to_string(), text);
            assert_eq!(Prefix::new(text.to_owned()).unwrap(), p);
        }
    }

    /// Every class of byte that could take an archive name out of its date directory, or put
    /// something unprintable in it, is refused with the offset of the first culprit.
    #[test]
    fn hostile_prefixes_are_refused_at_the_culprit() {
        let slash = |offset| InvalidPrefix::Slash { offset };
        let control = |character, offset| InvalidPrefix::Control {
            character,
            offset,
            trailing_newline: false,
        };
        let cases: &[(&[u8], InvalidPrefix)] = &[
            (b"a/b", slash(1)),
            (b"/etc/passwd", slash(0)),
            (b"../../../etc/x", slash(2)),
            (b"host/", slash(4)),
            (b"ho\0st", control('\0', 2)),
            (b"\0", control('\0', 0)),
            (b"ho\tst", control('\t', 2)),
            (b"a\nb", control('\n', 1)),
            (b"a\rb", control('\r', 1)),
            (b"esc\x1b[31m", control('\x1b', 3)),
            (b"del\x7f", control('\x7f', 3)),
            // C1 controls (U+0080..U+009F) are Cc too; offsets count bytes, not characters.
            ("é\u{85}".as_bytes(), control('\u{85}', 2)),
            (b"ab\xffcd", InvalidPrefix::NotUtf8 { valid_up_to: 2 }),
            (b"abc\xc3", InvalidPrefix::NotUtf8 { valid_up_to: 3 }),
            // The first culprit wins, whatever its class.
            (b"a\nb/c", control('\n', 1)),
            (b"a/b\xff", slash(1)),
            (b"a\xff/b", InvalidPrefix::NotUtf8 { valid_up_to: 1 }),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                Prefix::from_bytes(bytes.to_vec()).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_trailing_newline_is_refused_with_a_hint() {
        for (text, character, offset) in [
            ("mlab1-lga03_1700000000\n", '\n', 22),
            ("mlab1-lga03_1700000000\r\n", '\r', 22),
            ("\n", '\n', 0),
        ] {
            let err = Prefix::new(text.to_owned()).unwrap_err();
            assert_eq!(
                err,
                InvalidPrefix::Control {
                    character,
                    offset,
                    trailing_newline: true
                }
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("at byte offset {offset}"))
                    && message.contains("ends with a newline")
                    && message.contains("printf %s"),
                "{message}"
            );
        }
        // A newline elsewhere gets no such hint.
        let message = Prefix::new("a\n\n".to_owned()).unwrap_err().to_string();
        assert!(!message.contains("printf"), "{message}");
        assert!(
            message.contains("U+000A (\\n) at byte offset 1"),
            "{message}"
        );
    }

    #[test]
    fn messages_name_the_character_and_offset() {
        let message = |bytes: &[u8]| Prefix::from_bytes(bytes.to_vec()).unwrap_err().to_string();
        assert_eq!(
            message(b"../x"),
            "contains '/' at byte offset 2: archive names would become paths, possibly outside \
             the output directory"
        );
        assert_eq!(
            message(b"ab\0"),
            "contains the control character U+0000 (NUL) at byte offset 2"
        );
        assert_eq!(
            message(b"\x7f"),
            "contains the control character U+007F (DEL) at byte offset 0"
        );
        assert_eq!(
            message(b"a\tb"),
            "contains the control character U+0009 (\\t) at byte offset 1"
        );
        assert_eq!(
            message(b"ab\xffcd"),
            "is not valid UTF-8 (first invalid byte at offset 2)"
        );
    }

    #[test]
    fn length_is_bounded_by_name_max() {
        let longest = "x".repeat(MAX_PREFIX_LEN);
        let p = Prefix::new(longest.clone()).unwrap();
        // The longest archive name this prefix can make still fits in NAME_MAX.
        let name = format!("{}.{}.jsonl.zst", p.uuid(u64::MAX), u32::MAX);
        assert_eq!(name.len(), 255);
        assert_eq!(
            Prefix::new(format!("{longest}x")),
            Err(InvalidPrefix::TooLong)
        );
        // Multi-byte characters count in bytes.
        assert_eq!(
            Prefix::new("é".repeat(MAX_PREFIX_LEN / 2 + 1)),
            Err(InvalidPrefix::TooLong)
        );
    }

    #[test]
    fn read_file_refuses_a_trailing_newline_naming_the_file() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"mlab1-lga03_1700000000\n").unwrap();
        let err = Prefix::read_file(f.path()).unwrap_err();
        assert!(
            matches!(
                err,
                PrefixError::Invalid {
                    reason: InvalidPrefix::Control {
                        character: '\n',
                        offset: 22,
                        trailing_newline: true
                    },
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("the UUID prefix in {} ", f.path().display()))
                && message.contains("printf %s"),
            "{message}"
        );
    }

    #[test]
    fn read_file_reads_a_bounded_amount() {
        // /dev/zero never ends: refused at its first byte after reading a few hundred.
        let err = Prefix::read_file(Path::new("/dev/zero")).unwrap_err();
        assert!(
            matches!(
                err,
                PrefixError::Invalid {
                    reason: InvalidPrefix::Control {
                        character: '\0',
                        offset: 0,
                        ..
                    },
                    ..
                }
            ),
            "{err:?}"
        );
        // A long file of clean bytes: too long, whatever its size.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![b'a'; 1 << 20]).unwrap();
        let err = Prefix::read_file(f.path()).unwrap_err();
        assert!(
            matches!(
                err,
                PrefixError::Invalid {
                    reason: InvalidPrefix::TooLong,
                    ..
                }
            ),
            "{err:?}"
        );
        // The cut falls inside a two-byte character: still just too long, not invalid UTF-8.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[b"a".as_slice(), "é".repeat(200).as_bytes()].concat())
            .unwrap();
        let err = Prefix::read_file(f.path()).unwrap_err();
        assert!(
            matches!(
                err,
                PrefixError::Invalid {
                    reason: InvalidPrefix::TooLong,
                    ..
                }
            ),
            "{err:?}"
        );
        // A culprit within the part read is reported before the length.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[b"ab/".as_slice(), &[b'a'; 500]].concat())
            .unwrap();
        let err = Prefix::read_file(f.path()).unwrap_err();
        assert!(
            matches!(
                err,
                PrefixError::Invalid {
                    reason: InvalidPrefix::Slash { offset: 2 },
                    ..
                }
            ),
            "{err:?}"
        );
        // Exactly the longest prefix is read whole.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[b'b'; MAX_PREFIX_LEN]).unwrap();
        assert_eq!(
            Prefix::read_file(f.path()).unwrap().as_str().len(),
            MAX_PREFIX_LEN
        );
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
            matches!(
                err,
                PrefixError::Invalid {
                    reason: InvalidPrefix::NotUtf8 { valid_up_to: 3 },
                    ..
                }
            ),
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
                Prefix::unsafe_default(name, boot).unwrap().as_str(),
                want,
                "{name:?} {boot:?}"
            );
        }
        // A name that would make the prefix unsafe is refused, not mangled.
        assert_eq!(
            Prefix::unsafe_default(Some("../x"), Some(1)),
            Err(InvalidPrefix::Slash { offset: 2 })
        );
        assert!(matches!(
            Prefix::unsafe_default(Some("host\n"), None),
            Err(InvalidPrefix::Control { offset: 4, .. })
        ));
    }

    #[test]
    fn host_default_prefers_pod_name() {
        let p = Prefix::host_default(Some("ndt-abcde")).unwrap();
        let boot = boot_time().expect("/proc/uptime readable on the test host");
        assert_eq!(p.as_str(), format!("ndt-abcde_{boot}_unsafe"));
        // Computed once: the same value every time.
        assert_eq!(Prefix::host_default(Some("ndt-abcde")).unwrap(), p);
    }

    #[test]
    fn host_default_refuses_a_hostile_pod_name_naming_it() {
        let err = Prefix::host_default(Some("../../etc/x")).unwrap_err();
        let boot = boot_time().unwrap();
        assert!(
            matches!(
                &err,
                PrefixError::InvalidName {
                    reason: InvalidPrefix::Slash { offset: 2 },
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "the UUID prefix \"../../etc/x_{boot}_unsafe\", built from $POD_NAME, contains '/'"
            )),
            "{message}"
        );
    }

    #[test]
    fn host_default_falls_back_to_hostname() {
        let host = hostname().expect("hostname readable on the test host");
        let boot = boot_time().unwrap();
        let want = format!("{host}_{boot}_unsafe");
        assert_eq!(Prefix::host_default(None).unwrap().as_str(), want);
        assert_eq!(Prefix::host_default(Some("")).unwrap().as_str(), want);
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
        let p = Prefix::from_bytes("a b~c d+é ".as_bytes().to_vec()).unwrap();
        assert_eq!(p.unsafe_chars(), vec![' ', '~', '+', 'é']);
        let p = Prefix::from_bytes(b"a.b:c".to_vec()).unwrap();
        assert!(p.unsafe_chars().is_empty());
    }
}
