//! The credit ledger: concurrency, staff grants through the CLI, the paginated history,
//! and billing records outliving an erasure.

use crate::support;

use journey_commands::Clock;
use journey_contexts::error::ServiceError as ApiError;
use journey_contexts::identity::Ctx;
use journey_domain::meta::Actor;
use serde_json::Value;
use support::{scan, Harness};
use uuid::Uuid;

fn ctx(h: &Harness) -> Ctx {
    Ctx::system(h.clock.now())
}

fn grant(h: &Harness, account: Uuid, by: Uuid, amount: &str, extra: &[&str]) -> String {
    let (account, by) = (account.to_string(), by.to_string());
    let mut args = vec![
        "credits",
        "grant",
        "--account",
        &account,
        "--amount",
        amount,
        "--reason",
        "goodwill after outage #4411",
        "--by",
        &by,
    ];
    args.extend_from_slice(extra);
    h.cli_ok(&args)
}

async fn wait_for_balance(h: &Harness, account: Uuid, want: u64) {
    for _ in 0..100 {
        if h.app.credits().balance(account).await.unwrap().available == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("balance never reached {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_reservations_against_twenty_credits() {
    let h = Harness::start().await;
    let s = h.sign_in("racer@example.com").await;
    let staff = h.sign_in("staff@example.com").await;
    h.cli_ok(&["staff", "grant", "staff@example.com", "support"]);
    grant(&h, s.account_id, staff.account_id, "20", &[]);
    wait_for_balance(&h, s.account_id, 20).await;

    let c = ctx(&h);
    let attempts = (0..50).map(|_| {
        let app = h.app.clone();
        let c = c.clone();
        let account = s.account_id;
        tokio::spawn(async move {
            app.credits()
                .reserve_credits(account, Uuid::new_v4(), 1, Actor::System, &c)
                .await
        })
    });
    let results: Vec<Result<(), ApiError>> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let short = results
        .iter()
        .filter(|r| matches!(r, Err(ApiError::PaymentRequired(_))))
        .count();
    assert_eq!((ok, short), (20, 30), "{results:?}");
    let b = h.app.credits().balance(s.account_id).await.unwrap();
    assert_eq!((b.available, b.reserved), (0, 20));

    // Settling is exactly-once: a retried capture is a no-op, the opposite is refused.
    let task = Uuid::new_v4();
    grant(&h, s.account_id, staff.account_id, "3", &[]);
    wait_for_balance(&h, s.account_id, 3).await;
    h.app
        .credits()
        .reserve_credits(s.account_id, task, 3, Actor::System, &c)
        .await
        .unwrap();
    h.app
        .credits()
        .reserve_credits(s.account_id, task, 3, Actor::System, &c)
        .await
        .unwrap();
    h.app
        .credits()
        .capture_credits(s.account_id, task, Actor::System, &c)
        .await
        .unwrap();
    h.app
        .credits()
        .capture_credits(s.account_id, task, Actor::System, &c)
        .await
        .unwrap();
    let e = h
        .app
        .credits()
        .release_credits(s.account_id, task, Actor::System, &c)
        .await;
    assert!(matches!(e, Err(ApiError::Conflict(_))), "{e:?}");
    let b = h.app.credits().balance(s.account_id).await.unwrap();
    assert_eq!((b.available, b.reserved), (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_grants_are_recorded_with_actor_and_sealed_reason() {
    let h = Harness::start().await;
    let s = h.sign_in("granted@example.com").await;
    let staff = h.sign_in("staff@example.com").await;
    h.cli_ok(&["staff", "grant", "staff@example.com", "support"]);
    let out = grant(
        &h,
        s.account_id,
        staff.account_id,
        "25",
        &["--idempotency-key", "ticket-4411"],
    );
    let printed: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(printed["available"], 25);
    // The same key again grants nothing.
    grant(
        &h,
        s.account_id,
        staff.account_id,
        "25",
        &["--idempotency-key", "ticket-4411"],
    );
    wait_for_balance(&h, s.account_id, 25).await;

    let events = h
        .stream_events(&format!("credit_ledger/{}", s.account_id))
        .await;
    assert_eq!(events.lines().count(), 1, "{events}");
    assert!(
        events.contains(&format!("staff:{}", staff.account_id)),
        "{events}"
    );
    assert!(events.contains("\"source\":\"admin\""));
    // The reason is sealed in the ledger; in clear only in the audit trail, as the grant's
    // why (staff write a ticket id there, not personal data).
    assert!(!events.contains("goodwill after outage"), "{events}");
    assert_eq!(
        scan::find_plaintext(&h.database_url, &["goodwill after outage"]).await,
        [
            "events: goodwill after outage",
            "rm_audit: goodwill after outage"
        ],
        "the StaffRead event and its audit row only"
    );

    // Bad input changes nothing and says why.
    let account = s.account_id.to_string();
    let by = staff.account_id.to_string();
    for (args, why) in [
        (
            vec![
                "credits",
                "grant",
                "--account",
                &account,
                "--amount",
                "0",
                "--reason",
                "x",
                "--by",
                &by,
            ],
            "amount must be",
        ),
        (
            vec![
                "credits",
                "grant",
                "--account",
                &account,
                "--amount",
                "5",
                "--reason",
                " ",
                "--by",
                &by,
            ],
            "reason is required",
        ),
        (
            vec![
                "credits",
                "grant",
                "--account",
                &by,
                "--amount",
                "5",
                "--reason",
                "x",
                "--by",
                &account,
            ],
            "no staff role",
        ),
    ] {
        let out = h.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let unknown = Uuid::new_v4().to_string();
    let out = h.cli(&[
        "credits",
        "grant",
        "--account",
        &unknown,
        "--amount",
        "5",
        "--reason",
        "x",
        "--by",
        &by,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active account"));
    let out = h.cli(&[
        "credits",
        "grant",
        "--account",
        &account,
        "--amount",
        "5",
        "--reason",
        "x",
        "--by",
        &unknown,
    ]);
    assert!(!out.status.success(), "the actor must be a real account");
    wait_for_balance(&h, s.account_id, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_history_pages_newest_first() {
    let h = Harness::start().await;
    let s = h.sign_in("pager@example.com").await;
    let staff = h.sign_in("staff@example.com").await;
    h.cli_ok(&["staff", "grant", "staff@example.com", "support"]);
    for n in ["1", "2", "3", "4", "5"] {
        grant(&h, s.account_id, staff.account_id, n, &[]);
    }
    wait_for_balance(&h, s.account_id, 15).await;
    let mut seen = Vec::new();
    let mut path = "/v1/credits/ledger?limit=2".to_string();
    loop {
        let page: Value = s.get(&h, &path).await.json().await.unwrap();
        for e in page["entries"].as_array().unwrap() {
            seen.push((
                e["amount"].as_i64().unwrap(),
                e["balance_after"].as_i64().unwrap(),
            ));
        }
        match page["next_before"].as_i64() {
            Some(b) => path = format!("/v1/credits/ledger?limit=2&before={b}"),
            None => break,
        }
    }
    assert_eq!(seen, [(5, 15), (4, 10), (3, 6), (2, 3), (1, 1)]);
    for bad in ["limit=0", "limit=201", "before=0", "limit=abc", "page=2"] {
        let r = s.get(&h, &format!("/v1/credits/ledger?{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let other = h.sign_in("other@example.com").await;
    let page: Value = other
        .get(&h, "/v1/credits/ledger")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        page["entries"].as_array().unwrap().is_empty(),
        "no one sees another's ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_records_outlive_erasure_without_identity() {
    let h = Harness::start().await;
    let s = h.sign_in("leaving@example.com").await;
    support::buy_pack(&h, &s, "small").await;
    h.erase(&s.account_id.to_string(), "test erasure").await;

    assert!(
        scan::find_plaintext(&h.database_url, &["leaving@example.com"])
            .await
            .is_empty()
    );
    let out = h.stream_events(&format!("billing/{}", s.account_id)).await;
    let record: Value = serde_json::from_str(
        out.lines()
            .find(|l| l.contains("BillingRecorded"))
            .expect("billing record kept"),
    )
    .unwrap();
    let detail = &record["payload"]["BillingRecorded"]["detail"];
    let opened = h.app.vault.open_json(detail).await.unwrap();
    assert_eq!(
        opened["amount_cents"], 600,
        "the record still opens: {opened}"
    );
    assert!(!out.contains("leaving@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_credits_stop_counting_at_expiry_and_are_not_reissued() {
    let h = Harness::start().await;
    let s = h.sign_in("expiring@example.com").await;
    let staff = h.sign_in("staff@example.com").await;
    h.cli_ok(&["staff", "grant", "staff@example.com", "support"]);
    grant(
        &h,
        s.account_id,
        staff.account_id,
        "5",
        &["--expires-in-days", "1"],
    );
    grant(&h, s.account_id, staff.account_id, "2", &[]);
    wait_for_balance(&h, s.account_id, 7).await;
    let c = ctx(&h);
    // The soonest-expiring credits are spent first.
    let task = Uuid::new_v4();
    h.app
        .credits()
        .reserve_credits(s.account_id, task, 4, Actor::System, &c)
        .await
        .unwrap();
    h.app
        .credits()
        .release_credits(s.account_id, task, Actor::System, &c)
        .await
        .unwrap();
    h.clock
        .advance(chrono::Duration::days(1) + chrono::Duration::seconds(1));
    assert_eq!(
        h.app
            .credits()
            .balance(s.account_id)
            .await
            .unwrap()
            .available,
        2
    );
    let e = h
        .app
        .credits()
        .reserve_credits(s.account_id, Uuid::new_v4(), 3, Actor::System, &ctx(&h))
        .await;
    assert!(matches!(e, Err(ApiError::PaymentRequired(_))), "{e:?}");
    h.app
        .credits()
        .reserve_credits(s.account_id, Uuid::new_v4(), 2, Actor::System, &ctx(&h))
        .await
        .unwrap();
    h.app.runner.catch_up().await.unwrap();
    let page: Value = s.get(&h, "/v1/credits/ledger").await.json().await.unwrap();
    let kinds: Vec<(&str, i64)> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("reserve", -2),
            ("expire", -5),
            ("release", 4),
            ("reserve", -4),
            ("grant", 2),
            ("grant", 5)
        ]
    );
}

/// The ledger history (`credit_entries`) is applied set-based: a batch's rows are folded in
/// memory with running balances and written in multi-row statements. Rebuilt from zero it
/// gives exactly the rows live catch-up gave, running balances included, with an erased
/// account's rows gone in both, and each account's newest `balance_after` is its balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_history_rebuilds_to_the_rows_live_catch_up_wrote() {
    let h = Harness::start().await;
    let staff = h.sign_in("staff@example.com").await;
    h.cli_ok(&["staff", "grant", "staff@example.com", "support"]);
    let holders = [
        h.sign_in("first@example.com").await,
        h.sign_in("second@example.com").await,
        h.sign_in("leaving@example.com").await,
    ];
    for s in &holders {
        grant(&h, s.account_id, staff.account_id, "40", &[]);
        wait_for_balance(&h, s.account_id, 40).await;
    }
    // Many reservations at once over the three ledgers (so that batches hold several events
    // of one account), then captures and releases.
    let c = ctx(&h);
    let tasks: Vec<(Uuid, Uuid)> = (0..45)
        .map(|i| (holders[i % 3].account_id, Uuid::new_v4()))
        .collect();
    let reserved = futures::future::join_all(tasks.iter().map(|(account, task)| {
        let (app, c) = (h.app.clone(), c.clone());
        let (account, task) = (*account, *task);
        async move {
            app.credits()
                .reserve_credits(account, task, 2, Actor::System, &c)
                .await
        }
    }))
    .await;
    assert!(reserved.iter().all(Result::is_ok), "{reserved:?}");
    for (i, (account, task)) in tasks.iter().enumerate() {
        let credits = h.app.credits();
        let settled = if i % 2 == 0 {
            credits
                .capture_credits(*account, *task, Actor::System, &c)
                .await
        } else {
            credits
                .release_credits(*account, *task, Actor::System, &c)
                .await
        };
        settled.unwrap();
    }
    h.erase(&holders[2].account_id.to_string(), "test erasure")
        .await;
    // Everything applied live (the CLI's erasure was committed by another process).
    h.app.runner.catch_up().await.unwrap();
    for s in &holders[..2] {
        let b = h.app.credits().balance(s.account_id).await.unwrap();
        let page: Value = s
            .get(&h, "/v1/credits/ledger?limit=1")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            page["entries"][0]["balance_after"].as_i64(),
            Some(b.available as i64),
            "{page}"
        );
    }
    let live = scan::rows_as_text(&h.database_url, "rm_credit_entries").await;
    assert_eq!(
        live.len(),
        2 * (1 + 15 + 15),
        "grant, reserves, settles of two ledgers"
    );
    assert!(
        !live
            .iter()
            .any(|r| r.contains(&holders[2].account_id.to_string())),
        "the erased account's history is gone"
    );

    let stdout = h.cli_ok(&["projections", "rebuild", "credit_entries"]);
    assert!(stdout.contains("rebuilt credit_entries"), "{stdout}");
    assert_eq!(
        scan::rows_as_text(&h.database_url, "rm_credit_entries").await,
        live
    );
}
