//! Client-API request bodies and their validation. Each endpoint's body becomes a
//! `Prepared` task: what it costs, its type and result shape, the sealed parameters, and
//! what to run upstream. Every rule of the reference's endpoint table lives here, and a
//! request that breaks one is refused before anything is charged or sent.

use super::Tasks;
use crate::error::ServiceError;
use journey_commands::upstream::mj_proxy::{Dimensions, Submit};
use journey_domain::models::{Mode, ModelSpec};
use journey_domain::task::{ResultKind, Task, TaskStatus, TaskType, WebhookTarget};
use journey_domain::Opened;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

const MAX_PROMPT: usize = 4000;
/// The model name recorded for Midjourney actions (they have no `model` field).
const MJ_FAMILY: &str = "midjourney";
const MAX_URL: usize = 2048;
const ASPECT_RATIOS: [&str; 7] = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"];

/// Optional on every task-creating endpoint.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct Hook {
    /// Receives the task object (as `/fetch` returns it) when the task finishes or fails.
    /// An http(s) URL whose host is not a private, loopback or link-local address.
    #[schema(format = "uri", max_length = 2048)]
    pub webhook_url: Option<String>,
    /// Sent back as `x-webhook-secret`; one line.
    #[schema(max_length = 256)]
    pub webhook_secret: Option<String>,
}

