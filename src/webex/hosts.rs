//! Where downloads may go: `webex.download_hosts`.
//!
//! Download links come from the network (details answers, the listing's `downloadUrl`,
//! redirects), so each one is checked before it is requested: https to a host matching
//! a pattern, or plain http to a loopback address listed as such (a simulator or a local
//! proxy). Nothing else is ever requested.

use std::fmt;

use url::{Host, Url};

/// A host a download was not allowed to reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the download link leads to {scheme}://{host}, which webex.download_hosts does not allow ({allowed}); \
     it was not requested"
)]
pub struct HostNotAllowed {
    /// The link's scheme.
    pub scheme: String,
    /// The link's host (never its path or query, which may carry a ticket).
    pub host: String,
    /// The configured patterns, for the message.
    pub allowed: String,
}

/// The allowed download hosts.
#[derive(Clone, PartialEq, Eq)]
pub struct DownloadHosts {
    patterns: Vec<String>,
}

impl fmt::Debug for DownloadHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.patterns).finish()
    }
}

impl DownloadHosts {
    /// The policy of `webex.download_hosts` (patterns already checked by the settings).
    pub fn new(patterns: &[String]) -> Self {
        Self { patterns: patterns.iter().map(|p| p.trim().to_ascii_lowercase()).collect() }
    }

    /// Whether `url` may be requested.
    pub fn check(&self, url: &Url) -> Result<(), HostNotAllowed> {
        let refused = || HostNotAllowed {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or("").to_owned(),
            allowed: if self.patterns.is_empty() { "none".into() } else { self.patterns.join(", ") },
        };
        let Some(host) = url.host() else { return Err(refused()) };
        let name = host_name(&host);
        let matches = self.patterns.iter().any(|p| pattern_matches(p, &name));
        let allowed = match url.scheme() {
            "https" => matches,
            // NOTE: plain http is for this machine only, and only when listed exactly.
            "http" => {
                crate::config::is_loopback(url)
                    && self.patterns.iter().any(|p| !p.starts_with("*.") && pattern_matches(p, &name))
            }
            _ => false,
        };
        if allowed { Ok(()) } else { Err(refused()) }
    }
}

/// The host as patterns spell it: lowercase names, IPv6 without brackets.
fn host_name(host: &Host<&str>) -> String {
    match host {
        Host::Domain(name) => name.trim_end_matches('.').to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    }
}

/// `*.example.com` matches names under `example.com` (not the domain itself); anything
/// else matches exactly (IPv6 patterns with or without brackets).
fn pattern_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1 && host.ends_with(domain) && {
                let dot = host.len() - domain.len() - 1;
                host.as_bytes()[dot] == b'.'
            }
        }
        None => pattern.trim_start_matches('[').trim_end_matches(']') == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str], url: &str) -> bool {
        let hosts = DownloadHosts::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        hosts.check(&Url::parse(url).unwrap()).is_ok()
    }

    #[test]
    fn wildcards_match_subdomains_over_https_only() {
        let default = ["*.webex.com"];
        assert!(allowed(&default, "https://acme.webex.com/nbr/x?ticket=T"));
        assert!(allowed(&default, "https://a.b.WEBEX.com:8443/x"));
        assert!(!allowed(&default, "https://webex.com/x"), "the domain itself is not a subdomain");
        assert!(!allowed(&default, "https://evilwebex.com/x"));
        assert!(!allowed(&default, "https://webex.com.evil.example/x"));
        assert!(!allowed(&default, "http://acme.webex.com/x"), "plain http to a remote host");
        assert!(!allowed(&default, "ftp://acme.webex.com/x"));
        assert!(!allowed(&default, "https://127.0.0.1/x"));
    }

    #[test]
    fn plain_http_only_to_a_listed_loopback_address() {
        assert!(allowed(&["127.0.0.1"], "http://127.0.0.1:8081/nbr/x"));
        assert!(allowed(&["::1"], "http://[::1]:8081/x"));
        assert!(allowed(&["localhost"], "http://localhost:1/x"));
        assert!(!allowed(&["127.0.0.1"], "http://127.0.0.2/x"), "only the address listed");
        assert!(!allowed(&["*.webex.com"], "http://127.0.0.1/x"));
        assert!(!allowed(&["10.0.0.1"], "http://10.0.0.1/x"), "not loopback");
        assert!(allowed(&["10.0.0.1"], "https://10.0.0.1/x"));
    }

    proptest::proptest! {
        #[test]
        fn any_link_is_judged_without_panicking(link in "\\PC{0,80}") {
            if let Ok(url) = Url::parse(&link) {
                let _ = DownloadHosts::new(&["*.webex.com".to_owned(), "127.0.0.1".to_owned()]).check(&url);
            }
        }
    }

    #[test]
    fn the_refusal_names_the_host_but_not_the_ticket() {
        let hosts = DownloadHosts::new(&["*.webex.com".to_owned()]);
        let e = hosts.check(&Url::parse("https://evil.example/nbr?ticket=SECRET").unwrap()).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("evil.example") && shown.contains("webex.download_hosts"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
