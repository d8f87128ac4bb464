//! Statistics: numpy-compatible percentiles, summaries, and seeded bootstrap
//! confidence intervals. Pure functions over slices of `f64`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Percentile `p` (0–100) of ascending-sorted `sorted` by linear
/// interpolation between closest ranks (numpy's default `linear` method).
/// Returns `None` for an empty slice.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Percentile `p` (0–100) of `values` in any order, as
/// [`percentile_sorted`] gives it of the sorted values, found by selection
/// in linear time: the slice is reordered, not sorted. For a few
/// percentiles of millions of values (a replay's inter-token latencies).
pub fn percentile_select(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = p.clamp(0.0, 100.0) / 100.0 * (values.len() - 1) as f64;
    let k = rank.floor() as usize;
    let (_, lo, rest) = values.select_nth_unstable_by(k, f64::total_cmp);
    let lo = *lo;
    let frac = rank - k as f64;
    if frac == 0.0 {
        return Some(lo);
    }
    let hi = rest.iter().copied().min_by(f64::total_cmp).unwrap_or(lo);
    Some(lo + (hi - lo) * frac)
}

/// Percentile of unsorted data (sorts a copy; NaNs are dropped).
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    percentile_sorted(&sorted_finite(values), p)
}

/// A copy of the finite values, ascending.
pub fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Population standard deviation (numpy's default `ddof=0`).
pub fn std_dev(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    Some((values.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / values.len() as f64).sqrt())
}

/// The distribution summary every latency figure gets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    /// Only with 1,000 samples or more.
    pub p999: Option<f64>,
}

impl Summary {
    /// Summarises the finite values; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let s = sorted_finite(values);
        if s.is_empty() {
            return None;
        }
        let q = |p| percentile_sorted(&s, p).unwrap_or(f64::NAN);
        Some(Summary {
            count: s.len(),
            mean: mean(&s)?,
            median: q(50.0),
            std: std_dev(&s)?,
            min: s[0],
            max: s[s.len() - 1],
            p50: q(50.0),
            p90: q(90.0),
            p95: q(95.0),
            p99: q(99.0),
            p999: (s.len() >= 1000).then(|| q(99.9)),
        })
    }
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }
}

/// Default bootstrap resamples.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// Fixed seed so that the same records always print the same intervals.
pub const BOOTSTRAP_SEED: u64 = 0x5eed_f1ee_7be7;

/// Percentile-bootstrap 95 % interval of `statistic` over resamples (with
/// replacement) of `items`. Deterministic for a given seed. Returns `None`
/// with fewer than two items or when the statistic is never finite.
pub fn bootstrap_ci<T, F>(items: &[T], statistic: F, resamples: usize, seed: u64) -> Option<Interval>
where
    T: Clone,
    F: Fn(&[T]) -> f64,
{
    if items.len() < 2 || resamples == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf: Vec<T> = Vec::with_capacity(items.len());
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        buf.clear();
        for _ in 0..items.len() {
            buf.push(items[rng.random_range(0..items.len())].clone());
        }
        let s = statistic(&buf);
        if s.is_finite() {
            stats.push(s);
        }
    }
    stats.sort_by(f64::total_cmp);
    Some(Interval { lo: percentile_sorted(&stats, 2.5)?, hi: percentile_sorted(&stats, 97.5)? })
}

/// 95 % bootstrap interval of the mean.
pub fn mean_ci(values: &[f64]) -> Option<Interval> {
    bootstrap_ci(values, |s| mean(s).unwrap_or(f64::NAN), resamples_for(values.len()), BOOTSTRAP_SEED)
}

/// 95 % bootstrap interval of percentile `p`.
pub fn percentile_ci(values: &[f64], p: f64) -> Option<Interval> {
    bootstrap_ci(
        values,
        |s| percentile_select(&mut s.to_vec(), p).unwrap_or(f64::NAN),
        resamples_for(values.len()),
        BOOTSTRAP_SEED,
    )
}

/// Fewer resamples for very large samples, so that a summary of a million
/// requests still prints in about a second.
pub fn resamples_for(n: usize) -> usize {
    (20_000_000 / n.max(1)).clamp(200, BOOTSTRAP_RESAMPLES)
}

