//! The image-model catalogue: which models `imagine` accepts, what each costs, whether it
//! answers synchronously, and which upstream provider and model id serve it; plus what the
//! Midjourney editing actions cost. Loaded from one configuration file
//! (`config/models.toml` is the default) so an operator changes prices or routing without
//! a rebuild.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The create call answers with the finished image.
    Sync,
    /// The create call answers with a task to poll (or to be told about by webhook).
    Async,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub credits: u64,
    pub mode: Mode,
    /// A provider name from the server configuration (`providers.<name>`).
    pub provider: String,
    /// The model id the provider knows.
    pub upstream_model: String,
    /// Edit models transform `image_url` and require it.
    #[serde(default)]
    pub edit: bool,
}

/// Credits per editing action (the reference's endpoint table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionCredits {
    pub upscale_1x: u64,
    pub upscale_alt: u64,
    pub upscale_2x_4x: u64,
    pub variations: u64,
    pub reroll: u64,
    pub pan: u64,
    pub blend: u64,
    pub describe: u64,
    pub faceswap: u64,
    pub imagine_video: u64,
    pub extend_video: u64,
    pub inpaint: u64,
    pub outpaint: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCatalog {
    /// `imagine`'s model when the request names none.
    pub default_model: String,
    /// The midjourney-proxy provider that runs every editing action, blend, describe,
    /// face swap and video.
    pub actions_provider: String,
    /// Provider and model that `upscale-2x-4x` sends images to (OpenAI-style edits).
    pub upscaler_provider: String,
    pub upscaler_models: UpscalerModels,
    pub actions: ActionCredits,
    pub models: BTreeMap<String, ModelSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpscalerModels {
    #[serde(rename = "2x")]
    pub x2: String,
    #[serde(rename = "4x")]
    pub x4: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("model catalogue: {0}")]
pub struct ModelCatalogError(pub String);

impl ModelCatalog {
    /// Checks internal consistency; `providers` are the configured provider names, so a
    /// model routed to a provider that does not exist fails start-up.
    pub fn validate<'a>(
        &self,
        providers: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), ModelCatalogError> {
        let bad = |m: String| Err(ModelCatalogError(m));
        if !self.models.contains_key(&self.default_model) {
            return bad(format!(
                "default_model {:?} is not in [models]",
                self.default_model
            ));
        }
        let need_kind = |name: &str, kind: &str, what: &str| match providers(name) {
            None => bad(format!(
                "{what} uses provider {name:?}, which is not configured"
            )),
            Some(k) if k != kind => bad(format!(
                "{what} uses provider {name:?} of kind {k:?}, but needs a {kind:?} provider"
            )),
            Some(_) => Ok(()),
        };
        need_kind(&self.actions_provider, MJ_PROXY, "actions_provider")?;
        need_kind(&self.upscaler_provider, OPENAI_IMAGES, "upscaler_provider")?;
        for (id, m) in &self.models {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return bad(format!(
                    "model id {id:?} must be letters, digits, '-', '.' or '_'"
                ));
            }
            if m.credits == 0 || m.credits > 1000 {
                return bad(format!("model {id}: credits must be 1..=1000"));
            }
            let kind = providers(&m.provider).ok_or_else(|| {
                ModelCatalogError(format!(
                    "model {id} uses provider {:?}, which is not configured",
                    m.provider
                ))
            })?;
            match (kind, m.mode) {
                (MJ_PROXY, Mode::Sync) => {
                    return bad(format!("model {id}: midjourney-proxy models are async"))
                }
                (MJ_PROXY, _) if m.edit => {
                    return bad(format!(
                        "model {id}: midjourney-proxy models cannot be edit models"
                    ))
                }
                (MJ_PROXY | OPENAI_IMAGES, _) => {}
                (other, _) => return bad(format!("model {id}: unknown provider kind {other:?}")),
            }
        }
        Ok(())
    }

    pub fn model(&self, id: &str) -> Option<&ModelSpec> {
        self.models.get(id)
    }

    /// Valid ids, for the 400 that names them.
    pub fn ids(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }
}

/// Provider kinds (`providers.<name>.kind`).
pub const MJ_PROXY: &str = "midjourney-proxy";
pub const OPENAI_IMAGES: &str = "openai-images";
