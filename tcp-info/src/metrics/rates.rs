//! Send/receive rate accounting (SPEC §9.4), with the baseline fix of SPEC §12 D16.
//!
//! Once per wall-clock second the pipeline's byte totals are turned into one sample of
//! `tcpinfo_send_rate_histogram` and one of `tcpinfo_receive_rate_histogram`: the bits moved since
//! the previous sample. The total for a direction is
//! `closed + closing + live`:
//! - `live`: `bytes_sent` (`tcp_info` offset 200) or `bytes_received` (offset 128) summed over the
//!   latest record of every tracked, non-excluded connection that carries `tcp_info` (a payload too
//!   short for the field contributes 0);
//! - `closing`: the last values of tracked connections whose latest record has no `tcp_info` (a
//!   time-wait minisock, SPEC §6.5), so their bytes do not vanish from the total;
//! - `closed`: accumulated here from the last values of the connections that closed.
//!
//! Upstream starts `reported` at 0, so a host whose live connections already moved more than
//! 1.25e10 bytes skips every sample forever, and a regression keeps skipping until the total
//! catches up. Here the first cycle sets the baseline, and a regression or an impossible jump is
//! counted under upstream's error label, skipped, and becomes the new baseline: one bad sample
//! costs one sample.

use prometheus::{Histogram, IntCounter};

use super::{ErrorType, Metrics};

/// Largest byte delta accepted in one sample: 100 Gbit/s for one second.
pub const NETWORK_CAPACITY_BYTES: u64 = 12_500_000_000;

/// The byte counters of one cycle, summed over connections (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleBytes {
    /// `bytes_sent` summed over tracked connections whose latest record carries `tcp_info`.
    pub live_sent: u64,
    /// `bytes_received` summed over the same records.
    pub live_received: u64,
    /// Last `bytes_sent` of tracked connections whose latest record lacks `tcp_info`.
    pub closing_sent: u64,
    /// Last `bytes_received` of the same connections.
    pub closing_received: u64,
    /// Last `bytes_sent` of the connections that closed in this cycle.
    pub closed_sent: u64,
    /// Last `bytes_received` of the connections that closed in this cycle.
    pub closed_received: u64,
}

/// What happened to one direction's sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// `bits` (8 × bytes since the previous sample) was observed in the histogram.
    Observed {
        /// The observed value.
        bits: f64,
    },
    /// The total went backwards; counted, skipped, and taken as the new baseline.
    Regression {
        /// The total now.
        total: u64,
        /// The total of the previous sample.
        reported: u64,
    },
    /// More than [`NETWORK_CAPACITY_BYTES`] since the previous sample; counted, skipped, and
    /// taken as the new baseline.
    OverCapacity {
        /// The total now.
        total: u64,
        /// The total of the previous sample.
        reported: u64,
    },
}

/// The samples of one second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Samples {
    /// The send direction.
    pub send: Sample,
    /// The receive direction.
    pub receive: Sample,
}

/// Handles of one direction.
#[derive(Debug, Clone)]
struct Direction {
    histogram: Histogram,
    regression: IntCounter,
    over_capacity: IntCounter,
    /// Bytes of connections closed so far.
    closed: u64,
    /// The total at the previous sample (or the baseline).
    reported: u64,
}

impl Direction {
    fn sample(&mut self, total: u64) -> Sample {
        let reported = self.reported;
        // A skipped sample re-baselines, so a single bad reading costs a single sample.
        self.reported = total;
        if total < reported {
            self.regression.inc();
            return Sample::Regression { total, reported };
        }
        let delta = total - reported;
        if delta > NETWORK_CAPACITY_BYTES {
            self.over_capacity.inc();
            return Sample::OverCapacity { total, reported };
        }
        let bits = 8.0 * delta as f64;
        self.histogram.observe(bits);
        Sample::Observed { bits }
    }
}

/// Per-second rate accounting, fed once per cycle by the pipeline.
#[derive(Debug, Clone)]
pub struct RateAccounting {
    send: Direction,
    receive: Direction,
    /// Unix second of the last sample or of the baseline; `None` before the first cycle.
    last_second: Option<i64>,
}

