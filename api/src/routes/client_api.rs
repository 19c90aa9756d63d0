//! The JourneyAPI-compatible client API (`/api/v1/*`, API-key auth), served as the
//! reference describes it: task-creating endpoints, `fetch`, `fetch-many` and `account`.

use crate::auth::ApiKeyAuth;
use crate::auth::Ctx;
use crate::error::ApiError;
use crate::error::ServiceError;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use journey_contexts::app::Core;
use journey_contexts::tasks::create::{Caller, Created, IdempotencyKey};
use journey_contexts::tasks::requests::*;
use journey_contexts::tasks::usage::UsageCharge;
use journey_contexts::tasks::view::TaskObject;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Inpaint masks arrive inline as base64: allow more than the default JSON limit.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .route("/account", web::get().to(account))
            .route("/fetch", web::post().to(fetch))
            .route("/fetch-many", web::post().to(fetch_many))
            .route("/imagine", web::post().to(imagine))
            .route("/upscale-1x", web::post().to(upscale_1x))
            .route("/upscale-alt", web::post().to(upscale_alt))
            .route("/upscale-2x-4x", web::post().to(upscale_2x_4x))
            .route("/variations", web::post().to(variations))
            .route("/reroll", web::post().to(reroll))
            .route("/pan", web::post().to(pan))
            .route("/blend", web::post().to(blend))
            .route("/describe", web::post().to(describe))
            .route("/faceswap", web::post().to(faceswap))
            .route("/imagine-video", web::post().to(imagine_video))
            .route("/extend-video", web::post().to(extend_video))
            .route("/inpaint", web::post().to(inpaint))
            .route("/outpaint", web::post().to(outpaint))
            .default_service(web::to(crate::input::not_found_or_method)),
    );
}

#[derive(Serialize, ToSchema)]
pub struct AccountInfo {
    pub email: String,
    pub credits: i64,
    /// Images (and videos) delivered by finished tasks, ever.
    pub total_images: i64,
    pub plan: String,
}

/// Account summary for the key's owner: available credits and the plan in force.
#[utoipa::path(get, path = "/api/v1/account", tag = "client-api",
    responses(
        (status = 200, body = AccountInfo),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 429, description = "Rate limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 500, description = "Server fault; body `{}`")),
    security(("api_key" = [])))]
pub async fn account(app: web::Data<Core>, auth: ApiKeyAuth) -> Result<HttpResponse, ApiError> {
    let me = app
        .identity()
        .me(auth.account_id)
        .await
        .map_err(|e| match e {
            ServiceError::SignInRequired => ServiceError::BadApiKey,
            other => other,
        })?;
    let balance = app.credits().balance(auth.account_id).await?;
    Ok(HttpResponse::Ok().json(AccountInfo {
        email: me.email,
        credits: balance.available as i64,
        total_images: app.tasks().total_images(auth.account_id).await?,
        plan: app.credits().plan_of(auth.account_id).await?,
    }))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

/// Runs a prepared task and answers; records what it charged for the usage log.
async fn accept(
    app: &Core,
    auth: &ApiKeyAuth,
    ctx: &Ctx,
    req: &HttpRequest,
    body: &[u8],
    prepared: Prepared,
) -> Result<HttpResponse, ApiError> {
    let idempotency = match req.headers().get("idempotency-key") {
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::bad("Idempotency-Key must be visible ASCII"))?;
            Some(IdempotencyKey::new(v, req.path(), body)?)
        }
        None => None,
    };
    let caller = Caller {
        account_id: auth.account_id,
        key_id: auth.key_id,
    };
    let created: Created = app
        .tasks()
        .create_task(caller, ctx, idempotency, prepared)
        .await?;
    req.extensions_mut().insert(UsageCharge {
        credits: created.charged,
        task_id: Some(created.task_id),
    });
    Ok(HttpResponse::Ok().json(created))
}

#[derive(Deserialize, ToSchema)]
pub struct FetchRequest {
    #[schema(format = Uuid)]
    pub task_id: String,
}

#[derive(Deserialize, ToSchema)]
pub struct FetchManyRequest {
    /// 2 to 20 task ids; unknown ones are left out of the answer.
    #[schema(value_type = Vec<uuid::Uuid>, min_items = 2, max_items = 20)]
    pub task_ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskObject>,
}

