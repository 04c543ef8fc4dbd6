//! Requests to re-read the configuration (SIGHUP, `POST /api/reload`), fanned out to every
//! part that reads files (the supervisor, the scheduler).

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Reload(Arc<watch::Sender<u64>>);

impl Reload {
    pub fn new() -> Reload {
        Reload(Arc::new(watch::channel(0).0))
    }

    pub fn request(&self) {
        self.0.send_modify(|requests| *requests += 1);
    }

    /// A receiver whose `changed()` fires once per request made after this call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

impl Default for Reload {
    fn default() -> Self {
        Reload::new()
    }
}
