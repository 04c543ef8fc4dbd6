//! `dpsd cancel ID`: cancels an execution from the terminal, with the API's semantics
//! (SPEC 4.5). It marks the store as the API does; the replicas polling it do the rest.

use super::{Failure, Global};
use crate::config::last_stages;
use crate::store::{self, Cancel};

/// Prints what was cancelled; a finished execution is a failure (exit 1), as the API's 409.
pub async fn cancel(global: &Global, execution_id: &str) -> Result<(), Failure> {
    let config = global.config()?;
    // Broken worker files are left out, as the daemon leaves them out of "the end of a chain".
    let (workers, _) = config.workers();
    let store = store::open(&config.settings.store()).await?;
    let outcome = store.cancel(execution_id, &last_stages(&workers)).await;
    store.close().await;
    let note = match outcome.map_err(anyhow::Error::from)? {
        Cancel::Cancelled { known: true } => "",
        Cancel::Cancelled { known: false } => {
            " (not seen yet: its message is cancelled when it arrives)"
        }
        Cancel::AlreadyCancelled => " (it was already)",
        Cancel::Finished => {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "execution {execution_id:?} is finished (done at the end of its chain): there \
                 is nothing to cancel"
            )))
        }
    };
    println!("cancelled {execution_id}{note}");
    Ok(())
}