/// Mann-Whitney U test (normal approximation with tie correction): returns
/// the two-sided p-value and the common-language effect size
/// P(a > b) + 0.5 P(a = b).
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, usize)> = a.iter().map(|&x| (x, 0)).chain(b.iter().map(|&x| (x, 1))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for rank in ranks.iter_mut().take(j + 1).skip(i) {
            *rank = r;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all.iter().zip(&ranks).filter(|(x, _)| x.1 == 0).map(|(_, r)| r).sum();
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let mu = n1f * n2f / 2.0;
    let nf = n as f64;
    let sigma = (n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)).max(1.0))).sqrt();
    let effect = u1 / (n1f * n2f);
    if sigma == 0.0 {
        return Some((1.0, effect));
    }
    let z = ((u1 - mu).abs() - 0.5).max(0.0) / sigma;
    Some((2.0 * (1.0 - normal_cdf(z)), effect))
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erf, |error| < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    let erf = if x >= 0.0 { y } else { -y };
    0.5 * (1.0 + erf)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed with numpy 1.26: np.percentile(v, p) (linear).
    #[test]
    fn percentiles_match_numpy() {
        let v = [15.0, 20.0, 35.0, 40.0, 50.0];
        assert_eq!(percentile(&v, 50.0), Some(35.0));
        assert!((percentile(&v, 90.0).unwrap() - 46.0).abs() < 1e-12);
        assert!((percentile(&v, 99.0).unwrap() - 49.6).abs() < 1e-12);
        assert!((percentile(&v, 25.0).unwrap() - 20.0).abs() < 1e-12);
        let w = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        // np.percentile([3,1,4,1,5,9,2,6], [10, 50, 95]) == [1.0, 3.5, 7.95]
        assert!((percentile(&w, 10.0).unwrap() - 1.0).abs() < 1e-12);
        assert!((percentile(&w, 50.0).unwrap() - 3.5).abs() < 1e-12);
        assert!((percentile(&w, 95.0).unwrap() - 7.95).abs() < 1e-12);
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn selection_gives_the_sorted_percentiles() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1.0_f64).powi(3)).collect();
            let sorted = sorted_finite(&v);
            let mut work = v.clone();
            for p in [0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
                assert_eq!(percentile_select(&mut work, p), percentile_sorted(&sorted, p), "n {n}, p {p}");
            }
        }
        assert_eq!(percentile_select(&mut [], 50.0), None);
    }

    #[test]
    fn summary_uses_population_std() {
        // np.std([2,4,4,4,5,5,7,9]) == 2.0
        let s = Summary::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert!((s.std - 2.0).abs() < 1e-12);
        assert!((s.mean - 5.0).abs() < 1e-12);
        assert_eq!(s.median, 4.5);
        assert_eq!(s.p999, None);
        let big: Vec<f64> = (0..1000).map(f64::from).collect();
        // np.percentile(np.arange(1000), 99.9) == 998.001
        assert!((Summary::of(&big).unwrap().p999.unwrap() - 998.001).abs() < 1e-9);
    }

    #[test]
    fn bootstrap_of_a_constant_is_a_point() {
        let ci = mean_ci(&[3.0; 50]).unwrap();
        assert_eq!((ci.lo, ci.hi), (3.0, 3.0));
    }

    #[test]
    fn bootstrap_mean_interval_matches_theory() {
        // Uniform grid 0..999: mean 499.5, sd 288.7, so the 95 % interval of
        // the mean is about ±1.96 * 288.7 / sqrt(1000) = ±17.9.
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        let ci = mean_ci(&v).unwrap();
        assert!(ci.contains(499.5));
        assert!((ci.half_width() - 17.9).abs() < 2.5, "{ci:?}");
        // Deterministic: same input, same interval.
        assert_eq!(mean_ci(&v), Some(ci));
    }

    #[test]
    fn percentile_ci_brackets_the_percentile() {
        let v: Vec<f64> = (0..500).map(|i| f64::from(i % 97)).collect();
        let p = percentile(&v, 90.0).unwrap();
        let ci = percentile_ci(&v, 90.0).unwrap();
        assert!(ci.lo <= p && p <= ci.hi, "{p} not in {ci:?}");
    }

    #[test]
    fn mann_whitney_separates_shifted_samples() {
        let a: Vec<f64> = (0..40).map(f64::from).collect();
        let b: Vec<f64> = (0..40).map(|i| f64::from(i) + 30.0).collect();
        let (p, effect) = mann_whitney(&a, &b).unwrap();
        assert!(p < 1e-6, "{p}");
        assert!(effect < 0.2);
        let (p_same, e_same) = mann_whitney(&a, &a).unwrap();
        assert!(p_same > 0.9);
        assert!((e_same - 0.5).abs() < 1e-12);
        // scipy.stats.mannwhitneyu([1,2,3,4,5],[6,7,8,9,10]) -> U=0, p=0.0119 (asymptotic, continuity)
        let (p_small, _) = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert!((p_small - 0.0119).abs() < 0.001, "{p_small}");
    }

    #[test]
    fn normal_cdf_is_accurate() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }
}
