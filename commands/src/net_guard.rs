//! Outbound address guard against server-side request forgery.
//!
//! Clients of the API hand us URLs that the server then fetches itself: webhook
//! destinations and input images for blend/describe/faceswap jobs. Without a guard,
//! such a URL can point the server at its own loopback services, the private network
//! or the cloud metadata endpoint. The guard refuses those destinations at every layer
//! a URL can sneak through:
//!
//! * hostnames are checked in the DNS resolver, on the addresses actually used for the
//!   connection, so DNS rebinding between "check" and "connect" cannot bypass it and
//!   every redirect hop is covered;
//! * IP-literal hosts never reach a resolver, so they are checked by [`Guard::check_url`]
//!   before sending, by the redirect policy on each hop, and once more at connect time
//!   by routing them to a sentinel proxy name that the resolver refuses.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use url::{Host, Url};

/// Redirect hops followed before giving up; enough for CDN and shortener chains.
pub const MAX_REDIRECTS: usize = 5;

/// Connection attempts to a silent host should fail well before the total timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Suffix of the sentinel proxy names; `.invalid` can never resolve (RFC 2606).
const SENTINEL_SUFFIX: &str = "refused.net-guard.invalid";

/// True for addresses a client-supplied URL must never reach: anything that is not a
/// globally routed unicast address, including IPv6 forms that embed such an IPv4.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", includes 0.0.0.0 which Linux routes to loopback
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254) // link-local, cloud metadata 169.254.169.254
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if ip.is_unspecified() || ip.is_loopback() {
        return true;
    }
    let seg = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d) and deprecated IPv4-compatible (::a.b.c.d) forms
    // are delivered to the IPv4 address by dual-stack sockets.
    if let Some(v4) = ip.to_ipv4() {
        return forbidden_v4(v4);
    }
    let bits = u128::from(ip);
    match seg[0] {
        0x0064 if seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] => {
            // NAT64 well-known prefix 64:ff9b::/96 reaches the embedded IPv4.
            forbidden_v4(Ipv4Addr::from(bits as u32))
        }
        0x0064 if seg[1] == 0xff9b && seg[2] == 1 => true, // local-use NAT64 64:ff9b:1::/48
        0x0100 if seg[1..4] == [0, 0, 0] => true,          // discard-only 100::/64
        0x2001 if seg[1] == 0 => true,                     // Teredo 2001::/32
        0x2001 if seg[1] == 0x0db8 => true,                // documentation 2001:db8::/32
        0x2002 => {
            // 6to4 2002:AABB:CCDD::/48 tunnels to IPv4 AA.BB.CC.DD.
            forbidden_v4(Ipv4Addr::from((bits >> 80) as u32))
        }
        s if s & 0xfe00 == 0xfc00 => true, // unique local fc00::/7 (AWS fd00:ec2::254)
        s if s & 0xffc0 == 0xfe80 => true, // link-local fe80::/10
        s if s & 0xffc0 == 0xfec0 => true, // deprecated site-local fec0::/10
        s if s & 0xff00 == 0xff00 => true, // multicast ff00::/8
        _ => false,
    }
}

/// Why a URL or destination was refused. Messages are written for API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("only http and https URLs are allowed")]
    Scheme,
    #[error("URL has no host")]
    NoHost,
    #[error("URLs with embedded credentials are not allowed")]
    Credentials,
    #[error("destination resolves to a private or internal address ({0}) and is refused")]
    Forbidden(IpAddr),
    #[error("too many redirects (more than {MAX_REDIRECTS})")]
    TooManyRedirects,
}

/// The policy for outbound requests to client-supplied URLs. Cheap to clone.
#[derive(Clone)]
pub struct Guard {
    allow_private: bool,
    deny: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// `allow_private` switches address checks off, for development setups where
    /// webhooks and images legitimately live on localhost or a private network.
    pub fn new(allow_private: bool) -> Self {
        Guard {
            allow_private,
            deny: Arc::new(is_forbidden_ip),
        }
    }

