//! The node's memory budget: what all connections together may make it hold.
//!
//! Per-connection bounds (write queues, receive windows, frame budgets) keep one connection
//! small, but many connections could add them up. So every connection has an [`Account`] of
//! the memory it makes this node hold — answers queued for writing, read buffers, the data
//! QUIC buffers on streams this side has stopped reading, a fixed cost per stream — and the
//! accounts add up in one [`MemoryBudget`] (`ProtocolConfig::node_memory_budget`).
//!
//! Going over the budget ends the connection holding the most: under attack that is the
//! attacker (a well-behaved connection reads its answers, so it holds little), and a
//! connection that is merely the largest loses its calls with a clear, retryable error
//! instead of the node running out of memory. The connection's memory comes back as its
//! tasks end; until then it counts as being released, so one excess ends one connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// What an account holds is reported to the node in steps of this many bytes (rounded up), so
/// the many small charges of a busy connection touch only its own counter, not the one every
/// connection shares; the node's total is exact to a step per connection.
const STEP: usize = 16 * 1024;

/// `bytes` rounded up to whole steps, in bytes.
fn steps(bytes: usize) -> usize {
    bytes.div_ceil(STEP) * STEP
}

/// The memory all connections of a node may make it hold, and their accounts.
pub(crate) struct MemoryBudget {
    limit: usize,
    /// Bytes held by every account together.
    used: AtomicUsize,
    /// Bytes of ended connections that are still being released (counted at their ending).
    releasing: AtomicUsize,
    next_key: AtomicU64,
    accounts: Mutex<HashMap<u64, Weak<Account>>>,
}

/// What one connection makes the node hold. Dropped with the connection's last task.
pub(crate) struct Account {
    key: u64,
    budget: Arc<MemoryBudget>,
    held: AtomicUsize,
    /// Bytes this account held when it was ended for the budget; counted in `releasing`
    /// until the account goes.
    released_on_drop: AtomicUsize,
    ended: AtomicBool,
    /// Cancelled when the connection is ended for the budget; its link closes it.
    evicted: CancellationToken,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            releasing: AtomicUsize::new(0),
            next_key: AtomicU64::new(0),
            accounts: Mutex::new(HashMap::new()),
        })
    }

    /// Opens the account of a new connection.
    pub fn open(self: &Arc<Self>) -> Arc<Account> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let account = Arc::new(Account {
            key,
            budget: Arc::clone(self),
            held: AtomicUsize::new(0),
            released_on_drop: AtomicUsize::new(0),
            ended: AtomicBool::new(false),
            evicted: CancellationToken::new(),
        });
        self.lock().insert(key, Arc::downgrade(&account));
        account
    }

    /// Bytes all connections hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Account>>> {
        self.accounts.lock().expect("memory accounts lock")
    }

    /// Over the budget, not counting what ended connections are still releasing: ends the
    /// connection holding the most.
    fn enforce(&self) {
        let over = |budget: &Self| {
            budget
                .used
                .load(Ordering::Relaxed)
                .saturating_sub(budget.releasing.load(Ordering::Relaxed))
                > budget.limit
        };
        if !over(self) {
            return;
        }
        // One connection is ended at a time; others charging meanwhile do not scan again.
        let Ok(accounts) = self.accounts.try_lock() else {
            return;
        };
        if !over(self) {
            return;
        }
        let largest = accounts
            .values()
            .filter_map(Weak::upgrade)
            .filter(|account| !account.ended.load(Ordering::Relaxed))
            .max_by_key(|account| account.held.load(Ordering::Relaxed));
        drop(accounts);
        if let Some(account) = largest {
            let held = account.held.load(Ordering::Relaxed);
            warn!(
                held,
                used = self.used(),
                limit = self.limit,
                "node memory budget exceeded: ending the connection holding the most"
            );
            account.end(held);
        }
    }
}

impl Account {
    /// Counts `bytes` more held by this connection; over the node's budget, ends the
    /// connection holding the most (maybe this one).
    pub fn charge(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        let grown = steps(before + bytes) - steps(before);
        if grown > 0 {
            self.budget.used.fetch_add(grown, Ordering::Relaxed);
            self.budget.enforce();
        }
    }

    /// Counts `bytes` this connection no longer holds.
    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self.held.fetch_sub(bytes, Ordering::Relaxed);
        let shrunk = steps(before) - steps(before - bytes);
        if shrunk > 0 {
            self.budget.used.fetch_sub(shrunk, Ordering::Relaxed);
        }
    }

    /// A charge released when the returned guard is dropped.
    pub fn hold(self: &Arc<Self>, bytes: usize) -> Held {
        self.charge(bytes);
        Held {
            account: Arc::clone(self),
            bytes,
        }
    }

    /// Bytes this connection holds now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Cancelled when the connection must end because the node is over its budget.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    fn end(&self, held: usize) {
        if self.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        self.released_on_drop.store(held, Ordering::Relaxed);
        self.budget.releasing.fetch_add(held, Ordering::Relaxed);
        self.evicted.cancel();
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let budget = &self.budget;
        budget.lock().remove(&self.key);
        let left = steps(self.held.load(Ordering::Relaxed));
        budget.used.fetch_sub(left, Ordering::Relaxed);
        let releasing = self.released_on_drop.load(Ordering::Relaxed);
        budget.releasing.fetch_sub(releasing, Ordering::Relaxed);
    }
}

impl crate::wire::ReadAccount for Account {
    fn charge(&self, bytes: usize) {
        Account::charge(self, bytes);
    }

    fn release(&self, bytes: usize) {
        Account::release(self, bytes);
    }
}

/// A charge on an [`Account`] for as long as it lives.
pub(crate) struct Held {
    account: Arc<Account>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.account.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryBudget;

    #[test]
    fn going_over_the_budget_ends_the_connection_holding_the_most_once() {
        const K: usize = super::STEP;
        let budget = MemoryBudget::new(10 * K);
        let small = budget.open();
        let large = budget.open();
        small.charge(K);
        large.charge(8 * K);
        assert!(!large.evicted().is_cancelled());
        // The small one goes over, but the large one holds the most: it is ended.
        small.charge(2 * K);
        assert!(large.evicted().is_cancelled());
        assert!(!small.evicted().is_cancelled());
        // While the ended one releases, the budget counts its memory as coming back: a little
        // more does not end another connection.
        small.charge(K);
        assert!(!small.evicted().is_cancelled());
        assert_eq!(budget.used(), 12 * K);
        large.release(8 * K);
        drop(large);
        assert_eq!(budget.used(), 4 * K);
        // Charges within a step reach the node's total once the step is crossed.
        let held = small.hold(1);
        assert_eq!(small.held(), 4 * K + 1);
        assert_eq!(budget.used(), 5 * K);
        drop(held);
        assert_eq!(small.held(), 4 * K);
        assert_eq!(budget.used(), 4 * K);
        small.charge(7);
        drop(small);
        assert_eq!(budget.used(), 0);
    }
}
