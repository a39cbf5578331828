//! Which pod owns a network namespace, as far as the node can tell from files alone.
//!
//! The collector knows one process living in each network namespace it records (found through
//! `/proc/<pid>/ns/net`). This module looks at that process from three sides:
//!
//! 1. `/proc/<pid>/cgroup`: kubelet names the cgroups of a pod after the pod UID and those of
//!    its containers after the container ID, under either cgroup driver (systemd slices and
//!    scopes, or cgroupfs directories), possibly nested below another cgroup (kind nodes).
//! 2. `/proc/<pid>/environ`: pods often get their name and namespace through the downward API
//!    (`POD_NAME`, `POD_NAMESPACE`), and a pod's hostname is its name unless the spec sets one.
//! 3. The container runtime's OCI bundle (`config.json`), whose annotations carry the pod's
//!    name, namespace and UID: the CRI state on disk, read without gRPC or the API server.
//!
//! Runtime annotations are preferred to the environment, which the workload controls. The pod
//! UID comes from the cgroup path first: it is set by kubelet, not by the workload.
//!
//! Everything is best effort. Processes exit at any moment and their files vanish with them, so
//! a missing, unreadable or unexpected file yields `None` fields, never an error nor a panic.
//! Every value is untrusted input: names must look like Kubernetes names, UIDs like UUIDs and
//! container IDs like 64 lower-case hex digits, or they are dropped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest `config.json` read; runtime bundles are a few KiB, a bigger file is skipped.
const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Largest `/proc/<pid>/cgroup` read (a line per v1 hierarchy, a few hundred bytes in practice).
const MAX_CGROUP_BYTES: u64 = 64 << 10;
/// Largest `/proc/<pid>/environ` read (the kernel caps arguments plus environment near there).
const MAX_ENVIRON_BYTES: u64 = 4 << 20;
/// Longest name or namespace kept: a DNS subdomain has at most 253 characters.
const MAX_NAME_LEN: usize = 253;
/// Length of a container ID as the CRI runtimes print it (a SHA-256 in hex).
const CONTAINER_ID_LEN: usize = 64;

/// The cgroup path component that every kubelet-managed pod cgroup sits below.
const KUBEPODS: &str = "kubepods";
/// Prefixes of a container's cgroup name for containerd, CRI-O and Docker (cri-dockerd).
const CONTAINER_PREFIXES: [&str; 4] = ["cri-containerd-", "crio-", "docker-", "containerd-"];
/// CRI-O's container monitor: its cgroup names a container ID, but the process is not it.
const CRIO_CONMON_PREFIX: &str = "crio-conmon-";

/// Downward-API variables for the pod name, most usual first.
const ENV_POD_NAME: [&str; 2] = ["POD_NAME", "KUBERNETES_POD_NAME"];
/// Downward-API variables for the pod namespace, most usual first.
const ENV_POD_NAMESPACE: [&str; 2] = ["POD_NAMESPACE", "KUBERNETES_NAMESPACE"];
/// The hostname, which is the pod name in a pod that does not set `hostname`.
const ENV_HOSTNAME: &str = "HOSTNAME";

/// Annotation keys of the pod name: containerd's, then CRI-O's.
const ANNOTATION_NAME: [&str; 2] = ["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"];
/// Annotation keys of the pod namespace: containerd's, then CRI-O's.
const ANNOTATION_NAMESPACE: [&str; 2] = [
    "io.kubernetes.cri.sandbox-namespace",
    "io.kubernetes.pod.namespace",
];
/// Annotation keys of the pod UID: containerd's, then CRI-O's.
const ANNOTATION_UID: [&str; 2] = ["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"];

/// Who owns a network namespace, as far as the node can tell. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// The pod UID in canonical form (lower-case, dashed 8-4-4-4-12 hex).
    pub pod_uid: Option<String>,
    /// The container ID: 64 lower-case hex digits.
    pub container_id: Option<String>,
    /// The pod's Kubernetes namespace.
    pub pod_namespace: Option<String>,
    /// The pod's name.
    pub pod_name: Option<String>,
}

impl Owner {
    /// Whether nothing at all is known about the owner.
    pub fn is_empty(&self) -> bool {
        self.pod_uid.is_none()
            && self.container_id.is_none()
            && self.pod_namespace.is_none()
            && self.pod_name.is_none()
    }
}

