//! The byte budget of page bodies (`harvester.body_budget`): how many bytes of Monitor pages may
//! be read, decoded, mapped, encoded and waiting for the output at once, over all tenants. It
//! is what bounds the harvester's memory, whatever the number of tenants, of requests waiting
//! on Citrix, or the slowness of the output.
//!
//! Deadlock-free by construction: a [`Reservation`] is taken in one piece ([`Budget::reserve`]
//! waits for the whole amount atomically, in FIFO order), and at most **one** reservation at a
//! time may wait for more while holding what it has ([`Reservation::grow`], behind the budget's
//! grower turn, for at most [`GROW_WAIT`]); every other holder is reading, decoding or writing
//! and none waits for budget, so the grower gets its bytes once they are released — unless a
//! reservation queued ahead of it (the queue is FIFO) needs more than the grower leaves free,
//! which the time limit resolves. A reader whose body outgrows
//! its reservation while another grower waits gives everything back, waits for the larger
//! amount holding nothing, and reads the page again (the caller's refetch). It owns nothing else: which request holds what, and for how long, is the
//! caller's decision (the Monitor client reserves a page's body; the walk keeps the reservation
//! until the output acknowledged the page's points).
//!
//! Pages on order are bounded as well ([`Budget::order`]): a request takes an [`Order`] for the
//! bytes its page is expected to need before it is sent, and keeps it until its answer holds
//! its reservation. Without that bound, a thousand tenants whose requests went out while the
//! budget had room would all come back to a full budget, and each answer waiting for its share
//! holds its connection and what the HTTP client has read of it: memory the budget does not
//! count (1.2 GB with 5,000 tenants). The bound follows the budget's turnover, like a
//! congestion window: it starts at [`ORDER_START`] budgets; it grows by an eighth when a request
//! waits for an order while the budget has room (Citrix's latency, not processing, is what
//! limits), an eighth of the bound came back since the last change and the budget stayed at
//! most half full meanwhile (a busy period is observed for a whole bound's worth of orders
//! before it is forgotten); it shrinks by
//! an eighth when an answer had to wait [`ANSWER_WAIT_SLOW`] or more for its share (more is on
//! order than the budget takes); between one and [`ORDER_MAX`] budgets, at most once per
//! [`ORDER_ADJUST_EVERY`]. Waiting for an order holds nothing, so it cannot deadlock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How long the one grower may wait for more before it gives everything back.
pub const GROW_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The bound of bytes on order (asked for, answer not yet holding its reservation) starts at
/// this many budgets: one budget's worth waits on Citrix while another is processed.
pub const ORDER_START: usize = 2;

/// ... and adapts between one budget and this many (a second of Citrix latency against pages
/// processed in milliseconds needs many on order to keep the budget busy).
pub const ORDER_MAX: usize = 16;

/// What an order counts at least, whatever its page: a request and the connection that waits for
/// its answer cost a few KiB even when the page is small.
pub const ORDER_FLOOR: usize = 16 << 10;

/// An answer that waited this long for its share lowers the bound of bytes on order.
pub const ANSWER_WAIT_SLOW: std::time::Duration = std::time::Duration::from_secs(1);

/// At most one adjustment of the bound of bytes on order per this long.
pub const ORDER_ADJUST_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Counters of a budget, for `/metrics`.
#[derive(Debug, Default)]
pub struct BudgetStats {
    /// Reservations that had to wait for bytes another page held.
    pub waits: AtomicU64,
    /// Pages read again because their body outgrew what could be reserved at the time.
    pub refetches: AtomicU64,
    /// The most bytes ever reserved at once (never above the budget).
    pub peak: AtomicU64,
    /// Requests that waited for an order because pages on order had reached their bound.
    pub order_waits: AtomicU64,
}

