//! The background sampler: a tokio task that reads a meter at a fixed rate
//! into an [`EnergyTimeline`] until stopped; and the idle baseline.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::timeline::{EnergySample, EnergyTimeline};
use super::{EnergyMeter, MeterError};

/// A running sampler. Dropping it without `stop` aborts the task.
pub struct EnergySampler {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<(EnergyTimeline, Box<dyn EnergyMeter>)>>,
}

impl EnergySampler {
    /// Starts reading `meter` every `interval`; sample times are seconds
    /// since `origin` (the run's clock, so windows line up with requests).
    pub fn start(mut meter: Box<dyn EnergyMeter>, interval: Duration, origin: Instant) -> EnergySampler {
        let interval = interval.max(Duration::from_millis(10));
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut timeline =
                EnergyTimeline::new(meter.kind(), meter.description(), meter.provenance(), interval.as_secs_f64());
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => sample_once(meter.as_mut(), &mut timeline, origin).await,
                    _ = &mut stop_rx => {
                        // A last reading so the timeline reaches the stop.
                        sample_once(meter.as_mut(), &mut timeline, origin).await;
                        break;
                    }
                }
            }
            timeline.description = meter.description();
            (timeline, meter)
        });
        EnergySampler { stop: Some(stop_tx), task: Some(task) }
    }

    /// Stops the task and returns the timeline and the meter (to reuse).
    pub async fn stop(mut self) -> Result<(EnergyTimeline, Box<dyn EnergyMeter>), MeterError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| MeterError::Sampler(e.to_string())),
            None => Err(MeterError::Sampler("the sampler was already stopped".into())),
        }
    }
}

impl Drop for EnergySampler {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn sample_once(meter: &mut dyn EnergyMeter, timeline: &mut EnergyTimeline, origin: Instant) {
    let result = meter.read().await;
    let at_s = Instant::now().saturating_duration_since(origin).as_secs_f64();
    match result {
        Ok(r) => timeline.samples.push(EnergySample { at_s, power_w: r.power_w, energy_j: r.energy_j }),
        Err(e) => {
            timeline.failed_reads += 1;
            timeline.last_error = Some(e.to_string());
        }
    }
}

/// Idle power measured before a run.
#[derive(Debug, Clone)]
pub struct IdleBaseline {
    pub mean_power_w: Option<f64>,
    pub timeline: EnergyTimeline,
}

/// Samples `meter` for `duration` with nothing running and returns the mean
/// power, and the meter back for the run.
pub async fn measure_idle(
    meter: Box<dyn EnergyMeter>,
    duration: Duration,
    interval: Duration,
) -> Result<(IdleBaseline, Box<dyn EnergyMeter>), MeterError> {
    let origin = Instant::now();
    let sampler = EnergySampler::start(meter, interval, origin);
    tokio::time::sleep(duration).await;
    let (timeline, meter) = sampler.stop().await?;
    let mean_power_w = timeline.span().and_then(|(a, b)| timeline.mean_power_w(a, b));
    Ok((IdleBaseline { mean_power_w, timeline }, meter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::{MeterFuture, MeterKind, MeterReading};

    /// A scripted meter: 100 W, every third read fails.
    struct Flaky {
        reads: u32,
    }

    impl EnergyMeter for Flaky {
        fn kind(&self) -> MeterKind {
            MeterKind::Modelled
        }
        fn description(&self) -> String {
            format!("flaky after {} reads", self.reads)
        }
        fn read(&mut self) -> MeterFuture<'_> {
            self.reads += 1;
            let n = self.reads;
            Box::pin(async move {
                if n.rem_euclid(3) == 0 {
                    Err(MeterError::Read { meter: "test", why: format!("read {n} dropped") })
                } else {
                    Ok(MeterReading { power_w: Some(100.0), energy_j: None })
                }
            })
        }
    }

    #[tokio::test]
    async fn failed_reads_are_counted_and_bridged() {
        let origin = Instant::now();
        let sampler = EnergySampler::start(Box::new(Flaky { reads: 0 }), Duration::from_millis(15), origin);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (timeline, meter) = sampler.stop().await.unwrap();
        let total_reads = timeline.samples.len() as u64 + timeline.failed_reads;
        assert!(timeline.failed_reads >= 1, "{timeline:?}");
        assert_eq!(timeline.failed_reads, total_reads / 3);
        assert!(timeline.last_error.as_deref().unwrap_or("").contains("dropped"));
        assert!(meter.description().contains(&format!("after {total_reads} reads")));
        // Samples are in time order and the constant 100 W integrates exactly.
        assert!(timeline.samples.windows(2).all(|w| w[0].at_s <= w[1].at_s));
        let (a, b) = timeline.span().unwrap();
        let e = timeline.energy_between(a, b, 1.0).unwrap();
        assert!((e.joules - 100.0 * (b - a)).abs() < 1e-9);
    }
}