impl RateAccounting {
    /// Accounting that observes into `metrics`' rate histograms and error counters.
    pub fn new(metrics: &Metrics) -> Self {
        let direction = |histogram: &Histogram, regression, over_capacity| Direction {
            histogram: histogram.clone(),
            regression: metrics.errors.get(regression).clone(),
            over_capacity: metrics.errors.get(over_capacity).clone(),
            closed: 0,
            reported: 0,
        };
        Self {
            send: direction(
                &metrics.send_rate,
                ErrorType::SentRegression,
                ErrorType::SentOverCapacity,
            ),
            receive: direction(
                &metrics.receive_rate,
                ErrorType::ReceivedRegression,
                ErrorType::ReceivedOverCapacity,
            ),
            last_second: None,
        }
    }

    /// Whether a cycle in `unix_second` would emit a sample (or set the baseline): the caller
    /// can skip summing the totals otherwise.
    pub fn due(&self, unix_second: i64) -> bool {
        self.last_second != Some(unix_second)
    }

    /// Feeds the totals of one cycle, whose (`AF_INET`) timestamp falls in `unix_second`.
    ///
    /// The first call only sets the baseline. Later calls emit one sample per direction when
    /// the second differs from the previous sample's (a clock stepped backwards also counts as a
    /// new second); within the same second they only accumulate closed bytes. A sample after a
    /// gap of several seconds covers the whole gap, as upstream's does.
    pub fn end_cycle(&mut self, unix_second: i64, bytes: &CycleBytes) -> Option<Samples> {
        self.send.closed = self.send.closed.saturating_add(bytes.closed_sent);
        self.receive.closed = self.receive.closed.saturating_add(bytes.closed_received);
        let send_total = self
            .send
            .closed
            .saturating_add(bytes.closing_sent)
            .saturating_add(bytes.live_sent);
        let receive_total = self
            .receive
            .closed
            .saturating_add(bytes.closing_received)
            .saturating_add(bytes.live_received);

        let Some(last) = self.last_second else {
            self.last_second = Some(unix_second);
            self.send.reported = send_total;
            self.receive.reported = receive_total;
            return None;
        };
        if last == unix_second {
            return None;
        }
        self.last_second = Some(unix_second);
        Some(Samples {
            send: self.send.sample(send_total),
            receive: self.receive.sample(receive_total),
        })
    }
}

#[cfg(test)]
#[expect(clippy::float_cmp, reason = "sums of small integers are exact in f64")]
mod tests {
    use super::{CycleBytes, NETWORK_CAPACITY_BYTES, RateAccounting, Sample, Samples};
    use crate::metrics::{ErrorType, Metrics};

    fn live(sent: u64, received: u64) -> CycleBytes {
        CycleBytes {
            live_sent: sent,
            live_received: received,
            ..CycleBytes::default()
        }
    }

    fn observed(send: f64, receive: f64) -> Samples {
        Samples {
            send: Sample::Observed { bits: send },
            receive: Sample::Observed { bits: receive },
        }
    }

    #[test]
    fn baseline_from_first_cycle_even_above_capacity() {
        let m = Metrics::new("0").unwrap();
        let mut rates = RateAccounting::new(&m);
        // Live connections have already moved far more than 1.25e10 bytes (D16).
        let start = 5 * NETWORK_CAPACITY_BYTES;
        assert_eq!(rates.end_cycle(100, &live(start, start)), None);
        assert_eq!(rates.end_cycle(100, &live(start + 50, start + 7)), None);
        assert_eq!(
            rates.end_cycle(101, &live(start + 1000, start + 10)),
            Some(observed(8000.0, 80.0))
        );
        assert_eq!(m.send_rate.get_sample_count(), 1);
        assert_eq!(m.send_rate.get_sample_sum(), 8000.0);
        assert_eq!(m.receive_rate.get_sample_sum(), 80.0);
        for e in [ErrorType::SentOverCapacity, ErrorType::ReceivedOverCapacity] {
            assert_eq!(m.errors.get(e).get(), 0);
        }
    }

    #[test]
    fn one_sample_per_second() {
        let m = Metrics::new("0").unwrap();
        let mut rates = RateAccounting::new(&m);
        assert_eq!(rates.end_cycle(10, &live(0, 0)), None);
        let mut emitted = 0;
        // 100 cycles per second for 3 seconds, 1000 bytes more each cycle.
        for i in 1..=300u64 {
            let second = 10 + (i / 100) as i64;
            if rates.end_cycle(second, &live(i * 1000, 0)).is_some() {
                emitted += 1;
            }
        }
        assert_eq!(emitted, 3);
        assert_eq!(m.send_rate.get_sample_count(), 3);
        assert_eq!(m.send_rate.get_sample_sum(), 8.0 * 300_000.0);
        assert_eq!(m.receive_rate.get_sample_count(), 3);
        assert_eq!(m.receive_rate.get_sample_sum(), 0.0);
    }