/// The budget shared by every tenant of a process.
#[derive(Debug)]
pub struct Budget {
    total: usize,
    sem: Arc<Semaphore>,
    /// Bytes of pages on order (see [`Budget::order`]).
    orders: Arc<Semaphore>,
    /// The bound now, between `total` and `order_max`; changed only under `order_adjusted`.
    order_limit: AtomicUsize,
    order_max: usize,
    /// Bytes on order now.
    on_order: AtomicUsize,
    /// Bytes the bound was lowered by that were on order at the time: orders given back pay
    /// them off instead of returning their permits.
    order_debt: AtomicUsize,
    /// Bytes of orders given back since the bound last changed, of orders placed since: it
    /// grows only after an eighth of it turned over (at start-up the budget has room only
    /// because the first answers are still on their way), so at most once per round trip.
    order_turned: AtomicUsize,
    /// How many times the bound changed: an order placed before the last change neither
    /// counts towards the next growth nor, waiting for the budget, lowers the bound again (the
    /// change was made with it on order).
    order_epoch: AtomicU64,
    /// The most bytes reserved at once since the bound last changed (or since a whole bound's
    /// worth of orders came back while the budget was busy): the bound grows only while this
    /// stayed at most half the budget, so a single burst does not open the gate.
    busy_since: AtomicUsize,
    /// When the bound last changed, and how soon it may change again.
    order_adjusted: std::sync::Mutex<Option<std::time::Instant>>,
    order_every: std::time::Duration,
    /// Held by the one reservation that may wait for more while holding some.
    grower: tokio::sync::Mutex<()>,
    pub stats: BudgetStats,
}

/// What the budget says at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetSnapshot {
    pub total: u64,
    pub in_use: u64,
    pub peak: u64,
    pub waits: u64,
    pub refetches: u64,
    /// Bytes of pages on order now, their bound, and the requests that waited for one.
    pub on_order: u64,
    pub order_limit: u64,
    pub order_waits: u64,
}

impl Budget {
    /// A budget of `total` bytes (at least 1, at most `u32::MAX`: a reservation is one
    /// semaphore acquisition).
    pub fn new(total: usize) -> Arc<Budget> {
        let total = total.clamp(1, u32::MAX as usize);
        let order_limit = total.saturating_mul(ORDER_START);
        Arc::new(Budget {
            total,
            sem: Arc::new(Semaphore::new(total)),
            orders: Arc::new(Semaphore::new(order_limit)),
            order_limit: AtomicUsize::new(order_limit),
            order_max: total.saturating_mul(ORDER_MAX),
            on_order: AtomicUsize::new(0),
            order_debt: AtomicUsize::new(0),
            order_turned: AtomicUsize::new(0),
            order_epoch: AtomicU64::new(0),
            busy_since: AtomicUsize::new(0),
            order_adjusted: std::sync::Mutex::new(None),
            order_every: ORDER_ADJUST_EVERY,
            grower: tokio::sync::Mutex::new(()),
            stats: BudgetStats::default(),
        })
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.total - self.sem.available_permits().min(self.total)
    }

    /// Whether `bytes` could not be reserved right now without waiting (someone already
    /// waits, or too little is free).
    pub fn congested(&self, bytes: usize) -> bool {
        self.sem.available_permits() < bytes.clamp(1, self.total)
    }

    pub fn snapshot(&self) -> BudgetSnapshot {
        BudgetSnapshot {
            total: self.total as u64,
            in_use: self.in_use() as u64,
            peak: self.stats.peak.load(Ordering::Relaxed),
            waits: self.stats.waits.load(Ordering::Relaxed),
            refetches: self.stats.refetches.load(Ordering::Relaxed),
            on_order: self.on_order() as u64,
            order_limit: self.order_limit() as u64,
            order_waits: self.stats.order_waits.load(Ordering::Relaxed),
        }
    }

    /// Bytes of pages on order now.
    pub fn on_order(&self) -> usize {
        self.on_order.load(Ordering::Relaxed)
    }

