//! JSON encoding of archive lines, byte-identical to Go's `encoding/json` output for upstream's
//! `ArchivalRecord` (SPEC §5.4–§5.6), and a decoder as lenient as Go's (keys matched
//! case-insensitively, unknown keys ignored).

use super::{ArchivalRecord, Metadata, NetnsTag, Timestamp};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use thiserror::Error;

/// A line that is not a valid archive record.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl DecodeError {
    /// 1-based column of the error within the line (0 if unknown).
    pub fn column(&self) -> usize {
        self.0.column()
    }
}

impl ArchivalRecord {
    /// Appends this record as one JSON line, `\n` included.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        self.write_json_line_with_idm(None, out);
    }

    /// Like [`write_json_line`](Self::write_json_line) but writes `raw_idm` in place of the
    /// record's own RawIDM: anonymization rewrites a copy, never the cached record (D15).
    pub fn write_json_line_with_idm(&self, raw_idm: Option<&[u8]>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"Timestamp\":\"");
        self.timestamp.write_rfc3339(out);
        out.push(b'"');
        let idm = raw_idm.unwrap_or_else(|| self.raw_idm());
        if !idm.is_empty() {
            out.extend_from_slice(b",\"RawIDM\":\"");
            push_base64(out, idm);
            out.push(b'"');
        }
        if self.attribute_count() > 0 {
            out.extend_from_slice(b",\"Attributes\":[");
            for (i, attr) in self.attributes().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match attr {
                    None => out.extend_from_slice(b"null"),
                    Some(bytes) => {
                        out.push(b'"');
                        push_base64(out, bytes);
                        out.push(b'"');
                    }
                }
            }
            out.push(b']');
        }
        if let Some(meta) = &self.metadata {
            out.extend_from_slice(b",\"Metadata\":{\"UUID\":");
            push_go_string(out, &meta.uuid);
            out.extend_from_slice(b",\"Sequence\":");
            out.extend_from_slice(meta.sequence.to_string().as_bytes());
            out.extend_from_slice(b",\"StartTime\":\"");
            meta.start_time.write_rfc3339(out);
            out.push(b'"');
            if let Some(netns) = &meta.netns {
                out.extend_from_slice(b",\"Netns\":");
                netns.write_json(out);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n");
    }

    /// The record as a JSON line (with its `\n`).
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.data.len() * 4 / 3 + self.slots.len() * 8);
        self.write_json_line(&mut out);
        out
    }

    /// Decodes one JSON line (a trailing `\n` or `\r\n` is allowed).
    pub fn from_json(line: &[u8]) -> Result<Self, DecodeError> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let record = RecordSeed.deserialize(&mut de)?;
        de.end()?;
        Ok(record)
    }
}

fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    // The slice is sized exactly for padded output, so this cannot fail.
    let written = STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// Writes a JSON string as Go's `encoding/json` does: `<`, `>`, `&`, U+2028 and U+2029 escaped
/// (HTML-safe), control characters as `\n`, `\r`, `\t` or `\u00XX`. Archive lines and event
/// lines both use it, so a UUID reads the same in both places.
pub(crate) fn push_go_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut plain_from = 0;
    for (at, c) in s.char_indices() {
        let escape: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            '\u{2028}' => b"\\u2028",
            '\u{2029}' => b"\\u2029",
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => b"",
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[plain_from..at]);
        plain_from = at + c.len_utf8();
        if escape.is_empty() {
            let b = c as u8;
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&s.as_bytes()[plain_from..]);
    out.push(b'"');
}

// ---- decoding ----

const RECORD_KEYS: &[&str] = &["Timestamp", "RawIDM", "Attributes", "Metadata"];
const METADATA_KEYS: &[&str] = &["UUID", "Sequence", "StartTime", "Netns"];