    /// A guard with a custom deny predicate, so tests can forbid specific loopback
    /// addresses while still talking to a local server on another one.
    pub fn with_rule(rule: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> Self {
        Guard {
            allow_private: false,
            deny: Arc::new(rule),
        }
    }

    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    fn denies(&self, ip: IpAddr) -> bool {
        !self.allow_private && (self.deny)(ip)
    }

    /// Validates a client-supplied URL before it is stored or fetched. Hostnames are
    /// accepted here; their addresses are checked when the client connects.
    pub fn check_url(&self, url: &str) -> Result<Url, GuardError> {
        let parsed = Url::parse(url.trim()).map_err(|e| GuardError::InvalidUrl(e.to_string()))?;
        self.check_parsed(&parsed)?;
        Ok(parsed)
    }

    /// `check_url`, and for a host name also its addresses as the resolver sees them now:
    /// a name with any refused address is refused, the same rule the connection applies,
    /// so that a URL accepted here is one we would deliver to. A name that does not
    /// resolve now is accepted (DNS may be briefly down); its deliveries record the error.
    pub async fn check_url_resolved(&self, url: &str) -> Result<Url, GuardError> {
        let parsed = self.check_url(url)?;
        if let (false, Some(Host::Domain(host))) = (self.allow_private, parsed.host()) {
            let port = parsed.port_or_known_default().unwrap_or(443);
            if let Ok(addrs) = tokio::net::lookup_host((host, port)).await {
                if let Some(bad) = addrs.map(|a| a.ip()).find(|ip| self.denies(*ip)) {
                    return Err(GuardError::Forbidden(bad));
                }
            }
        }
        Ok(parsed)
    }

    fn check_parsed(&self, url: &Url) -> Result<(), GuardError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(GuardError::Scheme);
        }
        // Credentials in a client URL would be sent by us on the client's behalf, and
        // `user@host` forms are a classic way to disguise the real destination.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(GuardError::Credentials);
        }
        // The WHATWG parser has already normalised decimal/hex/octal IPv4 spellings.
        let ip = match url.host() {
            None => return Err(GuardError::NoHost),
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        };
        if self.denies(ip) {
            return Err(GuardError::Forbidden(ip));
        }
        Ok(())
    }

    /// An HTTP client that cannot be steered to a denied address, whichever hop of a
    /// redirect chain tries. `timeout` bounds each whole request.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        let for_redirects = self.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(GuardError::TooManyRedirects);
            }
            match for_redirects.check_parsed(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardResolver {
                guard: self.clone(),
            }))
            .redirect(policy)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(timeout);
        if !self.allow_private {
            // reqwest offers no pre-connect hook for IP literals, but it asks the proxy
            // selector about every request. Routing a denied literal to a sentinel
            // proxy hostname makes our resolver refuse it, so even a caller that forgot
            // `check_url` cannot reach a forbidden literal address.
            let for_literals = self.clone();
            builder = builder.proxy(reqwest::Proxy::custom(move |url| {
                let ip = match url.host()? {
                    Host::Ipv4(v4) => IpAddr::V4(v4),
                    Host::Ipv6(v6) => IpAddr::V6(v6),
                    Host::Domain(_) => return None,
                };
                for_literals.denies(ip).then(|| sentinel_proxy(ip))
            }));
        }
        builder
            .build()
            .expect("a rustls client without custom certificates always builds")
    }
}

fn sentinel_proxy(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("http://v4-{:08x}.{SENTINEL_SUFFIX}", u32::from(v4)),
        IpAddr::V6(v6) => format!("http://v6-{:032x}.{SENTINEL_SUFFIX}", u128::from(v6)),
    }
}

fn sentinel_ip(host: &str) -> Option<IpAddr> {
    let label = host
        .trim_end_matches('.')
        .strip_suffix(SENTINEL_SUFFIX)?
        .strip_suffix('.')?;
    if let Some(hex) = label.strip_prefix("v4-") {
        return u32::from_str_radix(hex, 16)
            .ok()
            .map(|n| IpAddr::V4(n.into()));
    }
    let hex = label.strip_prefix("v6-")?;
    u128::from_str_radix(hex, 16)
        .ok()
        .map(|n| IpAddr::V6(n.into()))
}

/// Resolves with the system resolver and hands reqwest only addresses it has checked,
/// so the connection goes exactly where the check said it would.
struct GuardResolver {
    guard: Guard,
}

impl Resolve for GuardResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            if let Some(ip) = sentinel_ip(&host) {
                return Err(Box::new(GuardError::Forbidden(ip)) as Box<dyn StdError + Send + Sync>);
            }
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            // One bad address refuses the whole name: otherwise a record set mixing a
            // public and a private address would let the connector pick the private one.
            if let Some(bad) = addrs.iter().find(|a| guard.denies(a.ip())) {
                return Err(
                    Box::new(GuardError::Forbidden(bad.ip())) as Box<dyn StdError + Send + Sync>
                );
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The guard's verdict inside a reqwest error, if the guard caused it.
pub fn guard_error(e: &reqwest::Error) -> Option<&GuardError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(g) = err.downcast_ref::<GuardError>() {
            return Some(g);
        }
        cur = err.source();
    }
    None
}

