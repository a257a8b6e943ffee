//! The AIMD decision, kept free of clocks and semaphores so that it can be
//! tested with synthetic instants: the limiter passes `now` in and applies
//! the returned [`Change`].

use std::time::Duration;

use tokio::time::Instant;

use super::{AdaptiveSettings, Signal};

/// What the limiter must do to its semaphore after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    None,
    /// The limit went up by one.
    Increased,
    /// The limit went down by this many.
    Decreased(usize),
}

/// The long-run RTT, in seconds: an EWMA of each window's mean, and an EWMA
/// of how far each window's mean fell from it (TCP's SRTT and RTTVAR).
#[derive(Clone, Copy, Debug)]
struct LongRun {
    mean: f64,
    deviation: f64,
}

/// What the current window has seen so far.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    rtt_sum: Duration,
    samples: u32,
    backpressure: bool,
    /// In-flight requests reached the limit: only then is the limit the
    /// constraint, and a healthy window evidence that more would be fine.
    reached_limit: bool,
}

impl Window {
    fn mean(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.rtt_sum.as_secs_f64() / f64::from(self.samples))
    }
}

/// Vector's ARC controller: one judgement per window of about one RTT.
#[derive(Debug)]
pub(super) struct Controller {
    settings: AdaptiveSettings,
    /// False for a fixed limit: the RTT is still tracked for the metrics.
    adjusts: bool,
    limit: usize,
    window: Window,
    /// When the current window closes; `None` until the first response,
    /// which closes the first window whenever it comes.
    window_end: Option<Instant>,
    long_run: Option<LongRun>,
    increases: u64,
    decreases: u64,
    backpressure: u64,
}

impl Controller {
    /// An adaptive controller; `settings` must already be sanitized.
    pub(super) fn adaptive(settings: AdaptiveSettings) -> Controller {
        Controller::new(settings, settings.initial_limit, true)
    }

    /// A controller that never moves the limit from `limit`.
    pub(super) fn fixed(limit: usize) -> Controller {
        Controller::new(AdaptiveSettings::default(), limit, false)
    }

