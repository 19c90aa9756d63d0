//! The image-generation client API end to end, over HTTP against the fake
//! midjourney-proxy and images servers: task lifecycle, credits, parent rules, upstream
//! codes, synchronous models, idempotency, polling and timeouts.

use crate::support;

use serde_json::{json, Value};
use support::api::last_upstream;
use support::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imagine_runs_to_a_finished_grid_and_charges_once() {
    let h = Harness::start().await;
    let c = h.api_client("maker@example.com", 0).await;
    // No credits: 402 in the reference's error shape, nothing sent upstream.
    let (status, body) = c
        .post(&h, "imagine", json!({ "prompt": "a red fox" }))
        .await;
    assert_eq!(status, 402, "{body}");
    assert!(body["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("credits"));
    assert_eq!(h.mj.count_submits(), 0);

    h.grant_credits(c.account_id, 10).await;
    let (status, created) = c
        .post(
            &h,
            "imagine",
            json!({ "prompt": "a red fox", "aspect_ratio": "16:9" }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "pending");
    let task: uuid::Uuid = created["task_id"].as_str().unwrap().parse().unwrap();
    // Reserved before it went upstream; the prompt went with the ratio and a notifyHook.
    assert_eq!(c.balance(&h).await, (6, 4));
    let submit =
        h.mj.calls()
            .into_iter()
            .find(|c| c.path.ends_with("/submit/imagine"))
            .unwrap();
    assert_eq!(submit.body["prompt"], "a red fox --ar 16:9");
    assert_eq!(
        submit.header("authorization"),
        Some("Bearer mj-test-key-7f3a")
    );
    assert!(submit.body["notifyHook"]
        .as_str()
        .unwrap()
        .contains("/webhooks/upstream/midjourney/"));

    let up = last_upstream(&h);
    h.mj.step(&up).await; // 10%
    h.mj.step(&up).await; // 45%
    let v = c.wait_for(&h, task, "processing").await;
    for _ in 0..40 {
        if c.fetch(&h, task).await["percentage"] == "45" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(c.fetch(&h, task).await["percentage"], "45", "{v}");
    // An old report arriving late (10%) and a repeated one change nothing.
    h.mj.replay_hook(&up, 0).await;
    h.mj.replay_hook(&up, 1).await;
    assert_eq!(c.fetch(&h, task).await["percentage"], "45");

    h.mj.finish(&up).await;
    let done = c.wait_for(&h, task, "finished").await;
    assert_eq!(done["percentage"], "100");
    assert_eq!(done["task_type"], "imagine");
    assert_eq!(done["model"], "midjourney");
    let grid = done["original_image_url"].as_str().unwrap();
    assert!(grid.ends_with("/grid.png"), "{done}");
    let urls = done["image_urls"].as_array().unwrap();
    assert_eq!(urls.len(), 4, "{done}");
    assert!(urls[0].as_str().unwrap().ends_with("/0_0.png"));
    assert!(done.get("error").is_none());
    // Captured exactly once: 4 spent, none held; a late failure report changes nothing.
    c.wait_balance(&h, (6, 0)).await;
    h.mj.replay_hook(&up, 0).await;
    assert_eq!(c.fetch(&h, task).await["status"], "finished");
    assert_eq!(c.balance(&h).await, (6, 0));

    // `total_images` is a read model: on Postgres its projection may still be behind the
    // horizon (another test's open transaction) when the task is already finished.
    let mut account = c.account(&h).await;
    for _ in 0..200 {
        if account["total_images"] == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        account = c.account(&h).await;
    }
    assert_eq!(account["credits"], 6);
    assert_eq!(account["total_images"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_rule_answers_400_and_charges_nothing() {
    let h = Harness::start().await;
    let c = h.api_client("strict@example.com", 50).await;
    let other = h.api_client("other@example.com", 10).await;
    let mine = c.create(&h, "imagine", json!({ "prompt": "mine" })).await;
    h.mj.finish(&last_upstream(&h)).await;
    c.wait_for(&h, mine, "finished").await;
    let theirs = other
        .create(&h, "imagine", json!({ "prompt": "theirs" }))
        .await;
    let before = c.balance(&h).await;
    let submits = h.mj.count_submits();

    let cases: Vec<(&str, Value, &str)> = vec![
        ("imagine", json!({}), "prompt"),
        ("imagine", json!({ "prompt": "  " }), "prompt is required"),
        (
            "imagine",
            json!({ "prompt": "x".repeat(4001) }),
            "at most 4000",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "model": "dall-e-9" }),
            "valid models: flux-2-dev",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "aspect_ratio": "5:4" }),
            "aspect_ratio must be one of",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "model": "flux-kontext-pro" }),
            "image_url is required",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "model": "midjourney", "negative_prompt": "y" }),
            "Flux",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "model": "flux-pro", "negative_prompt": "y".repeat(4001) }),
            "at most 4000",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "output_format": "gif" }),
            "output_format",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "resolution": "8K" }),
            "resolution",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "webhook_url": "ftp://example.com/h" }),
            "webhook_url",
        ),
        (
            "imagine",
            json!({ "prompt": "x", "webhook_secret": "s" }),
            "webhook_secret needs a webhook_url",
        ),
        ("imagine", json!("not an object"), "invalid JSON body"),
        ("fetch", json!({ "task_id": "nope" }), "UUID"),
        ("fetch-many", json!({ "task_ids": [mine] }), "2 to 20"),
        (
            "fetch-many",
            json!({ "task_ids": vec![mine; 21] }),
            "2 to 20",
        ),
        (
            "upscale-1x",
            json!({ "parent_task_id": mine, "index": "5" }),
            "index must be",
        ),
        ("upscale-1x", json!({ "parent_task_id": mine }), "index"),
        (
            "upscale-alt",
            json!({ "parent_task_id": mine, "type": "subtle" }),
            "upscale-1x parent",
        ),
        (
            "upscale-alt",
            json!({ "parent_task_id": mine, "type": "wild" }),
            "type must be one of",
        ),
        ("upscale-2x-4x", json!({ "type": "2x" }), "exactly one of"),
        (
            "upscale-2x-4x",
            json!({ "type": "2x", "parent_task_id": mine, "image_url": "https://example.com/a.png" }),
            "exactly one of",
        ),
        (
            "upscale-2x-4x",
            json!({ "type": "8x", "image_url": "https://example.com/a.png" }),
            "type must be one of",
        ),
        (
            "upscale-2x-4x",
            json!({ "type": "2x", "parent_task_id": mine }),
            "index is required",
        ),
        (
            "variations",
            json!({ "parent_task_id": mine, "index": "strong" }),
            "upscale-1x parent",
        ),
        (
            "variations",
            json!({ "parent_task_id": mine, "index": "9" }),
            "index must be",
        ),
        (
            "pan",
            json!({ "parent_task_id": mine, "direction": "up" }),
            "upscale-1x parent",
        ),
        (
            "pan",
            json!({ "parent_task_id": mine, "direction": "north" }),
            "direction must be one of",
        ),
        (
            "blend",
            json!({ "image_urls": ["https://example.com/a.png"] }),
            "2 to 5",
        ),
        (
            "blend",
            json!({ "image_urls": vec!["https://example.com/a.png"; 6] }),
            "2 to 5",
        ),
        (
            "blend",
            json!({ "image_urls": ["https://example.com/a.png", "https://example.com/b.png"], "dimension": "round" }),
            "dimension must be one of",
        ),
        ("describe", json!({}), "image_url"),
        (
            "faceswap",
            json!({ "target_image_url": "https://example.com/a.png" }),
            "swap_image_url",
        ),
        ("imagine-video", json!({ "prompt": "x" }), "image_url"),
        (
            "imagine-video",
            json!({ "prompt": "x", "image_url": "https://example.com/a.png", "motion": "wild" }),
            "motion must be one of",
        ),
        (
            "extend-video",
            json!({ "parent_task_id": mine, "index": "1", "prompt": "x" }),
            "imagine-video parent",
        ),
        (
            "inpaint",
            json!({ "parent_task_id": mine, "mask": "not base64!" }),
            "base64-encoded PNG",
        ),
        (
            "outpaint",
            json!({ "parent_task_id": mine, "zoom_ratio": 1.0 }),
            "zoom_ratio",
        ),
        (
            "outpaint",
            json!({ "parent_task_id": mine, "zoom_ratio": 2.5 }),
            "zoom_ratio",
        ),
        ("reroll", json!({ "parent_task_id": "123" }), "UUID"),
    ];
    for (endpoint, body, needle) in cases {
        let (status, v) = c.post(&h, endpoint, body.clone()).await;
        assert_eq!(status, 400, "{endpoint} {body}: {v}");
        let msg = v["errors"][0]["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{endpoint} {body}: {msg:?} lacks {needle:?}"
        );
    }
    // Foreign and unknown parents and tasks are 404 alike.
    for (endpoint, body) in [
        ("fetch", json!({ "task_id": theirs })),
        ("fetch", json!({ "task_id": uuid::Uuid::new_v4() })),
        (
            "upscale-1x",
            json!({ "parent_task_id": theirs, "index": "1" }),
        ),
        ("reroll", json!({ "parent_task_id": uuid::Uuid::new_v4() })),
    ] {
        let (status, v) = c.post(&h, endpoint, body.clone()).await;
        assert_eq!(status, 404, "{endpoint} {body}: {v}");
        assert!(v["errors"][0]["msg"].is_string());
    }
    // fetch-many leaves unknown and foreign ids out.
    let (status, v) = c
        .post(
            &h,
            "fetch-many",
            json!({ "task_ids": [mine, theirs, uuid::Uuid::new_v4()] }),
        )
        .await;
    assert_eq!(status, 200);
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["task_id"], mine.to_string());
    // Bad keys: 401 with `{}`.
    for auth in ["", "japi_live_nope", "Bearer nonsense"] {
        let r = reqwest::Client::new()
            .post(h.url("/api/v1/imagine"))
            .header("authorization", auth)
            .json(&json!({ "prompt": "x" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    }
    assert_eq!(c.balance(&h).await, before, "nothing charged");
    assert_eq!(h.mj.count_submits(), submits, "nothing sent upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_actions_follow_the_parent_rules_and_buttons() {
    let h = Harness::start().await;
    let c = h.api_client("editor@example.com", 200).await;
    let grid = c
        .create(&h, "imagine", json!({ "prompt": "a lighthouse" }))
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    c.wait_for(&h, grid, "finished").await;

    let up = c
        .create(
            &h,
            "upscale-1x",
            json!({ "parent_task_id": grid, "index": "2" }),
        )
        .await;
    let call =
        h.mj.calls()
            .into_iter()
            .rev()
            .find(|c| c.path.ends_with("/submit/action"))
            .unwrap();
    assert!(call.body["customId"]
        .as_str()
        .unwrap()
        .starts_with("MJ::JOB::upsample::2::"));
    h.mj.finish(&last_upstream(&h)).await;
    let upscaled = c.wait_for(&h, up, "finished").await;
    assert_eq!(upscaled["task_type"], "upscale-1x");
    assert!(upscaled["image_url"]
        .as_str()
        .unwrap()
        .ends_with("/upscaled.png"));
    assert!(upscaled.get("image_urls").is_none());

    // Pan, variations (strong), upscale-alt on the upscale; reroll only on the imagine.
    for (endpoint, body, task_type) in [
        (
            "pan",
            json!({ "parent_task_id": up, "direction": "left" }),
            "pan-left",
        ),
        (
            "variations",
            json!({ "parent_task_id": up, "index": "strong" }),
            "variation-strong",
        ),
        (
            "variations",
            json!({ "parent_task_id": grid, "index": "3" }),
            "variation-3",
        ),
        (
            "upscale-alt",
            json!({ "parent_task_id": up, "type": "creative" }),
            "upscale-creative",
        ),
        ("reroll", json!({ "parent_task_id": grid }), "reroll"),
    ] {
        let t = c.create(&h, endpoint, body).await;
        h.mj.finish(&last_upstream(&h)).await;
        let v = c.wait_for(&h, t, "finished").await;
        assert_eq!(v["task_type"], task_type, "{v}");
    }
    let (status, v) = c.post(&h, "reroll", json!({ "parent_task_id": up })).await;
    assert_eq!(status, 400, "{v}");

    // Inpaint and outpaint go through the proxy's modal (code 21, then /submit/modal).
    let mask = format!("data:image/png;base64,{}", support::images::TINY_PNG_B64);
    let inpaint = c
        .create(
            &h,
            "inpaint",
            json!({ "parent_task_id": up, "mask": mask, "prompt": "a boat" }),
        )
        .await;
    let modal =
        h.mj.calls()
            .into_iter()
            .rev()
            .find(|c| c.path.ends_with("/submit/modal"))
            .unwrap();
    assert_eq!(modal.body["prompt"], "a boat");
    assert!(modal.body["maskBase64"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    h.mj.finish(&last_upstream(&h)).await;
    assert_eq!(
        c.wait_for(&h, inpaint, "finished").await["task_type"],
        "inpaint"
    );
    let outpaint = c
        .create(
            &h,
            "outpaint",
            json!({ "parent_task_id": up, "zoom_ratio": 1.5 }),
        )
        .await;
    let modal =
        h.mj.calls()
            .into_iter()
            .rev()
            .find(|c| c.path.ends_with("/submit/modal"))
            .unwrap();
    assert_eq!(modal.body["prompt"], "a lighthouse --zoom 1.5");
    h.mj.finish(&last_upstream(&h)).await;
    c.wait_for(&h, outpaint, "finished").await;

    // Blend, describe and face swap download their inputs and send them as base64.
    let img = |n: &str| format!("{}/img/src/{n}.png", h.mj.url);
    let blend = c
        .create(
            &h,
            "blend",
            json!({ "image_urls": [img("a"), img("b")], "dimension": "portrait" }),
        )
        .await;
    let call =
        h.mj.calls()
            .into_iter()
            .rev()
            .find(|c| c.path.ends_with("/submit/blend"))
            .unwrap();
    assert_eq!(call.body["dimensions"], "PORTRAIT");
    assert!(call.body["base64Array"][1]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    h.mj.finish(&last_upstream(&h)).await;
    assert_eq!(
        c.wait_for(&h, blend, "finished").await["image_urls"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let describe = c
        .create(&h, "describe", json!({ "image_url": img("d") }))
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    let d = c.wait_for(&h, describe, "finished").await;
    let content = d["content"].as_array().unwrap();
    assert_eq!(content.len(), 4, "{d}");
    // Numbered as documented: "1️⃣ …" … "4️⃣ …".
    for (item, mark) in content.iter().zip(["1️⃣ ", "2️⃣ ", "3️⃣ ", "4️⃣ "]) {
        let item = item.as_str().unwrap();
        assert!(item.starts_with(mark) && item.len() > mark.len() + 1, "{d}");
    }
    assert_eq!(
        d["model"], "midjourney",
        "actions report their family's model"
    );
    assert_eq!(d["image_url"], img("d"));
    let swap = c
        .create(
            &h,
            "faceswap",
            json!({ "target_image_url": img("t"), "swap_image_url": img("s") }),
        )
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    assert!(c.wait_for(&h, swap, "finished").await["image_url"].is_string());

    // Video, then extending one of its four clips.
    let video = c
        .create(
            &h,
            "imagine-video",
            json!({ "prompt": "waves", "image_url": img("v") }),
        )
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    let v = c.wait_for(&h, video, "finished").await;
    assert_eq!(v["video_urls"].as_array().unwrap().len(), 4, "{v}");
    let ext = c
        .create(
            &h,
            "extend-video",
            json!({ "parent_task_id": video, "index": "2", "prompt": "more waves" }),
        )
        .await;
    h.mj.finish(&last_upstream(&h)).await;
    assert_eq!(
        c.wait_for(&h, ext, "finished").await["task_type"],
        "imagine-video-extend"
    );
    // Every task settled: nothing still reserved.
    // imagine 4, upscale-1x 2, pan/variations×2/upscale-alt/reroll 4 each, inpaint and
    // outpaint 4, blend 4, describe 2, faceswap 2, video and its extension 8 each.
    c.wait_balance(&h, (200 - 58, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusals_fail_the_task_and_release_credits() {
    let h = Harness::start().await;
    let c = h.api_client("refused@example.com", 16).await;
    for (directive, needle) in [
        ("#submit=23", "23"),
        ("#submit=24", "24"),
        ("#submit=4", "4"),
        ("#submit=9", "9"),
        ("#submit=malformed", "unreadable"),
        ("#submit=http500", "HTTP 500"),
    ] {
        let (status, v) = c
            .post(
                &h,
                "imagine",
                json!({ "prompt": format!("a cat {directive}") }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["status"], "failed", "{directive}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{directive}: {v}"
        );
        assert_eq!(c.balance(&h).await, (16, 0), "{directive} released");
    }
    // 21 and 22 are accepted.
    for directive in ["#submit=21", "#submit=22"] {
        let (_, v) = c
            .post(
                &h,
                "imagine",
                json!({ "prompt": format!("a cat {directive}") }),
            )
            .await;
        assert_eq!(v["status"], "pending", "{directive}: {v}");
    }
    // A job that fails upstream later is failed with its reason and released.
    let t = c
        .create(&h, "imagine", json!({ "prompt": "doomed #end=failure" }))
        .await;
    assert_eq!(c.balance(&h).await, (4, 12));
    h.mj.finish(&last_upstream(&h)).await;
    let v = c.wait_for(&h, t, "failed").await;
    assert!(
        v["error"].as_str().unwrap().contains("Job failed: test"),
        "{v}"
    );
    c.wait_balance(&h, (8, 8)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_models_answer_with_the_image_and_async_ones_run_in_the_worker() {
    let h = Harness::start().await;
    let c = h.api_client("sync@example.com", 30).await;
    let (status, v) = c
        .post(
            &h,
            "imagine",
            json!({ "prompt": "a teapot", "model": "nano-banana", "aspect_ratio": "3:2" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "finished");
    assert!(v["image_url"].as_str().unwrap().contains("/files/"), "{v}");
    let call = h.images.calls().into_iter().last().unwrap();
    assert_eq!(call.path, "/v1/images/generations");
    assert_eq!(call.json["model"], "gemini-2.5-flash-image");
    assert_eq!(call.json["aspect_ratio"], "3:2");
    assert_eq!(
        call.header("authorization"),
        Some("Bearer sk-images-test-key-91c2")
    );
    assert_eq!(c.balance(&h).await, (28, 0));
    let id: uuid::Uuid = v["task_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(c.fetch(&h, id).await["model"], "nano-banana");

    // An edit model downloads the image and sends it as a multipart edit.
    let src = format!("{}/img/src/photo.png", h.mj.url);
    let (_, v) = c
        .post(
            &h,
            "imagine",
            json!({ "prompt": "make it blue", "model": "flux-kontext-pro", "image_url": src }),
        )
        .await;
    assert_eq!(v["status"], "finished", "{v}");
    let call = h.images.calls().into_iter().last().unwrap();
    assert_eq!(call.path, "/v1/images/edits");
    assert_eq!(call.field("prompt"), Some("make it blue"));
    assert_eq!(call.image_type.as_deref(), Some("image/png"));

    // Upstream errors fail the task at once; nothing is charged.
    let (_, v) = c
        .post(
            &h,
            "imagine",
            json!({ "prompt": "boom #images=500", "model": "gpt-image-1" }),
        )
        .await;
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["error"].as_str().unwrap().contains("500"));
    let (_, v) = c
        .post(
            &h,
            "imagine",
            json!({ "prompt": "bad #images=malformed", "model": "gpt-image-1" }),
        )
        .await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(c.balance(&h).await, (24, 0));

    // flux-pro is asynchronous: accepted staged, run by the worker.
    let (_, v) = c
        .post(
            &h,
            "imagine",
            json!({ "prompt": "a fern", "model": "flux-pro", "negative_prompt": "blur" }),
        )
        .await;
    assert_eq!(v["status"], "staged", "{v}");
    let t: uuid::Uuid = v["task_id"].as_str().unwrap().parse().unwrap();
    let done = c.wait_for(&h, t, "finished").await;
    assert!(done["image_url"].is_string());
    let call = h.images.calls().into_iter().last().unwrap();
    assert_eq!(call.json["negative_prompt"], "blur");
    c.wait_balance(&h, (20, 0)).await;

    // upscale-2x-4x from a URL also runs in the worker.
    let (_, v) = c
        .post(
            &h,
            "upscale-2x-4x",
            json!({ "image_url": src, "type": "4x" }),
        )
        .await;
    let t: uuid::Uuid = v["task_id"].as_str().unwrap().parse().unwrap();
    let done = c.wait_for(&h, t, "finished").await;
    assert_eq!(done["task_type"], "upscale-4x");
    let call = h.images.calls().into_iter().last().unwrap();
    assert_eq!(call.field("model"), Some("real-esrgan-4x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_task_without_a_second_charge() {
    let h = Harness::start().await;
    let c = h.api_client("retry@example.com", 20).await;
    let body = json!({ "prompt": "a boat" });
    let (s1, a) = c
        .post_with(&h, "imagine", &body, &[("idempotency-key", "req-77")])
        .await;
    let (s2, b) = c
        .post_with(&h, "imagine", &body, &[("idempotency-key", "req-77")])
        .await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(a["task_id"], b["task_id"]);
    assert_eq!(h.mj.count_submits(), 1);
    assert_eq!(c.balance(&h).await, (16, 4));
    // The same key for another request is refused; another key is a new task.
    let (s3, v) = c
        .post_with(
            &h,
            "imagine",
            &json!({ "prompt": "a ship" }),
            &[("idempotency-key", "req-77")],
        )
        .await;
    assert_eq!(s3, 400, "{v}");
    let (_, d) = c
        .post_with(&h, "imagine", &body, &[("idempotency-key", "req-78")])
        .await;
    assert_ne!(d["task_id"], a["task_id"]);
    assert_eq!(c.balance(&h).await, (12, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_task_in_a_batch_poll_fails_only_itself() {
    let h = Harness::start().await;
    let c = h.api_client("batch@example.com", 12).await;
    h.mj.set_notify(false);
    let healthy = c.create(&h, "imagine", json!({ "prompt": "one" })).await;
    let broken = c.create(&h, "imagine", json!({ "prompt": "two" })).await;
    let also = c.create(&h, "imagine", json!({ "prompt": "three" })).await;
    let ids = h.mj.upstream_ids();
    h.mj.finish_all().await;
    // The proxy's batch reply now carries one truncated entry: the array is invalid.
    h.mj.poison(&ids[1]);
    h.clock.advance(chrono::Duration::seconds(16));
    c.wait_for(&h, healthy, "finished").await;
    c.wait_for(&h, also, "finished").await;
    assert_eq!(c.fetch(&h, broken).await["status"], "pending");
    // Only the broken task waits out its own timeout, then fails and is released.
    h.clock.advance(chrono::Duration::seconds(901));
    let v = c.wait_for(&h, broken, "failed").await;
    assert!(v["error"].as_str().unwrap().contains("timed out"), "{v}");
    c.wait_balance(&h, (12 - 8, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_finds_results_without_callbacks_and_stuck_tasks_time_out() {
    let h = Harness::start().await;
    let c = h.api_client("poller@example.com", 8).await;
    h.mj.set_notify(false);
    let t = c.create(&h, "imagine", json!({ "prompt": "quiet" })).await;
    let stuck = c
        .create(&h, "imagine", json!({ "prompt": "never #end=stuck" }))
        .await;
    let ids = h.mj.upstream_ids();
    h.mj.finish(&ids[0]).await;
    h.mj.finish(&ids[1]).await;
    // Nothing is heard until the poll interval passes.
    assert_eq!(c.fetch(&h, t).await["status"], "pending");
    h.clock.advance(chrono::Duration::seconds(16));
    let done = c.wait_for(&h, t, "finished").await;
    assert_eq!(done["image_urls"].as_array().unwrap().len(), 4);
    let v = c.wait_for(&h, stuck, "processing").await;
    assert_eq!(v["percentage"], "45");
    let polls =
        h.mj.calls()
            .iter()
            .filter(|c| c.path.ends_with("/list-by-condition"))
            .count();
    assert!(polls >= 1);
    // Past the provider's task timeout (900 s) the stuck task fails and is released.
    h.clock.advance(chrono::Duration::seconds(901));
    let v = c.wait_for(&h, stuck, "failed").await;
    assert!(v["error"].as_str().unwrap().contains("timed out"), "{v}");
    c.wait_balance(&h, (4, 0)).await;
    // A late success report for the timed-out task changes nothing.
    h.mj.set_notify(true);
    assert_eq!(c.fetch(&h, stuck).await["status"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_hook_checks_its_token_and_the_report() {
    let h = Harness::start().await;
    let c = h.api_client("hooks@example.com", 8).await;
    let t = c
        .create(&h, "imagine", json!({ "prompt": "guarded" }))
        .await;
    let up = last_upstream(&h);
    let hook = h.mj.task(&up).unwrap()["notifyHook"]
        .as_str()
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    // A forged token (right task id, wrong secret) and a wrong provider are unknown.
    let forged = format!("{}{}", &hook[..hook.len() - 4], "0000");
    let report = json!({ "id": up, "status": "SUCCESS", "imageUrl": "https://evil.example/x.png" });
    for url in [forged, hook.replace("/midjourney/", "/images/")] {
        let r = http.post(&url).json(&report).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    // Malformed JSON and a report about another job are refused.
    assert_eq!(h.mj.post_hook_raw(&up, "{\"id\":").await, Some(400));
    let r = http
        .post(&hook)
        .json(&json!({ "id": "999", "status": "SUCCESS" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(c.fetch(&h, t).await["status"], "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_hangs_fails_the_task_after_its_timeout() {
    let h = Harness::start_with(|c| {
        c.providers
            .get_mut("midjourney")
            .unwrap()
            .request_timeout_secs = 1;
    })
    .await;
    let c = h.api_client("patient@example.com", 4).await;
    let started = std::time::Instant::now();
    let (status, v) = c
        .post(&h, "imagine", json!({ "prompt": "slow #submit=hang" }))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["error"].as_str().unwrap().contains("upstream"), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(c.balance(&h).await, (4, 0), "released");
}
