//! Where each phase of a report sits on the timeline chart: pure geometry, so the layout
//! is tested without a browser and the HTML renderer only draws what this computes.

use chrono::{DateTime, Utc};

use super::Phase;

/// The chart's fixed geometry, in SVG user units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// Whole width of the SVG.
    pub width: f64,
    /// Left edge of the time axis (the labels live left of it).
    pub axis_left: f64,
    /// Right edge of the time axis.
    pub axis_right: f64,
    /// Height of the axis band at the top.
    pub top: f64,
    /// Height of one row.
    pub row: f64,
}

/// The frame the report uses: wide enough for step names, readable at 80 % zoom.
pub const FRAME: Frame = Frame {
    width: 1000.0,
    axis_left: 360.0,
    axis_right: 980.0,
    top: 34.0,
    row: 24.0,
};

/// Narrowest bar drawn, so an instant step stays visible.
pub const MIN_BAR: f64 = 3.0;

/// One phase placed on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// Index into the report's timeline.
    pub index: usize,
    /// Top of the row.
    pub y: f64,
    /// Left of the bar, or the moment's position.
    pub x: f64,
    /// Bar width; `None` for a moment.
    pub width: Option<f64>,
    /// The bar runs to the chart's end because the journal never closed it.
    pub open: bool,
}

/// An axis tick: position and its label (time since the first phase).
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Position on the axis.
    pub x: f64,
    /// `+0s`, `+1m30s`.
    pub label: String,
}

/// The laid-out chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// One per phase, in the timeline's order, one row each.
    pub rows: Vec<Placed>,
    /// Axis ticks, left to right.
    pub ticks: Vec<Tick>,
    /// Total height of the SVG.
    pub height: f64,
    /// The time at the axis' left edge.
    pub origin: Option<DateTime<Utc>>,
}

/// Places every phase: time runs left to right over `frame`'s axis from the earliest
/// start to the latest start or end; each phase gets its own row.
pub fn layout(phases: &[Phase], frame: Frame) -> Layout {
    let t0 = phases.iter().map(|p| p.start).min();
    let t1 = phases
        .iter()
        .flat_map(|p| [Some(p.start), p.end])
        .flatten()
        .max();
    let height = frame.top + frame.row * phases.len() as f64 + 8.0;
    let (Some(t0), Some(t1)) = (t0, t1) else {
        return Layout {
            rows: Vec::new(),
            ticks: Vec::new(),
            height,
            origin: None,
        };
    };
    // A run that took no measurable time still gets a 1 ms axis.
    let span_ms = (t1 - t0).num_milliseconds().max(1) as f64;
    let axis = frame.axis_right - frame.axis_left;
    let x_of =
        |t: DateTime<Utc>| frame.axis_left + (t - t0).num_milliseconds() as f64 / span_ms * axis;
    let rows = phases
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let x = x_of(p.start);
            let y = frame.top + frame.row * index as f64;
            let (width, open) = match (
                p.end,
                p.outcome.is_some() || p.kind == super::PhaseKind::Approval,
            ) {
                (Some(e), _) => (Some((x_of(e) - x).max(MIN_BAR)), false),
                // A step or an approval without an end ran until the report's last moment.
                (None, true) => (Some((frame.axis_right - x).max(MIN_BAR)), true),
                (None, false) => (None, false),
            };
            Placed {
                index,
                y,
                x,
                width,
                open,
            }
        })
        .collect();
    let ticks = (0..=4)
        .map(|i| {
            let ms = span_ms * i as f64 / 4.0;
            Tick {
                x: frame.axis_left + axis * i as f64 / 4.0,
                label: format!("+{}", human_secs(ms / 1000.0)),
            }
        })
        .collect();
    Layout {
        rows,
        ticks,
        height,
        origin: Some(t0),
    }
}

/// `0.4s`, `12s`, `3m05s`, `2h10m`: a duration as the chart and the figures show it.
pub fn human_secs(secs: f64) -> String {
    let negative = secs < 0.0;
    let s = secs.abs();
    let text = if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{:.0}s", s.floor())
    } else if s < 3600.0 {
        let whole = s as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else if s < 86_400.0 {
        let whole = s as u64;
        format!("{}h{:02}m", whole / 3600, (whole / 60) % 60)
    } else {
        let whole = s as u64;
        format!("{}d{:02}h", whole / 86_400, (whole / 3600) % 24)
    };
    if negative {
        format!("-{text}")
    } else {
        text
    }
}
