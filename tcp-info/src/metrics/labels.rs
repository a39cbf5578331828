//! Typed label values and per-label-value metric handles.
//!
//! Every label whose value set is closed is an enum here, so call sites cannot misspell a label
//! value, and each child metric is resolved once at start-up instead of by a hash lookup per event.

use std::marker::PhantomData;

use crate::events::EventKind;
use crate::mode::Mode;

/// A closed set of values for one metric label.
pub trait LabelValue: Copy + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The label value as exported.
    fn as_str(self) -> &'static str;
    /// Position of `self` in [`LabelValue::ALL`].
    fn index(self) -> usize;
}

/// `event` label of `tcpinfo_flow_events_total`: the event socket's own kind.
impl LabelValue for EventKind {
    const ALL: &'static [Self] = &[Self::Open, Self::Close];

    fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            // SPEC §12 D9.
            Self::Close => "close",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `mode` label of `tcpinfo_mode`.
impl LabelValue for Mode {
    const ALL: &'static [Self] = &[Self::Sweep, Self::Ebpf];

    fn as_str(self) -> &'static str {
        match self {
            Self::Sweep => "sweep",
            Self::Ebpf => "ebpf",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Declares a label enum: each variant maps to its exported label value.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl LabelValue for $name {
            const ALL: &'static [Self] = &[$( Self::$variant, )+];

            fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $value, )+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// `af` label of the per-family dump metrics.
    pub enum AddressFamily {
        /// `AF_INET`.
        V4 => "ipv4",
        /// `AF_INET6`.
        V6 => "ipv6",
    }
}

label_enum! {
    /// `type` label of the upstream `tcpinfo_error_total` (SPEC §9.2; the values are upstream's).
    pub enum ErrorType {
        /// A netlink reply carried an unexpected sequence number.
        WrongSeqNum => "wrong seq num",
        /// A netlink reply came from an unexpected port id.
        WrongPid => "wrong pid",
        /// The kernel answered a request with `NLMSG_ERROR`.
        NlmsgError => "NLMSG_ERROR",
        /// The total of bytes sent went backwards (SPEC §9.4).
        SentRegression => "totalSent < reportedSent",
        /// The bytes sent in one rate sample exceed 1.25e10 (SPEC §9.4).
        SentOverCapacity => "totalSent-reportedSent exceeds network capacity",
        /// The total of bytes received went backwards (SPEC §9.4).
        ReceivedRegression => "totalReceived < reportedReceived",
        /// The bytes received in one rate sample exceed 1.25e10 (SPEC §9.4).
        ReceivedOverCapacity => "totalReceived-reportedReceived exceeds network capacity",
    }
}

label_enum! {
    /// `type` label of the decoder metric `large_netlink_total`: the struct whose payload was
    /// longer than the decoder knows.
    pub enum LargeNetlinkType {
        /// `INET_DIAG_MEMINFO`.
        MemInfo => "MemInfo",
        /// `INET_DIAG_INFO` (`struct tcp_info`).
        TcpInfo => "TCPInfo",
        /// `INET_DIAG_VEGASINFO`.
        VegasInfo => "VegasInfo",
        /// `INET_DIAG_SKMEMINFO`.
        SockMemInfo => "SockMemInfo",
        /// `INET_DIAG_DCTCPINFO`.
        DctcpInfo => "DCTCPInfo",
        /// `INET_DIAG_BBRINFO`.
        BbrInfo => "BBRInfo",
    }
}

/// `type` label of `tcpinfo_saver_errors_total` (SPEC §12 D17): the saver's own error classes,
/// so that the classes counted and the label values exported are one list.
pub use crate::saver::ErrorClass;

impl LabelValue for ErrorClass {
    const ALL: &'static [Self] = &ErrorClass::ALL;

    fn as_str(self) -> &'static str {
        ErrorClass::as_str(self)
    }

