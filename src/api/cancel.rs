//! Cancelling an execution (SPEC 4.5): the store marks it, the replicas that poll the marks
//! stop or skip it (`worker::cancel`). The API only asks and answers.

use actix_web::{post, web, HttpResponse};

use super::{ApiError, State};
use crate::config::last_stages;
use crate::store::Cancel;

/// 200 for a cancel made now or before (twice is no error), 409 for an execution already
/// done at the end of its chain.
#[post("/api/executions/{id}/cancel")]
async fn cancel(state: web::Data<State>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let last = last_stages(&state.snapshots.borrow().workers.valid);
    let known = match state.store.cancel(&id, &last).await? {
        Cancel::Cancelled { known } => known,
        Cancel::AlreadyCancelled => true,
        Cancel::Finished => {
            return Err(ApiError::Conflict(format!(
                "execution {:?} is finished (done at the end of its chain): there is nothing \
                 to cancel",
                id.as_str()
            )))
        }
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "executionId": id.as_str(),
        "cancelled": true,
        "known": known,
    })))
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(cancel);
}
