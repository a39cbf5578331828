//! Float formatting identical to Go's `strconv.FormatFloat(f, 'g', -1, 64)`, which the Go
//! Prometheus client uses for sample values and for float label values such as `le`.
//!
//! Dashboards select buckets by the literal `le` text (`le="1e+06"`), so the exposition must spell
//! every bound exactly as the Go daemon did. Go's rule for the shortest `'g'` form: take the
//! shortest decimal digits that round-trip, then use exponent form when the decimal exponent is
//! `< -4` or `>= 6` (mantissa digits, `e`, sign, at least two exponent digits), plain decimal
//! otherwise.

/// Formats `f` exactly as Go's `strconv.FormatFloat(f, 'g', -1, 64)` does.
///
/// Examples: `1e6` → `1e+06`, `1.58e6` → `1.58e+06`, `100000` → `100000`, `0.0125` → `0.0125`,
/// `1e-5` → `1e-05`, `+∞` → `+Inf`, `NaN` → `NaN`, `-0.0` → `-0`.
pub fn format_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let neg = f.is_sign_negative();
    let mut out = String::with_capacity(24);
    if neg {
        out.push('-');
    }
    let abs = f.abs();
    if abs == 0.0 {
        out.push('0');
        return out;
    }
    let (digits, exp) = shortest_digits(abs);
    if (-4..6).contains(&exp) {
        push_plain_form(&mut out, &digits, exp);
    } else {
        push_exponent_form(&mut out, &digits, exp);
    }
    out
}

/// Formats a sample value the way Go's text exposition does (`expfmt.writeFloat`): like
/// [`format_g`], except that both zeros print as `0`.
pub fn format_sample(f: f64) -> String {
    if f == 0.0 {
        return "0".to_owned();
    }
    format_g(f)
}

/// Shortest round-trip decimal digits of a finite, positive `f`, and the decimal exponent of the
/// first digit (`f = d.ddd × 10^exp`).
///
/// Rust's `{:e}` formatting already yields the shortest digit string that parses back to the same
/// `f64` (choosing the closest one on ties), which is the digit string Go's Ryū path produces.
fn shortest_digits(f: f64) -> (String, i32) {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // `{:e}` always prints a decimal exponent that fits an i32 for finite f64 values.
    let exp = exp.parse::<i32>().unwrap_or(0);
    (digits, exp)
}

/// `d.ddde±XX`: first digit, the other digits after a point, and a signed exponent of at least two
/// digits (Go's `%e` layout).
fn push_exponent_form(out: &mut String, digits: &str, exp: i32) {
    let (first, rest) = digits.split_at(1);
    out.push_str(first);
    if !rest.is_empty() {
        out.push('.');
        out.push_str(rest);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let magnitude = exp.unsigned_abs();
    if magnitude < 10 {
        out.push('0');
    }
    out.push_str(&magnitude.to_string());
}

/// Plain decimal: integer digits padded with zeros up to the decimal point, then the remaining
/// digits (Go's `%f` with exactly as many fraction digits as needed).
fn push_plain_form(out: &mut String, digits: &str, exp: i32) {
    // Number of digits before the decimal point (may be ≤ 0 for values below 1).
    let point = exp + 1;
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..(-point) {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    let point = point as usize;
    if digits.len() <= point {
        out.push_str(digits);
        for _ in digits.len()..point {
            out.push('0');
        }
    } else {
        let (int_part, frac_part) = digits.split_at(point);
        out.push_str(int_part);
        out.push('.');
        out.push_str(frac_part);
    }
}

#[cfg(test)]
mod tests {
    use super::{format_g, format_sample};

    /// Expected strings are what Go's `strconv.FormatFloat(f, 'g', -1, 64)` prints.
    #[test]
    fn matches_go_shortest_g() {
        let cases: &[(f64, &str)] = &[
            (1e6, "1e+06"),
            (1.58e6, "1.58e+06"),
            (100_000.0, "100000"),
            (999_999.0, "999999"),
            (0.0125, "0.0125"),
            (0.001, "0.001"),
            (0.029, "0.029"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000_012_5, "1.25e-05"),
            (1e7, "1e+07"),
            (1.26e9, "1.26e+09"),
            (1e10, "1e+10"),
            (6.31e8, "6.31e+08"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (12.5, "12.5"),
            (79_000.0, "79000"),
            (1.0, "1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (0.009_000_000_000_000_001, "0.009000000000000001"),
            (123_456.7, "123456.7"),
            (1_234_567.0, "1.234567e+06"),
            (-2.5, "-2.5"),
            (-1e6, "-1e+06"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for &(value, want) in cases {
            assert_eq!(format_g(value), want, "format_g({value:?})");
        }
    }

    #[test]
    fn sample_zero_has_no_sign() {
        assert_eq!(format_sample(-0.0), "0");
        assert_eq!(format_sample(0.0), "0");
        assert_eq!(format_sample(8e9), "8e+09");
    }

    proptest::proptest! {
        /// Whatever the layout, the text parses back to the same float (shortest round trip).
        #[test]
        fn round_trips(bits in proptest::prelude::any::<u64>()) {
            let f = f64::from_bits(bits);
            proptest::prop_assume!(f.is_finite());
            let text = format_g(f);
            let back: f64 = text.parse().unwrap();
            proptest::prop_assert_eq!(back.to_bits(), f.to_bits(), "{} -> {}", f, text);
        }
    }
}
