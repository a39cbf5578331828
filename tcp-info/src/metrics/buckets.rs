//! Histogram bucket upper bounds of the upstream metrics (SPEC §9.3). `+Inf` is implicit.

/// B1: dump (syscall) latency in seconds.
pub const B1_SYSCALL_SECONDS: [f64; 24] = [
    0.001, 0.00125, 0.0016, 0.002, 0.0025, 0.0032, 0.004, 0.005, 0.0063, 0.0079, 0.01, 0.0125,
    0.016, 0.02, 0.025, 0.032, 0.04, 0.05, 0.063, 0.079, 0.1, 0.125, 0.16, 0.2,
];

/// B3: connection and cache counts.
pub const B3_COUNTS: [f64; 48] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.5, 16.0, 20.0, 25.0, 32.0, 40.0, 50.0, 63.0, 79.0,
    100.0, 125.0, 160.0, 200.0, 250.0, 320.0, 400.0, 500.0, 630.0, 790.0, 1000.0, 1250.0, 1600.0,
    2000.0, 2500.0, 3200.0, 4000.0, 5000.0, 6300.0, 7900.0, 10000.0, 12500.0, 16000.0, 20000.0,
    25000.0, 32000.0, 40000.0, 50000.0, 63000.0, 79000.0, 1e7,
];

/// B4: send and receive rates in bits per second.
pub const B4_RATES: [f64; 45] = [
    0.0, 1.0, 10.0, 100.0, //
    1e3, 1.58e3, 2.51e3, 3.98e3, 6.31e3, //
    1e4, 1.58e4, 2.51e4, 3.98e4, 6.31e4, //
    1e5, 1.58e5, 2.51e5, 3.98e5, 6.31e5, //
    1e6, 1.58e6, 2.51e6, 3.98e6, 6.31e6, //
    1e7, 1.58e7, 2.51e7, 3.98e7, 6.31e7, //
    1e8, 1.58e8, 2.51e8, 3.98e8, 6.31e8, //
    1e9, 1.26e9, 1.58e9, 2e9, 2.51e9, 3.16e9, 3.98e9, 5.01e9, 6.31e9, 7.94e9, 1e10,
];

/// B2: polling interval in seconds, 30 bounds from 0 in steps of 0.001.
///
/// Upstream builds these with Go's `prometheus.LinearBuckets(0, .001, 30)`, which *accumulates*
/// the step (`start += width`), so from the tenth bound on the floats carry rounding error and
/// the Go daemon exposes `le="0.009000000000000001"` … `le="0.02900000000000002"`. The same
/// accumulation is done here so that the rendered `le` values are byte-identical to upstream's.
pub fn b2_polling_seconds() -> Vec<f64> {
    linear_buckets(0.0, 0.001, 30)
}

/// Go's `LinearBuckets`: `count` bounds starting at `start`, each `width` more than the previous
/// one, computed by repeated addition.
pub fn linear_buckets(start: f64, width: f64, count: usize) -> Vec<f64> {
    let mut bounds = Vec::with_capacity(count);
    let mut next = start;
    for _ in 0..count {
        bounds.push(next);
        next += width;
    }
    bounds
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "the bounds are compared bit for bit on purpose"
)]
mod tests {
    use super::{B1_SYSCALL_SECONDS, B3_COUNTS, B4_RATES, b2_polling_seconds};

    fn strictly_increasing(bounds: &[f64]) -> bool {
        bounds.windows(2).all(|w| w[0] < w[1])
    }

    #[test]
    fn bounds_are_strictly_increasing() {
        assert!(strictly_increasing(&B1_SYSCALL_SECONDS));
        assert!(strictly_increasing(&b2_polling_seconds()));
        assert!(strictly_increasing(&B3_COUNTS));
        assert!(strictly_increasing(&B4_RATES));
    }

    #[test]
    fn b2_is_thirty_steps_of_a_millisecond() {
        let b2 = b2_polling_seconds();
        assert_eq!(b2.len(), 30);
        assert_eq!(b2[0], 0.0);
        assert_eq!(b2[1], 0.001);
        for (i, bound) in b2.iter().enumerate() {
            assert!(
                (bound - i as f64 * 0.001).abs() < 1e-12,
                "bound {i} = {bound}"
            );
        }
        // The accumulated rounding error upstream's bounds carry (see `b2_polling_seconds`).
        assert_eq!(b2[9].to_string(), "0.009000000000000001");
        assert_eq!(b2[29].to_string(), "0.02900000000000002");
    }
}
