//! Field offsets of the running kernel, from its BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Rust-compiled eBPF has no CO-RE relocations (SPEC §14.3), so the programs cannot be compiled
//! against `struct sock`'s layout: it differs between kernels and configurations. Instead the
//! loader reads the few offsets the programs need here and hands them over in the programs'
//! configuration. Only the parts of the BTF format that member lookup needs are decoded: the
//! type section's records (to skip them) and struct/union members; names come from the string
//! section. (aya parses BTF too, but does not expose member offsets.)

use std::collections::{HashMap, HashSet};

use tcp_info_common::Offsets;
use thiserror::Error;

/// The kernel's BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xEB9F;
/// Anonymous structs and unions nested deeper than this are not searched.
const MAX_NESTING: u32 = 16;
const HEADER_LEN: usize = 24;

// BTF kinds (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Why offsets could not be resolved.
#[derive(Debug, Error)]
pub enum BtfError {
    /// The BTF file could not be read (no BTF: `CONFIG_DEBUG_INFO_BTF` is off).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The data is not BTF, or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// A struct the programs read is not in the BTF.
    #[error("struct {0} not found in the kernel's BTF")]
    NoStruct(String),
    /// A member path did not resolve.
    #[error("struct {on} has no member {member}")]
    NoMember {
        /// The struct (or anonymous part) searched.
        on: String,
        /// The member looked for.
        member: String,
    },
    /// A member is a bitfield or not byte-aligned: the programs cannot read it with a byte
    /// offset (e.g. `sk_protocol` before Linux 5.6).
    #[error("{0} is a bitfield on this kernel")]
    Bitfield(String),
}

/// One member of a struct or union.
#[derive(Debug, Clone, Copy)]
struct Member {
    name: u32,
    type_id: u32,
    /// Offset in bits.
    bits: u32,
    bitfield: bool,
}

/// A decoded type: what member lookup needs.
#[derive(Debug, Clone)]
enum Type {
    /// A struct or union with its members.
    Composite { name: u32, members: Vec<Member> },
    /// typedef, const, volatile, restrict, type tag: refers to another type.
    Alias(u32),
    /// Anything else.
    Other,
}

