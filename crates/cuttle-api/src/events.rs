//! Tube events: hints to a tube's dispatcher that a waiting job may now start (nodes
//! given back, a node up, jobs put on the tube), streamed by DispatchService/WatchTube.
//!
//! They are hints, never state: a dispatcher that misses one (it was slow, cuttle-api
//! restarted) still plans on its timer. So sending never waits and never fails: with no
//! watcher the event is dropped, and a watcher too slow to keep up is told it lagged.

use cuttle_core::MachineType;
use tokio::sync::broadcast;

/// Events a watcher may fall behind by before it is told it lagged.
const CAPACITY: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NodesFreed,
    NodeUp,
    JobsQueued,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NodesFreed => "nodes_freed",
            Kind::NodeUp => "node_up",
            Kind::JobsQueued => "jobs_queued",
        }
    }
}

/// One event, for one machine type or (`None`) for every tube.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TubeEvent {
    pub machine_type: Option<MachineType>,
    pub kind: Kind,
    pub count: u32,
}

impl TubeEvent {
    /// Whether a watcher of `machine_type` cares.
    pub fn concerns(&self, machine_type: &MachineType) -> bool {
        self.machine_type.as_ref().is_none_or(|t| t == machine_type)
    }
}

/// The events of this cuttle-api. Clones send to the same watchers.
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<TubeEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    /// Tells the watchers, if any.
    pub fn send(&self, machine_type: Option<MachineType>, kind: Kind, count: usize) {
        let _ = self.sender.send(TubeEvent {
            machine_type,
            kind,
            count: u32::try_from(count).unwrap_or(u32::MAX),
        });
    }

    /// A new watcher: it sees the events sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TubeEvent> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_sees_its_tube_and_every_tube_events() {
        let events = Events::default();
        let mut watcher = events.subscribe();
        let smithi = MachineType::parse("smithi").unwrap();
        let mira = MachineType::parse("mira").unwrap();
        events.send(Some(mira.clone()), Kind::NodeUp, 1);
        events.send(None, Kind::NodesFreed, 2);
        let first = watcher.try_recv().unwrap();
        assert!(!first.concerns(&smithi) && first.concerns(&mira));
        let second = watcher.try_recv().unwrap();
        assert!(second.concerns(&smithi) && second.concerns(&mira));
        assert_eq!((second.kind.as_str(), second.count), ("nodes_freed", 2));
    }
}