/// Where attribution reads from.
#[derive(Debug, Clone)]
pub struct Attributor {
    /// The procfs mount (`/proc` on the host).
    proc_root: PathBuf,
    /// Directories holding one OCI bundle per container ID.
    bundle_roots: Vec<PathBuf>,
}

impl Attributor {
    /// Containerd's and CRI-O's default bundle roots.
    pub const DEFAULT_BUNDLE_ROOTS: [&'static str; 2] = [
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io",
        "/run/containers/storage/overlay-containers",
    ];

    /// An attributor reading processes below `proc_root` and bundles below `bundle_roots`
    /// (searched in order).
    pub fn new(proc_root: impl Into<PathBuf>, bundle_roots: Vec<PathBuf>) -> Self {
        Self {
            proc_root: proc_root.into(),
            bundle_roots,
        }
    }

    /// `/proc` and the default roots.
    pub fn host() -> Self {
        let roots = Self::DEFAULT_BUNDLE_ROOTS
            .iter()
            .map(PathBuf::from)
            .collect();
        Self::new("/proc", roots)
    }

    /// Attribution of the process `pid`.
    ///
    /// Runtime annotations win over the environment; the cgroup's pod UID wins over the
    /// annotations' (a disagreement is logged at debug level). `HOSTNAME` stands for the pod
    /// name only when a pod UID was found: outside a pod the hostname is the node's.
    pub fn owner(&self, pid: u32) -> Owner {
        let proc_dir = self.proc_root.join(pid.to_string());
        let (cgroup_uid, container_id) = read_capped(&proc_dir.join("cgroup"), MAX_CGROUP_BYTES)
            .map_or((None, None), |bytes| {
                from_cgroup(&String::from_utf8_lossy(&bytes))
            });
        let env = read_capped(&proc_dir.join("environ"), MAX_ENVIRON_BYTES)
            .map(|bytes| EnvPod::parse(&bytes))
            .unwrap_or_default();
        let runtime = container_id
            .as_deref()
            .and_then(|id| self.bundle_pod(id))
            .unwrap_or_default();

        let pod_uid = merge_uid(pid, cgroup_uid, runtime.uid);
        let pod_name = runtime
            .name
            .or(env.name)
            .or_else(|| env.hostname.filter(|_| pod_uid.is_some()));
        Owner {
            pod_uid,
            container_id,
            pod_namespace: runtime.namespace.or(env.namespace),
            pod_name,
        }
    }

    /// What the first bundle of `container_id` with any pod annotation says.
    fn bundle_pod(&self, container_id: &str) -> Option<BundlePod> {
        // `container_id` is 64 hex digits (checked by `from_cgroup`), so joining it cannot
        // leave the root.
        self.bundle_roots
            .iter()
            .flat_map(|root| {
                let dir = root.join(container_id);
                // containerd's layout, then CRI-O's.
                [
                    dir.join("config.json"),
                    dir.join("userdata").join("config.json"),
                ]
            })
            .find_map(|path| {
                let pod = BundlePod::parse(&read_capped(&path, MAX_CONFIG_BYTES)?);
                (!pod.is_empty()).then_some(pod)
            })
    }
}

/// Pod UID and container ID from the content of a `/proc/<pid>/cgroup` file.
///
/// Every line is scanned (a hybrid host lists v1 hierarchies and the v2 one) and the first
/// path naming a pod wins. The container ID is `None` when the process sits in no container
/// cgroup of that pod, or in CRI-O's `conmon`.
pub fn from_cgroup(content: &str) -> (Option<String>, Option<String>) {
    content
        .lines()
        .filter_map(cgroup_line_path)
        .find_map(pod_from_cgroup_path)
        .map_or((None, None), |(uid, container)| (Some(uid), container))
}

/// Pod (name, namespace) from the content of a `/proc/<pid>/environ` file.
///
/// `POD_NAME`/`POD_NAMESPACE` are preferred to `KUBERNETES_POD_NAME`/`KUBERNETES_NAMESPACE`.
/// Entries that are not UTF-8 are skipped. `HOSTNAME` is not used here: only
/// [`Attributor::owner`] knows whether the process is in a pod at all.
pub fn from_environ(bytes: &[u8]) -> (Option<String>, Option<String>) {
    let env = EnvPod::parse(bytes);
    (env.name, env.namespace)
}

