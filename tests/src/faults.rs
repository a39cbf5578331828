//! Storage and descriptor faults for the end-to-end tests: a small tmpfs mounted for one test
//! (filled, remounted read-only, always unmounted), the archive files a process holds open,
//! and a process's descriptor limit.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

/// A tmpfs mounted at a path of the test's own (unique per test), lazily unmounted when
/// dropped, so that a failing test leaves nothing mounted.
///
/// The daemon runs under `ip netns exec`, in a mount namespace copied from the test's when it
/// started: mount the tmpfs **before** starting the daemon. Filling it and remounting it act
/// on the file system itself, which both namespaces share.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Creates `path` if missing and mounts a tmpfs of `size` bytes there (`mode=0755`).
    pub fn mount(path: &Path, size: u64) -> Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        run_mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tcp-info-e2e",
            &path.to_string_lossy(),
        ])?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `mount -o remount,<options>` (e.g. `ro`, `rw`).
    pub fn remount(&self, options: &str) -> Result<()> {
        run_mount(&[
            "-o",
            &format!("remount,{options}"),
            &self.path.to_string_lossy(),
        ])
    }

    /// Remounts read-only. The kernel refuses while a file is open for writing on it
    /// ("busy"), so this retries until `timeout`; `idle` is asked before each try (e.g.
    /// whether the daemon has no archive open).
    pub fn remount_read_only(
        &self,
        timeout: Duration,
        mut idle: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        crate::wait_for(timeout, "remounting the tmpfs read-only", || {
            if !idle()? {
                return Ok(None);
            }
            // An error (busy) is retried, and shown if it persists.
            self.remount("ro").map(Some)
        })
    }

    /// Writes the file `name` until the file system is full (`ENOSPC`); returns its path and
    /// size.
    pub fn fill(&self, name: &str) -> Result<(PathBuf, u64)> {
        let path = self.path.join(name);
        let mut file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let block = vec![0xA5_u8; 64 * 1024];
        let mut written = 0_u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).with_context(|| format!("filling {}", path.display())),
            }
        }
        Ok((path, written))
    }

    /// Whether a page more cannot be written: a probe file's write fails with `ENOSPC`.
    pub fn is_full(&self) -> Result<bool> {
        let path = self.path.join(".full-probe");
        let written = std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&[0; 4096]))
            .map_err(|e| e.raw_os_error());
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        match written {
            Ok(()) => Ok(false),
            Err(Some(libc::ENOSPC)) => Ok(true),
            Err(e) => bail!("writing {}: errno {e:?}", path.display()),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: detached now even if something still uses it.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn run_mount(args: &[&str]) -> Result<()> {
    let out = Command::new("mount")
        .args(args)
        .output()
        .context("running mount")?;
    if !out.status.success() {
        bail!(
            "mount {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The archive files (`*.jsonl.zst`) process `pid` holds open, from `/proc/<pid>/fd`.
pub fn open_archives(pid: u32) -> Result<Vec<PathBuf>> {
    let dir = format!("/proc/{pid}/fd");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue; // closed meanwhile
        };
        if target.to_string_lossy().ends_with(".jsonl.zst") {
            out.push(target);
        }
    }
    out.sort();
    Ok(out)
}

/// How many descriptors process `pid` has open.
pub fn descriptor_count(pid: u32) -> Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("listing {dir}"))?
        .count())
}

/// The soft and hard `RLIMIT_NOFILE` of process `pid`.
pub fn nofile(pid: u32) -> Result<(u64, u64)> {
    prlimit_nofile(pid, None)
}

/// Sets the `RLIMIT_NOFILE` of process `pid` (root may raise it again later); returns the
/// previous soft and hard limits.
pub fn set_nofile(pid: u32, soft: u64, hard: u64) -> Result<(u64, u64)> {
    prlimit_nofile(pid, Some((soft, hard)))
}

fn prlimit_nofile(pid: u32, new: Option<(u64, u64)>) -> Result<(u64, u64)> {
    let new = new.map(|(soft, hard)| libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    });
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new_ptr = new.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: prlimit reads `new` (if not null) and writes `old`, both valid structs.
    let rc = unsafe {
        libc::prlimit(
            libc::pid_t::try_from(pid)?,
            libc::RLIMIT_NOFILE,
            new_ptr,
            &raw mut old,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("prlimit(RLIMIT_NOFILE) of process {pid}"));
    }
    Ok((old.rlim_cur, old.rlim_max))
}
