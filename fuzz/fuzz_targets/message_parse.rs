//! `Message::parse` on arbitrary bytes (a RabbitMQ body as it arrives). It must never panic,
//! and what it accepts must survive a hop: `to_bytes()` (what the worker publishes to the
//! follow-up queue) parses again to a message with the same executionId and the same body.
#![no_main]

use dpsd::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let bytes = message.to_bytes();
    let again = match Message::parse(&bytes) {
        Ok(again) => again,
        Err(e) => panic!(
            "to_bytes() output does not parse again: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(
        again.execution_id(),
        message.execution_id(),
        "executionId changed over a hop: {}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(again.body(), message.body(), "body changed over a hop");
    assert_eq!(again.simulate(), message.simulate());
});