/// (name, namespace, uid) from an OCI `config.json`'s annotations.
///
/// Understands containerd's (`io.kubernetes.cri.sandbox-*`) and CRI-O's (`io.kubernetes.pod.*`)
/// keys. Input larger than 4 MiB or not JSON yields nothing.
pub fn from_bundle_config(json: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let pod = BundlePod::parse(json);
    (pod.name, pod.namespace, pod.uid)
}

/// The content of `path`, or `None` if it cannot be read or holds more than `cap` bytes.
fn read_capped(path: &Path, cap: u64) -> Option<Vec<u8>> {
    let file = File::open(path).ok()?;
    // procfs files report a size of 0, so the cap is enforced while reading as well.
    if file.metadata().ok()?.len() > cap {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= cap).then_some(bytes)
}

/// The path of a cgroup line: `N:controllers:/path` in v1, `0::/path` in v2.
fn cgroup_line_path(line: &str) -> Option<&str> {
    let mut fields = line.splitn(3, ':');
    fields.next()?;
    fields.next()?;
    fields.next()
}

/// Pod UID and container ID named by a cgroup path, if it is a pod's.
fn pod_from_cgroup_path(path: &str) -> Option<(String, Option<String>)> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    // Pod segments are only trusted below a `kubepods` cgroup, wherever that sits (kind nodes
    // and nested runtimes put it below their own cgroups).
    let mut below_kubepods = false;
    while let Some(segment) = segments.next() {
        below_kubepods |= names_kubepods(segment);
        if !below_kubepods {
            continue;
        }
        if let Some(uid) = pod_segment_uid(segment) {
            // The container's cgroup is the pod's direct child; deeper ones belong to it.
            let container = segments.next().and_then(container_id_of_segment);
            return Some((uid, container));
        }
    }
    None
}

/// Whether a segment is kubelet's root pod cgroup (`kubepods`, `kubepods.slice`,
/// `kubelet-kubepods.slice`, or one of the QoS or pod slices below it, which repeat the name).
fn names_kubepods(segment: &str) -> bool {
    let stem = segment.strip_suffix(".slice").unwrap_or(segment);
    stem.split('-').any(|part| part == KUBEPODS)
}

/// The canonical pod UID of a pod cgroup segment: `…-pod<uid with _>.slice` (systemd driver)
/// or `pod<uid>` (cgroupfs driver).
fn pod_segment_uid(segment: &str) -> Option<String> {
    let raw = match segment.strip_suffix(".slice") {
        // systemd encodes `-` as a hierarchy separator, so kubelet writes the UID with `_`.
        Some(stem) => stem.rsplit_once('-')?.1.strip_prefix("pod")?,
        None => segment.strip_prefix("pod")?,
    };
    canonical_uid(raw)
}

/// The container ID of a container cgroup segment: `<runtime>-<id>.scope` (systemd driver),
/// `<id>` or `crio-<id>` (cgroupfs driver).
fn container_id_of_segment(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    if name.starts_with(CRIO_CONMON_PREFIX) {
        return None;
    }
    let id = CONTAINER_PREFIXES
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    is_container_id(id).then(|| id.to_owned())
}

/// Whether `id` is 64 lower-case hex digits.
fn is_container_id(id: &str) -> bool {
    id.len() == CONTAINER_ID_LEN && id.bytes().all(is_lower_hex)
}

/// Whether `b` is a digit or `a`–`f`.
fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// A UID in canonical form (lower-case, dashed 8-4-4-4-12), or `None` if it is not a UUID.
///
/// `_` is read as `-` (the systemd driver's spelling). 32 hex digits without dashes are
/// accepted and dashed: kubelet gives static pods such a UID (a hash of their manifest).
fn canonical_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-").to_ascii_lowercase();
    if is_dashed_uuid(&uid) {
        Some(uid)
    } else if uid.len() == 32 && uid.bytes().all(is_lower_hex) {
        let mut dashed = String::with_capacity(36);
        for (i, digit) in uid.chars().enumerate() {
            if matches!(i, 8 | 12 | 16 | 20) {
                dashed.push('-');
            }
            dashed.push(digit);
        }
        Some(dashed)
    } else {
        None
    }
}

/// Whether `uid` is a lower-case 8-4-4-4-12 hex UUID.
fn is_dashed_uuid(uid: &str) -> bool {
    uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => is_lower_hex(b),
        })
}