/// Whether a failed request was refused by the guard (as opposed to a network error),
/// so callers can report a policy violation instead of retrying.
pub fn refused_by_guard(e: &reqwest::Error) -> bool {
    guard_error(e).is_some()
}

/// Bounds for fetching a client-supplied file.
#[derive(Debug, Clone)]
pub struct DownloadLimits {
    pub max_bytes: usize,
    /// Accepted media types (compared case-insensitively, parameters ignored). Empty
    /// accepts anything.
    pub allowed_types: &'static [&'static str],
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Downloaded {
    pub bytes: Vec<u8>,
    /// The media type as sent, lowercased and without parameters.
    pub content_type: String,
}

/// Why a download failed. `Display` omits the subject; use [`DownloadError::message`]
/// to name the request field, e.g. "image_urls[1] is larger than 10485760 bytes".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error("refused: {0}")]
    Refused(GuardError),
    #[error("could not be downloaded: HTTP {0}")]
    Status(u16),
    #[error("is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("{}", type_message(.0))]
    UnsupportedType(String),
    #[error("timed out after {}s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("could not be downloaded: {0}")]
    Transport(String),
}

fn type_message(found: &str) -> String {
    if found.starts_with("image/") {
        format!("is an unsupported image type ({found})")
    } else {
        format!("is not an image ({found})")
    }
}

impl DownloadError {
    pub fn message(&self, field: &str) -> String {
        format!("{field} {self}")
    }

    fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        if let Some(g) = guard_error(&e) {
            return DownloadError::Refused(g.clone());
        }
        if e.is_timeout() {
            return DownloadError::Timeout(timeout);
        }
        // The innermost cause ("Connection refused", "failed to lookup address") is the
        // part that helps a client fix their URL; reqwest's outer layers are generic.
        let mut root: &(dyn StdError + 'static) = &e;
        while let Some(next) = root.source() {
            root = next;
        }
        DownloadError::Transport(root.to_string())
    }
}

/// Fetches a client-supplied URL within `limits`, refusing guarded destinations.
/// `client` should come from [`Guard::client`].
pub async fn download(
    guard: &Guard,
    client: &reqwest::Client,
    url: &str,
    limits: &DownloadLimits,
) -> Result<Downloaded, DownloadError> {
    let url = guard.check_url(url).map_err(DownloadError::Refused)?;
    // The outer timeout also covers a server that trickles the body slowly.
    tokio::time::timeout(limits.timeout, fetch(client, url, limits))
        .await
        .unwrap_or(Err(DownloadError::Timeout(limits.timeout)))
}

