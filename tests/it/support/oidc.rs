//! A fake OpenID Connect issuer on loopback: discovery, JWKS, and a token endpoint that
//! checks the PKCE verifier and returns an RS256-signed ID token. Tests play the user's
//! part by calling `authorize` with the nonce and challenge the app put in its redirect;
//! or, for a real browser, say who is signed in at the issuer (`sign_in_as`) and let the
//! browser follow the app's redirect to `/authorize`, which consents at once and sends it
//! back to the app with a code.

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const KEY_PEM: &str = include_str!("../../fixtures/oidc-test-key.pem");
const KEY_N: &str = include_str!("../../fixtures/oidc-test-key.n");
pub const KID: &str = "test-key-1";

/// What the issuer's handlers share: its URL, the outstanding grants by code, and who is
/// signed in at the issuer (the claims `/authorize` grants, without nonce and times).
type IssuerState = web::Data<(String, Arc<Mutex<HashMap<String, Grant>>>, SignedIn)>;
/// (claims, the app's base URL: the harness binds port 0, so the `redirect_uri` the app
/// was configured with names port 0; the issuer sends the browser to this base instead,
/// with the redirect URI's path).
type SignedIn = Arc<Mutex<Option<(Value, String)>>>;

#[derive(Clone)]
struct Grant {
    challenge: String,
    claims: Value,
}

#[derive(Clone)]
pub struct FakeIssuer {
    pub issuer: String,
    pub client_id: String,
    grants: Arc<Mutex<HashMap<String, Grant>>>,
    signed_in: SignedIn,
}

/// What the user "is" at Google for one sign-in.
pub struct GoogleUser<'a> {
    pub sub: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub name: Option<&'a str>,
    pub picture: Option<&'a str>,
}

impl FakeIssuer {
    pub async fn start(client_id: &str) -> FakeIssuer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let grants: Arc<Mutex<HashMap<String, Grant>>> = Arc::default();
        let signed_in: SignedIn = Arc::default();
        let state = (issuer.clone(), grants.clone(), signed_in.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery),
                )
                .route("/jwks", web::get().to(jwks))
                .route("/authorize", web::get().to(authorize))
                .route("/token", web::post().to(token))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        FakeIssuer {
            issuer,
            client_id: client_id.to_string(),
            grants,
            signed_in,
        }
    }

    /// The user a browser is signed in as at this issuer: `/authorize` grants their claims
    /// and sends the browser back to the app at `app_base`.
    pub fn sign_in_as(&self, user: &GoogleUser<'_>, app_base: &str) {
        let mut claims = self.claims(user, "");
        if let Some(c) = claims.as_object_mut() {
            for k in ["nonce", "iat", "exp"] {
                c.remove(k);
            }
        }
        *self.signed_in.lock().unwrap() = Some((claims, app_base.to_string()));
    }

    /// Standard claims for `user`, as Google would issue them for this client.
    pub fn claims(&self, user: &GoogleUser<'_>, nonce: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer, "aud": self.client_id, "sub": user.sub,
            "email": user.email, "email_verified": user.email_verified,
            "name": user.name, "picture": user.picture, "nonce": nonce,
            "iat": now, "exp": now + 3600,
        })
    }

    /// Records a consent for `claims` and returns the code Google would redirect with.
    pub fn authorize(&self, challenge: &str, claims: Value) -> String {
        let code = uuid::Uuid::new_v4().simple().to_string();
        self.grants.lock().unwrap().insert(
            code.clone(),
            Grant {
                challenge: challenge.to_string(),
                claims,
            },
        );
        code
    }
}

/// The browser's stop at the issuer: consents for whoever `sign_in_as` named and sends
/// the browser back to the app's `redirect_uri` with a code and the app's `state`.
async fn authorize(s: IssuerState, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    let Some((mut claims, app_base)) = s.2.lock().unwrap().clone() else {
        return HttpResponse::BadRequest().body("no one is signed in at the fake issuer");
    };
    let now = chrono::Utc::now().timestamp();
    claims["nonce"] = json!(q.get("nonce").cloned().unwrap_or_default());
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 3600);
    let code = uuid::Uuid::new_v4().simple().to_string();
    s.1.lock().unwrap().insert(
        code.clone(),
        Grant {
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
            claims,
        },
    );
    let registered = url::Url::parse(q.get("redirect_uri").map_or("", String::as_str)).unwrap();
    let mut back = url::Url::parse(&app_base)
        .unwrap()
        .join(registered.path())
        .unwrap();
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map_or("", String::as_str));
    HttpResponse::Found()
        .insert_header(("location", back.to_string()))
        .finish()
}

async fn discovery(s: IssuerState) -> HttpResponse {
    let iss = &s.0;
    HttpResponse::Ok().json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "keys": [{ "kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256", "n": KEY_N.trim(), "e": "AQAB" }]
    }))
}

async fn token(s: IssuerState, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(grant) = s.1.lock().unwrap().remove(&code) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return HttpResponse::BadRequest().json(
            json!({"error": "invalid_grant", "error_description": "PKCE verification failed"}),
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type"}));
    }
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.to_string());
    let key = EncodingKey::from_rsa_pem(KEY_PEM.as_bytes()).unwrap();
    let id_token = encode(&header, &grant.claims, &key).unwrap();
    HttpResponse::Ok().json(json!({ "access_token": "at", "token_type": "Bearer", "id_token": id_token, "expires_in": 3600 }))
}