/// A name or namespace if it looks like a Kubernetes name: 1 to 253 bytes of ASCII letters,
/// digits, `.`, `-` and `_` (a little wider than DNS names, never quotes, `\` or controls).
fn clean_name(value: &str) -> Option<String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    let ok = !value.is_empty() && value.len() <= MAX_NAME_LEN && value.bytes().all(allowed);
    ok.then(|| value.to_owned())
}

/// What a process's environment says about its pod.
#[derive(Debug, Default)]
struct EnvPod {
    /// From the downward-API variables.
    name: Option<String>,
    /// From the downward-API variables.
    namespace: Option<String>,
    /// `HOSTNAME`, the pod name only if the process is known to be in a pod.
    hostname: Option<String>,
}

impl EnvPod {
    /// Reads the NUL-separated `KEY=VALUE` entries of an `environ` file.
    fn parse(environ: &[u8]) -> Self {
        let first_name = |keys: &[&str]| {
            keys.iter()
                .find_map(|key| env_value(environ, key).and_then(clean_name))
        };
        Self {
            name: first_name(&ENV_POD_NAME),
            namespace: first_name(&ENV_POD_NAMESPACE),
            hostname: first_name(&[ENV_HOSTNAME]),
        }
    }
}

/// The value of the first UTF-8 entry `key=…` of an `environ` file (what `getenv` would see,
/// but for the skipped invalid entries).
fn env_value<'a>(environ: &'a [u8], key: &str) -> Option<&'a str> {
    environ
        .split(|&b| b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix(key)?.strip_prefix('='))
}

/// What a runtime bundle's annotations say about the pod.
#[derive(Debug, Default)]
struct BundlePod {
    /// The pod name.
    name: Option<String>,
    /// The pod namespace.
    namespace: Option<String>,
    /// The pod UID, canonical.
    uid: Option<String>,
}

impl BundlePod {
    /// Reads the annotations of a `config.json`; anything unexpected yields nothing.
    fn parse(json: &[u8]) -> Self {
        if json.len() as u64 > MAX_CONFIG_BYTES {
            return Self::default();
        }
        // serde_json limits nesting depth, so hostile input cannot exhaust the stack.
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(json) else {
            return Self::default();
        };
        let Some(annotations) = config
            .get("annotations")
            .and_then(serde_json::Value::as_object)
        else {
            return Self::default();
        };
        let first = |keys: [&str; 2]| keys.iter().find_map(|key| annotations.get(*key)?.as_str());
        Self {
            name: first(ANNOTATION_NAME).and_then(clean_name),
            namespace: first(ANNOTATION_NAMESPACE).and_then(clean_name),
            uid: first(ANNOTATION_UID).and_then(canonical_uid),
        }
    }

    /// Whether no annotation was usable.
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.namespace.is_none() && self.uid.is_none()
    }
}