    /// The bound of bytes on order now.
    pub fn order_limit(&self) -> usize {
        self.order_limit.load(Ordering::Relaxed)
    }

    /// An order for a page expected to need `bytes` (at least [`ORDER_FLOOR`], at most one
    /// budget, so that it fits the lowest bound), waiting in FIFO order while pages on order are
    /// at their bound. Taken before the request is sent, dropped once its answer holds a
    /// reservation (or failed). The caller may hold reservations of earlier pages: those wait
    /// for the output, never for an order.
    pub async fn order(self: &Arc<Self>, bytes: usize) -> Order {
        let n = bytes.max(ORDER_FLOOR).min(self.total);
        let permit = match self.orders.clone().try_acquire_many_owned(n as u32) {
            Ok(p) => p,
            Err(_) => {
                self.stats.order_waits.fetch_add(1, Ordering::Relaxed);
                if !self.congested(n) {
                    // The budget could take this page now: orders, not processing, limit.
                    self.adjust_orders(true);
                }
                self.orders
                    .clone()
                    .acquire_many_owned(n as u32)
                    .await
                    .expect("the budget's order semaphore is never closed")
            }
        };
        self.on_order.fetch_add(n, Ordering::Relaxed);
        Order {
            permit: Some(permit),
            budget: self.clone(),
            epoch: self.order_epoch.load(Ordering::Relaxed),
        }
    }

    /// The share of an answer that found the budget full, waiting for it up to `max_wait`
    /// (`None` after that). An answer that waited [`ANSWER_WAIT_SLOW`] or more says that more
    /// is on order than the budget takes: the bound on order comes down, unless the answer
    /// was ordered before the bound last changed (`ordered_in`: its order's
    /// [`Order::epoch`]): that change was made with it on order. (Shorter waits are the
    /// bursts of a schedule's round minute, which the budget absorbs.)
    pub async fn reserve_answer(
        self: &Arc<Self>,
        bytes: usize,
        max_wait: std::time::Duration,
        ordered_in: Option<u64>,
    ) -> Option<Reservation> {
        let started = std::time::Instant::now();
        let got = tokio::time::timeout(max_wait, self.reserve(bytes)).await;
        self.answer_waited(started.elapsed(), ordered_in);
        got.ok()
    }

    fn answer_waited(&self, waited: std::time::Duration, ordered_in: Option<u64>) {
        let current = self.order_epoch.load(Ordering::Relaxed);
        if waited >= ANSWER_WAIT_SLOW && ordered_in.is_none_or(|e| e == current) {
            self.adjust_orders(false);
        }
    }