async fn fetch(
    client: &reqwest::Client,
    url: Url,
    limits: &DownloadLimits,
) -> Result<Downloaded, DownloadError> {
    let mut req = client.get(url).timeout(limits.timeout);
    if !limits.allowed_types.is_empty() {
        req = req.header(reqwest::header::ACCEPT, limits.allowed_types.join(", "));
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| DownloadError::from_reqwest(e, limits.timeout))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(DownloadError::Status(status.as_u16()));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !limits.allowed_types.is_empty()
        && !limits
            .allowed_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&content_type))
    {
        let shown = if content_type.is_empty() {
            "no content type".to_string()
        } else {
            content_type
        };
        return Err(DownloadError::UnsupportedType(shown));
    }
    let too_large = DownloadError::TooLarge {
        max: limits.max_bytes,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > limits.max_bytes as u64)
    {
        return Err(too_large);
    }
    // Content-Length can be absent or wrong, so the limit is enforced on what arrives.
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| DownloadError::from_reqwest(e, limits.timeout))?
    {
        if bytes.len() + chunk.len() > limits.max_bytes {
            return Err(too_large);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Downloaded {
        bytes,
        content_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::test_http::{serve, Response};

    const T: Duration = Duration::from_secs(5);
    const IMAGES: &[&str] = &["image/png", "image/jpeg", "image/webp"];

    fn limits(max_bytes: usize) -> DownloadLimits {
        DownloadLimits {
            max_bytes,
            allowed_types: IMAGES,
            timeout: T,
        }
    }

    fn png(status: u16, len: usize) -> Response {
        Response::new(status, vec![7u8; len]).header("Content-Type", "image/png")
    }

    #[test]
    fn forbidden_ip_table() {
        let cases = [
            ("127.0.0.1", true),
            ("127.255.255.254", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("172.15.255.255", false),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.128.0.1", false),
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("192.0.0.170", true),
            ("198.18.0.1", true),
            ("198.19.255.255", true),
            ("198.20.0.1", false),
            ("192.0.2.1", true),
            ("224.0.0.1", true),
            ("239.255.255.250", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            ("93.184.216.34", false),
            ("::", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:8.8.8.8", false),
            ("::127.0.0.1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("fc00::1", true),
            ("fd00:ec2::254", true),
            ("ff02::1", true),
            ("64:ff9b::7f00:1", true),
            ("64:ff9b::a9fe:a9fe", true),
            ("64:ff9b::808:808", false),
            ("64:ff9b:1::1", true),
            ("2002:7f00:1::1", true),
            ("2002:c0a8:101::1", true),
            ("2002:808:808::1", false),
            ("2001:db8::1", true),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
            ("100::1", true),
            ("2606:4700::1", false),
            ("2001:4860:4860::8888", false),
            ("2a00:1450:4001:80e::200e", false),
        ];
        for (ip, forbidden) in cases {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(is_forbidden_ip(parsed), forbidden, "{ip}");
        }
    }

    #[test]
    fn check_url_rules() {
        let g = Guard::new(false);
        assert!(g.check_url("https://example.com/a.png?x=1").is_ok());
        assert!(g.check_url(" http://8.8.8.8:8080/ ").is_ok());
        assert!(g.check_url("http://[2606:4700::1]/").is_ok());
        assert_eq!(
            g.check_url("ftp://example.com/").unwrap_err(),
            GuardError::Scheme
        );
        assert_eq!(
            g.check_url("file:///etc/passwd").unwrap_err(),
            GuardError::Scheme
        );
        assert_eq!(
            g.check_url("data:image/png;base64,AA").unwrap_err(),
            GuardError::Scheme
        );
        assert!(matches!(
            g.check_url("not a url"),
            Err(GuardError::InvalidUrl(_))
        ));
        assert!(matches!(
            g.check_url("http://"),
            Err(GuardError::InvalidUrl(_))
        ));
        assert_eq!(
            g.check_url("http://user:pw@example.com/").unwrap_err(),
            GuardError::Credentials
        );
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            match g.check_url(url) {
                Err(GuardError::Forbidden(ip)) => {
                    assert!(ip == loopback || is_forbidden_ip(ip), "{url}")
                }
                r => panic!("{url}: {r:?}"),
            }
        }
        assert_eq!(
            g.check_url("http://169.254.169.254/latest/meta-data/")
                .unwrap_err()
                .to_string(),
            "destination resolves to a private or internal address (169.254.169.254) and is refused"
        );
        let open = Guard::new(true);
        assert!(open.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert_eq!(
            open.check_url("gopher://127.0.0.1/").unwrap_err(),
            GuardError::Scheme
        );
    }

    #[test]
    fn sentinel_round_trip() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let proxy = Url::parse(&sentinel_proxy(ip)).unwrap();
            assert_eq!(sentinel_ip(proxy.host_str().unwrap()), Some(ip));
        }
        assert_eq!(sentinel_ip("example.com"), None);
        assert_eq!(sentinel_ip("v4-zz.refused.net-guard.invalid"), None);
    }

    #[tokio::test]
    async fn loopback_literal_refused_unless_private_allowed() {
        let srv = serve("127.0.0.1", |_| png(200, 4)).await;
        let url = srv.url("/a.png");

        let strict = Guard::new(false);
        let client = strict.client(T);
        let e = download(&strict, &client, &url, &limits(100))
            .await
            .unwrap_err();
        assert_eq!(
            e.message("image_url"),
            "image_url refused: destination resolves to a private or internal address (127.0.0.1) and is refused"
        );
        // Even without `check_url`, the client itself will not connect.
        let e = client.get(&url).send().await.unwrap_err();
        assert!(refused_by_guard(&e), "{e:?}");
        assert_eq!(
            guard_error(&e),
            Some(&GuardError::Forbidden(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
        let e = client
            .get(format!("http://[::1]:{}/", srv.addr.port()))
            .send()
            .await
            .unwrap_err();
        assert!(refused_by_guard(&e), "{e:?}");
        // HTTPS goes through the CONNECT-tunnel path of the connector; same verdict.
        let e = client
            .get(format!("https://127.0.0.1:{}/", srv.addr.port()))
            .send()
            .await
            .unwrap_err();
        assert!(refused_by_guard(&e), "{e:?}");
        assert!(srv.taken().is_empty(), "no request may reach the server");

        let open = Guard::new(true);
        let d = download(&open, &open.client(T), &url, &limits(100))
            .await
            .unwrap();
        assert_eq!(d.bytes, vec![7u8; 4]);
        assert_eq!(d.content_type, "image/png");
        assert_eq!(srv.taken().len(), 1);
    }

    #[tokio::test]
    async fn hostname_resolving_to_loopback_is_refused() {
        let srv = serve("127.0.0.1", |_| png(200, 4)).await;
        let guard = Guard::new(false);
        let client = guard.client(T);
        let url = format!("http://localhost:{}/a.png", srv.addr.port());
        // The URL itself looks fine; the refusal happens at resolution.
        assert!(guard.check_url(&url).is_ok());
        let e = client.get(&url).send().await.unwrap_err();
        assert!(refused_by_guard(&e), "{e:?}");
        match guard_error(&e) {
            Some(GuardError::Forbidden(ip)) => assert!(ip.is_loopback()),
            other => panic!("{other:?}"),
        }
        let e = download(&guard, &client, &url, &limits(100))
            .await
            .unwrap_err();
        assert!(
            matches!(e, DownloadError::Refused(GuardError::Forbidden(_))),
            "{e:?}"
        );

        // The absolute form is either refused the same way or, with resolvers that do
        // not map it through /etc/hosts, not resolvable at all; never reachable.
        let url = format!("http://localhost.:{}/a.png", srv.addr.port());
        let e = client.get(&url).send().await.unwrap_err();
        assert!(refused_by_guard(&e) || e.is_connect(), "{e:?}");
        assert!(srv.taken().is_empty());

        // Unresolvable names are network errors, not guard refusals.
        let e = client
            .get("http://does-not-exist.invalid/")
            .send()
            .await
            .unwrap_err();
        assert!(!refused_by_guard(&e));
    }

    #[tokio::test]
    async fn redirect_to_denied_literal_is_refused() {
        let target = serve("127.0.0.2", |_| png(200, 4)).await;
        let location = format!("http://127.0.0.2:{}/x", target.addr.port());
        let srv = serve("127.0.0.1", move |_| {
            Response::new(302, "").header("Location", &location)
        })
        .await;
        let guard = Guard::with_rule(|ip| ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        let client = guard.client(T);
        let e = client.get(srv.url("/start")).send().await.unwrap_err();
        assert!(refused_by_guard(&e), "{e:?}");
        let e = download(&guard, &client, &srv.url("/start"), &limits(100))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            DownloadError::Refused(GuardError::Forbidden("127.0.0.2".parse().unwrap()))
        );
        assert_eq!(srv.taken().len(), 2);
        assert!(target.taken().is_empty());
    }

    #[tokio::test]
    async fn redirect_to_hostname_resolving_to_denied_address_is_refused() {
        // `localhost` resolves to 127.0.0.1 (denied); the first hop lives on 127.0.0.2.
        let target = serve("127.0.0.1", |_| png(200, 4)).await;
        let location = format!("http://localhost:{}/", target.addr.port());
        let srv = serve("127.0.0.2", move |_| {
            Response::new(301, "").header("Location", &location)
        })
        .await;
        let guard = Guard::with_rule(|ip| ip == IpAddr::V4(Ipv4Addr::LOCALHOST));
        let client = guard.client(T);
        let e = client.get(srv.url("/")).send().await.unwrap_err();
        assert!(refused_by_guard(&e), "{e:?}");
        assert_eq!(
            guard_error(&e),
            Some(&GuardError::Forbidden(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
        assert_eq!(srv.taken().len(), 1);
        assert!(target.taken().is_empty());
    }

    #[tokio::test]
    async fn redirect_limits_and_schemes() {
        let srv = serve("127.0.0.1", |r| {
            if r.path == "/ftp" {
                return Response::new(302, "").header("Location", "ftp://example.com/file");
            }
            let n: usize = r.path.trim_start_matches("/hop").parse().unwrap_or(0);
            if r.path.starts_with("/hop") && n < 100 {
                Response::new(302, "").header("Location", &format!("/hop{}", n + 1))
            } else {
                png(200, 1)
            }
        })
        .await;
        let guard = Guard::with_rule(|_| false);
        let client = guard.client(T);
        let e = client.get(srv.url("/hop0")).send().await.unwrap_err();
        assert_eq!(guard_error(&e), Some(&GuardError::TooManyRedirects));
        assert_eq!(
            srv.requests.lock().unwrap().drain(..).count(),
            MAX_REDIRECTS + 1
        );

        // Exactly MAX_REDIRECTS hops is fine.
        let start = format!("/hop{}", 100 - MAX_REDIRECTS);
        let resp = client.get(srv.url(&start)).send().await.unwrap();
        assert_eq!(resp.status(), 200);

        let e = client.get(srv.url("/ftp")).send().await.unwrap_err();
        assert_eq!(guard_error(&e), Some(&GuardError::Scheme), "{e:?}");
    }

    #[tokio::test]
    async fn download_limits() {
        let srv = serve("127.0.0.1", |r| match r.path.as_str() {
            "/ok" => png(200, 10),
            "/params" => {
                Response::new(200, "x").header("Content-Type", "IMAGE/JPEG; charset=binary")
            }
            "/html" => {
                Response::new(200, "<html>").header("Content-Type", "text/html; charset=utf-8")
            }
            "/svg" => Response::new(200, "<svg/>").header("Content-Type", "image/svg+xml"),
            "/none" => Response::new(200, "x"),
            "/big" => png(200, 11),
            "/streamed" => {
                let mut r = png(200, 64 * 1024);
                r.omit_length = true;
                r
            }
            "/slow" => {
                let mut r = png(200, 1);
                r.delay = Some(Duration::from_secs(3));
                r
            }
            _ => Response::new(404, "nope"),
        })
        .await;
        let guard = Guard::new(true);
        let client = guard.client(T);
        let get = |path: &str, max: usize| {
            let url = srv.url(path);
            let client = client.clone();
            let guard = guard.clone();
            async move { download(&guard, &client, &url, &limits(max)).await }
        };

        let d = get("/ok", 10).await.unwrap();
        assert_eq!((d.bytes.len(), d.content_type.as_str()), (10, "image/png"));
        assert_eq!(
            srv.taken()[0].header("accept"),
            Some("image/png, image/jpeg, image/webp")
        );
        let d = get("/params", 10).await.unwrap();
        assert_eq!(d.content_type, "image/jpeg");

        let msg = |r: Result<Downloaded, DownloadError>| r.unwrap_err().message("image_urls[1]");
        assert_eq!(
            msg(get("/big", 10).await),
            "image_urls[1] is larger than 10 bytes"
        );
        assert_eq!(
            msg(get("/streamed", 10_000).await),
            "image_urls[1] is larger than 10000 bytes"
        );
        assert_eq!(
            msg(get("/html", 10).await),
            "image_urls[1] is not an image (text/html)"
        );
        assert_eq!(
            msg(get("/svg", 10).await),
            "image_urls[1] is an unsupported image type (image/svg+xml)"
        );
        assert_eq!(
            msg(get("/none", 10).await),
            "image_urls[1] is not an image (no content type)"
        );
        assert_eq!(
            msg(get("/missing", 10).await),
            "image_urls[1] could not be downloaded: HTTP 404"
        );
        assert_eq!(
            msg(download(&guard, &client, "ftp://x/", &limits(10)).await),
            "image_urls[1] refused: only http and https URLs are allowed"
        );

        let quick = DownloadLimits {
            timeout: Duration::from_millis(200),
            ..limits(10)
        };
        let e = download(&guard, &client, &srv.url("/slow"), &quick)
            .await
            .unwrap_err();
        assert_eq!(
            e.message("target_image_url"),
            "target_image_url timed out after 0.2s"
        );

        // Any type is accepted when no list is given.
        let any = DownloadLimits {
            allowed_types: &[],
            ..limits(10)
        };
        let d = download(&guard, &client, &srv.url("/html"), &any)
            .await
            .unwrap();
        assert_eq!(d.content_type, "text/html");
    }

    #[tokio::test]
    async fn connection_errors_are_transport() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let guard = Guard::new(true);
        let e = download(
            &guard,
            &guard.client(T),
            &format!("http://127.0.0.1:{port}/"),
            &limits(10),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, DownloadError::Transport(_)), "{e:?}");
        assert!(e
            .message("image_url")
            .starts_with("image_url could not be downloaded: "));
    }
}
