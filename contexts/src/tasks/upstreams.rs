//! The configured upstream providers as ready clients: midjourney-proxy providers for the
//! Midjourney family, OpenAI-style images providers for the other models and the upscaler.

use crate::config::{Config, ProviderConfig};
use anyhow::{Context, Result};
use journey_commands::upstream::images::ImagesClient;
use journey_commands::upstream::mj_proxy::MjProxyClient;
use journey_domain::models::{MJ_PROXY, OPENAI_IMAGES};
use std::collections::HashMap;
use std::time::Duration;

pub struct Upstreams {
    mj: HashMap<String, MjProxyClient>,
    images: HashMap<String, ImagesClient>,
    settings: HashMap<String, ProviderConfig>,
}

impl Upstreams {
    /// Clients for every provider that has a key; a provider without one stays
    /// unconfigured and its tasks are refused with 503.
    pub fn new(cfg: &Config) -> Result<Upstreams> {
        let mut up = Upstreams {
            mj: HashMap::new(),
            images: HashMap::new(),
            settings: HashMap::new(),
        };
        for (name, p) in &cfg.providers {
            up.settings.insert(name.clone(), p.clone());
            let Some(key) = p.api_key.as_deref().filter(|k| !k.is_empty()) else {
                continue;
            };
            let timeout = Duration::from_secs(p.request_timeout_secs.max(1));
            match p.kind.as_str() {
                MJ_PROXY => {
                    let c =
                        MjProxyClient::new(&p.base_url, p.auth, key, p.speed.as_deref(), timeout)
                            .with_context(|| format!("provider {name}"))?;
                    up.mj.insert(name.clone(), c);
                }
                OPENAI_IMAGES => {
                    let c = ImagesClient::new(&p.base_url, key, timeout)
                        .with_context(|| format!("provider {name}"))?;
                    up.images.insert(name.clone(), c);
                }
                other => anyhow::bail!("provider {name}: unknown kind {other:?}"),
            }
        }
        Ok(up)
    }

    pub fn mj(&self, provider: &str) -> Option<&MjProxyClient> {
        self.mj.get(provider)
    }

    pub fn images(&self, provider: &str) -> Option<&ImagesClient> {
        self.images.get(provider)
    }

    pub fn is_configured(&self, provider: &str) -> bool {
        self.mj.contains_key(provider) || self.images.contains_key(provider)
    }

    fn setting(
        &self,
        provider: &str,
        pick: fn(&ProviderConfig) -> u64,
        default: u64,
    ) -> chrono::Duration {
        let secs = self.settings.get(provider).map(pick).unwrap_or(default);
        chrono::Duration::seconds(secs as i64)
    }

    /// A task with no result after this long fails and is released.
    pub fn task_timeout(&self, provider: &str) -> chrono::Duration {
        self.setting(provider, |p| p.task_timeout_secs, 900)
    }

    /// The longest one HTTP call to the provider may take.
    pub fn request_timeout(&self, provider: &str) -> chrono::Duration {
        self.setting(provider, |p| p.request_timeout_secs, 30)
    }
}
