//! Client for OpenAI-compatible image endpoints (`/v1/images/generations` and
//! `/v1/images/edits`), used for models that are not served through midjourney-proxy.
//! Many gateways speak this dialect with extra fields (`aspect_ratio`, `resolution`,
//! `negative_prompt`), which are passed through only when set.

use super::{mj_proxy::parse_base, UpstreamError};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use url::Url;

/// A text-to-image request.
#[derive(Debug, Clone, Serialize)]
pub struct Generate {
    pub model: String,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

/// An image-to-image request; `image` is the raw file, `image_mime` its media type.
#[derive(Debug, Clone)]
pub struct Edit {
    pub model: String,
    pub prompt: String,
    pub image: Vec<u8>,
    pub image_mime: String,
    pub aspect_ratio: Option<String>,
    pub output_format: Option<String>,
    pub resolution: Option<String>,
}

/// The first image of a reply: either hosted by the provider or inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeneratedImage {
    Url(String),
    Base64 { data: String },
}

#[derive(Clone)]
pub struct ImagesClient {
    http: reqwest::Client,
    base: Url,
    key: String,
    timeout: Duration,
}

impl fmt::Debug for ImagesClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImagesClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl ImagesClient {
    /// `base_url` is the server root; a trailing `/v1` is tolerated because provider
    /// docs usually quote the base URL with it.
    pub fn new(base_url: &str, key: &str, timeout: Duration) -> Result<Self, UpstreamError> {
        let mut base = parse_base(base_url)?;
        let trimmed = base.path().trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string();
        base.set_path(&trimmed);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        Ok(ImagesClient {
            http,
            base,
            key: key.to_string(),
            timeout,
        })
    }

    fn endpoint(&self, last: &str) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("base URL was validated as http(s)")
            .pop_if_empty()
            .extend(["v1", "images", last]);
        url
    }

    pub async fn generate(&self, req: &Generate) -> Result<GeneratedImage, UpstreamError> {
        let mut body = serde_json::to_value(req).expect("Generate serialises to JSON");
        body["n"] = Value::from(1);
        let rb = self
            .http
            .post(self.endpoint("generations"))
            .bearer_auth(&self.key)
            .json(&body);
        self.send(rb).await
    }

    pub async fn edit(&self, req: &Edit) -> Result<GeneratedImage, UpstreamError> {
        let part = reqwest::multipart::Part::bytes(req.image.clone())
            .file_name(file_name_for(&req.image_mime));
        // An unparseable mime is the caller's bug; the upstream can still sniff the file.
        let part = match part.mime_str(&req.image_mime) {
            Ok(p) => p,
            Err(_) => reqwest::multipart::Part::bytes(req.image.clone())
                .file_name(file_name_for(&req.image_mime)),
        };
        let mut form = reqwest::multipart::Form::new()
            .text("model", req.model.clone())
            .text("prompt", req.prompt.clone())
            .text("n", "1");
        for (name, value) in [
            ("aspect_ratio", &req.aspect_ratio),
            ("output_format", &req.output_format),
            ("resolution", &req.resolution),
        ] {
            if let Some(v) = value {
                form = form.text(name, v.clone());
            }
        }
        let form = form.part("image", part);
        let rb = self
            .http
            .post(self.endpoint("edits"))
            .bearer_auth(&self.key)
            .multipart(form);
        self.send(rb).await
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<GeneratedImage, UpstreamError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(e, self.timeout))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| UpstreamError::from_reqwest(e, self.timeout))?;
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&bytes);
            return Err(UpstreamError::http(status, &error_detail(&text)));
        }
        parse_reply(&bytes)
    }
}

fn file_name_for(mime: &str) -> &'static str {
    let essence = mime.split(';').next().unwrap_or("").trim();
    match essence.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" => "image.jpg",
        "image/webp" => "image.webp",
        "image/gif" => "image.gif",
        _ => "image.png",
    }
}

/// OpenAI-style errors carry the useful sentence in `error.message`; other gateways
/// send plain text, which is kept as is.
fn error_detail(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.to_string();
    };
    match &v["error"] {
        Value::Object(o) => match o.get("message") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => body.to_string(),
        },
        Value::String(m) if !m.is_empty() => m.clone(),
        _ => match &v["message"] {
            Value::String(m) if !m.is_empty() => m.clone(),
            _ => body.to_string(),
        },
    }
}

