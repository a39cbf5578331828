//! The connections the query API can answer about: each one's latest record, kept while it is
//! open and for a retention time after it closes.
//!
//! The pipeline writes ([`LiveSink`] wraps its archive sink, so the table sees exactly what is
//! archived); the API's tasks read. One mutex guards the map: the pipeline holds it for one
//! insertion per archived record, a reader for one copy of what it answers with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::pipeline::ArchiveSink;
use crate::record::{ArchivalRecord, NetnsTag, Timestamp};
use crate::uuid::Prefix;

/// One connection as the API sees it.
#[derive(Debug, Clone)]
pub struct LiveConnection {
    /// Its UUID.
    pub uuid: String,
    /// When its first record was archived (by the daemon; may be later than the connection's
    /// start if it opened before the daemon).
    pub first_seen: Timestamp,
    /// Its latest archived record (addresses as the kernel gave them: the API anonymizes what
    /// it answers with, as the saver does). Shared, so that a reader copies a pointer under
    /// the lock, not the record.
    pub latest: Arc<ArchivalRecord>,
    /// When it ended, if it did.
    pub closed: Option<Timestamp>,
    /// Monotonic time of the end, for the retention.
    closed_at: Option<Instant>,
}

/// The table: connections by UUID.
#[derive(Debug)]
pub struct LiveTable {
    connections: Mutex<HashMap<String, LiveConnection>>,
    retention: Duration,
}

impl LiveTable {
    /// An empty table keeping closed connections for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self {
            connections: Mutex::new(HashMap::new()),
            retention,
        }
    }

    /// How long closed connections are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, LiveConnection>> {
        // A panic while holding the lock cannot leave the map half-updated (each update is one
        // insert or remove), so a poisoned lock is still good.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `record` as the latest of `uuid` (opening it if new, reopening nothing closed:
    /// a closed UUID's late record only updates it).
    pub fn update(&self, uuid: &str, record: &ArchivalRecord) {
        // The copy is made before the lock is taken: the lock is held for the insertion only.
        let latest = Arc::new(record.clone());
        let mut map = self.lock();
        match map.get_mut(uuid) {
            Some(conn) => conn.latest = latest,
            None => {
                map.insert(
                    uuid.to_owned(),
                    LiveConnection {
                        uuid: uuid.to_owned(),
                        first_seen: record.timestamp,
                        latest,
                        closed: None,
                        closed_at: None,
                    },
                );
            }
        }
    }

    /// Marks `uuid` closed at `timestamp`; it is forgotten once the retention has passed.
    pub fn close(&self, uuid: &str, timestamp: Timestamp, now: Instant) {
        if let Some(conn) = self.lock().get_mut(uuid)
            && conn.closed.is_none()
        {
            conn.closed = Some(timestamp);
            conn.closed_at = Some(now);
        }
    }

    /// Forgets the connections closed more than the retention ago.
    pub fn expire(&self, now: Instant) {
        let retention = self.retention;
        self.lock().retain(|_, conn| {
            conn.closed_at
                .is_none_or(|at| now.saturating_duration_since(at) < retention)
        });
    }

    /// A copy of one connection.
    pub fn get(&self, uuid: &str) -> Option<LiveConnection> {
        self.lock().get(uuid).cloned()
    }

    /// Copies of the open connections, for listing.
    pub fn open_connections(&self) -> Vec<LiveConnection> {
        self.lock()
            .values()
            .filter(|c| c.closed.is_none())
            .cloned()
            .collect()
    }

    /// Number of connections held (open and retained).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An [`ArchiveSink`] that also keeps the [`LiveTable`] (when the API is on) up to date: what
/// is archived is what the API answers with.
pub struct LiveSink<S> {
    inner: S,
    table: Option<Arc<LiveTable>>,
    prefix: Prefix,
    /// When `expire` last ran; it runs at most once a second.
    last_expiry: Option<Instant>,
}