    fn new(settings: AdaptiveSettings, limit: usize, adjusts: bool) -> Controller {
        Controller {
            settings,
            adjusts,
            limit,
            window: Window::default(),
            window_end: None,
            long_run: None,
            increases: 0,
            decreases: 0,
            backpressure: 0,
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn increases(&self) -> u64 {
        self.increases
    }

    pub(super) fn decreases(&self) -> u64 {
        self.decreases
    }

    pub(super) fn backpressure(&self) -> u64 {
        self.backpressure
    }

    /// The long-run mean RTT, once there has been a sample.
    pub(super) fn rtt_mean(&self) -> Option<Duration> {
        self.long_run
            .and_then(|l| Duration::try_from_secs_f64(l.mean).ok())
    }

    /// A request started; `in_flight` counts it.
    pub(super) fn on_start(&mut self, in_flight: usize) {
        if in_flight >= self.limit {
            self.window.reached_limit = true;
        }
    }

    /// A request finished at `now` after `rtt`; `in_flight` no longer counts
    /// it. Closes the window if it is over.
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        rtt: Duration,
        signal: Signal,
        in_flight: usize,
    ) -> Change {
        match signal {
            Signal::Ok => {
                self.window.rtt_sum = self.window.rtt_sum.saturating_add(rtt);
                self.window.samples = self.window.samples.saturating_add(1);
            }
            Signal::Backpressure => {
                self.window.backpressure = true;
                self.backpressure += 1;
            }
            Signal::Failed => {}
        }
        if self.window_end.is_some_and(|end| now < end) {
            return Change::None;
        }

        let current = self.window.mean();
        let change = if self.adjusts {
            self.judge(current)
        } else {
            Change::None
        };
        if let Some(current) = current {
            self.long_run = Some(match self.long_run {
                None => LongRun {
                    mean: current,
                    deviation: 0.0,
                },
                Some(LongRun { mean, deviation }) => {
                    let alpha = self.settings.ewma_alpha;
                    // The deviation is measured against the mean *before*
                    // this window, as TCP does: it is the prediction error.
                    LongRun {
                        mean: mean + alpha * (current - mean),
                        deviation: deviation + alpha * ((current - mean).abs() - deviation),
                    }
                }
            });
        }
        // The next window lasts one long-run RTT, so that it holds about one
        // round of the requests started under the new limit. Before any
        // sample, this response's own time is the best guess.
        let length = self.rtt_mean().unwrap_or(rtt);
        self.window_end = Some(now + length);
        self.window = Window {
            // Requests still out at the limit make the limit binding in the
            // new window too, even if none starts during it.
            reached_limit: in_flight >= self.limit,
            ..Window::default()
        };
        change
    }

    /// The decision at a window's end, given the window's mean RTT.
    fn judge(&mut self, current: Option<f64>) -> Change {
        let slow = match (current, self.long_run) {
            (Some(current), Some(LongRun { mean, deviation })) => {
                current > mean + self.settings.rtt_deviation_scale * deviation
            }
            _ => false,
        };
        if self.window.backpressure || slow {
            // `as` floors (and saturates), and the ratio is below 1, so the
            // new limit is strictly lower unless it is already 1.
            let lower = ((self.limit as f64 * self.settings.decrease_ratio) as usize).max(1);
            if lower < self.limit {
                let by = self.limit - lower;
                self.limit = lower;
                self.decreases += 1;
                return Change::Decreased(by);
            }
            return Change::None;
        }
        // Grow only on evidence: a window in which the limit was what held
        // us back, and whose RTT was no worse than the long-run mean. Within
        // the deviation band but above the mean is a hold, not a grow (as in
        // Vector): otherwise the mean would follow a slowly rising RTT up and
        // the limit with it, never tripping the band.
        let not_slower = match (current, self.long_run) {
            (Some(current), Some(LongRun { mean, .. })) => current <= mean,
            _ => false,
        };
        if not_slower && self.window.reached_limit && self.limit < self.settings.max_limit {
            self.limit += 1;
            self.increases += 1;
            return Change::Increased;
        }
        Change::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(10);

    /// A controller and a synthetic clock.
    struct Sim {
        controller: Controller,
        now: Instant,
    }

    impl Sim {
        fn new(settings: AdaptiveSettings) -> Sim {
            Sim {
                controller: Controller::adaptive(settings),
                now: Instant::now(),
            }
        }

        fn limit(&self) -> usize {
            self.controller.limit()
        }

        /// One window: a request start reaching `peak` in flight, then one
        /// response per signal, each sampling `rtt`. All but the last come
        /// just after the window began; the last comes after `rtt` or at the
        /// window's end, whichever is later, and so closes the window.
        fn window(&mut self, peak: usize, rtt: Duration, signals: &[Signal]) -> Vec<Change> {
            let (last, early) = signals.split_last().expect("at least one signal");
            self.controller.on_start(peak);
            let began = self.now;
            let mut changes: Vec<Change> = early
                .iter()
                .map(|&signal| {
                    let soon = began + Duration::from_nanos(1);
                    self.controller.on_response(soon, rtt, signal, 0)
                })
                .collect();
            self.now = (began + rtt).max(self.controller.window_end.unwrap_or(began));
            changes.push(self.controller.on_response(self.now, rtt, *last, 0));
            changes
        }

        /// A window at the limit whose only response is `Ok` after `rtt`.
        fn busy(&mut self, rtt: Duration) -> Change {
            let peak = self.limit();
            self.window(peak, rtt, &[Signal::Ok])[0]
        }
    }

    fn settings(initial_limit: usize, max_limit: usize) -> AdaptiveSettings {
        AdaptiveSettings {
            initial_limit,
            max_limit,
            ..AdaptiveSettings::default()
        }
    }

    #[test]
    fn the_first_response_closes_the_first_window_without_growth() {
        let mut sim = Sim::new(settings(1, 10));
        assert_eq!(sim.controller.rtt_mean(), None);
        assert_eq!(sim.busy(RTT), Change::None);
        assert_eq!(sim.limit(), 1);
        assert_eq!(sim.controller.rtt_mean(), Some(RTT));
    }

    #[test]
    fn steady_rtt_at_the_limit_grows_by_one_per_window_up_to_max_limit() {
        let mut sim = Sim::new(settings(1, 5));
        sim.busy(RTT);
        let limits: Vec<usize> = (0..8)
            .map(|_| {
                sim.busy(RTT);
                sim.limit()
            })
            .collect();
        assert_eq!(limits, [2, 3, 4, 5, 5, 5, 5, 5]);
        assert_eq!(sim.controller.increases(), 4);
        assert_eq!(sim.controller.decreases(), 0);
    }

    #[test]
    fn responses_inside_a_window_do_not_adjust() {
        let mut sim = Sim::new(settings(1, 100));
        sim.busy(RTT);
        let began = sim.now;
        sim.controller.on_start(1);
        // Ten responses before one long-run RTT has passed.
        for step in 1..=10 {
            let at = began + RTT * step / 11;
            let change = sim.controller.on_response(at, RTT, Signal::Ok, 0);
            assert_eq!(change, Change::None, "response {step}");
        }
        assert_eq!(sim.limit(), 1);
        // The first response at the window's end closes it.
        let change = sim.controller.on_response(began + RTT, RTT, Signal::Ok, 0);
        assert_eq!(change, Change::Increased);
        assert_eq!(sim.limit(), 2);
    }

    #[test]
    fn no_growth_when_in_flight_never_reached_the_limit() {
        let mut sim = Sim::new(settings(4, 100));
        for _ in 0..10 {
            sim.window(3, RTT, &[Signal::Ok]);
        }
        assert_eq!(sim.limit(), 4);
        assert_eq!(sim.controller.increases(), 0);
    }

    #[test]
    fn requests_held_at_the_limit_across_a_window_end_count_as_reaching_it() {
        for (held, expected) in [(9, Change::Increased), (8, Change::None)] {
            let mut sim = Sim::new(settings(10, 100));
            sim.busy(RTT);
            // A window closes on backpressure (10 → 9) with `held` still out...
            sim.controller.on_start(10);
            sim.now += RTT;
            let change = sim
                .controller
                .on_response(sim.now, RTT, Signal::Backpressure, held);
            assert_eq!(change, Change::Decreased(1));
            // ...and in the next window no request starts: whether it may
            // grow depends only on whether those held filled the new limit.
            sim.now += RTT;
            let change = sim.controller.on_response(sim.now, RTT, Signal::Ok, 0);
            assert_eq!(change, expected, "{held} held at limit 9");
        }
    }

    #[test]
    fn an_rtt_jump_above_the_deviation_band_decreases_by_the_ratio() {
        let mut sim = Sim::new(settings(1, 100));
        for _ in 0..10 {
            sim.busy(RTT);
        }
        assert_eq!(sim.limit(), 10);
        // Steady samples leave no deviation: any slower window is "slow".
        assert_eq!(sim.busy(RTT * 2), Change::Decreased(1));
        assert_eq!(sim.limit(), 9, "floor(10 × 0.9)");
        assert_eq!(sim.controller.decreases(), 1);
        // The slow window moved the mean and widened the band.
        let mean = sim.controller.rtt_mean().unwrap();
        assert!(mean > RTT && mean < RTT * 2, "{mean:?}");
    }

    #[test]
    fn above_the_mean_within_the_band_holds_and_at_or_below_it_grows() {
        let mut sim = Sim::new(AdaptiveSettings {
            decrease_ratio: 0.5,
            ..settings(1, 100)
        });
        sim.busy(RTT);
        // Alternating 10 ms and 12 ms windows build a deviation: the first
        // 12 ms ones are out of band and lower the limit, later ones hold.
        for _ in 0..20 {
            sim.busy(RTT);
            sim.busy(Duration::from_millis(12));
        }
        assert!(
            sim.controller.decreases() >= 1,
            "the first 12 ms window was out of band"
        );
        let limit = sim.limit();
        let mean = sim.controller.rtt_mean().unwrap();
        assert!(mean > RTT && mean < Duration::from_millis(12), "{mean:?}");
        // Slower than the mean but inside the band: no decrease, no growth,
        // so a slowly rising RTT cannot walk the limit up.
        assert_eq!(sim.busy(Duration::from_millis(12)), Change::None);
        assert_eq!(sim.limit(), limit);
        // Faster than the mean: growth.
        assert_eq!(sim.busy(RTT), Change::Increased);
        assert_eq!(sim.limit(), limit + 1);
        // Far slower: out of band again, and the ratio is 0.5.
        let grown = sim.limit();
        assert_eq!(sim.busy(RTT * 3), Change::Decreased(grown - grown / 2));
        assert_eq!(sim.limit(), grown / 2);
    }

    #[test]
    fn backpressure_decreases_even_with_a_steady_rtt() {
        let mut sim = Sim::new(settings(20, 100));
        sim.busy(RTT);
        assert_eq!(sim.limit(), 20);
        let changes = sim.window(20, RTT, &[Signal::Ok, Signal::Backpressure]);
        assert_eq!(changes, [Change::None, Change::Decreased(2)]);
        assert_eq!(sim.limit(), 18);
        assert_eq!(sim.controller.backpressure(), 1);
    }

    #[test]
    fn backpressure_never_takes_the_limit_below_one() {
        let mut sim = Sim::new(settings(3, 100));
        let limits: Vec<usize> = (0..6)
            .map(|_| {
                sim.window(3, RTT, &[Signal::Backpressure]);
                sim.limit()
            })
            .collect();
        assert_eq!(limits, [2, 1, 1, 1, 1, 1]);
        assert_eq!(
            sim.controller.decreases(),
            2,
            "staying at 1 is not a decrease"
        );
        assert_eq!(sim.controller.backpressure(), 6);
    }

    #[test]
    fn at_most_one_decrease_per_window() {
        let mut sim = Sim::new(settings(50, 100));
        sim.busy(RTT);
        // A burst of backpressure inside one window, then the window's end.
        sim.now += RTT / 2;
        for _ in 0..30 {
            let change = sim
                .controller
                .on_response(sim.now, RTT / 2, Signal::Backpressure, 0);
            assert_eq!(change, Change::None);
        }
        sim.now += RTT / 2;
        let change = sim
            .controller
            .on_response(sim.now, RTT, Signal::Backpressure, 0);
        assert_eq!(change, Change::Decreased(5));
        assert_eq!((sim.limit(), sim.controller.decreases()), (45, 1));
    }

    #[test]
    fn failed_responses_are_neither_samples_nor_overload() {
        let mut sim = Sim::new(settings(5, 100));
        sim.busy(RTT);
        for _ in 0..5 {
            let changes = sim.window(5, RTT * 10, &[Signal::Failed]);
            assert_eq!(changes, [Change::None]);
        }
        assert_eq!(sim.limit(), 5);
        assert_eq!(
            sim.controller.rtt_mean(),
            Some(RTT),
            "slow failures are no sample"
        );
    }

    #[test]
    fn a_fixed_limit_never_moves_but_tracks_the_rtt() {
        let mut controller = Controller::fixed(4);
        let mut now = Instant::now();
        for signal in [
            Signal::Ok,
            Signal::Backpressure,
            Signal::Ok,
            Signal::Backpressure,
        ] {
            controller.on_start(4);
            now += RTT;
            assert_eq!(controller.on_response(now, RTT, signal, 4), Change::None);
        }
        assert_eq!(controller.limit(), 4);
        assert_eq!((controller.increases(), controller.decreases()), (0, 0));
        assert_eq!(controller.backpressure(), 2);
        assert_eq!(controller.rtt_mean(), Some(RTT));
    }
}
