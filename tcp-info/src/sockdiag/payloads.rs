//! [`Payloads`]: the reply payloads of one dump or receive, packed into one buffer.
//!
//! A sweep of 10 000 sockets yields 10 000 payloads of about 700 bytes. Packing them end to end
//! costs two growing allocations per dump instead of one per payload, and a buffer that is
//! cleared and refilled keeps its capacity.

/// One family's part of a sweep: what the sweep source sends and the pipeline reads.
#[derive(Debug, Clone)]
pub struct FamilyDump {
    /// The family dumped.
    pub family: super::Family,
    /// The payloads, or `None` if the dump failed (the pipeline then keeps the family's state).
    pub payloads: Option<Payloads>,
    /// When the dump completed (shared by all its records, SPEC §3.4).
    pub timestamp: crate::record::Timestamp,
}

/// Payloads (`inet_diag_msg` + attributes) stored end to end in one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payloads {
    bytes: Vec<u8>,
    /// End offset in `bytes` of each payload; payload `i` starts where `i - 1` ends.
    ends: Vec<usize>,
}

impl Payloads {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set with room for `count` payloads totalling `bytes` bytes.
    pub fn with_capacity(count: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(count),
        }
    }

    /// Appends a copy of `payload`.
    pub fn push(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }

    /// Number of payloads.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes of all payloads.
    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    /// Payload `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let end = *self.ends.get(index)?;
        let start = match index.checked_sub(1) {
            Some(prev) => *self.ends.get(prev)?,
            None => 0,
        };
        self.bytes.get(start..end)
    }

    /// Keeps the first `len` payloads and drops the rest.
    pub fn truncate(&mut self, len: usize) {
        if len < self.ends.len() {
            self.ends.truncate(len);
            self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
        }
    }

    /// Removes every payload, keeping the capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// The payloads in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            payloads: self,
            start: 0,
            next: 0,
        }
    }
}

impl<'a> IntoIterator for &'a Payloads {
    type Item = &'a [u8];
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<T: AsRef<[u8]>> FromIterator<T> for Payloads {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut out = Self::new();
        for payload in iter {
            out.push(payload.as_ref());
        }
        out
    }
}

/// Iterator over [`Payloads`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    payloads: &'a Payloads,
    start: usize,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let end = *self.payloads.ends.get(self.next)?;
        let payload = self.payloads.bytes.get(self.start..end)?;
        self.start = end;
        self.next += 1;
        Some(payload)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.payloads.ends.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_iter_truncate_clear() {
        let mut p = Payloads::with_capacity(4, 64);
        assert!(p.is_empty());
        assert_eq!(p.get(0), None);
        p.push(&[1, 2, 3]);
        p.push(&[]);
        p.push(&[4; 5]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.bytes_len(), 8);
        assert_eq!(p.get(0), Some(&[1, 2, 3][..]));
        assert_eq!(p.get(1), Some(&[][..]));
        assert_eq!(p.get(2), Some(&[4; 5][..]));
        assert_eq!(p.get(3), None);
        let all: Vec<&[u8]> = p.iter().collect();
        assert_eq!(all, [&[1, 2, 3][..], &[], &[4; 5]]);
        assert_eq!(p.iter().len(), 3);

        p.truncate(5);
        assert_eq!(
            p.len(),
            3,
            "truncating to more than there is changes nothing"
        );
        p.truncate(1);
        assert_eq!(p.len(), 1);
        assert_eq!(p.bytes_len(), 3);
        p.push(&[9]);
        assert_eq!(p.get(1), Some(&[9][..]));
        assert_eq!(p, Payloads::from_iter([vec![1, 2, 3], vec![9]]));

        p.clear();
        assert!(p.is_empty());
        assert_eq!(p.iter().next(), None);
    }
}
