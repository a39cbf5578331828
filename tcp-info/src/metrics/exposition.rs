//! Prometheus text exposition (format 0.0.4) rendered byte for byte like Go's `expfmt`.
//!
//! The `prometheus` crate's own `TextEncoder` prints floats with Rust's `Display` (`1000000`
//! where Go prints `1e+06`), which would break dashboard selectors on `le`; so this module encodes
//! the gathered families itself, formatting every float with [`format_sample`].

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

use super::gofloat::format_sample;

/// `Content-Type` of the text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes `families` in the order given (the registry gathers them sorted by name).
pub fn encode(families: &[MetricFamily]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for family in families {
        encode_family(&mut out, family);
    }
    out
}

fn encode_family(out: &mut String, family: &MetricFamily) {
    let name = family.name();
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    push_escaped(out, family.help(), false);
    out.push('\n');
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push_str(match family.get_field_type() {
        MetricType::COUNTER => " counter\n",
        MetricType::GAUGE => " gauge\n",
        MetricType::SUMMARY => " summary\n",
        MetricType::UNTYPED => " untyped\n",
        MetricType::HISTOGRAM => " histogram\n",
    });
    for metric in family.get_metric() {
        encode_metric(out, name, family.get_field_type(), metric);
    }
}

fn encode_metric(out: &mut String, name: &str, kind: MetricType, metric: &Metric) {
    let labels = metric.get_label();
    match kind {
        MetricType::COUNTER => {
            push_sample(
                out,
                name,
                "",
                labels,
                None,
                metric.get_counter().get_value(),
                metric,
            );
        }
        MetricType::GAUGE => {
            push_sample(
                out,
                name,
                "",
                labels,
                None,
                metric.get_gauge().get_value(),
                metric,
            );
        }
        MetricType::UNTYPED => {
            #[expect(
                deprecated,
                reason = "the crate marks its untyped accessors deprecated but still gathers them"
            )]
            let value = metric.get_untyped().get_value();
            push_sample(out, name, "", labels, None, value, metric);
        }
        MetricType::SUMMARY => {
            let summary = metric.get_summary();
            for quantile in summary.get_quantile() {
                let q = Some(("quantile", quantile.quantile()));
                push_sample(out, name, "", labels, q, quantile.value(), metric);
            }
            push_sample(
                out,
                name,
                "_sum",
                labels,
                None,
                summary.sample_sum(),
                metric,
            );
            let count = summary.sample_count() as f64;
            push_sample(out, name, "_count", labels, None, count, metric);
        }
        MetricType::HISTOGRAM => {
            let histogram = metric.get_histogram();
            let count = histogram.get_sample_count() as f64;
            let mut saw_inf = false;
            for bucket in histogram.get_bucket() {
                let bound = bucket.upper_bound();
                saw_inf |= bound == f64::INFINITY;
                let cumulative = bucket.cumulative_count() as f64;
                push_sample(
                    out,
                    name,
                    "_bucket",
                    labels,
                    Some(("le", bound)),
                    cumulative,
                    metric,
                );
            }
            if !saw_inf {
                let le = Some(("le", f64::INFINITY));
                push_sample(out, name, "_bucket", labels, le, count, metric);
            }
            push_sample(
                out,
                name,
                "_sum",
                labels,
                None,
                histogram.get_sample_sum(),
                metric,
            );
            push_sample(out, name, "_count", labels, None, count, metric);
        }
    }
}

/// One sample line: `name{labels,extra="f"} value [timestamp]`.
fn push_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[LabelPair],
    extra: Option<(&str, f64)>,
    value: f64,
    metric: &Metric,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        let mut separator = '{';
        for label in labels {
            out.push(separator);
            out.push_str(label.name());
            out.push_str("=\"");
            push_escaped(out, label.value(), true);
            out.push('"');
            separator = ',';
        }
        if let Some((label, bound)) = extra {
            out.push(separator);
            out.push_str(label);
            out.push_str("=\"");
            out.push_str(&format_sample(bound));
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_sample(value));
    // The crate uses 0 for "no timestamp"; none of our metrics carry one.
    if metric.timestamp_ms() != 0 {
        out.push(' ');
        out.push_str(&metric.timestamp_ms().to_string());
    }
    out.push('\n');
}