/// The types of a BTF blob, indexed by id (0 is `void`).
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    /// Named structs by name (the first definition wins).
    structs: HashMap<String, u32>,
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_kernel() -> Result<Self, BtfError> {
        let data = std::fs::read(VMLINUX_BTF).map_err(|source| BtfError::Read {
            path: VMLINUX_BTF.to_owned(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Decodes a native-endian BTF blob.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let u32_at = |at: usize| -> Result<u32, BtfError> {
            data.get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
                .ok_or(BtfError::Malformed("truncated"))
        };
        if data.len() < HEADER_LEN || u16::from_ne_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed("no BTF magic (or not native-endian)"));
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            data.get(start..start.checked_add(len)?)
        };
        let type_section =
            section(type_off, type_len).ok_or(BtfError::Malformed("type section"))?;
        let strings = section(str_off, str_len)
            .ok_or(BtfError::Malformed("string section"))?
            .to_vec();

        let mut types = vec![Type::Other];
        let mut at = 0;
        let word = |at: usize| -> Result<u32, BtfError> {
            type_section
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
                .ok_or(BtfError::Malformed("truncated type"))
        };
        while at < type_section.len() {
            let name = word(at)?;
            let info = word(at + 4)?;
            let size_or_type = word(at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = word(m + 8)?;
                        let (bits, bitfield) = if kind_flag {
                            (offset & 0x00ff_ffff, offset >> 24 != 0)
                        } else {
                            (offset, false)
                        };
                        members.push(Member {
                            name: word(m)?,
                            type_id: word(m + 4)?,
                            bits,
                            bitfield,
                        });
                    }
                    at += vlen * 12;
                    Type::Composite { name, members }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias(size_or_type)
                }
                _ => {
                    at += match kind {
                        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                        KIND_ARRAY => 12,
                        KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                        KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                        KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => 0,
                        // A kind this parser does not know: its trailing data has an unknown
                        // size, so nothing after it could be read correctly.
                        _ => return Err(BtfError::Malformed("unknown type kind")),
                    };
                    Type::Other
                }
            };
            if at > type_section.len() {
                return Err(BtfError::Malformed("truncated type"));
            }
            types.push(ty);
        }
        let mut btf = Self {
            types,
            strings,
            structs: HashMap::new(),
        };
        for (id, ty) in btf.types.iter().enumerate() {
            if let Type::Composite { name, .. } = ty
                && *name != 0
            {
                let name = btf.string(*name).to_owned();
                btf.structs.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let tail = self.strings.get(offset as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            match self.types.get(id as usize)? {
                Type::Alias(target) => id = *target,
                ty => return Some(ty),
            }
        }
        None
    }

    /// Finds `name` among the members of composite `id`, looking inside anonymous struct and
    /// union members too (at most `depth` levels: malformed BTF could nest them in a cycle);
    /// returns its offset in bits and its member record.
    ///
    /// `searched` holds the types already searched for `name`: searching one again cannot find
    /// what the first search did not, and without it members fanning out to the same anonymous
    /// type would be searched once per path to it, exponentially many in `depth`.
    fn find(
        &self,
        id: u32,
        name: &str,
        depth: u32,
        searched: &mut HashSet<u32>,
    ) -> Option<(u32, Member)> {
        if !searched.insert(id) {
            return None;
        }
        let Some(Type::Composite { members, .. }) = self.resolve(id) else {
            return None;
        };
        for m in members {
            if m.name != 0 {
                if self.string(m.name) == name {
                    return Some((m.bits, *m));
                }
            } else if depth > 0
                && let Some((bits, found)) = self.find(m.type_id, name, depth - 1, searched)
            {
                return Some((m.bits.checked_add(bits)?, found));
            }
        }
        None
    }

    /// Byte offset of `path` (member names, each inside the previous one's type) in struct
    /// `name`.
    pub fn offset(&self, name: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut id = *self
            .structs
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        let mut bits = 0;
        let mut on = name.to_owned();
        for member in path {
            let (offset, found) = self
                .find(id, member, MAX_NESTING, &mut HashSet::new())
                .ok_or_else(|| BtfError::NoMember {
                    on: on.clone(),
                    member: (*member).to_owned(),
                })?;
            if found.bitfield || offset % 8 != 0 {
                return Err(BtfError::Bitfield(format!("{name}.{}", path.join("."))));
            }
            bits = offset
                .checked_add(bits)
                .ok_or(BtfError::Malformed("member offset overflows"))?;
            id = found.type_id;
            on = format!("{on}.{member}");
        }
        Ok(bits / 8)
    }

    /// The offsets the programs need (see [`Offsets`]).
    pub fn offsets(&self) -> Result<Offsets, BtfError> {
        let sock = |path: &[&str]| self.offset("sock", path);
        let common = |member| sock(&["__sk_common", member]);
        Ok(Offsets {
            sk_protocol: sock(&["sk_protocol"])?,
            family: common("skc_family")?,
            local_port: common("skc_num")?,
            remote_port: common("skc_dport")?,
            local_v4: common("skc_rcv_saddr")?,
            remote_v4: common("skc_daddr")?,
            local_v6: common("skc_v6_rcv_saddr")?,
            remote_v6: common("skc_v6_daddr")?,
            bound_if: common("skc_bound_dev_if")?,
            // possible_net_t wraps the pointer; without CONFIG_NET_NS it is empty and the
            // load fails with that member's name (auto mode then sweeps).
            net: sock(&["__sk_common", "skc_net", "net"])?,
            net_inum: self.offset("net", &["ns", "inum"])?,
            pad: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made BTF blob: `struct outer { int a; union { struct { int x; int y; }; long z; };
    /// struct inner in; unsigned flag:3; }` with `struct inner { int p; int q; }`.
    fn sample() -> Vec<u8> {
        let mut strings = b"\0int\0outer\0a\0inner\0in\0x\0y\0z\0p\0q\0flag\0".to_vec();
        strings.push(0);
        let s = |name: &str| -> u32 {
            let needle = format!("\0{name}\0");
            let pos = strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap();
            (pos + 1) as u32
        };
        let mut types: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32, flag: bool| (u32::from(flag) << 31) | (kind << 24) | vlen;
        // 1: int (4 bytes)
        types.extend([s("int"), info(KIND_INT, 0, false), 4, 32]);
        // 2: anonymous struct { int x; int y; }
        types.extend([0, info(KIND_STRUCT, 2, false), 8]);
        types.extend([s("x"), 1, 0, s("y"), 1, 32]);
        // 3: anonymous union { struct 2; int z; }
        types.extend([0, info(KIND_UNION, 2, false), 8]);
        types.extend([0, 2, 0, s("z"), 1, 0]);
        // 4: struct inner { int p; int q; }
        types.extend([s("inner"), info(KIND_STRUCT, 2, false), 8]);
        types.extend([s("p"), 1, 0, s("q"), 1, 32]);
        // 5: typedef inner_t → 4 (named "in" for brevity)
        types.extend([s("in"), info(KIND_TYPEDEF, 0, false), 4]);
        // 6: struct outer (bitfield encoding: kind_flag set)
        types.extend([s("outer"), info(KIND_STRUCT, 4, true), 32]);
        types.extend([
            s("a"),
            1,
            0,
            0,
            3,
            64,
            s("in"),
            5,
            128,
            s("flag"),
            1,
            (3 << 24) + 192,
        ]);
        blob(&types, &strings)
    }

    /// A BTF blob of `types` (words) and `strings`.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let type_bytes: Vec<u8> = types.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_ne_bytes());
        out.extend([1, 0]);
        out.extend((HEADER_LEN as u32).to_ne_bytes());
        out.extend(0u32.to_ne_bytes());
        out.extend((type_bytes.len() as u32).to_ne_bytes());
        out.extend((type_bytes.len() as u32).to_ne_bytes());
        out.extend((strings.len() as u32).to_ne_bytes());
        out.extend(type_bytes);
        out.extend(strings);
        out
    }

    /// A struct of 40 anonymous members of its own type: a search for a missing member once
    /// took 40^16 steps (found reviewing the BTF fuzz target); each type is searched once now.
    #[test]
    fn anonymous_members_fanning_out_are_searched_once_each() {
        let members = 40;
        let mut types = vec![1, (KIND_STRUCT << 24) + members, 4];
        for _ in 0..40 {
            types.extend([0, 1, 0]);
        }
        let btf = Btf::parse(&blob(&types, b"\0loop\0")).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(btf.offset("loop", &["missing"]).is_err());
        });
        let answer = finished.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(answer, Ok(true), "the search did not end within 10 s");
    }

    #[test]
    fn members_through_anonymous_parts_and_typedefs() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.offset("outer", &["a"]).unwrap(), 0);
        assert_eq!(btf.offset("outer", &["x"]).unwrap(), 8);
        assert_eq!(btf.offset("outer", &["y"]).unwrap(), 12);
        assert_eq!(btf.offset("outer", &["z"]).unwrap(), 8);
        assert_eq!(btf.offset("outer", &["in", "q"]).unwrap(), 20);
        assert_eq!(btf.offset("inner", &["q"]).unwrap(), 4);
        assert!(matches!(
            btf.offset("outer", &["flag"]),
            Err(BtfError::Bitfield(_))
        ));
        assert!(matches!(
            btf.offset("outer", &["nope"]),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.offset("missing", &["a"]),
            Err(BtfError::NoStruct(_))
        ));
    }

    /// The BTF fuzz target's seed is this sample (run with `TCP_INFO_BLESS=1` to rewrite it).
    #[test]
    fn the_fuzz_seed_is_the_sample() {
        let seed =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/btf/sample.btf");
        if std::env::var_os("TCP_INFO_BLESS").is_some() {
            std::fs::write(&seed, sample()).unwrap();
        }
        assert_eq!(
            std::fs::read(&seed).unwrap(),
            sample(),
            "{}",
            seed.display()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0u8; 64]).is_err());
        let mut cut = sample();
        cut.truncate(cut.len() - 20);
        assert!(Btf::parse(&cut).is_err());
        // A header whose sections point past the end.
        let mut lying = sample();
        lying[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(Btf::parse(&lying).is_err());
        // A type kind from the future (31): its size is unknown, so the rest cannot be read.
        let mut future = sample();
        let info_of_int = HEADER_LEN + 4;
        future[info_of_int + 3] = 31;
        assert!(matches!(
            Btf::parse(&future),
            Err(BtfError::Malformed("unknown type kind"))
        ));
    }

    /// An anonymous member whose type is its own struct: the search stops, no stack overflow.
    #[test]
    fn cyclic_anonymous_members_end_the_search() {
        let mut data = sample();
        // Make the anonymous union (type 3)'s first member (anonymous, type 2) point at type 3.
        let union_first_member_type = HEADER_LEN + 4 * (4 + 3 + 6 + 3) + 4;
        data[union_first_member_type..union_first_member_type + 4]
            .copy_from_slice(&3u32.to_ne_bytes());
        let btf = Btf::parse(&data).unwrap();
        assert!(matches!(
            btf.offset("outer", &["x"]),
            Err(BtfError::NoMember { .. })
        ));
        assert_eq!(btf.offset("outer", &["z"]).unwrap(), 8);
    }

    /// The running kernel's layout (Linux 6.18 on the project's machines): the offsets the
    /// programs read are found, distinct and inside `struct sock`.
    #[test]
    fn running_kernel_offsets() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: {VMLINUX_BTF} is missing"
            );
            eprintln!("skipping: no {VMLINUX_BTF}");
            return;
        }
        let btf = Btf::from_kernel().unwrap();
        let o = btf.offsets().unwrap();
        // sock_common's layout has been stable for years: skc_daddr first, family at 16.
        assert_eq!(o.remote_v4, 0);
        assert_eq!(o.local_v4, 4);
        assert_eq!(o.remote_port, 12);
        assert_eq!(o.local_port, 14);
        assert_eq!(o.family, 16);
        let all = [o.sk_protocol, o.bound_if, o.net, o.local_v6, o.remote_v6];
        assert!(all.iter().all(|&x| x > 16 && x < 2048), "{o:?}");
        assert!(o.net_inum > 0 && o.net_inum < 4096, "{o:?}");
    }
}