    #[test]
    fn closed_and_closing_bytes_keep_the_total() {
        let m = Metrics::new("0").unwrap();
        let mut rates = RateAccounting::new(&m);
        rates.end_cycle(1, &live(1000, 2000));
        // The connection became a time-wait minisock: its bytes moved from live to closing.
        let closing = CycleBytes {
            closing_sent: 1000,
            closing_received: 2000,
            ..CycleBytes::default()
        };
        assert_eq!(rates.end_cycle(2, &closing), Some(observed(0.0, 0.0)));
        // It closed: its last values are handed over once and stay in the total.
        let closed = CycleBytes {
            closed_sent: 1000,
            closed_received: 2000,
            ..CycleBytes::default()
        };
        assert_eq!(rates.end_cycle(3, &closed), Some(observed(0.0, 0.0)));
        // A new connection sends 10 bytes.
        assert_eq!(rates.end_cycle(4, &live(10, 0)), Some(observed(80.0, 0.0)));
        assert_eq!(m.errors.get(ErrorType::SentRegression).get(), 0);
    }

    #[test]
    fn regression_is_counted_skipped_and_rebaselined() {
        let m = Metrics::new("0").unwrap();
        let mut rates = RateAccounting::new(&m);
        rates.end_cycle(1, &live(5000, 5000));
        // A connection vanished without being reported closed: the total went backwards.
        assert_eq!(
            rates.end_cycle(2, &live(1000, 6000)),
            Some(Samples {
                send: Sample::Regression {
                    total: 1000,
                    reported: 5000
                },
                receive: Sample::Observed { bits: 8000.0 },
            })
        );
        assert_eq!(m.errors.get(ErrorType::SentRegression).get(), 1);
        assert_eq!(m.errors.get(ErrorType::ReceivedRegression).get(), 0);
        assert_eq!(m.send_rate.get_sample_count(), 0);
        // The next second is measured from the new baseline, not skipped (upstream #98).
        assert_eq!(
            rates.end_cycle(3, &live(1500, 6000)),
            Some(observed(4000.0, 0.0))
        );
        assert_eq!(m.errors.get(ErrorType::SentRegression).get(), 1);
        assert_eq!(m.send_rate.get_sample_count(), 1);
    }

    #[test]
    fn jump_over_capacity_is_counted_and_skipped() {
        let m = Metrics::new("0").unwrap();
        let mut rates = RateAccounting::new(&m);
        rates.end_cycle(1, &live(0, 0));
        // Exactly the capacity is still a sample.
        assert_eq!(
            rates.end_cycle(2, &live(NETWORK_CAPACITY_BYTES, 0)),
            Some(observed(1e11, 0.0))
        );
        let total = 2 * NETWORK_CAPACITY_BYTES + 1;
        assert_eq!(
            rates.end_cycle(3, &live(total, 1)),
            Some(Samples {
                send: Sample::OverCapacity {
                    total,
                    reported: NETWORK_CAPACITY_BYTES
                },
                receive: Sample::Observed { bits: 8.0 },
            })
        );
        assert_eq!(m.errors.get(ErrorType::SentOverCapacity).get(), 1);
        assert_eq!(m.errors.get(ErrorType::ReceivedOverCapacity).get(), 0);
        assert_eq!(
            rates.end_cycle(4, &live(total + 1, 1)),
            Some(observed(8.0, 0.0))
        );
        let text = m.render();
        assert!(
            text.contains(
                "tcpinfo_error_total{type=\"totalSent-reportedSent exceeds network capacity\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn clock_stepping_back_still_samples() {
        let m = Metrics::new("0").unwrap();
        let mut rates = RateAccounting::new(&m);
        rates.end_cycle(1000, &live(0, 0));
        assert_eq!(rates.end_cycle(990, &live(1, 1)), Some(observed(8.0, 8.0)));
        assert_eq!(rates.end_cycle(990, &live(2, 2)), None);
    }
}
