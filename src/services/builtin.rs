//! The compiled-in services: constant, echo, sleep and fail.

use serde_json::Value;

use super::ServiceError;
use crate::config::Builtin;

pub async fn call(builtin: &Builtin, input: &Value) -> Result<Value, ServiceError> {
    match builtin {
        Builtin::Constant(value) => Ok(value.clone()),
        Builtin::Echo => Ok(without_last(input)),
        Builtin::Sleep(duration) => {
            tokio::time::sleep(*duration).await;
            Ok(input.clone())
        }
        Builtin::Fail(message) => Err(ServiceError::Failed(message.clone())),
    }
}

fn without_last(input: &Value) -> Value {
    let mut value = input.clone();
    if let Value::Object(map) = &mut value {
        map.remove("_last");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn each_builtin_does_what_it_says() {
        let input = json!({"a": 1, "_last": "x"});
        let constant = call(&Builtin::Constant(json!("t")), &input)
            .await
            .expect("ok");
        assert_eq!(constant, json!("t"));
        assert_eq!(
            call(&Builtin::Echo, &input).await.expect("ok"),
            json!({"a": 1})
        );
        let slept = call(&Builtin::Sleep(std::time::Duration::from_millis(1)), &input).await;
        assert_eq!(slept.expect("ok"), input);
        let failed = call(&Builtin::Fail("boom".into()), &input)
            .await
            .unwrap_err();
        assert_eq!(failed.to_string(), "boom");
    }
}