impl<S> LiveSink<S> {
    /// Wraps `inner`; with `table` `None` it only forwards.
    pub fn new(inner: S, table: Option<Arc<LiveTable>>, prefix: Prefix) -> Self {
        Self {
            inner,
            table,
            prefix,
            last_expiry: None,
        }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: ArchiveSink> ArchiveSink for LiveSink<S> {
    fn write(
        &mut self,
        cookie: u64,
        record: &ArchivalRecord,
        netns: Option<&Arc<NetnsTag>>,
        now: Instant,
    ) -> Result<(), String> {
        if let Some(table) = &self.table {
            table.update(&self.prefix.uuid(cookie), record);
        }
        self.inner.write(cookie, record, netns, now)
    }

    fn close(&mut self, cookie: u64, now: Instant) {
        if let Some(table) = &self.table {
            table.close(&self.prefix.uuid(cookie), Timestamp::now(), now);
        }
        self.inner.close(cookie, now);
    }

    fn tick(&mut self, now: Instant) {
        if let Some(table) = &self.table
            && self
                .last_expiry
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1))
        {
            table.expire(now);
            self.last_expiry = Some(now);
        }
        self.inner.tick(now);
    }

    fn shutdown(&mut self) {
        self.inner.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cookie: u64, t: &str) -> ArchivalRecord {
        let mut idm = [0u8; 72];
        idm[0] = 2; // AF_INET
        idm[1] = 1; // ESTABLISHED
        idm[44..52].copy_from_slice(&cookie.to_ne_bytes());
        ArchivalRecord::new(Timestamp::parse(t.as_bytes()).unwrap(), &idm, &[])
    }

    #[derive(Default)]
    struct Counting {
        writes: usize,
        closes: usize,
    }

    impl ArchiveSink for Counting {
        fn write(
            &mut self,
            _: u64,
            _: &ArchivalRecord,
            _: Option<&Arc<NetnsTag>>,
            _: Instant,
        ) -> Result<(), String> {
            self.writes += 1;
            Ok(())
        }
        fn close(&mut self, _: u64, _: Instant) {
            self.closes += 1;
        }
        fn tick(&mut self, _: Instant) {}
        fn shutdown(&mut self) {}
    }

    #[test]
    fn open_update_close_and_expire_after_the_retention() {
        let table = Arc::new(LiveTable::new(Duration::from_secs(60)));
        let prefix = Prefix::from_bytes(b"host_1".to_vec()).unwrap();
        let mut sink = LiveSink::new(Counting::default(), Some(Arc::clone(&table)), prefix);
        let t0 = Instant::now();
        sink.write(7, &record(7, "2026-12-02T10:00:00Z"), None, t0)
            .unwrap();
        sink.write(7, &record(7, "2026-12-02T10:00:01Z"), None, t0)
            .unwrap();
        let uuid = "host_1_0000000000000007";
        let conn = table.get(uuid).unwrap();
        assert_eq!(conn.first_seen.to_string(), "2026-12-02T10:00:00Z");
        assert_eq!(conn.latest.timestamp.to_string(), "2026-12-02T10:00:01Z");
        assert_eq!(table.open_connections().len(), 1);

        sink.close(7, t0);
        assert!(table.get(uuid).unwrap().closed.is_some());
        assert!(table.open_connections().is_empty(), "closed: not listed");
        sink.tick(t0 + Duration::from_secs(59));
        assert!(table.get(uuid).is_some(), "within the retention");
        sink.tick(t0 + Duration::from_secs(61));
        assert!(table.get(uuid).is_none(), "after the retention");
        assert_eq!((sink.inner().writes, sink.inner().closes), (2, 1));
    }

    #[test]
    fn without_a_table_it_only_forwards() {
        let prefix = Prefix::from_bytes(b"p".to_vec()).unwrap();
        let mut sink = LiveSink::new(Counting::default(), None, prefix);
        sink.write(1, &record(1, "2026-12-02T10:00:00Z"), None, Instant::now())
            .unwrap();
        sink.close(1, Instant::now());
        assert_eq!((sink.inner().writes, sink.inner().closes), (1, 1));
    }
}