    /// Raises or lowers the bound of bytes on order by an eighth (within its limits), unless
    /// it changed less than [`ORDER_ADJUST_EVERY`] ago.
    fn adjust_orders(&self, up: bool) {
        let mut last = self
            .order_adjusted
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now < t + self.order_every) {
            return;
        }
        let limit = self.order_limit();
        let step = (limit / 8).max(ORDER_FLOOR);
        if up {
            let add = step.min(self.order_max.saturating_sub(limit));
            if add == 0 || !self.may_grow(limit, step) {
                return;
            }
            // Debt first: permits not yet taken back need not be handed out again.
            let owed = self.order_debt.load(Ordering::Relaxed).min(add);
            let paid = self
                .order_debt
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                    Some(d.saturating_sub(owed))
                })
                .map_or(0, |d| d.min(owed));
            self.orders.add_permits(add - paid);
            self.order_limit.store(limit + add, Ordering::Relaxed);
        } else {
            let cut = step.min(limit.saturating_sub(self.total));
            if cut == 0 {
                return;
            }
            let forgotten = self.orders.forget_permits(cut);
            self.order_debt
                .fetch_add(cut - forgotten, Ordering::Relaxed);
            self.order_limit.store(limit - cut, Ordering::Relaxed);
        }
        self.order_epoch.fetch_add(1, Ordering::Relaxed);
        self.start_period();
        *last = Some(now);
    }

    /// Starts a new observation period for the bound's growth: nothing came back in it yet,
    /// and its busiest moment so far is now.
    fn start_period(&self) {
        self.order_turned.store(0, Ordering::Relaxed);
        self.busy_since.store(self.in_use(), Ordering::Relaxed);
    }

    /// Whether the bound may grow: an eighth of it (`step`) came back since the last change,
    /// and the budget stayed at most half full meanwhile. A busy period is forgotten once a
    /// whole bound's worth came back after it (a new period starts), so that the bound is not
    /// stuck after a burst.
    fn may_grow(&self, limit: usize, step: usize) -> bool {
        let turned = self.order_turned.load(Ordering::Relaxed);
        if turned < step {
            return false;
        }
        if self.busy_since.load(Ordering::Relaxed) <= self.total / 2 {
            return true;
        }
        if turned >= limit {
            self.start_period();
        }
        false
    }

    /// `bytes` (capped at the whole budget, at least 1) now, or `None` without waiting.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let n = bytes.clamp(1, self.total);
        let permit = self.sem.clone().try_acquire_many_owned(n as u32).ok()?;
        Some(self.made(permit))
    }

    /// `bytes` (capped at the whole budget, at least 1), waiting in FIFO order until they are
    /// free. The caller must hold no other reservation (that is what keeps it deadlock-free).
    pub async fn reserve(self: &Arc<Self>, bytes: usize) -> Reservation {
        if let Some(r) = self.try_reserve(bytes) {
            return r;
        }
        self.stats.waits.fetch_add(1, Ordering::Relaxed);
        let n = bytes.clamp(1, self.total);
        let permit = self
            .sem
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .expect("the budget's semaphore is never closed");
        self.made(permit)
    }

    /// Waits, in line with the reservations, until `bytes` are free, and keeps nothing: for a
    /// caller that must not start work the budget cannot take now, but will only know later
    /// what that work needs (a request whose answer is a second away).
    pub async fn wait_for_room(self: &Arc<Self>, bytes: usize) {
        if self.congested(bytes) {
            drop(self.reserve(bytes).await);
        }
    }

    fn made(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Reservation {
        self.note_peak();
        Reservation {
            permit,
            budget: self.clone(),
        }
    }

    fn note_peak(&self) {
        let in_use = self.in_use();
        self.stats.peak.fetch_max(in_use as u64, Ordering::Relaxed);
        self.busy_since.fetch_max(in_use, Ordering::Relaxed);
    }
}

/// Bytes of a page on order (see [`Budget::order`]); given back when dropped, less what the
/// bound was lowered by in the meantime.
#[derive(Debug)]
pub struct Order {
    permit: Option<OwnedSemaphorePermit>,
    budget: Arc<Budget>,
    epoch: u64,
}

impl Order {
    /// How many times the bound had changed when this order was placed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for Order {
    fn drop(&mut self) {
        let Some(mut permit) = self.permit.take() else {
            return;
        };
        let n = permit.num_permits();
        self.budget.on_order.fetch_sub(n, Ordering::Relaxed);
        if self.epoch == self.budget.order_epoch.load(Ordering::Relaxed) {
            self.budget.order_turned.fetch_add(n, Ordering::Relaxed);
        }
        let paid = self
            .budget
            .order_debt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(n))
            })
            .map_or(0, |d| d.min(n));
        if paid == n {
            permit.forget();
        } else if let Some(part) = permit.split(paid) {
            part.forget();
        }
    }
}