/// Escapes `\` and newline (and `"` inside label values), as the text format requires.
fn push_escaped(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

    use super::encode;
    use crate::metrics::buckets::{B1_SYSCALL_SECONDS, B3_COUNTS, B4_RATES};

    fn render(registry: &Registry) -> String {
        encode(&registry.gather())
    }

    fn histogram(registry: &Registry, name: &str, buckets: &[f64]) -> Histogram {
        let h = Histogram::with_opts(
            HistogramOpts::new(name, "test histogram").buckets(buckets.to_vec()),
        )
        .unwrap();
        registry.register(Box::new(h.clone())).unwrap();
        h
    }

    #[test]
    fn b1_histogram_renders_like_go() {
        let registry = Registry::new();
        let h = histogram(&registry, "t_b1", &B1_SYSCALL_SECONDS);
        h.observe(0.0011);
        h.observe(0.05);
        h.observe(3.0);
        let want = "\
# HELP t_b1 test histogram
# TYPE t_b1 histogram
t_b1_bucket{le=\"0.001\"} 0
t_b1_bucket{le=\"0.00125\"} 1
t_b1_bucket{le=\"0.0016\"} 1
t_b1_bucket{le=\"0.002\"} 1
t_b1_bucket{le=\"0.0025\"} 1
t_b1_bucket{le=\"0.0032\"} 1
t_b1_bucket{le=\"0.004\"} 1
t_b1_bucket{le=\"0.005\"} 1
t_b1_bucket{le=\"0.0063\"} 1
t_b1_bucket{le=\"0.0079\"} 1
t_b1_bucket{le=\"0.01\"} 1
t_b1_bucket{le=\"0.0125\"} 1
t_b1_bucket{le=\"0.016\"} 1
t_b1_bucket{le=\"0.02\"} 1
t_b1_bucket{le=\"0.025\"} 1
t_b1_bucket{le=\"0.032\"} 1
t_b1_bucket{le=\"0.04\"} 1
t_b1_bucket{le=\"0.05\"} 2
t_b1_bucket{le=\"0.063\"} 2
t_b1_bucket{le=\"0.079\"} 2
t_b1_bucket{le=\"0.1\"} 2
t_b1_bucket{le=\"0.125\"} 2
t_b1_bucket{le=\"0.16\"} 2
t_b1_bucket{le=\"0.2\"} 2
t_b1_bucket{le=\"+Inf\"} 3
t_b1_sum 3.0511
t_b1_count 3
";
        assert_eq!(render(&registry), want);
    }

    #[test]
    fn b3_histogram_renders_like_go() {
        let registry = Registry::new();
        let h = histogram(&registry, "t_b3", &B3_COUNTS);
        h.observe(12.5);
        h.observe(2_000_000.0);
        let want = "\
# HELP t_b3 test histogram
# TYPE t_b3 histogram
t_b3_bucket{le=\"1\"} 0
t_b3_bucket{le=\"2\"} 0
t_b3_bucket{le=\"3\"} 0
t_b3_bucket{le=\"4\"} 0
t_b3_bucket{le=\"5\"} 0
t_b3_bucket{le=\"6\"} 0
t_b3_bucket{le=\"8\"} 0
t_b3_bucket{le=\"10\"} 0
t_b3_bucket{le=\"12.5\"} 1
t_b3_bucket{le=\"16\"} 1
t_b3_bucket{le=\"20\"} 1
t_b3_bucket{le=\"25\"} 1
t_b3_bucket{le=\"32\"} 1
t_b3_bucket{le=\"40\"} 1
t_b3_bucket{le=\"50\"} 1
t_b3_bucket{le=\"63\"} 1
t_b3_bucket{le=\"79\"} 1
t_b3_bucket{le=\"100\"} 1
t_b3_bucket{le=\"125\"} 1
t_b3_bucket{le=\"160\"} 1
t_b3_bucket{le=\"200\"} 1
t_b3_bucket{le=\"250\"} 1
t_b3_bucket{le=\"320\"} 1
t_b3_bucket{le=\"400\"} 1
t_b3_bucket{le=\"500\"} 1
t_b3_bucket{le=\"630\"} 1
t_b3_bucket{le=\"790\"} 1
t_b3_bucket{le=\"1000\"} 1
t_b3_bucket{le=\"1250\"} 1
t_b3_bucket{le=\"1600\"} 1
t_b3_bucket{le=\"2000\"} 1
t_b3_bucket{le=\"2500\"} 1
t_b3_bucket{le=\"3200\"} 1
t_b3_bucket{le=\"4000\"} 1
t_b3_bucket{le=\"5000\"} 1
t_b3_bucket{le=\"6300\"} 1
t_b3_bucket{le=\"7900\"} 1
t_b3_bucket{le=\"10000\"} 1
t_b3_bucket{le=\"12500\"} 1
t_b3_bucket{le=\"16000\"} 1
t_b3_bucket{le=\"20000\"} 1
t_b3_bucket{le=\"25000\"} 1
t_b3_bucket{le=\"32000\"} 1
t_b3_bucket{le=\"40000\"} 1
t_b3_bucket{le=\"50000\"} 1
t_b3_bucket{le=\"63000\"} 1
t_b3_bucket{le=\"79000\"} 1
t_b3_bucket{le=\"1e+07\"} 2
t_b3_bucket{le=\"+Inf\"} 2
t_b3_sum 2.0000125e+06
t_b3_count 2
";
        assert_eq!(render(&registry), want);
    }

    #[test]
    fn b4_histogram_renders_like_go() {
        let registry = Registry::new();
        let h = histogram(&registry, "t_b4", &B4_RATES);
        h.observe(0.0);
        h.observe(1_580_000.0);
        h.observe(8e10);
        let want = "\
# HELP t_b4 test histogram
# TYPE t_b4 histogram
t_b4_bucket{le=\"0\"} 1
t_b4_bucket{le=\"1\"} 1
t_b4_bucket{le=\"10\"} 1
t_b4_bucket{le=\"100\"} 1
t_b4_bucket{le=\"1000\"} 1
t_b4_bucket{le=\"1580\"} 1
t_b4_bucket{le=\"2510\"} 1
t_b4_bucket{le=\"3980\"} 1
t_b4_bucket{le=\"6310\"} 1
t_b4_bucket{le=\"10000\"} 1
t_b4_bucket{le=\"15800\"} 1
t_b4_bucket{le=\"25100\"} 1
t_b4_bucket{le=\"39800\"} 1
t_b4_bucket{le=\"63100\"} 1
t_b4_bucket{le=\"100000\"} 1
t_b4_bucket{le=\"158000\"} 1
t_b4_bucket{le=\"251000\"} 1
t_b4_bucket{le=\"398000\"} 1
t_b4_bucket{le=\"631000\"} 1
t_b4_bucket{le=\"1e+06\"} 1
t_b4_bucket{le=\"1.58e+06\"} 2
t_b4_bucket{le=\"2.51e+06\"} 2
t_b4_bucket{le=\"3.98e+06\"} 2
t_b4_bucket{le=\"6.31e+06\"} 2
t_b4_bucket{le=\"1e+07\"} 2
t_b4_bucket{le=\"1.58e+07\"} 2
t_b4_bucket{le=\"2.51e+07\"} 2
t_b4_bucket{le=\"3.98e+07\"} 2
t_b4_bucket{le=\"6.31e+07\"} 2
t_b4_bucket{le=\"1e+08\"} 2
t_b4_bucket{le=\"1.58e+08\"} 2
t_b4_bucket{le=\"2.51e+08\"} 2
t_b4_bucket{le=\"3.98e+08\"} 2
t_b4_bucket{le=\"6.31e+08\"} 2
t_b4_bucket{le=\"1e+09\"} 2
t_b4_bucket{le=\"1.26e+09\"} 2
t_b4_bucket{le=\"1.58e+09\"} 2
t_b4_bucket{le=\"2e+09\"} 2
t_b4_bucket{le=\"2.51e+09\"} 2
t_b4_bucket{le=\"3.16e+09\"} 2
t_b4_bucket{le=\"3.98e+09\"} 2
t_b4_bucket{le=\"5.01e+09\"} 2
t_b4_bucket{le=\"6.31e+09\"} 2
t_b4_bucket{le=\"7.94e+09\"} 2
t_b4_bucket{le=\"1e+10\"} 2
t_b4_bucket{le=\"+Inf\"} 3
t_b4_sum 8.000158e+10
t_b4_count 3
";
        assert_eq!(render(&registry), want);
    }

    #[test]
    fn labels_are_escaped_and_sorted() {
        let registry = Registry::new();
        let vec = IntCounterVec::new(
            Opts::new("t_c", "help with \\ and\nnewline \"q\""),
            &["type"],
        )
        .unwrap();
        registry.register(Box::new(vec.clone())).unwrap();
        vec.with_label_values(&["b\"x\\y\nz"]).inc_by(2_000_000);
        vec.with_label_values(&["a"]).inc();
        let want = "\
# HELP t_c help with \\\\ and\\nnewline \"q\"
# TYPE t_c counter
t_c{type=\"a\"} 1
t_c{type=\"b\\\"x\\\\y\\nz\"} 2e+06
";
        assert_eq!(render(&registry), want);
    }
}
