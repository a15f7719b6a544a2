//! Deterministic interleaving of real threads: each simulated instance runs
//! the real runtime on its own thread, and every port call it makes is a turn
//! it must be granted. The scheduler waits until every live thread is blocked
//! asking for a turn, then grants one of them, chosen by the seed. So exactly
//! one thread touches the simulated world at a time, in an order that depends
//! only on the seed, while each runtime keeps its own stack (a member can be
//! held between its poll and its commit while others take its partitions).

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};

/// A thread of the simulation (unique per incarnation of an instance).
pub type ThreadId = u64;

#[derive(Debug, Default)]
struct State {
    alive: BTreeSet<ThreadId>,
    waiting: BTreeSet<ThreadId>,
    turn: Option<ThreadId>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Baton {
    state: Mutex<State>,
    changed: Condvar,
}

impl Baton {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A thread starts (before it asks for turns).
    pub fn enter(&self, id: ThreadId) {
        self.lock().alive.insert(id);
    }

    /// A thread ends (its turn, if it held one, is over).
    pub fn exit(&self, id: ThreadId) {
        let mut s = self.lock();
        s.alive.remove(&id);
        s.waiting.remove(&id);
        if s.turn == Some(id) {
            s.turn = None;
        }
        self.changed.notify_all();
    }

    /// Blocks until the scheduler grants `id` a turn.
    pub fn acquire(&self, id: ThreadId) {
        let mut s = self.lock();
        s.waiting.insert(id);
        self.changed.notify_all();
        while s.turn != Some(id) {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.waiting.remove(&id);
    }

    /// Ends `id`'s turn.
    pub fn release(&self, id: ThreadId) {
        let mut s = self.lock();
        if s.turn == Some(id) {
            s.turn = None;
        }
        self.changed.notify_all();
    }

    /// Waits until every live thread is blocked asking for a turn; those.
    pub fn quiesce(&self) -> Vec<ThreadId> {
        let mut s = self.lock();
        while s.turn.is_some() || s.waiting != s.alive {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.waiting.iter().copied().collect()
    }

    /// Grants `id` a turn and waits until it is over.
    pub fn grant(&self, id: ThreadId) {
        let mut s = self.lock();
        s.turn = Some(id);
        self.changed.notify_all();
        while s.turn == Some(id) {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}
