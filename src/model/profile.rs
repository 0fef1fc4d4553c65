//! Where a run's time goes (`tilejit run --profile`): wall time per op kind
//! (each linear role, attention, RoPE, norms, activation quantisation,
//! sampling, copies) and per layer, with each one's share of the total.
//! Recording costs two clock reads per op, and nothing when off.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A profile as data (`bench-model --profile`'s JSON): milliseconds and
/// percent of the total per op kind (largest first) and per layer.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize, serde::Deserialize))]
pub struct ProfileReport {
    pub total_ms: f64,
    pub ops: Vec<OpTime>,
    pub layers: Vec<LayerTime>,
}

#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize, serde::Deserialize))]
pub struct OpTime {
    pub op: String,
    pub ms: f64,
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize, serde::Deserialize))]
pub struct LayerTime {
    pub layer: usize,
    pub ms: f64,
    pub percent: f64,
}

impl ProfileReport {
    /// The table `--profile` prints.
    pub fn table(&self) -> String {
        let mut out = format!("{:<24} {:>10} {:>7}\n", "op", "ms", "share");
        for o in &self.ops {
            out += &format!("{:<24} {:>10.2} {:>6.1}%\n", o.op, o.ms, o.percent);
        }
        out += &format!("{:<24} {:>10.2} {:>6.1}%\n", "total", self.total_ms, 100.0);
        out += "per layer (ms):";
        for l in &self.layers {
            out += &format!(" {}:{:.1}", l.layer, l.ms);
        }
        out + "\n"
    }
}

/// Accumulated time per (op, layer); `layer` None for per-token work
/// outside the layers (embedding, output norm, LM head, sampling).
#[derive(Default)]
pub struct Profile {
    spent: RefCell<BTreeMap<(&'static str, Option<usize>), Duration>>,
}

impl Profile {
    /// Adds the time since `since` to `op` (of `layer`).
    pub fn add(&self, op: &'static str, layer: Option<usize>, since: Instant) {
        *self.spent.borrow_mut().entry((op, layer)).or_default() += since.elapsed();
    }

    /// Total time per op kind, largest first.
    pub fn by_op(&self) -> Vec<(&'static str, Duration)> {
        let mut m: BTreeMap<&'static str, Duration> = BTreeMap::new();
        for (&(op, _), &d) in self.spent.borrow().iter() {
            *m.entry(op).or_default() += d;
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by_key(|o| std::cmp::Reverse(o.1));
        v
    }

    /// Total time per layer, in layer order.
    pub fn by_layer(&self) -> Vec<(usize, Duration)> {
        let mut m: BTreeMap<usize, Duration> = BTreeMap::new();
        for (&(_, layer), &d) in self.spent.borrow().iter() {
            if let Some(l) = layer {
                *m.entry(l).or_default() += d;
            }
        }
        m.into_iter().collect()
    }

    pub fn total(&self) -> Duration {
        self.spent.borrow().values().sum()
    }

    /// The profile as data.
    pub fn report(&self) -> ProfileReport {
        let total = self.total().as_secs_f64();
        let share = |d: Duration| if total > 0.0 { 100.0 * d.as_secs_f64() / total } else { 0.0 };
        ProfileReport {
            total_ms: total * 1e3,
            ops: self
                .by_op()
                .into_iter()
                .map(|(op, d)| OpTime { op: op.to_string(), ms: d.as_secs_f64() * 1e3, percent: share(d) })
                .collect(),
            layers: self
                .by_layer()
                .into_iter()
                .map(|(layer, d)| LayerTime { layer, ms: d.as_secs_f64() * 1e3, percent: share(d) })
                .collect(),
        }
    }

    /// The table `--profile` prints.
    pub fn table(&self) -> String {
        self.report().table()
    }
}

/// Starts timing when profiling (`None` otherwise).
pub fn start(p: Option<&Profile>) -> Option<Instant> {
    p.map(|_| Instant::now())
}

/// Stops timing `op` if it was started.
pub fn stop(p: Option<&Profile>, op: &'static str, layer: Option<usize>, t: Option<Instant>) {
    if let (Some(p), Some(t)) = (p, t) {
        p.add(op, layer, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_layers_are_kept_apart() {
        let p = Profile::default();
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        p.add("attention", Some(0), t);
        p.add("attention", Some(1), t);
        p.add("sampling", None, t);
        let ops = p.by_op();
        assert_eq!(ops[0].0, "attention");
        assert_eq!(p.by_layer().len(), 2);
        assert_eq!(p.total(), ops.iter().map(|o| o.1).sum());
        assert!(p.table().contains("attention") && p.table().contains("per layer"));
        assert_eq!(start(None), None);
    }
}
