//! A checking parser of the Prometheus text exposition format (0.0.4), for tests that scrape
//! the server: the same checks as `api.rs`'s, plus histograms (`_bucket`/`_sum`/`_count`
//! samples of a `histogram` family) and label values with escapes.

use std::collections::HashMap;

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits `key="value",...` (the inside of the braces), checking names and quoting; `\"` and
/// `\\` inside a value are kept as written.
fn check_labels(labels: &str, line: &str) {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line}"));
        assert!(valid_name(key), "bad label name {key:?} in {line}");
        let mut escaped = false;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match (escaped, c) {
                (true, '\\' | '"' | 'n') => escaped = false,
                (true, _) => panic!("bad escape in {line}"),
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, _) => {}
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value in {line}"));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Every sample by its series (`name` or `name{labels}` as written), after checking: one
/// `# TYPE` per family, before its samples, of a known type; valid names and labels; numeric
/// values; no series twice; a histogram's buckets do not decrease and `+Inf` equals `_count`.
pub fn parse(text: &str) -> HashMap<String, f64> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("family name");
            let kind = parts.next().expect("family type");
            assert!(valid_name(name), "bad name {name}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "bad type {kind}");
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "family {name} twice"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let name = match series.split_once('{') {
            None => series,
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line}"));
                check_labels(labels, line);
                name
            }
        };
        assert!(valid_name(name), "bad sample name {name}");
        let histogram_part = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            name.strip_suffix(suffix)
                .filter(|family| typed.get(*family).is_some_and(|k| k == "histogram"))
        });
        assert!(
            typed.contains_key(name) || histogram_part.is_some(),
            "sample {name} before its TYPE line"
        );
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "sample {series} twice"
        );
    }
    for (family, kind) in &typed {
        if kind != "histogram" {
            continue;
        }
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|(series, value)| {
                let le = series
                    .strip_prefix(&format!("{family}_bucket{{le=\""))?
                    .strip_suffix("\"}")?;
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((bound, *value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family} buckets decrease: {buckets:?}"
        );
        let inf = buckets.last().filter(|(b, _)| b.is_infinite()).map(|(_, v)| *v);
        assert_eq!(
            inf,
            samples.get(&format!("{family}_count")).copied(),
            "{family}: +Inf ≠ _count"
        );
        assert!(samples.contains_key(&format!("{family}_sum")), "{family}_sum missing");
    }
    samples
}
