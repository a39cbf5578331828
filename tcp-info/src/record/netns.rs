//! The opt-in `Netns` key of the Metadata line and of events (`--netns.attribution`): the
//! network namespace a connection lived in and, when the node could tell, the pod that owns it.
//!
//! Upstream writes no such key, so it is only written when asked for (SPEC §17: extra keys break
//! byte compatibility but stay ETL-parsable; the ETL ignores unknown keys).

use super::json::push_go_string;
use serde::Deserialize;

/// Which network namespace a connection lived in, and who owns it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct NetnsTag {
    /// The namespace's inode number (`ls -i /proc/PID/ns/net`, `net->ns.inum`).
    #[serde(rename = "Inode")]
    pub inode: u32,
    /// The owning pod's UID, from the cgroup path of a process in the namespace.
    #[serde(rename = "PodUID")]
    pub pod_uid: Option<String>,
    /// The container (for a pod: usually its sandbox) that process belongs to.
    #[serde(rename = "ContainerID")]
    pub container_id: Option<String>,
    /// The pod's Kubernetes namespace, from the container runtime's state or the environment.
    #[serde(rename = "PodNamespace")]
    pub pod_namespace: Option<String>,
    /// The pod's name, from the container runtime's state or the environment.
    #[serde(rename = "PodName")]
    pub pod_name: Option<String>,
}

impl NetnsTag {
    /// Appends the tag as a JSON object, keys in a fixed order, absent fields left out:
    /// `{"Inode":4026531840,"PodUID":"…","ContainerID":"…","PodNamespace":"…","PodName":"…"}`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"Inode\":");
        out.extend_from_slice(self.inode.to_string().as_bytes());
        for (key, value) in [
            (&b",\"PodUID\":"[..], &self.pod_uid),
            (b",\"ContainerID\":", &self.container_id),
            (b",\"PodNamespace\":", &self.pod_namespace),
            (b",\"PodName\":", &self.pod_name),
        ] {
            if let Some(value) = value {
                out.extend_from_slice(key);
                push_go_string(out, value);
            }
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_with_and_without_owner() {
        let full = NetnsTag {
            inode: 4_026_532_001,
            pod_uid: Some("0f3c6d7e-1b2a-4c5d-8e9f-001122334455".into()),
            container_id: Some("ab".repeat(32)),
            pod_namespace: Some("default".into()),
            pod_name: Some("web-\"0\"".into()),
        };
        let mut out = Vec::new();
        full.write_json(&mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("{\"Inode\":4026532001,\"PodUID\":\"0f3c6d7e-"),
            "{text}"
        );
        assert!(text.ends_with(",\"PodName\":\"web-\\\"0\\\"\"}"), "{text}");
        assert_eq!(serde_json::from_slice::<NetnsTag>(&out).unwrap(), full);

        let bare = NetnsTag {
            inode: 7,
            ..NetnsTag::default()
        };
        out.clear();
        bare.write_json(&mut out);
        assert_eq!(out, b"{\"Inode\":7}");
        assert_eq!(serde_json::from_slice::<NetnsTag>(&out).unwrap(), bare);
    }
}
