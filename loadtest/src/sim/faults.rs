//! Fault injection: per-request latency, 5xx and 429 answers at a rate,
//! watches cut after a while. Knobs are atomics so tests and load tests can
//! turn them at run time; all off by default.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::error::ApiError;

/// What to do to one request.
pub enum Fault {
    /// Serve it.
    None,
    /// Answer with this error instead.
    Error(ApiError),
}

/// The knobs. Rates are in parts per million of requests.
#[derive(Debug, Default)]
pub struct Faults {
    latency_us: AtomicU64,
    error_5xx_ppm: AtomicU32,
    error_429_ppm: AtomicU32,
    watch_drop_after_ms: AtomicU64,
    rng: AtomicU64,
}

impl Faults {
    /// Adds `d` before every API request.
    pub fn set_latency(&self, d: Duration) {
        self.latency_us.store(
            d.as_micros().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Answers this fraction (0.0–1.0) of non-watch requests with 500.
    pub fn set_error_rate(&self, fraction: f64) {
        self.error_5xx_ppm.store(ppm(fraction), Ordering::Relaxed);
    }

    /// Answers this fraction of non-watch requests with 429 and `Retry-After: 1`.
    pub fn set_throttle_rate(&self, fraction: f64) {
        self.error_429_ppm.store(ppm(fraction), Ordering::Relaxed);
    }

    /// Cuts every watch after `d` (`None`: watches run to their timeout).
    pub fn set_watch_drop_after(&self, d: Option<Duration>) {
        let ms = d.map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX).max(1));
        self.watch_drop_after_ms.store(ms, Ordering::Relaxed);
    }

    /// The knobs as JSON (`GET /kube-sim/v1/faults`).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "latencyMs": self.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
            "errorRate": f64::from(self.error_5xx_ppm.load(Ordering::Relaxed)) / 1e6,
            "throttleRate": f64::from(self.error_429_ppm.load(Ordering::Relaxed)) / 1e6,
            "watchDropAfterMs": self.watch_drop_after_ms.load(Ordering::Relaxed),
        })
    }

    /// When watches are cut, if they are.
    pub fn watch_drop_after(&self) -> Option<Duration> {
        match self.watch_drop_after_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Applies latency, then decides whether the request fails.
    /// `can_fail` is false for watches, which are cut instead.
    pub async fn before_request(&self, can_fail: bool) -> Fault {
        let lat = self.latency_us.load(Ordering::Relaxed);
        if lat > 0 {
            tokio::time::sleep(Duration::from_micros(lat)).await;
        }
        if !can_fail {
            return Fault::None;
        }
        let e5 = self.error_5xx_ppm.load(Ordering::Relaxed);
        let e4 = self.error_429_ppm.load(Ordering::Relaxed);
        if e5 == 0 && e4 == 0 {
            return Fault::None;
        }
        let roll = (self.next_random() % 1_000_000) as u32;
        if roll < e5 {
            Fault::Error(ApiError::internal("kube-sim: injected fault"))
        } else if roll < e5.saturating_add(e4) {
            Fault::Error(ApiError::too_many_requests())
        } else {
            Fault::None
        }
    }

    /// splitmix64 over an atomic counter: cheap, lock-free, good enough for rates.
    fn next_random(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn ppm(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * 1_000_000.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rates_are_roughly_honoured() {
        let f = Faults::default();
        f.set_error_rate(0.1);
        f.set_throttle_rate(0.1);
        let mut e5 = 0;
        let mut e4 = 0;
        for _ in 0..10_000 {
            match f.before_request(true).await {
                Fault::Error(e) if e.code == 500 => e5 += 1,
                Fault::Error(_) => e4 += 1,
                Fault::None => {}
            }
        }
        assert!((800..1200).contains(&e5), "{e5}");
        assert!((800..1200).contains(&e4), "{e4}");
        assert!(matches!(f.before_request(false).await, Fault::None));
    }
}