/// Value sets of the request fields, for the OpenAPI document only (the fields stay
/// strings so that a wrong value gets the rule's own 400 message).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum AspectRatio {
    #[schema(rename = "1:1")]
    Square,
    #[schema(rename = "16:9")]
    Wide,
    #[schema(rename = "9:16")]
    Tall,
    #[schema(rename = "4:3")]
    Landscape43,
    #[schema(rename = "3:4")]
    Portrait34,
    #[schema(rename = "3:2")]
    Landscape32,
    #[schema(rename = "2:3")]
    Portrait23,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum OutputFormat {
    Png,
    Jpg,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub enum Resolution {
    #[schema(rename = "1K")]
    R1k,
    #[schema(rename = "2K")]
    R2k,
    #[schema(rename = "4K")]
    R4k,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub enum UpscaleKind {
    #[schema(rename = "2x")]
    X2,
    #[schema(rename = "4x")]
    X4,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum UpscaleAltKind {
    Subtle,
    Creative,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum PanDirection {
    Up,
    Down,
    Left,
    Right,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum BlendDimension {
    Square,
    Portrait,
    Landscape,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum Motion {
    Low,
    High,
}

/// An http(s) URL of at most 2048 characters.
pub struct UrlString;

impl utoipa::PartialSchema for UrlString {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uri".into())))
            .max_length(Some(MAX_URL))
            .into()
    }
}

impl ToSchema for UrlString {}

/// A grid index `"1"`..`"4"`, a variation strength, or a number (accepted for leniency).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(value_type = String)]
pub struct Index(pub String);

impl<'de> Deserialize<'de> for Index {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Index(s)),
            Value::Number(n) => Ok(Index(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "index must be a string such as \"1\", got {other}"
            ))),
        }
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ImagineRequest {
    #[schema(min_length = 1, max_length = 4000)]
    pub prompt: String,
    /// Default `midjourney`; the values are the server's model catalogue (`/openapi.json`
    /// lists the catalogue it loaded).
    #[schema(example = "midjourney")]
    pub model: Option<String>,
    /// Default `1:1`.
    #[schema(value_type = Option<AspectRatio>)]
    pub aspect_ratio: Option<String>,
    /// Required for edit models; an image prompt for the others.
    #[schema(format = "uri", max_length = 2048)]
    pub image_url: Option<String>,
    /// Flux models only.
    #[schema(max_length = 4000)]
    pub negative_prompt: Option<String>,
    /// Default `png`.
    #[schema(value_type = Option<OutputFormat>)]
    pub output_format: Option<String>,
    /// Default `1K`.
    #[schema(value_type = Option<Resolution>)]
    pub resolution: Option<String>,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ParentIndexRequest {
    #[schema(format = Uuid)]
    pub parent_task_id: String,
    pub index: Index,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct UpscaleAltRequest {
    #[schema(format = Uuid)]
    pub parent_task_id: String,
    #[serde(rename = "type")]
    #[schema(value_type = UpscaleAltKind)]
    pub kind: String,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Upscale2x4xRequest {
    /// Exactly one of `parent_task_id` and `image_url`.
    #[schema(format = Uuid)]
    pub parent_task_id: Option<String>,
    #[schema(format = "uri", max_length = 2048)]
    pub image_url: Option<String>,
    #[serde(rename = "type")]
    #[schema(value_type = UpscaleKind)]
    pub kind: String,
    /// Required when the parent is a grid.
    pub index: Option<Index>,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct RerollRequest {
    #[schema(format = Uuid)]
    pub parent_task_id: String,
    #[schema(max_length = 4000)]
    pub prompt: Option<String>,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct PanRequest {
    #[schema(format = Uuid)]
    pub parent_task_id: String,
    #[schema(value_type = PanDirection)]
    pub direction: String,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct BlendRequest {
    #[schema(min_items = 2, max_items = 5, value_type = Vec<UrlString>)]
    pub image_urls: Vec<String>,
    /// Default `square`.
    #[schema(value_type = Option<BlendDimension>)]
    pub dimension: Option<String>,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct DescribeRequest {
    #[schema(format = "uri", max_length = 2048)]
    pub image_url: String,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct FaceswapRequest {
    #[schema(format = "uri", max_length = 2048)]
    pub target_image_url: String,
    #[schema(format = "uri", max_length = 2048)]
    pub swap_image_url: String,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ImagineVideoRequest {
    #[schema(min_length = 1, max_length = 4000)]
    pub prompt: String,
    /// The start frame.
    #[schema(format = "uri", max_length = 2048)]
    pub image_url: String,
    /// Default `low`.
    #[schema(value_type = Option<Motion>)]
    pub motion: Option<String>,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ExtendVideoRequest {
    #[schema(format = Uuid)]
    pub parent_task_id: String,
    pub index: Index,
    #[schema(min_length = 1, max_length = 4000)]
    pub prompt: String,
    #[schema(format = "uri", max_length = 2048)]
    pub image_url: Option<String>,
    /// Default `low`.
    #[schema(value_type = Option<Motion>)]
    pub motion: Option<String>,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct InpaintRequest {
    #[schema(format = Uuid)]
    pub parent_task_id: String,
    /// Base64 PNG; white marks the area to repaint.
    pub mask: String,
    #[schema(max_length = 4000)]
    pub prompt: Option<String>,
    #[serde(flatten)]
    pub hook: Hook,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct OutpaintRequest {
    #[schema(format = Uuid)]
    pub parent_task_id: String,
    /// Greater than 1, at most 2.
    #[schema(value_type = f64, exclusive_minimum = 1.0, maximum = 2.0)]
    pub zoom_ratio: Value,
    #[serde(flatten)]
    pub hook: Hook,
}

/// An OpenAI-style images call, kept in the sealed parameters so the worker can run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImagesJob {
    pub upstream_model: String,
    pub prompt: String,
    pub image_url: Option<String>,
    pub edit: bool,
    pub aspect_ratio: Option<String>,
    pub output_format: Option<String>,
    pub negative_prompt: Option<String>,
    pub resolution: Option<String>,
}

/// After a code-21 reply to an action (Inpaint, CustomZoom, remix), the modal to submit.
#[derive(Debug, Clone)]
pub struct ModalFollow {
    pub prompt: Option<String>,
    pub mask_base64: Option<String>,
}

/// A Midjourney action on a parent task: the button to press and what it costs.
struct Action {
    task_type: TaskType,
    credits: u64,
    /// Part of the parent's button `customId` that identifies the action.
    needle: String,
    /// Named in the 400 when the parent offers no such button.
    what: &'static str,
    modal: Option<ModalFollow>,
}

/// Images to download (through the address guard) and send as base64.
#[derive(Debug, Clone)]
pub enum Downloads {
    Blend(Vec<String>, Dimensions),
    Describe(String),
    Faceswap { target: String, swap: String },
}

/// What a midjourney-proxy submission starts from.
pub enum MjInput {
    /// Ready to send.
    Submit(Submit),
    /// Images to fetch first (sent as base64).
    Download(Downloads),
}

pub enum Run {
    /// A midjourney-proxy submission.
    Mj {
        input: MjInput,
        modal: Option<ModalFollow>,
    },
    /// An OpenAI-style images call, in the request (sync models) or by the worker.
    Images { job: ImagesJob, sync: bool },
}

pub struct Prepared {
    pub task_type: TaskType,
    pub model: String,
    pub provider: String,
    pub credits: u64,
    pub result_kind: ResultKind,
    pub parent: Option<Uuid>,
    /// The client's parameters (sealed in the prompts category).
    pub params: Value,
    pub hook: Option<WebhookTarget>,
    pub run: Run,
}

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::bad(msg)
}

pub fn parse_task_id(field: &str, s: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(s.trim()).map_err(|_| bad(format!("{field} must be a task id (a UUID)")))
}

fn prompt(field: &str, p: &str) -> Result<String, ServiceError> {
    let p = p.trim();
    if p.is_empty() {
        return Err(bad(format!("{field} is required")));
    }
    if p.chars().count() > MAX_PROMPT {
        return Err(bad(format!(
            "{field} must be at most {MAX_PROMPT} characters"
        )));
    }
    Ok(p.to_string())
}

fn one_of<'a>(
    field: &str,
    v: Option<&'a str>,
    allowed: &[&'a str],
    default: &'a str,
) -> Result<&'a str, ServiceError> {
    let v = v.unwrap_or(default);
    allowed
        .iter()
        .find(|a| **a == v)
        .copied()
        .ok_or_else(|| bad(format!("{field} must be one of {}", allowed.join(", "))))
}

fn grid_index(i: &Index) -> Result<u8, ServiceError> {
    match i.0.as_str() {
        "1" => Ok(1),
        "2" => Ok(2),
        "3" => Ok(3),
        "4" => Ok(4),
        _ => Err(bad("index must be \"1\", \"2\", \"3\" or \"4\"")),
    }
}

impl Tasks<'_> {
    fn checked_url(&self, field: &str, url: &str) -> Result<String, ServiceError> {
        if url.len() > MAX_URL {
            return Err(bad(format!("{field} must be at most {MAX_URL} characters")));
        }
        self.guard
            .check_url(url)
            .map(|u| u.to_string())
            .map_err(|e| bad(format!("{field}: {e}")))
    }

    fn hook(&self, h: &Hook) -> Result<Option<WebhookTarget>, ServiceError> {
        match (&h.webhook_url, &h.webhook_secret) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(bad("webhook_secret needs a webhook_url")),
            (Some(url), secret) => {
                let url = self.checked_url("webhook_url", url)?;
                if secret
                    .as_ref()
                    .is_some_and(|s| s.len() > 256 || s.contains(['\r', '\n']))
                {
                    return Err(bad(
                        "webhook_secret must be at most 256 characters on one line",
                    ));
                }
                Ok(Some(WebhookTarget {
                    url,
                    secret: secret.clone().filter(|s| !s.is_empty()),
                }))
            }
        }
    }

    /// The parent a follow-up action works on: the caller's own, finished task.
    async fn parent(&self, account: Uuid, id: &str) -> Result<(Uuid, Task), ServiceError> {
        let id = parse_task_id("parent_task_id", id)?;
        let task = self
            .owned_task(account, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("unknown parent_task_id {id}")))?;
        if task.taken_down {
            return Err(bad("the parent task's results were taken down"));
        }
        if task.status() != TaskStatus::Finished {
            return Err(bad(format!(
                "the parent task is {}, not finished",
                task.status().as_str()
            )));
        }
        Ok((id, task))
    }

    fn mj_action(
        &self,
        parent: (Uuid, &Task),
        action: Action,
        params: Value,
        hook: Option<WebhookTarget>,
    ) -> Result<Prepared, ServiceError> {
        let (parent_id, task) = parent;
        let custom_id = task
            .button(&action.needle)
            .ok_or_else(|| bad(format!("the parent task offers no {} action", action.what)))?;
        let upstream = task
            .upstream_id
            .clone()
            .ok_or_else(|| bad("the parent task has no upstream job"))?;
        Ok(Prepared {
            task_type: action.task_type,
            model: MJ_FAMILY.to_string(),
            provider: self.models.actions_provider.clone(),
            credits: action.credits,
            result_kind: action.task_type.result_kind(),
            parent: Some(parent_id),
            params,
            hook,
            run: Run::Mj {
                input: MjInput::Submit(Submit::Action {
                    task_id: upstream,
                    custom_id: custom_id.to_string(),
                }),
                modal: action.modal,
            },
        })
    }

    fn mj_new(
        &self,
        task_type: TaskType,
        credits: u64,
        params: Value,
        hook: Option<WebhookTarget>,
        input: MjInput,
    ) -> Prepared {
        Prepared {
            task_type,
            model: MJ_FAMILY.to_string(),
            provider: self.models.actions_provider.clone(),
            credits,
            result_kind: task_type.result_kind(),
            parent: None,
            params,
            hook,
            run: Run::Mj { input, modal: None },
        }
    }

    pub fn prepare_imagine(&self, r: &ImagineRequest) -> Result<Prepared, ServiceError> {
        let text = prompt("prompt", &r.prompt)?;
        let model_id = r
            .model
            .clone()
            .unwrap_or_else(|| self.models.default_model.clone());
        let spec: &ModelSpec = self.models.model(&model_id).ok_or_else(|| {
            bad(format!(
                "unknown model {model_id:?}; valid models: {}",
                self.models.ids().join(", ")
            ))
        })?;
        let aspect = one_of(
            "aspect_ratio",
            r.aspect_ratio.as_deref(),
            &ASPECT_RATIOS,
            "1:1",
        )?;
        let output_format = r
            .output_format
            .as_deref()
            .map(|f| one_of("output_format", Some(f), &["png", "jpg"], "png"))
            .transpose()?;
        let resolution = r
            .resolution
            .as_deref()
            .map(|f| one_of("resolution", Some(f), &["1K", "2K", "4K"], "1K"))
            .transpose()?;
        if let Some(n) = &r.negative_prompt {
            if !model_id.starts_with("flux") || spec.edit {
                return Err(bad(
                    "negative_prompt is only supported by the Flux generation models",
                ));
            }
            if n.chars().count() > MAX_PROMPT {
                return Err(bad(format!(
                    "negative_prompt must be at most {MAX_PROMPT} characters"
                )));
            }
        }
        let image_url = r
            .image_url
            .as_deref()
            .map(|u| self.checked_url("image_url", u))
            .transpose()?;
        if spec.edit && image_url.is_none() {
            return Err(bad(format!(
                "model {model_id} edits an image: image_url is required"
            )));
        }
        let mj = self.provider_kind(&spec.provider) == journey_domain::models::MJ_PROXY;
        if image_url.is_some() && !spec.edit && !mj {
            return Err(bad(format!(
                "model {model_id} does not take image_url (edit models and midjourney do)"
            )));
        }
        let hook = self.hook(&r.hook)?;
        let params = params_of(r);
        if mj {
            // Midjourney reads the ratio from the prompt; an explicit --ar wins.
            let mut p = match &image_url {
                Some(u) => format!("{u} {text}"),
                None => text.clone(),
            };
            if !text.contains("--ar") && !text.contains("--aspect") && aspect != "1:1" {
                p.push_str(&format!(" --ar {aspect}"));
            }
            return Ok(Prepared {
                task_type: TaskType::Imagine,
                model: model_id.clone(),
                provider: spec.provider.clone(),
                credits: spec.credits,
                result_kind: ResultKind::Grid,
                parent: None,
                params,
                hook,
                run: Run::Mj {
                    input: MjInput::Submit(Submit::Imagine {
                        prompt: p,
                        base64_array: vec![],
                    }),
                    modal: None,
                },
            });
        }
        Ok(Prepared {
            task_type: TaskType::Imagine,
            model: model_id.clone(),
            provider: spec.provider.clone(),
            credits: spec.credits,
            result_kind: ResultKind::Single,
            parent: None,
            params,
            hook,
            run: Run::Images {
                job: ImagesJob {
                    upstream_model: spec.upstream_model.clone(),
                    prompt: text,
                    image_url,
                    edit: spec.edit,
                    aspect_ratio: r.aspect_ratio.as_ref().map(|_| aspect.to_string()),
                    output_format: output_format.map(str::to_string),
                    negative_prompt: r.negative_prompt.clone(),
                    resolution: resolution.map(str::to_string),
                },
                sync: spec.mode == Mode::Sync,
            },
        })
    }

    pub async fn prepare_upscale_1x(
        &self,
        account: Uuid,
        r: &ParentIndexRequest,
    ) -> Result<Prepared, ServiceError> {
        let i = grid_index(&r.index)?;
        let hook = self.hook(&r.hook)?;
        let (id, parent) = self.parent(account, &r.parent_task_id).await?;
        require_kind(&parent, ResultKind::Grid, "upscale-1x needs a grid parent (imagine, variations, reroll, pan, blend, inpaint or outpaint)")?;
        self.mj_action(
            (id, &parent),
            Action {
                task_type: TaskType::Upscale1x,
                credits: self.models.actions.upscale_1x,
                needle: format!("MJ::JOB::upsample::{i}::"),
                what: "upscale",
                modal: None,
            },
            params_of(r),
            hook,
        )
    }

    pub async fn prepare_upscale_alt(
        &self,
        account: Uuid,
        r: &UpscaleAltRequest,
    ) -> Result<Prepared, ServiceError> {
        let kind = one_of(
            "type",
            Some(r.kind.as_str()),
            &["subtle", "creative"],
            "subtle",
        )?;
        let hook = self.hook(&r.hook)?;
        let (id, parent) = self.parent(account, &r.parent_task_id).await?;
        require_upscale(&parent, "upscale-alt")?;
        let (tt, needle) = if kind == "subtle" {
            (TaskType::UpscaleSubtle, "upsample_v6_2x_subtle")
        } else {
            (TaskType::UpscaleCreative, "upsample_v6_2x_creative")
        };
        self.mj_action(
            (id, &parent),
            Action {
                task_type: tt,
                credits: self.models.actions.upscale_alt,
                needle: needle.to_string(),
                what: "upscale",
                modal: None,
            },
            params_of(r),
            hook,
        )
    }

    pub async fn prepare_upscale_2x_4x(
        &self,
        account: Uuid,
        r: &Upscale2x4xRequest,
    ) -> Result<Prepared, ServiceError> {
        let kind = one_of("type", Some(r.kind.as_str()), &["2x", "4x"], "2x")?;
        let hook = self.hook(&r.hook)?;
        let (parent, source) = match (&r.parent_task_id, &r.image_url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(bad("give exactly one of parent_task_id and image_url"))
            }
            (None, Some(url)) => (None, self.checked_url("image_url", url)?),
            (Some(p), None) => {
                let (id, parent) = self.parent(account, p).await?;
                let result = self.opened_result(&parent).await?;
                let url = match parent.spec.as_ref().map(|s| s.result_kind) {
                    Some(ResultKind::Grid) => {
                        let i =
                            grid_index(r.index.as_ref().ok_or_else(|| {
                                bad("index is required when the parent is a grid")
                            })?)?;
                        result.image_urls.get(usize::from(i) - 1).cloned()
                    }
                    Some(ResultKind::Single) => result.image_url.clone(),
                    _ => return Err(bad("upscale-2x-4x needs an image parent")),
                };
                let url = url.ok_or_else(|| bad("the parent task has no image to upscale"))?;
                (Some(id), url)
            }
        };
        let mut params = params_of(r);
        params["source_image_url"] = Value::String(source.clone());
        let (tt, model) = if kind == "2x" {
            (TaskType::Upscale2x, self.models.upscaler_models.x2.clone())
        } else {
            (TaskType::Upscale4x, self.models.upscaler_models.x4.clone())
        };
        Ok(Prepared {
            task_type: tt,
            model: model.clone(),
            provider: self.models.upscaler_provider.clone(),
            credits: self.models.actions.upscale_2x_4x,
            result_kind: ResultKind::Single,
            parent,
            params,
            hook,
            run: Run::Images {
                job: ImagesJob {
                    upstream_model: model,
                    prompt: format!("upscale {kind}"),
                    image_url: Some(source),
                    edit: true,
                    aspect_ratio: None,
                    output_format: None,
                    negative_prompt: None,
                    resolution: None,
                },
                sync: false,
            },
        })
    }

    pub async fn prepare_variations(
        &self,
        account: Uuid,
        r: &ParentIndexRequest,
    ) -> Result<Prepared, ServiceError> {
        let hook = self.hook(&r.hook)?;
        let (id, parent) = self.parent(account, &r.parent_task_id).await?;
        let kind = parent.spec.as_ref().map(|s| (s.task_type, s.result_kind));
        let (tt, needle) = match (r.index.0.as_str(), kind) {
            ("strong" | "subtle", Some((t, _))) if t.is_upscale_1x() => {
                if r.index.0 == "strong" {
                    (TaskType::VariationStrong, "MJ::JOB::high_variation::".to_string())
                } else {
                    (TaskType::VariationSubtle, "MJ::JOB::low_variation::".to_string())
                }
            }
            ("strong" | "subtle", _) => {
                return Err(bad("index strong or subtle needs an upscale-1x parent"))
            }
            (_, Some((_, ResultKind::Grid))) => {
                let i = grid_index(&r.index)?;
                let tt = [TaskType::Variation1, TaskType::Variation2, TaskType::Variation3, TaskType::Variation4][usize::from(i) - 1];
                (tt, format!("MJ::JOB::variation::{i}::"))
            }
            _ => {
                return Err(bad(
                    "variations needs a grid parent with index \"1\"..\"4\", or an upscale-1x parent with strong or subtle",
                ))
            }
        };
        self.mj_action(
            (id, &parent),
            Action {
                task_type: tt,
                credits: self.models.actions.variations,
                needle,
                what: "variation",
                modal: None,
            },
            params_of(r),
            hook,
        )
    }

    pub async fn prepare_reroll(
        &self,
        account: Uuid,
        r: &RerollRequest,
    ) -> Result<Prepared, ServiceError> {
        let new_prompt = r
            .prompt
            .as_deref()
            .map(|p| prompt("prompt", p))
            .transpose()?;
        let hook = self.hook(&r.hook)?;
        let (id, parent) = self.parent(account, &r.parent_task_id).await?;
        if parent.spec.as_ref().map(|s| s.task_type) != Some(TaskType::Imagine)
            || parent.spec.as_ref().map(|s| s.result_kind) != Some(ResultKind::Grid)
        {
            return Err(bad(
                "reroll needs a finished Midjourney imagine task as parent",
            ));
        }
        let modal = new_prompt.map(|p| ModalFollow {
            prompt: Some(p),
            mask_base64: None,
        });
        self.mj_action(
            (id, &parent),
            Action {
                task_type: TaskType::Reroll,
                credits: self.models.actions.reroll,
                needle: "MJ::JOB::reroll::".to_string(),
                what: "reroll",
                modal,
            },
            params_of(r),
            hook,
        )
    }

    pub async fn prepare_pan(
        &self,
        account: Uuid,
        r: &PanRequest,
    ) -> Result<Prepared, ServiceError> {
        let dir = one_of(
            "direction",
            Some(r.direction.as_str()),
            &["up", "down", "left", "right"],
            "up",
        )?;
        let hook = self.hook(&r.hook)?;
        let (id, parent) = self.parent(account, &r.parent_task_id).await?;
        require_upscale(&parent, "pan")?;
        let tt = match dir {
            "up" => TaskType::PanUp,
            "down" => TaskType::PanDown,
            "left" => TaskType::PanLeft,
            _ => TaskType::PanRight,
        };
        self.mj_action(
            (id, &parent),
            Action {
                task_type: tt,
                credits: self.models.actions.pan,
                needle: format!("MJ::JOB::pan_{dir}::"),
                what: "pan",
                modal: None,
            },
            params_of(r),
            hook,
        )
    }

    pub fn prepare_blend(&self, r: &BlendRequest) -> Result<Prepared, ServiceError> {
        if !(2..=5).contains(&r.image_urls.len()) {
            return Err(bad("image_urls must hold 2 to 5 URLs"));
        }
        let urls = r
            .image_urls
            .iter()
            .enumerate()
            .map(|(i, u)| self.checked_url(&format!("image_urls[{i}]"), u))
            .collect::<Result<Vec<_>, _>>()?;
        let dims = match one_of(
            "dimension",
            r.dimension.as_deref(),
            &["square", "portrait", "landscape"],
            "square",
        )? {
            "portrait" => Dimensions::Portrait,
            "landscape" => Dimensions::Landscape,
            _ => Dimensions::Square,
        };
        let hook = self.hook(&r.hook)?;
        Ok(self.mj_new(
            TaskType::Blend,
            self.models.actions.blend,
            params_of(r),
            hook,
            MjInput::Download(Downloads::Blend(urls, dims)),
        ))
    }

    pub fn prepare_describe(&self, r: &DescribeRequest) -> Result<Prepared, ServiceError> {
        let url = self.checked_url("image_url", &r.image_url)?;
        let hook = self.hook(&r.hook)?;
        Ok(self.mj_new(
            TaskType::Describe,
            self.models.actions.describe,
            params_of(r),
            hook,
            MjInput::Download(Downloads::Describe(url)),
        ))
    }

    pub fn prepare_faceswap(&self, r: &FaceswapRequest) -> Result<Prepared, ServiceError> {
        let target = self.checked_url("target_image_url", &r.target_image_url)?;
        let swap = self.checked_url("swap_image_url", &r.swap_image_url)?;
        let hook = self.hook(&r.hook)?;
        Ok(self.mj_new(
            TaskType::Faceswap,
            self.models.actions.faceswap,
            params_of(r),
            hook,
            MjInput::Download(Downloads::Faceswap { target, swap }),
        ))
    }

    pub fn prepare_imagine_video(&self, r: &ImagineVideoRequest) -> Result<Prepared, ServiceError> {
        let text = prompt("prompt", &r.prompt)?;
        let url = self.checked_url("image_url", &r.image_url)?;
        let motion = one_of("motion", r.motion.as_deref(), &["low", "high"], "low")?;
        let hook = self.hook(&r.hook)?;
        let submit = Submit::Video {
            prompt: text,
            image_url: url,
            motion: motion.to_string(),
        };
        Ok(self.mj_new(
            TaskType::ImagineVideo,
            self.models.actions.imagine_video,
            params_of(r),
            hook,
            MjInput::Submit(submit),
        ))
    }

    pub async fn prepare_extend_video(
        &self,
        account: Uuid,
        r: &ExtendVideoRequest,
    ) -> Result<Prepared, ServiceError> {
        let i = grid_index(&r.index)?;
        let text = prompt("prompt", &r.prompt)?;
        let motion = one_of("motion", r.motion.as_deref(), &["low", "high"], "low")?;
        let image = r
            .image_url
            .as_deref()
            .map(|u| self.checked_url("image_url", u))
            .transpose()?;
        // The extension's prompt in Midjourney's own syntax: an image URL first, then the
        // text, then the motion parameter.
        let text = match image {
            Some(u) => format!("{u} {text} --motion {motion}"),
            None => format!("{text} --motion {motion}"),
        };
        let hook = self.hook(&r.hook)?;
        let (id, parent) = self.parent(account, &r.parent_task_id).await?;
        if parent.spec.as_ref().map(|s| s.result_kind) != Some(ResultKind::Video) {
            return Err(bad("extend-video needs an imagine-video parent"));
        }
        let modal = Some(ModalFollow {
            prompt: Some(text),
            mask_base64: None,
        });
        self.mj_action(
            (id, &parent),
            Action {
                task_type: TaskType::ImagineVideoExtend,
                credits: self.models.actions.extend_video,
                needle: format!("MJ::JOB::animate_extend::{i}::"),
                what: "extend",
                modal,
            },
            params_of(r),
            hook,
        )
    }

    pub async fn prepare_inpaint(
        &self,
        account: Uuid,
        r: &InpaintRequest,
    ) -> Result<Prepared, ServiceError> {
        use base64::Engine;
        let raw = r.mask.trim();
        let b64 = raw.strip_prefix("data:image/png;base64,").unwrap_or(raw);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("mask must be a base64-encoded PNG"))?;
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(bad("mask must be a base64-encoded PNG"));
        }
        if bytes.len() > 4 * 1024 * 1024 {
            return Err(bad("mask must be at most 4 MiB"));
        }
        let text = r
            .prompt
            .as_deref()
            .map(|p| prompt("prompt", p))
            .transpose()?;
        let hook = self.hook(&r.hook)?;
        let (id, parent) = self.parent(account, &r.parent_task_id).await?;
        require_upscale(&parent, "inpaint")?;
        let modal = Some(ModalFollow {
            prompt: text,
            mask_base64: Some(format!("data:image/png;base64,{b64}")),
        });
        // The mask is bulky and holds no prompt text: keep it out of the sealed parameters.
        let mut params = params_of(r);
        params["mask"] = Value::String(format!("[{} bytes]", bytes.len()));
        self.mj_action(
            (id, &parent),
            Action {
                task_type: TaskType::Inpaint,
                credits: self.models.actions.inpaint,
                needle: "MJ::Inpaint::".to_string(),
                what: "inpaint",
                modal,
            },
            params,
            hook,
        )
    }

    pub async fn prepare_outpaint(
        &self,
        account: Uuid,
        r: &OutpaintRequest,
    ) -> Result<Prepared, ServiceError> {
        let ratio = match &r.zoom_ratio {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|z| z.is_finite() && *z > 1.0 && *z <= 2.0)
        .ok_or_else(|| bad("zoom_ratio must be a number greater than 1 and at most 2"))?;
        let hook = self.hook(&r.hook)?;
        let (id, parent) = self.parent(account, &r.parent_task_id).await?;
        require_upscale(&parent, "outpaint")?;
        let base = self.prompt_of(&parent).await?;
        let modal = Some(ModalFollow {
            prompt: Some(format!("{base} --zoom {ratio}").trim().to_string()),
            mask_base64: None,
        });
        self.mj_action(
            (id, &parent),
            Action {
                task_type: TaskType::Outpaint,
                credits: self.models.actions.outpaint,
                needle: "MJ::CustomZoom::".to_string(),
                what: "zoom",
                modal,
            },
            params_of(r),
            hook,
        )
    }

    /// The prompt a task (or its nearest ancestor with one) was made from.
    async fn prompt_of(&self, task: &Task) -> Result<String, ServiceError> {
        let mut current = task.clone();
        for _ in 0..16 {
            let Some(spec) = current.spec.clone() else {
                break;
            };
            if let Opened::Value(p) = self.vault.open(&spec.params).await? {
                if let Some(text) = p.get("prompt").and_then(Value::as_str) {
                    return Ok(text.to_string());
                }
            }
            let Some(parent) = spec.parent_task_id else {
                break;
            };
            current = self.stores.tasks.tasks.load(&parent.to_string()).await?.0;
        }
        Ok(String::new())
    }

    pub async fn opened_result(
        &self,
        task: &Task,
    ) -> Result<journey_domain::task::TaskResult, ServiceError> {
        Ok(match &task.result {
            Some(r) => self.vault.open(r).await?.value().unwrap_or_default(),
            None => Default::default(),
        })
    }

    fn provider_kind(&self, provider: &str) -> &str {
        self.cfg
            .providers
            .get(provider)
            .map(|p| p.kind.as_str())
            .unwrap_or_default()
    }
}

fn require_kind(task: &Task, kind: ResultKind, msg: &str) -> Result<(), ServiceError> {
    if task.spec.as_ref().map(|s| s.result_kind) != Some(kind)
        || task.upstream_id.is_none()
        || task.buttons.is_empty()
    {
        return Err(bad(msg));
    }
    Ok(())
}

fn require_upscale(task: &Task, what: &str) -> Result<(), ServiceError> {
    if task.spec.as_ref().map(|s| s.task_type) != Some(TaskType::Upscale1x) {
        return Err(bad(format!("{what} needs an upscale-1x parent")));
    }
    Ok(())
}

/// The request as sealed parameters: everything but the webhook destination and secret.
fn params_of<T: Serialize>(r: &T) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("webhook_url");
        m.remove("webhook_secret");
        m.retain(|_, v| !v.is_null());
    }
    v
}
