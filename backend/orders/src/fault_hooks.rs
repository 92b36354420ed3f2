//! Fault injection for crash tests, compiled only with the `fault-hooks`
//! feature: `shop`'s tests enable it through their dev-dependency on this
//! crate, so the `shop` binary cargo builds for them has it, and a binary
//! built for use (`cargo build`, `--release`, the Dockerfile) does not.
//!
//! Even when compiled in, nothing happens unless the process was started
//! with `SHOP_TEST_PAUSE_AFTER_RECORDING_ORDER=true`.

use std::sync::OnceLock;

/// The variable that arms the pause.
pub const PAUSE_AFTER_RECORDING: &str = "SHOP_TEST_PAUSE_AFTER_RECORDING_ORDER";

fn armed() -> bool {
    static ARMED: OnceLock<bool> = OnceLock::new();
    *ARMED.get_or_init(|| std::env::var(PAUSE_AFTER_RECORDING).is_ok_and(|value| value == "true"))
}

/// After an order is recorded and before its stock is reserved: when armed,
/// says so in the log and waits forever, for the test to kill the process.
pub(crate) async fn after_recording(order_id: i64) {
    if armed() {
        tracing::warn!(order_id, "fault injection: order recorded, pausing before reserving its stock");
        std::future::pending::<()>().await;
    }
}
