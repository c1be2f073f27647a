//! `kill -9` of the proxy right after each step; after a restart the payout completes, and the
//! bank saw exactly one payout and at most one processed confirm.

use std::time::Duration;

use crate::stack::{Stack, until};

/// Waits until the sandbox holds a request to `method` open (the proxy is inside that step).
async fn wait_for_held(stack: &Stack, method: &str) {
    until(Duration::from_secs(60), async || {
        let requests = stack.requests(method).await;
        if requests.iter().any(|r| r["status"].is_null()) {
            Ok(())
        } else {
            Err(format!("no held {method} request"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_each_step_then_restart_completes_exactly_once() {
    let mut stack = Stack::start().await;
    // (step, the call the proxy is stuck in when killed, how the sandbox holds it)
    let steps = [
        ("after create", "session/create", "hang_after"),
        ("after start sent", "session/start/payout", "hang_after"),
        ("start sent, not arrived", "session/start/payout", "hang"),
        ("after ready_to_confirm", "session/status", "hang"),
        ("confirm sent, not arrived", "session/confirm", "hang"),
        ("after confirm sent", "session/confirm", "hang_after"),
    ];
    for (step, method, action) in steps {
        stack.fault_once(method, action).await;
        let id = stack
            .pay("4242424242424242", 4_200, "auto", "Ivanov Ivan")
            .await;
        wait_for_held(&stack, method).await;
        stack.restart_proxy().await;
        let done = stack.wait_final(&id).await;
        assert_eq!(done["status"], "succeeded", "{step}: {done}");
        assert_eq!(
            stack.payouts_at_bank(&id).await,
            1,
            "{step}: not exactly one payout at the bank"
        );
        let confirms = stack.calls_for("session/confirm", &done).await;
        let processed = confirms.iter().filter(|r| r["status"] == 200).count()
            + usize::from(action == "hang_after" && method == "session/confirm");
        assert!(processed <= 1, "{step}: {processed} confirms processed");
        assert!(
            stack
                .wait_hook(&id, "payout.succeeded")
                .await
                .signature_valid,
            "{step}"
        );
        // Let the held request time out at the sandbox side before the next round.
        stack.clear_faults().await;
    }
}