struct RecordSeed;

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = ArchivalRecord;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = ArchivalRecord;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an archive record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut timestamp = Timestamp::ZERO;
        let mut raw_idm: Vec<u8> = Vec::new();
        let mut attributes: Vec<Option<Vec<u8>>> = Vec::new();
        let mut metadata = None;
        while let Some(key) = map.next_key_seed(KeySeed(RECORD_KEYS))? {
            match key {
                Some(0) => {
                    if let Some(t) = map.next_value_seed(Nullable(TimestampSeed))? {
                        timestamp = t;
                    }
                }
                Some(1) => {
                    raw_idm = map
                        .next_value_seed(Nullable(Base64Seed))?
                        .unwrap_or_default();
                }
                Some(2) => {
                    attributes = map
                        .next_value_seed(Nullable(AttributesSeed))?
                        .unwrap_or_default();
                }
                Some(_) => metadata = map.next_value_seed(Nullable(MetadataSeed))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let refs: Vec<Option<&[u8]>> = attributes.iter().map(Option::as_deref).collect();
        let mut record = ArchivalRecord::new(timestamp, &raw_idm, &refs);
        record.metadata = metadata.map(Box::new);
        Ok(record)
    }
}

/// Reads an object key and says which of `names` it is (case-insensitively, like Go), without
/// allocating; `None` for an unknown key.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V(&'static [&'static str]);
        impl Visitor<'_> for V {
            type Value = Option<usize>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
                Ok(self.0.iter().position(|name| v.eq_ignore_ascii_case(name)))
            }
        }
        d.deserialize_str(V(self.0))
    }
}

/// `null` → `None`, otherwise the inner seed's value (Go leaves a field untouched on null).
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<S>(S);
        impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for V<S> {
            type Value = Option<S::Value>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                self.0.deserialize(d).map(Some)
            }
        }
        d.deserialize_option(V(self.0))
    }
}

struct TimestampSeed;

impl<'de> DeserializeSeed<'de> for TimestampSeed {
    type Value = Timestamp;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v.as_bytes()).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

struct Base64Seed;

impl<'de> DeserializeSeed<'de> for Base64Seed {
    type Value = Vec<u8>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a padded standard base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                STANDARD.decode(v).map_err(|e| {
                    let shown: String = v.chars().take(40).collect();
                    E::custom(format_args!("bad base64 {shown:?}: {e}"))
                })
            }
        }
        d.deserialize_str(V)
    }
}

struct AttributesSeed;

