//! Events: what the daemon notices (health changes, alerts, schedules, operator
//! triggers) and hands to the rules. Sources publish on the [`EventBus`]; the rules
//! driver subscribes. Nothing here starts a flow: events only describe the world.
//! [`Event`] and [`matches`] are `splice-dr-automation`'s, re-exported.

pub mod alertmanager;
pub mod health;
pub mod health_log;

use tokio::sync::broadcast;

// The event itself and pattern matching are the automation crate's (the rules read
// them); the sources and the bus that carries events are the daemon's.
pub use splice_dr_automation::event::{matches, Event};

/// The daemon's event bus (a broadcast channel: every subscriber sees every event).
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(1024);
        EventBus { tx }
    }
}

impl EventBus {
    /// Publishes an event (logged at info level).
    pub fn publish(&self, ev: Event) {
        tracing::info!(event = %ev.name, node = ev.node.as_deref().unwrap_or("-"), "{}", ev.message);
        let _ = self.tx.send(ev);
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