/// One task (free).
#[utoipa::path(post, path = "/api/v1/fetch", tag = "client-api", request_body = FetchRequest,
    responses(
        (status = 200, body = TaskObject),
        (status = 400, description = "Missing or malformed task_id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 404, description = "Unknown task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit; see `Retry-After`", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn fetch(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: FetchRequest = parse(&body)?;
    let id = parse_task_id("task_id", &r.task_id)?;
    let task = app
        .tasks()
        .owned_task(auth.account_id, id)
        .await?
        .ok_or_else(|| {
            ApiError::Service(ServiceError::NotFound(format!("unknown task_id {id}")))
        })?;
    Ok(HttpResponse::Ok().json(app.tasks().task_object(id, &task).await?))
}

/// Up to 20 tasks at once (free).
#[utoipa::path(post, path = "/api/v1/fetch-many", tag = "client-api", request_body = FetchManyRequest,
    responses(
        (status = 200, body = TaskList),
        (status = 400, description = "Fewer than 2 or more than 20 ids, or a malformed id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 429, description = "Rate limit; see `Retry-After`", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn fetch_many(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: FetchManyRequest = parse(&body)?;
    if !(2..=20).contains(&r.task_ids.len()) {
        return Err(ApiError::bad("task_ids must hold 2 to 20 task ids"));
    }
    let mut ids = Vec::new();
    for (i, s) in r.task_ids.iter().enumerate() {
        let id = parse_task_id(&format!("task_ids[{i}]"), s)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut tasks = Vec::new();
    for id in ids {
        if let Some(task) = app.tasks().owned_task(auth.account_id, id).await? {
            tasks.push(app.tasks().task_object(id, &task).await?);
        }
    }
    Ok(HttpResponse::Ok().json(TaskList { tasks }))
}

/// Generate images from a prompt with any catalogue model (credits per model). Synchronous models answer with the finished `image_url`.
#[utoipa::path(post, path = "/api/v1/imagine", tag = "client-api", request_body = ImagineRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn imagine(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: ImagineRequest = parse(&body)?;
    let prepared = app.tasks().prepare_imagine(&r)?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Upscale one image of a grid (2 credits).
#[utoipa::path(post, path = "/api/v1/upscale-1x", tag = "client-api", request_body = ParentIndexRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn upscale_1x(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: ParentIndexRequest = parse(&body)?;
    let prepared = app.tasks().prepare_upscale_1x(auth.account_id, &r).await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Subtle or creative upscale of an upscale-1x task (4 credits).
#[utoipa::path(post, path = "/api/v1/upscale-alt", tag = "client-api", request_body = UpscaleAltRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn upscale_alt(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: UpscaleAltRequest = parse(&body)?;
    let prepared = app.tasks().prepare_upscale_alt(auth.account_id, &r).await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// 2x or 4x upscale of a parent task's image or of `image_url` (2 credits).
#[utoipa::path(post, path = "/api/v1/upscale-2x-4x", tag = "client-api", request_body = Upscale2x4xRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn upscale_2x_4x(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: Upscale2x4xRequest = parse(&body)?;
    let prepared = app
        .tasks()
        .prepare_upscale_2x_4x(auth.account_id, &r)
        .await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Variations of a grid image (index 1-4) or of an upscale (strong/subtle); 4 credits.
#[utoipa::path(post, path = "/api/v1/variations", tag = "client-api", request_body = ParentIndexRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn variations(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: ParentIndexRequest = parse(&body)?;
    let prepared = app.tasks().prepare_variations(auth.account_id, &r).await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Re-run a finished imagine task, optionally with a new prompt (4 credits).
#[utoipa::path(post, path = "/api/v1/reroll", tag = "client-api", request_body = RerollRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn reroll(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: RerollRequest = parse(&body)?;
    let prepared = app.tasks().prepare_reroll(auth.account_id, &r).await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Extend an upscale-1x image in one direction (4 credits).
#[utoipa::path(post, path = "/api/v1/pan", tag = "client-api", request_body = PanRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn pan(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: PanRequest = parse(&body)?;
    let prepared = app.tasks().prepare_pan(auth.account_id, &r).await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Blend 2 to 5 images (4 credits).
#[utoipa::path(post, path = "/api/v1/blend", tag = "client-api", request_body = BlendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn blend(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: BlendRequest = parse(&body)?;
    let prepared = app.tasks().prepare_blend(&r)?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Four prompt suggestions for an image (2 credits).
#[utoipa::path(post, path = "/api/v1/describe", tag = "client-api", request_body = DescribeRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn describe(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: DescribeRequest = parse(&body)?;
    let prepared = app.tasks().prepare_describe(&r)?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Swap the face of `swap_image_url` into `target_image_url` (2 credits).
#[utoipa::path(post, path = "/api/v1/faceswap", tag = "client-api", request_body = FaceswapRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn faceswap(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: FaceswapRequest = parse(&body)?;
    let prepared = app.tasks().prepare_faceswap(&r)?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Four videos from a start frame and a prompt (8 credits).
#[utoipa::path(post, path = "/api/v1/imagine-video", tag = "client-api", request_body = ImagineVideoRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn imagine_video(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: ImagineVideoRequest = parse(&body)?;
    let prepared = app.tasks().prepare_imagine_video(&r)?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Extend one video of an imagine-video task (8 credits).
#[utoipa::path(post, path = "/api/v1/extend-video", tag = "client-api", request_body = ExtendVideoRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn extend_video(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: ExtendVideoRequest = parse(&body)?;
    let prepared = app
        .tasks()
        .prepare_extend_video(auth.account_id, &r)
        .await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Repaint the masked area of an upscale-1x image (4 credits).
#[utoipa::path(post, path = "/api/v1/inpaint", tag = "client-api", request_body = InpaintRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn inpaint(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: InpaintRequest = parse(&body)?;
    let prepared = app.tasks().prepare_inpaint(auth.account_id, &r).await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}

/// Zoom out an upscale-1x image by `zoom_ratio` (4 credits).
#[utoipa::path(post, path = "/api/v1/outpaint", tag = "client-api", request_body = OutpaintRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key returns the same task without a second charge")),
    responses(
        (status = 200, description = "The task: `task_id` and `status` (plus `image_url` from synchronous models, `error` if it failed at once)", body = Created),
        (status = 400, description = "Invalid input (message says which rule)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown or revoked key; body `{}`"),
        (status = 402, description = "Not enough credits", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown parent_task_id, or another account's", body = crate::error::ErrorBody),
        (status = 429, description = "Rate limit or tasks-in-flight limit; see `Retry-After`", body = crate::error::ErrorBody),
        (status = 503, description = "The upstream provider is not configured", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn outpaint(
    app: web::Data<Core>,
    auth: ApiKeyAuth,
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: OutpaintRequest = parse(&body)?;
    let prepared = app.tasks().prepare_outpaint(auth.account_id, &r).await?;
    accept(&app, &auth, &ctx, &req, &body, prepared).await
}
