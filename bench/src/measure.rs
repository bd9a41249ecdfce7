//! Measuring contenders alternately (A B C A B C …) and summarising what was measured.

use std::time::Duration;

/// One contender: a name and a closure that does one run and returns how long the part that
/// counts took (setup such as writing a file is left out by the closure).
pub struct Contender<'a> {
    pub name: String,
    pub run: Box<dyn FnMut() -> Result<Duration, String> + 'a>,
}

impl<'a> Contender<'a> {
    pub fn new(
        name: impl Into<String>,
        run: impl FnMut() -> Result<Duration, String> + 'a,
    ) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// What was measured of one contender.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub samples: Vec<Duration>,
    /// Why it stopped early, if it failed.
    pub error: Option<String>,
}

impl Series {
    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.samples.clone();
        v.sort_unstable();
        v
    }

    /// The value at quantile `q` (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let v = self.sorted();
        if v.is_empty() {
            return None;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v.get(i).copied()
    }

    pub fn median(&self) -> Option<Duration> {
        self.quantile(0.5)
    }
}

/// Runs every contender `rounds` times, alternating, after `warmup` discarded rounds. A
/// contender that fails stops being run; its error is kept.
pub fn alternate(contenders: &mut [Contender<'_>], warmup: usize, rounds: usize) -> Vec<Series> {
    let mut out: Vec<Series> = contenders
        .iter()
        .map(|c| Series {
            name: c.name.clone(),
            samples: Vec::with_capacity(rounds),
            error: None,
        })
        .collect();
    for round in 0..warmup + rounds {
        for (c, s) in contenders.iter_mut().zip(out.iter_mut()) {
            if s.error.is_some() {
                continue;
            }
            match (c.run)() {
                Ok(d) if round >= warmup => s.samples.push(d),
                Ok(_) => {}
                Err(e) => s.error = Some(e),
            }
        }
    }
    out
}

/// A duration for people: ns, µs, ms or s with three significant digits.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e4 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e5 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternates_and_skips_warmup() {
        let order = std::cell::RefCell::new(Vec::new());
        let mut cs = vec![
            Contender::new("a", || {
                order.borrow_mut().push('a');
                Ok(Duration::from_millis(1))
            }),
            Contender::new("b", || {
                order.borrow_mut().push('b');
                Ok(Duration::from_millis(2))
            }),
        ];
        let s = alternate(&mut cs, 1, 3);
        drop(cs);
        assert_eq!(
            order.into_inner(),
            vec!['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']
        );
        assert_eq!(s[0].samples.len(), 3);
        assert_eq!(s[1].median(), Some(Duration::from_millis(2)));
    }

    #[test]
    fn a_failing_contender_stops_and_keeps_its_error() {
        let mut n = 0;
        let mut cs = vec![Contender::new("f", move || {
            n += 1;
            if n > 2 {
                Err("boom".into())
            } else {
                Ok(Duration::from_micros(n))
            }
        })];
        let s = alternate(&mut cs, 0, 5);
        assert_eq!(s[0].samples.len(), 2);
        assert_eq!(s[0].error.as_deref(), Some("boom"));
    }

    #[test]
    fn quantiles_and_formatting() {
        let s = Series {
            name: "x".into(),
            samples: (1..=11).map(Duration::from_millis).collect(),
            error: None,
        };
        assert_eq!(s.median(), Some(Duration::from_millis(6)));
        assert_eq!(s.quantile(0.1), Some(Duration::from_millis(2)));
        assert_eq!(human(Duration::from_nanos(500)), "500 ns");
        assert_eq!(human(Duration::from_micros(25)), "25.0 µs");
        assert_eq!(human(Duration::from_nanos(313_713)), "314 µs");
        assert_eq!(human(Duration::from_micros(2500)), "2.50 ms");
    }
}
