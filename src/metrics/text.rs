//! The Prometheus text format (version 0.0.4) from the OpenMetrics text that
//! `prometheus-client` writes, for scrapers and tools that ask for it (`promtool check
//! metrics`, older Prometheus servers, agents that send `Accept: text/plain`).
//!
//! Hand-written because `prometheus-client` encodes OpenMetrics only. The two formats differ
//! in a few lines, which this rewrites one by one: a counter's `# HELP` and `# TYPE` name its
//! samples (`x_total`, not the family `x`); `info` and `stateset` families become gauges and
//! `unknown` ones `untyped`; `# UNIT` and `# EOF` lines and exemplars do not exist there.

/// Rewrites an OpenMetrics exposition into the Prometheus text format.
pub fn from_openmetrics(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // `# HELP` comes before its `# TYPE`: held until the type says what it names.
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), None);
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" => (name.to_string(), "gauge"),
                "gaugehistogram" => (name.to_string(), "histogram"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            let for_this = help.take().filter(|(h, _)| *h == rest.split(' ').next().unwrap_or(""));
            flush_help(&mut out, for_this, Some(&name));
            out.push_str("# TYPE ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
        } else if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        } else {
            // An exemplar follows ` # ` after the value; label values cannot hold ` # `
            // unescaped outside quotes, so the first one outside quotes starts it.
            out.push_str(without_exemplar(line));
            out.push('\n');
        }
    }
    flush_help(&mut out, help, None);
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, name: Option<&str>) {
    if let Some((family, text)) = help {
        out.push_str("# HELP ");
        out.push_str(name.unwrap_or(family));
        out.push(' ');
        // OpenMetrics escapes `"` in help text too; Prometheus's format escapes only `\` and
        // line breaks, and would show `\"` as written.
        out.push_str(&text.replace("\\\"", "\""));
        out.push('\n');
    }
}

fn without_exemplar(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted && line[..i].ends_with(' ') => return line[..i].trim_end(),
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_openmetrics_lines_go() {
        let om = "# HELP weir_x Events.\n# TYPE weir_x counter\nweir_x_total{a=\"b # c\"} 3 # {trace_id=\"1\"} 1.0\n# HELP weir_up Up.\n# TYPE weir_up gauge\n# UNIT weir_up seconds\nweir_up 1\n# HELP weir_build Build.\n# TYPE weir_build info\nweir_build_info{version=\"1\"} 1\n# EOF\n";
        assert_eq!(
            from_openmetrics(om),
            "# HELP weir_x_total Events.\n# TYPE weir_x_total counter\nweir_x_total{a=\"b # c\"} 3\n# HELP weir_up Up.\n# TYPE weir_up gauge\nweir_up 1\n# HELP weir_build_info Build.\n# TYPE weir_build_info gauge\nweir_build_info{version=\"1\"} 1\n"
        );
    }

    #[test]
    fn histograms_pass_unchanged() {
        let om = "# HELP h Latency.\n# TYPE h histogram\nh_sum 1.5\nh_count 2\nh_bucket{le=\"+Inf\"} 2\n# EOF\n";
        assert_eq!(from_openmetrics(om), om.trim_end_matches("# EOF\n"));
    }
}
