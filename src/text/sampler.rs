//! Picking the next token from the logits: greedy, or llama.cpp's default
//! chain (repetition penalty, top-k, top-p, min-p, temperature, then a draw
//! from a seeded generator), so the same seed gives the same text.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sampling settings, llama.cpp's names and defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerOptions {
    /// 0 or below: greedy (argmax, lowest id on ties).
    pub temperature: f32,
    /// Keep the k most likely (0: all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1.0: all).
    pub top_p: f32,
    /// Drop tokens below `min_p` x the most likely's probability (0: none).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens (1.0: off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

/// Why sampling options were refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SamplerError {
    #[error("--top-p {0} must be in (0, 1]")]
    TopP(f32),
    #[error("--min-p {0} must be in [0, 1]")]
    MinP(f32),
    #[error("--repeat-penalty {0} must be a positive finite number")]
    RepeatPenalty(f32),
    #[error("--temp {0} must be finite")]
    Temperature(f32),
}

/// A sampler with its own generator and the recent tokens.
pub struct Sampler {
    opts: SamplerOptions,
    rng: StdRng,
    recent: Vec<u32>,
}

impl Sampler {
    /// # Errors
    /// Options outside their ranges.
    pub fn new(opts: SamplerOptions) -> Result<Sampler, SamplerError> {
        if !(opts.top_p > 0.0 && opts.top_p <= 1.0) {
            return Err(SamplerError::TopP(opts.top_p));
        }
        if !(0.0..=1.0).contains(&opts.min_p) {
            return Err(SamplerError::MinP(opts.min_p));
        }
        if !(opts.repeat_penalty.is_finite() && opts.repeat_penalty > 0.0) {
            return Err(SamplerError::RepeatPenalty(opts.repeat_penalty));
        }
        if !opts.temperature.is_finite() {
            return Err(SamplerError::Temperature(opts.temperature));
        }
        Ok(Sampler { opts, rng: StdRng::seed_from_u64(opts.seed), recent: Vec::new() })
    }

    /// Records tokens the penalty should see (the prompt, and each sampled
    /// token, which [`Sampler::sample`] records itself).
    pub fn accept(&mut self, tokens: &[u32]) {
        self.recent.extend_from_slice(tokens);
        let keep = self.opts.repeat_last_n;
        if self.recent.len() > keep {
            self.recent.drain(..self.recent.len() - keep);
        }
    }

    /// The next token.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut logits = logits.to_vec();
        if self.opts.repeat_penalty != 1.0 {
            let mut seen = self.recent.clone();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / self.opts.repeat_penalty } else { *l * self.opts.repeat_penalty };
                }
            }
        }
        let token = if self.opts.temperature <= 0.0 { greedy(&logits) } else { self.draw(&logits) };
        self.accept(&[token]);
        token
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        // Candidates by logit, highest first (ties: lower id first).
        let mut c: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.opts.top_k > 0 {
            c.truncate(self.opts.top_k);
        }
        let probs = |c: &[(u32, f32)], temp: f32| -> Vec<f64> {
            let max = f64::from(c[0].1);
            let e: Vec<f64> = c.iter().map(|&(_, l)| ((f64::from(l) - max) / f64::from(temp)).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(|x| x / sum).collect()
        };
        // top-p and min-p on the untempered distribution (llama.cpp's order:
        // top-k, top-p, min-p, then temperature).
        let p = probs(&c, 1.0);
        let mut keep = c.len();
        let mut cum = 0.0;
        for (i, &pi) in p.iter().enumerate() {
            cum += pi;
            if cum >= f64::from(self.opts.top_p) {
                keep = i + 1;
                break;
            }
        }
        let floor = p[0] * f64::from(self.opts.min_p);
        keep = keep.min(p.iter().take_while(|&&pi| pi >= floor).count().max(1));
        c.truncate(keep);
        let p = probs(&c, self.opts.temperature);
        let mut u: f64 = self.rng.random();
        for (&(id, _), &pi) in c.iter().zip(&p) {
            if u < pi {
                return id;
            }
            u -= pi;
        }
        c.last().expect("at least one candidate").0
    }
}

/// The most likely token, the lowest id among equals; NaN logits lose.
pub fn greedy(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() && !l.is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SamplerOptions {
        SamplerOptions { seed: 42, ..SamplerOptions::default() }
    }

    #[test]
    fn greedy_takes_the_first_maximum_and_ignores_nan() {
        assert_eq!(greedy(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(greedy(&[f32::NAN, 0.5, 0.7]), 2);
        let mut s = Sampler::new(SamplerOptions { temperature: 0.0, ..opts() }).unwrap();
        assert_eq!(s.sample(&[0.0, 2.0, 1.0]), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplerOptions { seed, top_k: 0, top_p: 1.0, min_p: 0.0, ..opts() }).unwrap();
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn filters_keep_only_what_they_should() {
        let logits = [5.0, 4.0, 0.0, -10.0];
        // top-k 1 is greedy whatever the temperature.
        let mut s = Sampler::new(SamplerOptions { top_k: 1, temperature: 5.0, ..opts() }).unwrap();
        assert!((0..20).all(|_| s.sample(&logits) == 0));
        // min-p 0.5: token 1 has e^-1 = 0.37 of token 0's probability, dropped.
        let mut s =
            Sampler::new(SamplerOptions { top_k: 0, top_p: 1.0, min_p: 0.5, temperature: 1.0, ..opts() }).unwrap();
        assert!((0..50).all(|_| s.sample(&logits) == 0));
        // top-p 0.9 keeps tokens 0 and 1 (0.73 + 0.27), never 2 or 3.
        let mut s =
            Sampler::new(SamplerOptions { top_k: 0, top_p: 0.9, min_p: 0.0, temperature: 1.0, ..opts() }).unwrap();
        let picks: Vec<u32> = (0..200).map(|_| s.sample(&logits)).collect();
        assert!(picks.iter().all(|&t| t < 2) && picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn the_repetition_penalty_demotes_recent_tokens() {
        let mut s = Sampler::new(SamplerOptions { temperature: 0.0, repeat_penalty: 2.0, ..opts() }).unwrap();
        s.accept(&[0]);
        assert_eq!(s.sample(&[3.0, 2.0]), 1, "3 / 2 < 2");
    }

    #[test]
    fn bad_options_are_typed_errors() {
        assert_eq!(Sampler::new(SamplerOptions { top_p: 0.0, ..opts() }).err(), Some(SamplerError::TopP(0.0)));
        assert_eq!(Sampler::new(SamplerOptions { min_p: 1.5, ..opts() }).err(), Some(SamplerError::MinP(1.5)));
        assert!(Sampler::new(SamplerOptions { repeat_penalty: 0.0, ..opts() }).is_err());
        assert!(Sampler::new(SamplerOptions { temperature: f32::NAN, ..opts() }).is_err());
    }
}