fn parse_reply(bytes: &[u8]) -> Result<GeneratedImage, UpstreamError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    let first = v
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .ok_or_else(|| UpstreamError::Malformed("reply contains no image".into()))?;
    let non_empty = |k: &str| {
        first
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(url) = non_empty("url") {
        Ok(GeneratedImage::Url(url))
    } else if let Some(data) = non_empty("b64_json") {
        Ok(GeneratedImage::Base64 { data })
    } else {
        Err(UpstreamError::Malformed(
            "image entry has neither url nor b64_json".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::test_http::{serve, Response};
    use serde_json::json;

    const T: Duration = Duration::from_secs(5);

    fn generate() -> Generate {
        Generate {
            model: "flux-pro".into(),
            prompt: "a lighthouse".into(),
            size: None,
            aspect_ratio: Some("16:9".into()),
            output_format: None,
            negative_prompt: Some("fog".into()),
            resolution: None,
        }
    }

    #[tokio::test]
    async fn generate_url_reply() {
        let srv = serve("127.0.0.1", |_| {
            Response::json(
                200,
                json!({"created": 1, "data": [{"url": "https://cdn.example/1.png", "revised_prompt": "x"}]}),
            )
        })
        .await;
        let c = ImagesClient::new(&srv.url("/v1/"), "sk-1", T).unwrap();
        let img = c.generate(&generate()).await.unwrap();
        assert_eq!(img, GeneratedImage::Url("https://cdn.example/1.png".into()));
        let req = &srv.taken()[0];
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/images/generations");
        assert_eq!(req.header("authorization"), Some("Bearer sk-1"));
        assert_eq!(
            req.json(),
            json!({"model": "flux-pro", "prompt": "a lighthouse", "n": 1,
                   "aspect_ratio": "16:9", "negative_prompt": "fog"})
        );
    }

    #[tokio::test]
    async fn generate_b64_reply_and_all_fields() {
        let srv = serve("127.0.0.1", |_| {
            Response::json(
                200,
                json!({"created": 1, "data": [{"b64_json": "iVBORw=="}]}),
            )
        })
        .await;
        let c = ImagesClient::new(&srv.url("/gw"), "sk-1", T).unwrap();
        let req = Generate {
            size: Some("1024x1024".into()),
            output_format: Some("png".into()),
            resolution: Some("2k".into()),
            ..generate()
        };
        assert_eq!(
            c.generate(&req).await.unwrap(),
            GeneratedImage::Base64 {
                data: "iVBORw==".into()
            }
        );
        let r = &srv.taken()[0];
        assert_eq!(r.path, "/gw/v1/images/generations");
        assert_eq!(
            r.json(),
            json!({"model": "flux-pro", "prompt": "a lighthouse", "n": 1, "size": "1024x1024",
                   "aspect_ratio": "16:9", "output_format": "png", "negative_prompt": "fog",
                   "resolution": "2k"})
        );
    }

    #[tokio::test]
    async fn edit_sends_multipart() {
        let srv = serve("127.0.0.1", |_| {
            Response::json(200, json!({"data": [{"url": "https://cdn.example/e.png"}]}))
        })
        .await;
        let c = ImagesClient::new(&srv.url(""), "sk-2", T).unwrap();
        let edit = Edit {
            model: "gpt-image-1".into(),
            prompt: "make it night".into(),
            image: b"\xff\xd8\xffJPEGDATA".to_vec(),
            image_mime: "image/jpeg".into(),
            aspect_ratio: None,
            output_format: Some("webp".into()),
            resolution: None,
        };
        assert_eq!(
            c.edit(&edit).await.unwrap(),
            GeneratedImage::Url("https://cdn.example/e.png".into())
        );
        let r = &srv.taken()[0];
        assert_eq!(r.path, "/v1/images/edits");
        assert_eq!(r.header("authorization"), Some("Bearer sk-2"));
        let ct = r.header("content-type").unwrap();
        assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
        let body = String::from_utf8_lossy(&r.body);
        let field = |name: &str, value: &str| {
            format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
        };
        assert!(body.contains(&field("model", "gpt-image-1")), "{body}");
        assert!(body.contains(&field("prompt", "make it night")), "{body}");
        assert!(body.contains(&field("n", "1")), "{body}");
        assert!(body.contains(&field("output_format", "webp")), "{body}");
        assert!(!body.contains("name=\"aspect_ratio\""));
        assert!(body.contains(
            "Content-Disposition: form-data; name=\"image\"; filename=\"image.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        ), "{body}");
        assert!(r
            .body
            .windows(b"\xff\xd8\xffJPEGDATA".len())
            .any(|w| w == b"\xff\xd8\xffJPEGDATA"));
    }

    #[tokio::test]
    async fn errors() {
        let srv = serve("127.0.0.1", |r| match r.path.as_str() {
            "/a/v1/images/generations" => Response::json(
                400,
                json!({"error": {"message": "Your request was rejected by the safety system.", "type": "invalid_request_error", "code": "content_policy_violation"}}),
            ),
            "/b/v1/images/generations" => Response::new(503, "overloaded"),
            "/c/v1/images/generations" => Response::json(200, json!({"created": 1, "data": []})),
            "/d/v1/images/generations" => Response::new(200, "{not json"),
            _ => Response::json(200, json!({"data": [{"revised_prompt": "only"}]})),
        })
        .await;
        let run = |p: &str| {
            let c = ImagesClient::new(&srv.url(p), "k", T).unwrap();
            async move { c.generate(&generate()).await.unwrap_err() }
        };
        match run("/a").await {
            UpstreamError::Http { status: 400, body } => {
                assert_eq!(body, "Your request was rejected by the safety system.")
            }
            e => panic!("{e:?}"),
        }
        match run("/b").await {
            UpstreamError::Http { status: 503, body } => assert_eq!(body, "overloaded"),
            e => panic!("{e:?}"),
        }
        assert!(matches!(run("/c").await, UpstreamError::Malformed(_)));
        assert!(matches!(run("/d").await, UpstreamError::Malformed(_)));
        assert!(matches!(run("/e").await, UpstreamError::Malformed(_)));
    }

    #[test]
    fn file_names_follow_mime() {
        assert_eq!(file_name_for("image/png"), "image.png");
        assert_eq!(file_name_for("IMAGE/JPEG"), "image.jpg");
        assert_eq!(file_name_for("image/webp; q=1"), "image.webp");
        assert_eq!(file_name_for("application/octet-stream"), "image.png");
    }
}
