//! Schedules: how many requests are in flight (closed loop) or when each
//! one arrives (open loop, Poisson, constant or gamma inter-arrival times).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};

/// Inter-arrival distribution of an open-loop schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Equal gaps of 1/rate.
    Constant,
    /// Gamma gaps with shape = burstiness (below 1 burstier than Poisson,
    /// above 1 more regular; 1 is Poisson), mean 1/rate.
    Gamma { burstiness: f64 },
}

/// When requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `concurrency` agents, each sending its next request the moment its
    /// previous one ends: exactly that many in flight.
    Closed { concurrency: u32 },
    /// Requests arrive at `rate` per second whatever the server does; at most
    /// `max_concurrency` in flight when set (waiting shows as client queue
    /// time, never hidden).
    Open { rate: f64, arrival: Arrival, max_concurrency: Option<u32> },
}

impl Schedule {
    pub fn describe(&self) -> String {
        match self {
            Schedule::Closed { concurrency } => format!("closed loop, concurrency {concurrency}"),
            Schedule::Open { rate, arrival, max_concurrency } => {
                let a = match arrival {
                    Arrival::Poisson => "poisson".to_string(),
                    Arrival::Constant => "constant".to_string(),
                    Arrival::Gamma { burstiness } => format!("gamma, burstiness {burstiness}"),
                };
                match max_concurrency {
                    Some(m) => format!("open loop, {rate} req/s ({a}), at most {m} in flight"),
                    None => format!("open loop, {rate} req/s ({a})"),
                }
            }
        }
    }

    /// The concurrency the steady state is defined by (closed loop only).
    pub fn target_concurrency(&self) -> Option<u32> {
        match self {
            Schedule::Closed { concurrency } => Some(*concurrency),
            Schedule::Open { .. } => None,
        }
    }
}

/// Seeded generator of arrival instants (seconds from the schedule's start).
pub struct ArrivalTimes {
    rate: f64,
    arrival: Arrival,
    rng: ChaCha8Rng,
    next: f64,
    /// Arrivals handed out so far.
    count: u64,
}

impl ArrivalTimes {
    /// `rate` must be positive and finite (checked by the caller's parser).
    pub fn new(rate: f64, arrival: Arrival, seed: u64) -> ArrivalTimes {
        ArrivalTimes { rate, arrival, rng: ChaCha8Rng::seed_from_u64(seed), next: 0.0, count: 0 }
    }

    fn gap(&mut self) -> f64 {
        let mean = 1.0 / self.rate;
        match self.arrival {
            Arrival::Constant => mean,
            Arrival::Poisson => Exp::new(self.rate).map(|d| d.sample(&mut self.rng)).unwrap_or(mean),
            Arrival::Gamma { burstiness } => {
                Gamma::new(burstiness, mean / burstiness).map(|d| d.sample(&mut self.rng)).unwrap_or(mean)
            }
        }
    }
}

impl Iterator for ArrivalTimes {
    type Item = f64;
    /// The first request arrives at 0; each later one a random gap after.
    fn next(&mut self) -> Option<f64> {
        let t = self.next;
        self.count += 1;
        // Constant gaps are counted, not summed, so arrival n is exactly
        // n / rate (a stage of 0.5 s at 60/s holds 30, not 31).
        self.next = match self.arrival {
            Arrival::Constant => self.count as f64 / self.rate,
            _ => self.next + self.gap(),
        };
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(arrival: Arrival, n: usize) -> Vec<f64> {
        let t: Vec<f64> = ArrivalTimes::new(10.0, arrival, 7).take(n + 1).collect();
        t.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn mean_cv(g: &[f64]) -> (f64, f64) {
        let m = g.iter().sum::<f64>() / g.len() as f64;
        let sd = (g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64).sqrt();
        (m, sd / m)
    }

    #[test]
    fn arrivals_have_the_right_rate_and_shape() {
        let (m, cv) = mean_cv(&gaps(Arrival::Constant, 1000));
        assert!((m - 0.1).abs() < 1e-12 && cv < 1e-9);
        // Exponential: coefficient of variation 1.
        let (m, cv) = mean_cv(&gaps(Arrival::Poisson, 20000));
        assert!((m - 0.1).abs() < 0.003, "{m}");
        assert!((cv - 1.0).abs() < 0.03, "{cv}");
        // Gamma with shape k: CV = 1/sqrt(k).
        let (m, cv) = mean_cv(&gaps(Arrival::Gamma { burstiness: 0.25 }, 20000));
        assert!((m - 0.1).abs() < 0.005, "{m}");
        assert!((cv - 2.0).abs() < 0.1, "{cv}");
    }

    #[test]
    fn arrivals_are_seeded() {
        let a: Vec<f64> = ArrivalTimes::new(3.0, Arrival::Poisson, 1).take(50).collect();
        let b: Vec<f64> = ArrivalTimes::new(3.0, Arrival::Poisson, 1).take(50).collect();
        let c: Vec<f64> = ArrivalTimes::new(3.0, Arrival::Poisson, 2).take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a[0], 0.0);
    }
}
