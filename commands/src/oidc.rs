//! Google sign-in (OpenID Connect, authorization-code flow with PKCE). The issuer URL is
//! configuration so tests run against a local issuer; discovery, code exchange and ID-token
//! verification (signature via JWKS, issuer, audience, expiry, nonce) happen here.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::RwLock;

#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// Claims we rely on from a verified ID token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    pub email: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub nonce: Option<String>,
}

fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    // Some issuers send "true" as a string.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        B(bool),
        S(String),
    }
    Ok(match B::deserialize(d)? {
        B::B(b) => b,
        B::S(s) => s == "true",
    })
}

pub struct OidcClient {
    cfg: OidcConfig,
    http: reqwest::Client,
    discovery: RwLock<Option<Discovery>>,
}

/// PKCE S256 challenge for a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl OidcClient {
    pub fn new(cfg: OidcConfig) -> Self {
        OidcClient {
            cfg,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            discovery: RwLock::new(None),
        }
    }

    pub fn configured(&self) -> bool {
        !self.cfg.client_id.is_empty()
    }

    async fn discovery(&self) -> Result<Discovery> {
        if let Some(d) = self.discovery.read().await.clone() {
            return Ok(d);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let d: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .context("OIDC discovery unreachable")?
            .error_for_status()?
            .json()
            .await
            .context("OIDC discovery document malformed")?;
        if d.issuer.trim_end_matches('/') != self.cfg.issuer.trim_end_matches('/') {
            bail!("OIDC discovery issuer mismatch");
        }
        *self.discovery.write().await = Some(d.clone());
        Ok(d)
    }

    pub async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String> {
        let d = self.discovery().await?;
        let mut url = url::Url::parse(&d.authorization_endpoint)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", &self.cfg.redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &pkce_challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.to_string())
    }

    /// Exchanges the code and returns the verified claims. `nonce` must match the token's.
    pub async fn exchange(&self, code: &str, verifier: &str, nonce: &str) -> Result<IdClaims> {
        let d = self.discovery().await?;
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: String,
        }
        let resp = self
            .http
            .post(&d.token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.cfg.redirect_uri),
                ("client_id", &self.cfg.client_id),
                ("client_secret", &self.cfg.client_secret),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .context("token endpoint unreachable")?;
        if !resp.status().is_success() {
            bail!("token endpoint refused the code ({})", resp.status());
        }
        let token: TokenResponse = resp.json().await.context("token response malformed")?;
        let claims = self.verify(&d, &token.id_token).await?;
        match &claims.nonce {
            Some(n) if crate::secrets::ct_eq(n, nonce) => Ok(claims),
            _ => bail!("ID token nonce mismatch"),
        }
    }

    async fn verify(&self, d: &Discovery, id_token: &str) -> Result<IdClaims> {
        let header = decode_header(id_token).context("ID token malformed")?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            bail!("ID token algorithm {:?} not accepted", header.alg);
        }
        let jwks: JwkSet = self
            .http
            .get(&d.jwks_uri)
            .send()
            .await
            .context("JWKS unreachable")?
            .error_for_status()?
            .json()
            .await
            .context("JWKS malformed")?;
        let jwk = match &header.kid {
            Some(kid) => jwks.find(kid),
            None => jwks.keys.first(),
        }
        .ok_or_else(|| anyhow!("ID token signed by an unknown key"))?;
        let key = DecodingKey::from_jwk(jwk)?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[d.issuer.as_str()]);
        v.set_audience(&[self.cfg.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        let data = decode::<IdClaims>(id_token, &key, &v).context("ID token rejected")?;
        Ok(data.claims)
    }
}
