//! A plot of a run's timeline as a standalone SVG: forwarded packets/s and
//! mean one-way latency per second, the measured window shaded.

use crate::report::{Report, Second};
use std::fmt::Write as _;

const WIDTH: f64 = 800.0;
const PANEL: f64 = 200.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 48.0;
const GAP: f64 = 50.0;

/// One panel: its label, the value it plots per second, its colour.
type Panel = (&'static str, fn(&Second) -> f64, &'static str);

/// The SVG text.
pub fn svg(report: &Report) -> String {
    let t_max = report.timeline.last().map_or(1, |s| s.t).max(1) as f64;
    let plot_w = WIDTH - LEFT - 20.0;
    let x = |t: f64| LEFT + plot_w * t / t_max;
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18">huddle-bench {:?}: {} publishers, {} subscribers</text>"#,
        report.scenario, report.publishers, report.subscribers
    );
    let w0 = report.window_start_second as f64;
    let w1 = w0 + report.window_seconds as f64;
    let panels: [Panel; 2] = [
        ("forwarded packets/s", |s| s.forwarded_pps, "#1f77b4"),
        ("mean latency (ms)", |s| s.mean_latency_ms, "#d62728"),
    ];
    for (i, (label, value, color)) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL + GAP);
        let v_max = report
            .timeline
            .iter()
            .map(value)
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.1;
        let y = |v: f64| top + PANEL - PANEL * v / v_max;
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{PANEL}" fill="#eeeeee"/>"##,
            x(w0),
            (x(w1) - x(w0)).max(0.0)
        );
        let _ = writeln!(
            out,
            r#"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{:.1}">{label} (max {:.1}; shaded: measured window)</text>"#,
            top - 6.0,
            v_max / 1.1
        );
        for frac in [0.0, 0.5, 1.0] {
            let v = v_max * frac;
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"#,
                LEFT - 4.0,
                y(v) + 4.0
            );
        }
        let points: Vec<String> = report
            .timeline
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t as f64), y(value(s))))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
    }
    let axis_y = TOP + 2.0 * PANEL + GAP + 20.0;
    let step = (t_max / 10.0).ceil().max(1.0);
    let mut t = 0.0;
    while t <= t_max {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{axis_y}" text-anchor="middle">{t:.0}s</text>"#,
            x(t)
        );
        t += step;
    }
    out.push_str("</svg>\n");
    out
}
