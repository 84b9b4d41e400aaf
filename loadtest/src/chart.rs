//! A horizontal bar chart as SVG, for load-test reports: one bar per
//! number, labelled with its name and value. Pure; no plotting crate.

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders `bars` (name, value) scaled to the largest value.
pub fn bar_chart_svg(title: &str, bars: &[(String, f64)]) -> String {
    const LABEL_W: f64 = 260.0;
    const BAR_W: f64 = 420.0;
    const ROW_H: f64 = 26.0;
    let max = bars
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let height = 40.0 + ROW_H * bars.len() as f64 + 10.0;
    let width = LABEL_W + BAR_W + 120.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    for (i, (name, value)) in bars.iter().enumerate() {
        let y = 40.0 + ROW_H * i as f64;
        let w = if max > 0.0 && value.is_finite() {
            (value / max * BAR_W).max(1.0)
        } else {
            1.0
        };
        svg.push_str(&format!(
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{bx}\" y=\"{y}\" width=\"{w:.1}\" height=\"{h}\" fill=\"#4878a8\"/>\n\
             <text x=\"{vx:.1}\" y=\"{ty}\">{}</text>\n",
            esc(name),
            format_value(*value),
            lx = LABEL_W - 8.0,
            ty = y + 16.0,
            bx = LABEL_W,
            h = ROW_H - 6.0,
            vx = LABEL_W + w + 6.0,
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The bars of a JSON report: every number whose key ends in `_per_s`,
/// plus `ratio` (its own chart scale would be better; it is small).
pub fn report_bars(report: &serde_json::Value) -> Vec<(String, f64)> {
    report
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.ends_with("_per_s"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_rate_scaled_to_the_largest() {
        let report = serde_json::json!({
            "raw_per_s": 40000.0, "drover_per_s": 20000.0, "ratio": 0.5, "jobs": 10
        });
        let bars = report_bars(&report);
        assert_eq!(bars.len(), 2);
        let svg = bar_chart_svg("queue <jetstream>", &bars);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("queue &lt;jetstream&gt;"));
        assert!(
            svg.contains("width=\"420.0\""),
            "the largest bar is full width"
        );
        assert!(
            svg.contains("width=\"210.0\""),
            "half the value, half the width"
        );
        assert!(svg.contains(">20000<"));
    }
}