    fn index(self) -> usize {
        ErrorClass::index(self)
    }
}

label_enum! {
    /// `source` label of `tcpinfo_records_total`: where a raw record came from.
    pub enum Source {
        /// A full `SOCK_DIAG_BY_FAMILY` dump.
        Sweep => "sweep",
        /// An exact query for a socket the eBPF programs marked dirty.
        Ebpf => "ebpf",
        /// The `sock_diag` destroy multicast groups (final snapshot of a closing socket).
        Close => "close",
        /// An exact query confirming, before it is closed, a connection the sweeps stopped
        /// listing.
        Confirm => "confirm",
    }
}

label_enum! {
    /// `reason` label of `tcpinfo_dump_failures_total` (SPEC §12 D12/D13).
    pub enum DumpFailure {
        /// Opening or configuring the `sock_diag` socket failed.
        Socket => "socket",
        /// Sending the dump request failed.
        Send => "send",
        /// Receiving the reply failed (other than ENOBUFS).
        Receive => "receive",
        /// The kernel answered with `NLMSG_ERROR`.
        NlmsgError => "nlmsg_error",
        /// The reply carried `NLM_F_DUMP_INTR`: its content is inconsistent.
        Interrupted => "interrupted",
        /// The receive buffer overflowed (ENOBUFS) and replies were lost.
        Enobufs => "enobufs",
        /// A reply could not be parsed.
        Malformed => "malformed",
    }
}

label_enum! {
    /// `outcome` label of `tcpinfo_exact_queries_total` (SPEC §13.3).
    pub enum ExactQueryOutcome {
        /// The reply matched the queried connection's cookie and state.
        Found => "found",
        /// ENOENT: no such socket any more, or a cookie mismatch.
        NotFound => "not_found",
        /// A reply arrived whose cookie or state does not match the queried connection.
        Mismatch => "mismatch",
        /// The reply was lost to a receive-buffer overflow (ENOBUFS) and must be re-queried.
        Lost => "lost",
        /// Any other error.
        Error => "error",
    }
}

label_enum! {
    /// `reason` label of `tcpinfo_ebpf_kernel_drops_total`: why the kernel side made no mark.
    pub enum KernelDrop {
        /// The ring buffer was full (the daemon drains it too slowly for the marks coming in).
        RingFull => "ringbuf_full",
        /// The per-socket last-mark map refused an update.
        MapFull => "map_full",
        /// A socket field could not be read.
        ReadFailed => "read_failed",
    }
}

label_enum! {
    /// `kind` label of `tcpinfo_sweeps_total`.
    pub enum SweepKind {
        /// A sweep mode poll (every poll interval).
        Poll => "poll",
        /// eBPF mode's safety net (rare full sweeps behind the marks).
        SafetyNet => "safety_net",
    }
}

label_enum! {
    /// `change` label of `tcpinfo_ebpf_unmarked_changes_total`.
    pub enum Unmarked {
        /// A connection no mark had announced.
        New => "new",
        /// A change of a known connection no mark had announced.
        Changed => "changed",
    }
}

label_enum! {
    /// `reason` label of `tcpinfo_excluded_records_total` (SPEC §8.2).
    pub enum ExclusionReason {
        /// A loopback, link-local, multicast or unspecified endpoint.
        Local => "local",
        /// The local port is in `-exclude-srcport`.
        SrcPort => "srcport",
        /// The remote address is in `-exclude-dstip`.
        DstIp => "dstip",
    }
}

/// The `type` label value upstream's decoder uses in `netlink_skipped_total` for an attribute
/// type it does not decode: the `INET_DIAG_*` name for 11–14, the decimal number otherwise.
pub fn netlink_skipped_type(attribute_type: u16) -> String {
    match attribute_type {
        11 => "INET_DIAG_SKV6ONLY".to_owned(),
        12 => "INET_DIAG_LOCALS".to_owned(),
        13 => "INET_DIAG_PEERS".to_owned(),
        14 => "INET_DIAG_PAD".to_owned(),
        n => n.to_string(),
    }
}

/// One metric handle per value of label `E`, resolved when the metrics are created.
#[derive(Debug, Clone)]
pub struct ByLabel<E, M> {
    handles: Vec<M>,
    label: PhantomData<E>,
}

impl<E: LabelValue, M> ByLabel<E, M> {
    /// Builds the handle of every label value with `make`, which receives the exported value.
    pub(crate) fn build<Err>(mut make: impl FnMut(&str) -> Result<M, Err>) -> Result<Self, Err> {
        let handles = E::ALL
            .iter()
            .map(|value| make(value.as_str()))
            .collect::<Result<Vec<M>, Err>>()?;
        Ok(Self {
            handles,
            label: PhantomData,
        })
    }

    /// The handle for `value`.
    pub fn get(&self, value: E) -> &M {
        // `handles` was built from `E::ALL`, whose order `index` follows.
        &self.handles[value.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::{
        AddressFamily, DumpFailure, ErrorClass, ErrorType, ExactQueryOutcome, ExclusionReason,
        KernelDrop, LabelValue, LargeNetlinkType, Source, SweepKind, Unmarked,
        netlink_skipped_type,
    };
    use crate::events::EventKind;
    use crate::mode::Mode;

    fn indexes_follow_all<E: LabelValue>() {
        for (i, value) in E::ALL.iter().enumerate() {
            assert_eq!(value.index(), i, "{}", value.as_str());
        }
    }

    #[test]
    fn every_enum_indexes_its_all_list() {
        indexes_follow_all::<AddressFamily>();
        indexes_follow_all::<ErrorType>();
        indexes_follow_all::<EventKind>();
        indexes_follow_all::<Mode>();
        indexes_follow_all::<LargeNetlinkType>();
        indexes_follow_all::<ErrorClass>();
        indexes_follow_all::<Source>();
        indexes_follow_all::<DumpFailure>();
        indexes_follow_all::<ExactQueryOutcome>();
        indexes_follow_all::<Mode>();
        indexes_follow_all::<KernelDrop>();
        indexes_follow_all::<SweepKind>();
        indexes_follow_all::<Unmarked>();
        indexes_follow_all::<ExclusionReason>();
    }

    #[test]
    fn skipped_attribute_names() {
        assert_eq!(netlink_skipped_type(11), "INET_DIAG_SKV6ONLY");
        assert_eq!(netlink_skipped_type(12), "INET_DIAG_LOCALS");
        assert_eq!(netlink_skipped_type(13), "INET_DIAG_PEERS");
        assert_eq!(netlink_skipped_type(14), "INET_DIAG_PAD");
        assert_eq!(netlink_skipped_type(21), "21");
        assert_eq!(netlink_skipped_type(19), "19");
    }
}
