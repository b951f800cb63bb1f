//! Wire types: what Webex sends and receives, as the OpenAPI contract and
//! `shared/webex-api/NOTES.md` describe it. They stay apart from the domain types the
//! archive stores.
//!
//! Parsing is deliberately lenient where Webex is known to evolve: unknown fields are
//! ignored (and kept in the raw listing JSON), enum-like fields are plain strings, and
//! numbers may arrive as integers or floats.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// One page of `GET /v1/recordings` or `GET /v1/admin/recordings`.
///
/// Items stay raw JSON so that one odd item (no `id`) can be skipped and counted
/// without failing the whole page; each is then read with [`Recording::from_value`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RecordingPage {
    /// The recordings of this page, newest `createTime` first.
    #[serde(default)]
    pub items: Vec<serde_json::Value>,
}

/// A recording as listed (`RecordingObject` / `RecordingObjectForAdminAndCO`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// Opaque recording id. Required by the contract; an item without one is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Ended meeting instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<String>,
    /// Scheduled meeting instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_meeting_id: Option<String>,
    /// Meeting series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_series_id: Option<String>,
    /// Free text chosen by the host: may hold anything, slashes and `..` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// When the file was produced (after the meeting); the listing window filters on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<DateTime<Utc>>,
    /// When recording started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_recorded: Option<DateTime<Utc>>,
    /// Admin listing only: host's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_display_name: Option<String>,
    /// Admin listing only: host's e-mail, needed to fetch details as an admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_email: Option<String>,
    /// Site host name, e.g. `example.webex.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_url: Option<String>,
    /// Browser page (`lsr.php`): HTML behind a login, not the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// Browser playback page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback_url: Option<String>,
    /// The recording's password (a secret: never logged, never archived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `MP4`, `ARF`, `UPLOADED`, or a value Webex adds later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `MeetingCenter`, `EventCenter`, ... or a later value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// Duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_u64")]
    pub duration_seconds: Option<u64>,
    /// Size in bytes as Webex reports it (exactness unverified).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_u64")]
    pub size_bytes: Option<u64>,
    /// User listing only: shared with the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_to_me: Option<bool>,
    /// Integration keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_tags: Option<Vec<String>>,
    /// `available`, `deleted`, `purged`, or a later value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Recording {
    /// Reads one listing item. Fails only when a known field has an impossible type.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }
}

/// `GET /v1/recordings/{id}`: the listing fields plus the temporary direct links.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingDetails {
    /// Everything the listing has.
    #[serde(flatten)]
    pub recording: Recording,
    /// Absent when "Prevent downloading" is on and the token is not a compliance officer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary_direct_download_links: Option<DirectDownloadLinks>,
}

/// Temporary links on the site host; each carries its own `ticket` (a secret).
#[derive(Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectDownloadLinks {
    /// The MP4/ARF file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_download_link: Option<String>,
    /// The audio track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_download_link: Option<String>,
    /// The transcript.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_download_link: Option<String>,
    /// When all three links stop working (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

impl std::fmt::Debug for DirectDownloadLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: the links carry download tickets; Debug shows only which are present.
        f.debug_struct("DirectDownloadLinks")
            .field("recording", &self.recording_download_link.is_some())
            .field("audio", &self.audio_download_link.is_some())
            .field("transcript", &self.transcript_download_link.is_some())
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// `GET /v1/meetingPreferences/sites`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SiteList {
    /// The caller's sites.
    #[serde(default)]
    pub sites: Vec<Site>,
}

/// One Webex site.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// Host name, e.g. `example.webex.com`.
    pub site_url: String,
    /// The caller's preferred site.
    #[serde(default)]
    pub default: bool,
}

/// Webex's error body: `{"message", "errors": [{"description"}], "trackingId"}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Details.
    #[serde(default)]
    pub errors: Vec<ErrorDetail>,
    /// Webex's id of the request, for support cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
}

/// One entry of [`ErrorBody::errors`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// What went wrong.
    #[serde(default)]
    pub description: String,
}

/// Response of `POST /v1/access_token` (refresh-token grant).
#[derive(Clone, Deserialize, Serialize)]
pub struct TokenResponse {
    /// New access token (secret).
    pub access_token: String,
    /// Access token lifetime, seconds.
    pub expires_in: u64,
    /// Refresh token to use next time (secret; may differ from the one sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Refresh token lifetime, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<u64>,
    /// Always `Bearer`.
    #[serde(default)]
    pub token_type: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .finish_non_exhaustive()
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = Option::<serde_json::Number>::deserialize(d)?;
    Ok(value.and_then(|n| n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_enum_values_are_accepted() {
        let item = serde_json::json!({
            "id": "abc", "format": "WEBM", "status": "archived-somewhere", "newField": {"x": 1},
            "createTime": "2020-07-13T17:11:35Z", "sizeBytes": 12.0
        });
        let rec = Recording::from_value(&item).expect("lenient parse");
        assert_eq!(rec.format.as_deref(), Some("WEBM"));
        assert_eq!(rec.size_bytes, Some(12));
    }

    #[test]
    fn links_debug_hides_tickets() {
        let links = DirectDownloadLinks {
            recording_download_link: Some("https://s/nbr/x?ticket=SECRETTICKET".into()),
            ..Default::default()
        };
        assert!(!format!("{links:?}").contains("SECRETTICKET"));
    }
}