/// The pod UID: the cgroup's (set by kubelet) if any, else the runtime's.
fn merge_uid(pid: u32, cgroup: Option<String>, annotation: Option<String>) -> Option<String> {
    match (cgroup, annotation) {
        (Some(cgroup), Some(annotation)) if cgroup != annotation => {
            tracing::debug!(
                pid,
                cgroup_uid = %cgroup,
                annotation_uid = %annotation,
                "pod UIDs of the cgroup and of the runtime bundle disagree; keeping the cgroup's"
            );
            Some(cgroup)
        }
        (cgroup, annotation) => cgroup.or(annotation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const UID: &str = "0b6f2c8e-3a1d-4c5e-9f7a-1b2c3d4e5f60";
    const UID_SYSTEMD: &str = "0b6f2c8e_3a1d_4c5e_9f7a_1b2c3d4e5f60";
    const OTHER_UID: &str = "11111111-2222-4333-8444-555555555555";
    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// `Some` owned string, to compare with the fields.
    fn some(s: &str) -> Option<String> {
        s.to_owned().into()
    }

    /// `from_cgroup` of a single v2 line with `path`.
    fn v2(path: &str) -> (Option<String>, Option<String>) {
        from_cgroup(&format!("0::{path}\n"))
    }

    #[test]
    fn systemd_burstable_containerd() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{CID}.scope"
        );
        assert_eq!(v2(&path), (some(UID), some(CID)));
    }

    #[test]
    fn systemd_besteffort_crio() {
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_SYSTEMD}.slice/crio-{CID}.scope"
        );
        assert_eq!(v2(&path), (some(UID), some(CID)));
    }

    #[test]
    fn systemd_guaranteed_docker() {
        let path = format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/docker-{CID}.scope");
        assert_eq!(v2(&path), (some(UID), some(CID)));
    }

    #[test]
    fn systemd_plain_containerd_prefix() {
        let path =
            format!("/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/containerd-{CID}.scope");
        assert_eq!(v2(&path), (some(UID), some(CID)));
    }

    #[test]
    fn crio_conmon_gives_the_pod_only() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_SYSTEMD}.slice/crio-conmon-{CID}.scope"
        );
        assert_eq!(v2(&path), (some(UID), None));
    }

    #[test]
    fn cgroupfs_every_qos_class() {
        for qos in ["/burstable", "/besteffort", ""] {
            let path = format!("/kubepods{qos}/pod{UID}/{CID}");
            assert_eq!(v2(&path), (some(UID), some(CID)), "{path}");
        }
    }

    #[test]
    fn cgroupfs_crio_prefix() {
        let path = format!("/kubepods/burstable/pod{UID}/crio-{CID}");
        assert_eq!(v2(&path), (some(UID), some(CID)));
    }

    #[test]
    fn nested_kind_paths() {
        let paths = [
            format!(
                "/system.slice/containerd.service/kubepods-burstable-pod{UID_SYSTEMD}.slice/cri-containerd-{CID}.scope"
            ),
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{CID}.scope"
            ),
            format!(
                "/system.slice/docker-{CID}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{CID}.scope"
            ),
            format!("/docker/{CID}/kubelet/kubepods/burstable/pod{UID}/{CID}"),
        ];
        for path in paths {
            assert_eq!(v2(&path), (some(UID), some(CID)), "{path}");
        }
    }

    #[test]
    fn deeper_cgroups_belong_to_the_container() {
        let path = format!("/kubepods/pod{UID}/{CID}/init.scope");
        assert_eq!(v2(&path), (some(UID), some(CID)));
    }

    #[test]
    fn pod_cgroup_without_container() {
        assert_eq!(
            v2(&format!("/kubepods/besteffort/pod{UID}")),
            (some(UID), None)
        );
    }

    #[test]
    fn hybrid_v1_v2_takes_first_matching_line() {
        let content = format!(
            "12:rdma:/\n\
             11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n\
             1:name=systemd:/kubepods/burstable/pod{OTHER_UID}/{CID}\n\
             0::/\n"
        );
        assert_eq!(from_cgroup(&content), (some(UID), some(CID)));
        let content = format!(
            "3:memory:/user.slice\n1:name=systemd:/init.scope\n0::/kubepods/pod{UID}/{CID}\n"
        );
        assert_eq!(from_cgroup(&content), (some(UID), some(CID)));
    }

    #[test]
    fn uid_is_normalised() {
        let upper = UID.to_ascii_uppercase();
        assert_eq!(
            v2(&format!("/kubepods/pod{upper}/{CID}")),
            (some(UID), some(CID))
        );
        // Static pods carry a 32-hex-digit manifest hash as UID.
        let bare = UID.replace('-', "");
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{bare}.slice"
        );
        assert_eq!(v2(&path), (some(UID), None));
    }

    #[test]
    fn bad_uid_is_rejected() {
        let paths = [
            format!("/kubepods/pod{}/{CID}", &UID[1..]),
            format!("/kubepods/podzb6f2c8e-3a1d-4c5e-9f7a-1b2c3d4e5f60/{CID}"),
            format!("/kubepods/pod0b6f2c8e3-a1d-4c5e-9f7a-1b2c3d4e5f60/{CID}"),
            format!("/kubepods.slice/kubepods-podnot_a_uid.slice/cri-containerd-{CID}.scope"),
            format!("/kubepods/pod/{CID}"),
            "/kubepods/pod\u{e9}\u{e9}\u{e9}\u{e9}/x".to_owned(),
        ];
        for path in paths {
            assert_eq!(v2(&path), (None, None), "{path}");
        }
    }

    #[test]
    fn bad_container_id_keeps_the_pod() {
        let ids = [
            CID[1..].to_owned(),
            CID.to_ascii_uppercase(),
            format!("{CID}0"),
            CID.replace('0', "g"),
        ];
        for id in ids {
            let path = format!("/kubepods/pod{UID}/{id}");
            assert_eq!(v2(&path), (some(UID), None), "{path}");
            let path = format!(
                "/kubepods.slice/kubepods-pod{UID_SYSTEMD}.slice/cri-containerd-{id}.scope"
            );
            assert_eq!(v2(&path), (some(UID), None), "{path}");
        }
    }

    #[test]
    fn not_a_pod() {
        let contents = [
            String::new(),
            "garbage\n\n:\n".to_owned(),
            "0::/\n".to_owned(),
            "0::/system.slice/sshd.service\n".to_owned(),
            format!("0::/user.slice/pod{UID}/{CID}\n"),
            format!("0::/system.slice/docker-{CID}.scope\n"),
        ];
        for content in contents {
            assert_eq!(from_cgroup(&content), (None, None), "{content}");
        }
    }

    #[test]
    fn environ_downward_api() {
        let env = b"PATH=/bin\0POD_NAME=web-7d4b9c-x2x\0POD_NAMESPACE=shop\0HOSTNAME=h\0";
        assert_eq!(from_environ(env), (some("web-7d4b9c-x2x"), some("shop")));
    }

    #[test]
    fn environ_alternates_and_precedence() {
        let env = b"KUBERNETES_POD_NAME=alt\0KUBERNETES_NAMESPACE=altns\0";
        assert_eq!(from_environ(env), (some("alt"), some("altns")));
        let env =
            b"KUBERNETES_POD_NAME=alt\0POD_NAME=main\0POD_NAMESPACE=ns\0KUBERNETES_NAMESPACE=x";
        assert_eq!(from_environ(env), (some("main"), some("ns")));
        // The first entry wins, as with getenv.
        assert_eq!(from_environ(b"POD_NAME=a\0POD_NAME=b\0").0, some("a"));
        // A similar key is not the key.
        assert_eq!(from_environ(b"MY_POD_NAME=a\0POD_NAMEX=b\0"), (None, None));
    }

    #[test]
    fn environ_invalid_utf8_is_skipped() {
        let env = b"POD_NAME=\xff\xfe\0X=\xc3\0POD_NAME=good\0POD_NAMESPACE=ns\xe9\0";
        assert_eq!(from_environ(env), (some("good"), None));
        assert_eq!(from_environ(b"\xff\xff\xff"), (None, None));
        assert_eq!(from_environ(b""), (None, None));
    }

    #[test]
    fn environ_values_are_checked() {
        let long = "a".repeat(254);
        let bad = [
            "POD_NAME=".to_owned(),
            "POD_NAME=a b".to_owned(),
            "POD_NAME=a\"b".to_owned(),
            "POD_NAME=a\\b".to_owned(),
            "POD_NAME=a\tb".to_owned(),
            "POD_NAME=caf\u{e9}".to_owned(),
            format!("POD_NAME={long}"),
        ];
        for entry in bad {
            assert_eq!(from_environ(entry.as_bytes()).0, None, "{entry}");
        }
        let fallback = b"POD_NAME=a b\0KUBERNETES_POD_NAME=ok\0";
        assert_eq!(from_environ(fallback).0, some("ok"));
        let max = "a".repeat(253);
        assert_eq!(
            from_environ(format!("POD_NAME={max}").as_bytes()).0,
            Some(max)
        );
        assert_eq!(from_environ(b"POD_NAME=My_Pod.1-x").0, some("My_Pod.1-x"));
    }

    fn containerd_config(name: &str, namespace: &str, uid: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.1.0","process":{{"args":["/pause"]}},"annotations":{{
                "io.kubernetes.cri.container-type":"container",
                "io.kubernetes.cri.sandbox-id":"{CID}",
                "io.kubernetes.cri.sandbox-name":"{name}",
                "io.kubernetes.cri.sandbox-namespace":"{namespace}",
                "io.kubernetes.cri.sandbox-uid":"{uid}"}}}}"#
        )
    }

    fn crio_config(name: &str, namespace: &str, uid: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.0.2-dev","annotations":{{
                "io.kubernetes.cri-o.ContainerType":"container",
                "io.kubernetes.pod.name":"{name}",
                "io.kubernetes.pod.namespace":"{namespace}",
                "io.kubernetes.pod.uid":"{uid}"}}}}"#
        )
    }

    #[test]
    fn bundle_containerd() {
        let json = containerd_config("web-0", "shop", UID);
        assert_eq!(
            from_bundle_config(json.as_bytes()),
            (some("web-0"), some("shop"), some(UID))
        );
    }

    #[test]
    fn bundle_crio() {
        let json = crio_config("db-1", "store", &UID.to_ascii_uppercase());
        assert_eq!(
            from_bundle_config(json.as_bytes()),
            (some("db-1"), some("store"), some(UID))
        );
    }

    #[test]
    fn bundle_bad_values_are_dropped() {
        let json = containerd_config("a\\\"b", "", "not-a-uid");
        assert_eq!(from_bundle_config(json.as_bytes()), (None, None, None));
        let json =
            br#"{"annotations":{"io.kubernetes.pod.name":7,"io.kubernetes.pod.namespace":null}}"#;
        assert_eq!(from_bundle_config(json), (None, None, None));
    }

    #[test]
    fn bundle_garbage_json() {
        let inputs: [&[u8]; 7] = [
            b"",
            b"{",
            b"\xff\xfe",
            b"[1,2,3]",
            br#"{"annotations":"x"}"#,
            br#"{"annotations":["io.kubernetes.pod.name"]}"#,
            br#"{"process":{}}"#,
        ];
        for json in inputs {
            assert_eq!(from_bundle_config(json), (None, None, None));
        }
        let deep = "[".repeat(100_000);
        assert_eq!(from_bundle_config(deep.as_bytes()), (None, None, None));
    }

    /// `config.json` with its annotations padded past `len` bytes.
    fn padded_config(len: usize) -> String {
        let json = crio_config("big", "ns", UID);
        let pad = "x".repeat(len);
        json.replacen('{', &format!(r#"{{"pad":"{pad}","#), 1)
    }

    #[test]
    fn bundle_oversized() {
        let big = padded_config(MAX_CONFIG_BYTES as usize);
        assert_eq!(from_bundle_config(big.as_bytes()), (None, None, None));
        // Just below the limit still counts.
        let fits = padded_config(MAX_CONFIG_BYTES as usize - 1000);
        assert_eq!(from_bundle_config(fits.as_bytes()).0, some("big"));
    }

    #[test]
    fn owner_is_empty() {
        assert!(Owner::default().is_empty());
        let owner = Owner {
            pod_name: some("x"),
            ..Owner::default()
        };
        assert!(!owner.is_empty());
    }

    #[test]
    fn host_defaults() {
        let host = Attributor::host();
        assert_eq!(host.proc_root, Path::new("/proc"));
        assert_eq!(host.bundle_roots.len(), 2);
        assert!(host.bundle_roots[0].ends_with("k8s.io"));
    }

    /// A temporary directory laid out like `/proc` and the two runtimes' bundle roots.
    struct Node {
        dir: tempfile::TempDir,
    }

    impl Node {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, rel: &str, content: &[u8]) {
            let path = self.dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }

        fn process(&self, pid: u32, cgroup: &str, environ: &[u8]) {
            self.write(&format!("proc/{pid}/cgroup"), cgroup.as_bytes());
            self.write(&format!("proc/{pid}/environ"), environ);
        }

        fn attributor(&self) -> Attributor {
            let root = self.dir.path();
            Attributor::new(
                root.join("proc"),
                vec![root.join("containerd"), root.join("crio")],
            )
        }
    }

    fn systemd_cgroup(uid_systemd: &str, container: &str) -> String {
        format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_systemd}.slice/cri-containerd-{container}.scope\n"
        )
    }

    #[test]
    fn owner_runtime_wins_over_environment() {
        let node = Node::new();
        node.process(
            42,
            &systemd_cgroup(UID_SYSTEMD, CID),
            b"POD_NAME=env\0POD_NAMESPACE=envns\0",
        );
        node.write(
            &format!("containerd/{CID}/config.json"),
            containerd_config("web-0", "shop", UID).as_bytes(),
        );
        let owner = node.attributor().owner(42);
        let expected = Owner {
            pod_uid: some(UID),
            container_id: some(CID),
            pod_namespace: some("shop"),
            pod_name: some("web-0"),
        };
        assert_eq!(owner, expected);
    }

    #[test]
    fn owner_crio_bundle_layout() {
        let node = Node::new();
        node.process(
            7,
            &format!("0::/kubepods/besteffort/pod{UID}/crio-{CID}\n"),
            b"",
        );
        node.write(
            &format!("crio/{CID}/userdata/config.json"),
            crio_config("db-1", "store", UID).as_bytes(),
        );
        let owner = node.attributor().owner(7);
        assert_eq!(owner.pod_name, some("db-1"));
        assert_eq!(owner.pod_namespace, some("store"));
        assert_eq!(owner.pod_uid, some(UID));
    }

    #[test]
    fn owner_cgroup_uid_wins_a_disagreement() {
        let node = Node::new();
        node.process(9, &systemd_cgroup(UID_SYSTEMD, CID), b"");
        node.write(
            &format!("containerd/{CID}/config.json"),
            containerd_config("web-0", "shop", OTHER_UID).as_bytes(),
        );
        let owner = node.attributor().owner(9);
        assert_eq!(owner.pod_uid, some(UID));
        assert_eq!(owner.pod_name, some("web-0"));
    }

    #[test]
    fn owner_first_bundle_with_annotations_wins() {
        let node = Node::new();
        let config = r#"{"annotations":{"io.kubernetes.cri.sandbox-name":"n"}}"#;
        node.process(10, &systemd_cgroup(UID_SYSTEMD, CID), b"");
        node.write(&format!("containerd/{CID}/config.json"), config.as_bytes());
        node.write(
            &format!("crio/{CID}/userdata/config.json"),
            crio_config("ignored", "ignored", OTHER_UID).as_bytes(),
        );
        // The first bundle with any annotation wins, even a partial one.
        let owner = node.attributor().owner(10);
        assert_eq!(owner.pod_name, some("n"));
        assert_eq!(owner.pod_namespace, None);
        assert_eq!(owner.pod_uid, some(UID));
    }

    #[test]
    fn owner_environment_and_hostname_fallback() {
        let node = Node::new();
        // No bundle anywhere: the environment is all there is.
        node.process(
            11,
            &format!("0::/kubepods/pod{UID}/{CID}\n"),
            b"HOSTNAME=web-0\0POD_NAMESPACE=shop\0",
        );
        let owner = node.attributor().owner(11);
        assert_eq!(owner.pod_name, some("web-0"));
        assert_eq!(owner.pod_namespace, some("shop"));
        // Outside a pod, the hostname is the node's.
        node.process(
            12,
            "0::/system.slice/sshd.service\n",
            b"HOSTNAME=node-1\0POD_NAMESPACE=shop\0",
        );
        let owner = node.attributor().owner(12);
        assert_eq!(owner.pod_name, None);
        assert_eq!(owner.pod_namespace, some("shop"));
        // POD_NAME wins over HOSTNAME.
        node.process(
            13,
            &format!("0::/kubepods/pod{UID}\n"),
            b"HOSTNAME=h\0POD_NAME=p\0",
        );
        assert_eq!(node.attributor().owner(13).pod_name, some("p"));
    }

    #[test]
    fn owner_skips_oversized_and_garbage_bundles() {
        let node = Node::new();
        node.process(14, &systemd_cgroup(UID_SYSTEMD, CID), b"POD_NAME=env\0");
        let big = padded_config(MAX_CONFIG_BYTES as usize);
        node.write(&format!("containerd/{CID}/config.json"), big.as_bytes());
        node.write(&format!("crio/{CID}/userdata/config.json"), b"{not json");
        let owner = node.attributor().owner(14);
        assert_eq!(owner.pod_name, some("env"));
        assert_eq!(owner.pod_uid, some(UID));
        assert_eq!(owner.container_id, some(CID));
    }

    #[test]
    fn owner_of_a_vanished_or_odd_process() {
        let node = Node::new();
        assert!(node.attributor().owner(99).is_empty());
        // Only an unreadable (non-UTF-8) environ and a non-UTF-8 cgroup file.
        node.write("proc/15/cgroup", b"0::/\xff\xfe\n");
        node.write("proc/15/environ", b"\xff");
        assert!(node.attributor().owner(15).is_empty());
        // A directory where a file should be.
        fs::create_dir_all(node.dir.path().join("proc/16/cgroup")).unwrap();
        assert!(node.attributor().owner(16).is_empty());
    }

    #[test]
    fn read_capped_limits() {
        let node = Node::new();
        node.write("f", b"12345");
        let path = node.dir.path().join("f");
        assert_eq!(read_capped(&path, 5).as_deref(), Some(&b"12345"[..]));
        assert_eq!(read_capped(&path, 4), None);
        assert_eq!(read_capped(&node.dir.path().join("missing"), 5), None);
    }
}