/// Bytes of the budget held for one page; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    budget: Arc<Budget>,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.permit.num_permits()
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Grows to `bytes` (capped at the budget) if that many are free now; never waits.
    pub fn try_grow(&mut self, bytes: usize) -> bool {
        let want = bytes.min(self.budget.total);
        let have = self.bytes();
        if want <= have {
            return true;
        }
        match self
            .budget
            .sem
            .clone()
            .try_acquire_many_owned((want - have) as u32)
        {
            Ok(more) => {
                self.permit.merge(more);
                self.budget.note_peak();
                true
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => false,
        }
    }

    /// Grows to `bytes` (capped at the budget), waiting for them if this is the only
    /// reservation waiting to grow; `false` at once when another one is waiting already (the
    /// caller then gives everything back and waits holding nothing, see the module docs).
    pub async fn grow(&mut self, bytes: usize) -> bool {
        if self.try_grow(bytes) {
            return true;
        }
        let budget = self.budget.clone();
        let Ok(_turn) = budget.grower.try_lock() else {
            return false;
        };
        let want = bytes.min(budget.total);
        let have = self.bytes();
        if want <= have {
            return true;
        }
        budget.stats.waits.fetch_add(1, Ordering::Relaxed);
        // Bounded: the semaphore is FIFO, so a reservation queued ahead that needs more than
        // the grower leaves free would wait for the grower, and the grower for it.
        let more = budget.sem.clone().acquire_many_owned((want - have) as u32);
        match tokio::time::timeout(GROW_WAIT, more).await {
            Ok(Ok(more)) => {
                self.permit.merge(more);
                budget.note_peak();
                true
            }
            Ok(Err(_)) | Err(_) => false,
        }
    }

    /// Gives back what is above `bytes` (at least 1 is kept).
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.max(1);
        let have = self.bytes();
        if have > keep {
            drop(self.permit.split(have - keep));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reservations_add_up_and_never_exceed_the_budget() {
        let b = Budget::new(1000);
        let mut a = b.try_reserve(600).unwrap();
        assert_eq!(b.in_use(), 600);
        assert!(b.try_reserve(500).is_none());
        assert!(b.congested(500));
        let c = b.try_reserve(400).unwrap();
        assert!(!a.try_grow(700), "nothing is free");
        assert_eq!(a.bytes(), 600);
        drop(c);
        assert!(a.try_grow(5000), "grows up to the whole budget");
        assert_eq!(a.bytes(), 1000);
        a.shrink_to(10);
        assert_eq!(b.in_use(), 10);
        drop(a);
        assert_eq!(b.in_use(), 0);
        let s = b.snapshot();
        assert_eq!((s.total, s.peak, s.waits), (1000, 1000, 0));
        assert_eq!(b.try_reserve(0).unwrap().bytes(), 1, "never empty");
    }

    #[tokio::test]
    async fn a_waiter_gets_its_whole_amount_at_once_in_fifo_order() {
        let b = Budget::new(100);
        let held = b.reserve(80).await;
        let first = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(50).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // 20 are free, but the queued waiter comes first: a small ask does not overtake it.
        assert!(b.try_reserve(10).is_none());
        drop(held);
        let got = first.await.unwrap();
        assert_eq!(got.bytes(), 50);
        assert_eq!(b.snapshot().waits, 1);
        assert!(b.snapshot().peak <= 100);
    }

    #[tokio::test]
    async fn one_grower_waits_holding_and_a_second_gives_up_at_once() {
        let b = Budget::new(10);
        let mut a = b.try_reserve(6).unwrap();
        let other = b.try_reserve(3).unwrap();
        let mut c = b.try_reserve(1).unwrap();
        let grower = tokio::spawn(async move {
            let grown = a.grow(9).await;
            (grown, a.bytes())
        });
        // Let the first grower take its turn and start waiting.
        while b.grower.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        assert!(
            !c.grow(2).await,
            "a second grower must not wait holding budget"
        );
        assert_eq!(c.bytes(), 1);
        drop(other);
        drop(c);
        assert_eq!(grower.await.unwrap(), (true, 9));
        assert!(b.snapshot().peak <= 10);
    }

    #[tokio::test]
    async fn orders_are_bounded_and_count_a_floor_each() {
        let b = Budget::new(100 << 10);
        assert_eq!(b.order_limit(), 200 << 10, "starts at two budgets");
        let big = b.order(usize::MAX).await;
        assert_eq!(b.on_order(), 100 << 10, "one order is one budget at most");
        let small = b.order(1).await;
        assert_eq!(
            b.on_order(),
            (100 << 10) + ORDER_FLOOR,
            "a small page counts the floor"
        );
        let held = b.try_reserve(100 << 10).unwrap();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.order(90 << 10).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "90 KiB more would pass the bound");
        assert_eq!(b.snapshot().order_waits, 1);
        assert_eq!(
            b.order_limit(),
            200 << 10,
            "a full budget does not raise the bound"
        );
        drop(big);
        let third = waiter.await.unwrap();
        drop((small, third, held));
        assert_eq!(b.on_order(), 0);
        assert_eq!(b.in_use(), 0, "orders are not reservations");
    }

    #[tokio::test]
    async fn the_bound_on_order_grows_while_the_budget_has_room_and_shrinks_when_answers_wait() {
        let mut b = Budget::new(80 << 10);
        Arc::get_mut(&mut b).unwrap().order_every = Duration::ZERO;
        let take_all = || async {
            let mut held = Vec::new();
            while let Ok(o) =
                tokio::time::timeout(Duration::from_millis(1), b.order(80 << 10)).await
            {
                held.push(o);
            }
            held
        };
        // Orders are out and the budget is empty, but nothing has come back yet (a start-up):
        // no reason to order more.
        let held = take_all().await;
        assert_eq!(held.len(), 2);
        let _ = tokio::time::timeout(Duration::from_millis(1), b.order(1)).await;
        assert_eq!(b.order_limit(), 160 << 10, "no growth before a round trip");
        drop(held);
        // Orders come back and a request still waits for an order while the budget has room:
        // Citrix's latency limits, the bound grows an eighth.
        for _ in 0..80 {
            drop(take_all().await);
        }
        assert_eq!(
            b.order_limit(),
            ORDER_MAX * (80 << 10),
            "grows to its ceiling"
        );
        let held = take_all().await;
        assert_eq!(held.len(), ORDER_MAX, "and hands the new room out");
        // Answers wait for a full budget: the bound comes down to one budget, paid by the
        // orders given back (all of it is on order when it is lowered).
        for _ in 0..40 {
            b.answer_waited(ANSWER_WAIT_SLOW, None);
        }
        assert_eq!(b.order_limit(), 80 << 10, "down to one budget, no lower");
        drop(held);
        assert_eq!(b.on_order(), 0);
        let one = b.order(80 << 10).await;
        assert!(
            b.orders.try_acquire_many(ORDER_FLOOR as u32).is_err(),
            "the orders given back paid the debt: one budget on order is the bound"
        );
        drop(one);
        assert_eq!(b.orders.available_permits(), 80 << 10);
    }

    #[tokio::test]
    async fn the_bound_on_order_does_not_grow_after_a_busy_period_until_a_round_trip_passed() {
        let mut b = Budget::new(80 << 10);
        Arc::get_mut(&mut b).unwrap().order_every = Duration::ZERO;
        let turn_and_wait = |n: usize| {
            let b = b.clone();
            async move {
                for _ in 0..n {
                    drop(b.order(16 << 10).await);
                }
                let all = b.order(80 << 10).await;
                let more = b.order(80 << 10).await;
                let _ = tokio::time::timeout(Duration::from_millis(1), b.order(1)).await;
                drop((all, more));
            }
        };
        // The budget was more than half full a moment ago (a burst), and it is empty now.
        drop(b.try_reserve(50 << 10).unwrap());
        // An eighth of the bound came back and a request waits: the burst still counts.
        turn_and_wait(2).await;
        assert_eq!(
            b.order_limit(),
            160 << 10,
            "no growth right after a busy budget"
        );
        // A whole bound's worth came back since: the burst is forgotten, a new period starts.
        turn_and_wait(8).await;
        assert_eq!(b.order_limit(), 160 << 10, "the period restarts here");
        turn_and_wait(2).await;
        assert_eq!(
            b.order_limit(),
            180 << 10,
            "a quiet eighth later it grows by an eighth"
        );
    }

    /// Like a congestion window: at most one growth and one cut per round trip. Orders placed
    /// before the bound changed were counted by that change.
    #[tokio::test]
    async fn orders_from_before_a_change_neither_grow_the_bound_nor_lower_it_again() {
        let mut b = Budget::new(80 << 10);
        Arc::get_mut(&mut b).unwrap().order_every = Duration::ZERO;
        let old = vec![b.order(80 << 10).await, b.order(80 << 10).await];
        let before = old[0].epoch();
        b.answer_waited(ANSWER_WAIT_SLOW, Some(before));
        assert_eq!(
            b.order_limit(),
            140 << 10,
            "an answer waited: an eighth less"
        );
        for _ in 0..5 {
            b.answer_waited(ANSWER_WAIT_SLOW, Some(before));
        }
        assert_eq!(
            b.order_limit(),
            140 << 10,
            "answers ordered before the cut were counted by it"
        );
        // They come back (paying the cut's debt); a request waits while the budget has room.
        drop(old);
        let first = b.order(80 << 10).await;
        let _ = tokio::time::timeout(Duration::from_millis(1), b.order(80 << 10)).await;
        assert_eq!(
            b.order_limit(),
            140 << 10,
            "orders placed before the change are not a round trip of the new bound"
        );
        let now = first.epoch();
        assert!(now > before);
        drop(first);
        let held = b.order(80 << 10).await;
        let _ = tokio::time::timeout(Duration::from_millis(1), b.order(80 << 10)).await;
        assert_eq!(
            b.order_limit(),
            (140 << 10) + (140 << 10) / 8,
            "an eighth of orders placed since came back: it grows"
        );
        b.answer_waited(ANSWER_WAIT_SLOW, Some(now));
        assert_eq!(
            b.order_limit(),
            (140 << 10) + (140 << 10) / 8,
            "placed before the growth: no cut"
        );
        let fresh = b.order(ORDER_FLOOR).await;
        assert!(fresh.epoch() > held.epoch());
        b.answer_waited(ANSWER_WAIT_SLOW, Some(fresh.epoch()));
        assert!(
            b.order_limit() < (140 << 10) + (140 << 10) / 8,
            "placed since: a cut"
        );
    }

    #[tokio::test]
    async fn the_bound_on_order_changes_at_most_once_per_interval() {
        let mut b = Budget::new(80 << 10);
        Arc::get_mut(&mut b).unwrap().order_every = Duration::ZERO;
        b.answer_waited(Duration::from_millis(900), None);
        assert_eq!(
            b.order_limit(),
            160 << 10,
            "a short wait is a burst, not a glut"
        );
        Arc::get_mut(&mut b).unwrap().order_every = ORDER_ADJUST_EVERY;
        for _ in 0..10 {
            b.answer_waited(ANSWER_WAIT_SLOW, None);
        }
        assert_eq!(
            b.order_limit(),
            (160 << 10) - (20 << 10),
            "one step of an eighth"
        );
    }

    #[tokio::test]
    async fn waiting_for_room_keeps_nothing() {
        let b = Budget::new(100);
        b.wait_for_room(60).await;
        assert_eq!(b.in_use(), 0, "free: returns at once, holding nothing");
        let held = b.try_reserve(80).unwrap();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.wait_for_room(60).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "60 are not free while 80 are held");
        drop(held);
        waiter.await.unwrap();
        assert_eq!(b.in_use(), 0);
    }
}
