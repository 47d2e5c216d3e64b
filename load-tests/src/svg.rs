//! The latency-percentile chart of the equal-load comparison, written as SVG by hand: one
//! panel per call (availability, reserve), a polyline per target, percentiles from the 50th to
//! the 99.99th on a log scale of nines, latency on a log scale.

use std::fmt::Write as _;

use crate::report::PhaseReport;
use crate::workload::{call, TargetKind};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 470.0;
const PANEL_WIDTH: f64 = 400.0;
const PANEL_HEIGHT: f64 = 330.0;
const TOP: f64 = 80.0;
const LEFTS: [f64; 2] = [80.0, 580.0];

/// Nines of a percentile: 50 → 0.30, 90 → 1, 99 → 2, 99.9 → 3, 99.99 → 4.
fn nines(percentile: f64) -> f64 {
    (100.0 / (100.0 - percentile).max(1e-6)).log10()
}

/// Nines of the 50th percentile: log10(2).
const X_MIN: f64 = std::f64::consts::LOG10_2;
const X_MAX: f64 = 4.0;

fn color(target: TargetKind) -> &'static str {
    match target {
        TargetKind::Floor => "#888888",
        TargetKind::Promised => "#1f5fbf",
        TargetKind::RedisPeer => "#c8302c",
        TargetKind::PostgresPeer => "#2e8b3a",
    }
}

/// The curve a phase contributes to a panel: the call, or the floor's health check.
fn curve<'a>(phase: &'a PhaseReport, name: &str) -> Option<&'a [[f64; 2]]> {
    let name = if phase.target == TargetKind::Floor {
        call::HEALTH
    } else {
        name
    };
    phase.call(name).map(|c| c.curve.as_slice())
}

/// Tick values 1-2-5 per decade between `lo` and `hi` (µs).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut values = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    // Bounded: at most 12 decades of latency.
    for _ in 0..12 {
        for step in [1.0, 2.0, 5.0] {
            let value = decade * step;
            if value >= lo * 0.999 && value <= hi * 1.001 {
                values.push(value);
            }
        }
        decade *= 10.0;
        if decade > hi {
            break;
        }
    }
    values
}

fn label_ms(us: f64) -> String {
    let ms = us / 1_000.0;
    let text = format!("{ms:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

fn panel(
    svg: &mut String,
    left: f64,
    title: &str,
    phases: &[PhaseReport],
    name: &str,
) -> std::fmt::Result {
    let curves: Vec<(TargetKind, &[[f64; 2]])> = phases
        .iter()
        .filter_map(|p| Some((p.target, curve(p, name)?)))
        .collect();
    let values = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|point| point[1]))
        .filter(|&v| v > 0.0);
    let (min, max) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if max <= 0.0 {
        return Ok(());
    }
    let lo = 10f64.powf(min.log10().floor());
    let hi = 10f64.powf(max.log10().ceil()).max(lo * 10.0);
    let x = |p: f64| left + (nines(p) - X_MIN) / (X_MAX - X_MIN) * PANEL_WIDTH;
    let y = |us: f64| {
        TOP + PANEL_HEIGHT
            - (us.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * PANEL_HEIGHT
    };
    writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="15" text-anchor="middle">{title}</text>"##,
        left + PANEL_WIDTH / 2.0,
        TOP - 12.0
    )?;
    writeln!(
        svg,
        r##"<rect x="{left}" y="{TOP}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="#333"/>"##
    )?;
    for value in ticks(lo, hi) {
        let ty = y(value);
        writeln!(
            svg,
            r##"<line x1="{left}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            left + PANEL_WIDTH,
            left - 6.0,
            ty + 4.0,
            label_ms(value)
        )?;
    }
    for p in [50.0, 90.0, 99.0, 99.9, 99.99] {
        let tx = x(p);
        writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{tx:.1}" y="{:.1}" font-size="11" text-anchor="middle">p{p}</text>"##,
            TOP + PANEL_HEIGHT,
            TOP + PANEL_HEIGHT + 16.0
        )?;
    }
    writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">percentile</text>"##,
        left + PANEL_WIDTH / 2.0,
        TOP + PANEL_HEIGHT + 34.0
    )?;
    writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">latency, ms (log)</text>"##,
        left - 50.0,
        TOP + PANEL_HEIGHT / 2.0,
        left - 50.0,
        TOP + PANEL_HEIGHT / 2.0
    )?;
    for (target, points) in curves {
        let path: Vec<String> = points
            .iter()
            .map(|[p, us]| format!("{:.1},{:.1}", x(*p), y(*us)))
            .collect();
        writeln!(
            svg,
            r##"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
            color(target),
            path.join(" ")
        )?;
    }
    Ok(())
}

/// The chart of the equal-load phases.
pub fn chart(phases: &[PhaseReport], rate: f64) -> String {
    let mut svg = String::new();
    draw(&mut svg, phases, rate).expect("formatting into a String cannot fail");
    svg
}

fn draw(svg: &mut String, phases: &[PhaseReport], rate: f64) -> std::fmt::Result {
    writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"##
    )?;
    writeln!(svg, r##"<rect width="100%" height="100%" fill="white"/>"##)?;
    writeln!(
        svg,
        r##"<text x="{:.1}" y="24" font-size="17" text-anchor="middle">checkout-subset, open loop at {rate:.0} operations/s: latency by percentile</text>"##,
        WIDTH / 2.0
    )?;
    let label = |target: TargetKind| match target {
        TargetKind::Floor => "floor (health check)",
        other => other.name(),
    };
    // About 7 px per character at 13 px, plus the swatch and a gap.
    let width = |target: TargetKind| 50.0 + 7.0 * label(target).len() as f64;
    let mut legend_x = (WIDTH - phases.iter().map(|p| width(p.target)).sum::<f64>()) / 2.0;
    for phase in phases {
        writeln!(
            svg,
            r##"<line x1="{legend_x:.1}" y1="44" x2="{:.1}" y2="44" stroke="{}" stroke-width="3"/><text x="{:.1}" y="48" font-size="13">{}</text>"##,
            legend_x + 24.0,
            color(phase.target),
            legend_x + 30.0,
            label(phase.target)
        )?;
        legend_x += width(phase.target);
    }
    panel(
        svg,
        LEFTS[0],
        "availability of 10 SKUs",
        phases,
        call::AVAILABILITY,
    )?;
    panel(svg, LEFTS[1], "reserve 1-2 lines", phases, call::RESERVE)?;
    writeln!(svg, "</svg>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_put_percentiles_on_a_log_scale() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.99) - 4.0).abs() < 1e-6);
        assert!((nines(50.0) - X_MIN).abs() < 1e-9);
    }

    #[test]
    fn ticks_are_one_two_five_per_decade() {
        assert_eq!(
            ticks(10.0, 1000.0),
            [10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(label_ms(50.0), "0.05");
        assert_eq!(label_ms(2000.0), "2");
    }
}
