//! `tcp-info write-uuid-prefix PATH`: writes this boot's UUID prefix file (`<hostname>_<btime>`)
//! for `-uuid-prefix-file` to read, so that a deployment can prepare it in an init step with the
//! daemon's own image (which has no shell). Run it in the host's network and UTS namespaces
//! (`hostNetwork: true`): the hostname is part of the prefix.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context, Result, bail};
use tcp_info::uuid::host_prefix_for_file;

/// The name of the subcommand, given as the first argument.
pub const SUBCOMMAND: &str = "write-uuid-prefix";

/// Mode of the prefix file: readable by everyone (programs that compute UUIDs read it),
/// writable by its owner only.
const MODE: u32 = 0o644;

/// Writes the prefix to `path` unless it already holds exactly that prefix, atomically (a
/// temporary file in the same directory, synced, then renamed over it), creating the
/// directory if needed. Returns the prefix. A hostname that cannot be part of a prefix
/// (D19) is an error and writes nothing.
pub fn write(path: &Path) -> Result<String> {
    // A hostname the daemon would refuse in the file (a `/`, a control character: Linux lets
    // root set any bytes) fails here, naming the character, instead of at the daemon's start.
    let Some(prefix) = host_prefix_for_file()? else {
        bail!(
            "cannot build the prefix: no hostname in /proc/sys/kernel/hostname or no btime in /proc/stat"
        );
    };
    let prefix = prefix.as_str().to_owned();
    if fs::read(path).is_ok_and(|old| old == prefix.as_bytes()) {
        return Ok(prefix);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        bail!("{} names no file", path.display());
    };
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temporary = name.to_os_string();
    temporary.push(format!(".tmp.{}", std::process::id()));
    let temporary = dir.join(temporary);
    let written = (|| -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .open(&temporary)?;
        // Explicit, whatever the umask.
        file.set_permissions(fs::Permissions::from_mode(MODE))?;
        file.write_all(prefix.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::write;

    #[test]
    fn writes_the_prefix_once_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uuid/prefix");
        let prefix = write(&path).unwrap();
        let (host, boot) = prefix.rsplit_once('_').unwrap();
        assert_eq!(Some(host.to_owned()), tcp_info::uuid::hostname());
        assert!(boot.parse::<i64>().unwrap() > 1_000_000_000, "{prefix}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), prefix);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        // The same prefix again leaves the file alone; a stale one is replaced.
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(write(&path).unwrap(), prefix);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        std::fs::write(&path, "stale_1").unwrap();
        assert_eq!(write(&path).unwrap(), prefix);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), prefix);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["prefix"], "no temporary file is left behind");
    }

    #[test]
    fn a_path_that_cannot_be_written_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let error = write(&blocker.join("prefix")).unwrap_err();
        assert!(format!("{error:#}").contains("file"), "{error:#}");
    }
}