impl<'de> DeserializeSeed<'de> for AttributesSeed {
    type Value = Vec<Option<Vec<u8>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<Option<Vec<u8>>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of base64 strings or nulls")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(9).min(64));
                while let Some(item) = seq.next_element_seed(Nullable(Base64Seed))? {
                    out.push(item);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

struct MetadataSeed;

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = Metadata;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Metadata object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut meta = Metadata::default();
                while let Some(key) = map.next_key_seed(KeySeed(METADATA_KEYS))? {
                    match key {
                        Some(0) => {
                            meta.uuid = map.next_value::<Option<String>>()?.unwrap_or_default();
                        }
                        Some(1) => {
                            meta.sequence = map.next_value::<Option<i64>>()?.unwrap_or_default();
                        }
                        Some(2) => {
                            if let Some(t) = map.next_value_seed(Nullable(TimestampSeed))? {
                                meta.start_time = t;
                            }
                        }
                        Some(_) => {
                            meta.netns = map
                                .next_value::<Option<NetnsTag>>()?
                                .map(std::sync::Arc::new);
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(meta)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FINWAIT2: &str = r#"{"Timestamp":"2019-08-26T20:02:17.654076251-04:00","RawIDM":"AgUDAITiAbtkZew0AAAAAAAAAAAAAAAA2O8gKQAAAAAAAAAAAAAAAAAAAAByojUBAAAAAFTqAAAAAAAAAAAAAAAAAAAAAAAA","Attributes":[null]}"#;
    const META: &str = r#"{"Timestamp":"0001-01-01T00:00:00Z","Metadata":{"UUID":"ndt-jdczh_1553815964_00000000000003E8","Sequence":185,"StartTime":"2019-04-01T07:42:37.371Z"}}"#;

    fn reencode(line: &str) -> String {
        let r = ArchivalRecord::from_json(line.as_bytes()).unwrap();
        String::from_utf8(r.to_json_line()).unwrap()
    }

    #[test]
    fn spec_examples_roundtrip_byte_for_byte() {
        assert_eq!(reencode(FINWAIT2), format!("{FINWAIT2}\n"));
        assert_eq!(reencode(META), format!("{META}\n"));
        let r = ArchivalRecord::from_json(FINWAIT2.as_bytes()).unwrap();
        assert_eq!(r.raw_idm().len(), 72);
        assert_eq!(r.raw_idm()[1], 5);
        assert_eq!(r.attribute_count(), 1);
        let m = ArchivalRecord::from_json(META.as_bytes()).unwrap();
        let meta = m.metadata.as_deref().unwrap();
        assert_eq!(meta.sequence, 185);
        assert_eq!(meta.uuid, "ndt-jdczh_1553815964_00000000000003E8");
    }

    #[test]
    fn keys_case_insensitive_unknown_ignored_null_tolerated() {
        let line = r#"{"timestamp":"2019-04-01T07:42:37.371Z","rawidm":null,"Extra":{"a":[1]},"ATTRIBUTES":[null,"AQI="],"Metadata":null}"#;
        let r = ArchivalRecord::from_json(line.as_bytes()).unwrap();
        assert_eq!(r.attribute(1), Some(&[1u8, 2][..]));
        assert!(r.raw_idm().is_empty() && !r.is_metadata());
        assert_eq!(
            String::from_utf8(r.to_json_line()).unwrap(),
            "{\"Timestamp\":\"2019-04-01T07:42:37.371Z\",\"Attributes\":[null,\"AQI=\"]}\n"
        );
    }

    #[test]
    fn errors_say_what() {
        let cases = [
            (r#"{"RawIDM":"AQI"}"#, "base64"),
            (r#"{"RawIDM":"AQ-_"}"#, "base64"),
            (r#"{"Timestamp":"yesterday"}"#, "RFC 3339"),
            (r#"{"Attributes":[1]}"#, "base64"),
            (r#"{"Timestamp":"0001-01-01T00:00:00Z""#, "EOF"),
            (r"[1,2]", "object"),
            (r"{} {}", "trailing"),
            (r#"{"Metadata":{"Sequence":"x"}}"#, "expected i64"),
        ];
        for (line, needle) in cases {
            let err = ArchivalRecord::from_json(line.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(needle), "{line}: {err}");
        }
    }

    #[test]
    fn go_string_escaping() {
        let mut out = Vec::new();
        push_go_string(&mut out, "a<b>&\"\\\n\u{1}\u{2028}é");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é""#
        );
        // And it decodes back.
        let line = r#"{"Metadata":{"UUID":"a\u003cb\u0026","Sequence":1,"StartTime":"0001-01-01T00:00:00Z"}}"#;
        let r = ArchivalRecord::from_json(line.as_bytes()).unwrap();
        assert_eq!(r.metadata.unwrap().uuid, "a<b&");
    }

    fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
        (0i64..253_402_000_000, 0u32..1_000_000_000, -1439i32..1440)
            .prop_map(|(s, n, o)| Timestamp::with_offset(s, n, o * 60).unwrap_or(Timestamp::ZERO))
    }

    fn arb_record() -> impl Strategy<Value = ArchivalRecord> {
        let snapshot = (
            arb_timestamp(),
            prop::collection::vec(any::<u8>(), 0..80),
            prop::collection::vec(
                prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
                0..40,
            ),
        )
            .prop_map(|(t, idm, attrs)| {
                let refs: Vec<Option<&[u8]>> = attrs.iter().map(Option::as_deref).collect();
                ArchivalRecord::new(t, &idm, &refs)
            });
        let meta =
            (".{0,40}", any::<i64>(), arb_timestamp()).prop_map(|(uuid, sequence, start_time)| {
                ArchivalRecord::metadata_line(Metadata {
                    uuid,
                    sequence,
                    start_time,
                    netns: None,
                })
            });
        prop_oneof![4 => snapshot, 1 => meta]
    }

    // What survives Go's encoding: an empty Attributes array is omitted, so it decodes as absent.
    proptest! {
        #[test]
        fn any_record_survives_encode_decode(record in arb_record()) {
            let line = record.to_json_line();
            prop_assert!(line.ends_with(b"\n") && !line[..line.len() - 1].contains(&b'\n'));
            let back = ArchivalRecord::from_json(&line).unwrap();
            prop_assert_eq!(&back, &record);
            prop_assert_eq!(back.to_json_line(), line);
        }
    }
}
