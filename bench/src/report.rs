//! The results: one table per scenario, as Markdown and as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use crate::measure::{Series, human};

/// How a row's numbers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Time per operation; lower is better.
    Time,
    /// Bytes per container; lower is better.
    Bytes,
    /// A count (threads); lower is better.
    Count,
    /// Operations per second; higher is better.
    Rate,
}

/// One line of a table.
#[derive(Debug, Clone)]
pub struct Row {
    pub series: Series,
    /// Ours (execdriver), or a peer.
    pub ours: bool,
    /// For a peer, or a floor: the name of our row it is compared with (ratio ours/this).
    pub vs: Option<String>,
    pub note: Option<String>,
    pub unit: Unit,
}

/// One scenario's table.
#[derive(Debug, Clone)]
pub struct Table {
    pub id: &'static str,
    pub title: String,
    pub rows: Vec<Row>,
    /// What the project aims for here, and whether the run met it.
    pub targets: Vec<(String, Option<bool>)>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(id: &'static str, title: impl Into<String>) -> Self {
        Self {
            id,
            title: title.into(),
            rows: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn ours(&mut self, s: Series) {
        self.rows.push(Row {
            series: s,
            ours: true,
            vs: None,
            note: None,
            unit: Unit::Time,
        });
    }

    pub fn peer(&mut self, s: Series, vs: &str) {
        self.rows.push(Row {
            series: s,
            ours: false,
            vs: Some(vs.to_owned()),
            note: None,
            unit: Unit::Time,
        });
    }

    pub fn bytes(&mut self, s: Series, ours: bool) {
        self.rows.push(Row {
            series: s,
            ours,
            vs: None,
            note: None,
            unit: Unit::Bytes,
        });
    }

    /// A row of one measured value in `unit` (a count or a rate, carried in the nanoseconds of a
    /// `Duration` as bytes are).
    pub fn value(&mut self, name: &str, value: u64, unit: Unit, note: Option<String>) {
        self.rows.push(Row {
            series: Series {
                name: name.to_owned(),
                samples: vec![Duration::from_nanos(value)],
                error: None,
            },
            ours: true,
            vs: None,
            note,
            unit,
        });
    }

    pub fn median_of(&self, name: &str) -> Option<Duration> {
        self.rows
            .iter()
            .find(|r| r.series.name == name)
            .and_then(|r| r.series.median())
    }

    /// ours/peer of the medians of two rows.
    pub fn ratio(&self, ours: &str, peer: &str) -> Option<f64> {
        let o = self.median_of(ours)?.as_secs_f64();
        let p = self.median_of(peer)?.as_secs_f64();
        (p > 0.0).then(|| o / p)
    }

    /// Records a target: `ours/peer ≤ max`.
    pub fn target_ratio(&mut self, ours: &str, peer: &str, max: f64) {
        let met = self.ratio(ours, peer).map(|r| r <= max);
        self.targets.push((format!("{ours} ≤ {max}× {peer}"), met));
    }

    /// Records a target: the median of `row` ≤ `max`.
    pub fn target_time(&mut self, row: &str, max: Duration) {
        let met = self.median_of(row).map(|m| m <= max);
        self.targets.push((format!("{row} ≤ {}", human(max)), met));
    }

    /// Records a target: the median of `ours` exceeds that of `base` by at most `max`.
    pub fn target_extra(&mut self, ours: &str, base: &str, max: Duration) {
        let met = self
            .median_of(ours)
            .zip(self.median_of(base))
            .map(|(o, b)| o.saturating_sub(b) <= max);
        self.targets
            .push((format!("{ours} − {base} ≤ {}", human(max)), met));
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### {}\n", self.title);
        let _ = writeln!(s, "| contender | n | median | p10 | p90 | ours/this |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let fmt = |d: Option<Duration>| match (d, r.unit) {
                (None, _) => "–".to_owned(),
                (Some(d), Unit::Time) => human(d),
                // Bytes ride in Duration's nanoseconds.
                (Some(d), Unit::Bytes) => format!("{:.1} KiB", d.as_nanos() as f64 / 1024.0),
                (Some(d), Unit::Count) => d.as_nanos().to_string(),
                (Some(d), Unit::Rate) => format!("{}/s", d.as_nanos()),
            };
            let ratio =
                r.vs.as_deref()
                    .and_then(|vs| self.ratio(vs, &r.series.name))
                    .map_or(String::new(), |x| format!("{x:.2}×"));
            let name = if r.ours {
                format!("**{}**", r.series.name)
            } else {
                r.series.name.clone()
            };
            let name = match (&r.series.error, &r.note) {
                (Some(e), _) => format!(
                    "{name} (failed: {})",
                    e.replace('|', "/").replace('\n', " ")
                ),
                (None, Some(n)) => format!("{name} ({n})"),
                _ => name,
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {ratio} |",
                r.series.samples.len(),
                fmt(r.series.median()),
                fmt(r.series.quantile(0.1)),
                fmt(r.series.quantile(0.9)),
            );
        }
        if !self.targets.is_empty() {
            let _ = writeln!(s);
            for (t, met) in &self.targets {
                let mark = match met {
                    Some(true) => "met",
                    Some(false) => "**missed**",
                    None => "not measured",
                };
                let _ = writeln!(s, "- target: {t} — {mark}");
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "name": r.series.name,
                "ours": r.ours,
                "unit": match r.unit {
                    Unit::Time => "ns",
                    Unit::Bytes => "bytes",
                    Unit::Count => "count",
                    Unit::Rate => "per_second",
                },
                "n": r.series.samples.len(),
                "median": r.series.median().map(|d| d.as_nanos() as u64),
                "p10": r.series.quantile(0.1).map(|d| d.as_nanos() as u64),
                "p90": r.series.quantile(0.9).map(|d| d.as_nanos() as u64),
                "vs": r.vs,
                "ratio": r.vs.as_deref().and_then(|vs| self.ratio(vs, &r.series.name)),
                "error": r.series.error,
            })).collect::<Vec<_>>(),
            "targets": self.targets.iter().map(|(t, m)| serde_json::json!({"target": t, "met": m})).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, ms: &[u64]) -> Series {
        Series {
            name: name.into(),
            samples: ms.iter().map(|m| Duration::from_millis(*m)).collect(),
            error: None,
        }
    }

    #[test]
    fn ratios_targets_and_markdown() {
        let mut t = Table::new("x", "X");
        t.ours(series("ours", &[4, 5, 6]));
        t.peer(series("peer", &[9, 10, 11]), "ours");
        assert_eq!(t.ratio("ours", "peer"), Some(0.5));
        t.target_ratio("ours", "peer", 0.5);
        t.target_time("ours", Duration::from_millis(1));
        let md = t.markdown();
        assert!(
            md.contains("| peer | 3 | 10.00 ms | 9.00 ms | 11.00 ms | 0.50× |"),
            "{md}"
        );
        assert!(md.contains("ours ≤ 0.5× peer — met"), "{md}");
        assert!(md.contains("ours ≤ 1.00 ms — **missed**"), "{md}");
        assert_eq!(t.json()["rows"][1]["ratio"], 0.5);
    }
}
