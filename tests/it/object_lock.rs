//! S3 Object Lock against moto's S3 server: the retention the archiver puts on every
//! object it writes (read back by boto3, independently of the archiver's own client), a
//! store that ignores it, legal holds, extending retention, the posture check, and
//! `verify` finding a retention shorter than recorded. Where Object Lock is absent
//! (s3s-fs), `mode = "none"` runs unchanged (every other S3 test) and any other mode is
//! refused.

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{DateTime, SubsecRound, Utc};
use webex_archiver::app::{self, PostureMismatch};
use webex_archiver::config::Needs;
use webex_archiver::sim::{NewRecording, SimConfig};
use webex_archiver::state::{ArchiveState, ArchivedRow, RecordingId};
use webex_archiver::verify;

use crate::helpers::{Backend, S3Server, service_env, settings_from_env, unique_prefix};
use crate::proxy::{Fault, S3Proxy};
use crate::sync::{Harness, Store};

const MIB: u64 = 1024 * 1024;
/// 400 days: every simulated recording (created within 70 days) is retained for a while.
const RETENTION: &str = "400d";

fn config(recordings: usize, size_min: u64, size_max: u64) -> SimConfig {
    SimConfig {
        recordings,
        seed: 29,
        size_min,
        size_max,
        format_weights: [("MP4".to_owned(), 1)].into(),
        ..SimConfig::default()
    }
}

/// Runs `body` in python with `s3` (a boto3 client on moto) and `args` (`sys.argv[1:]`);
/// `body` prints one JSON value.
fn boto3(body: &str, args: &[&str]) -> serde_json::Value {
    let script = format!(
        r#"
import json, os, sys
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["WA_TEST_MOTO_ENDPOINT"],
                  aws_access_key_id=os.environ["WA_TEST_MOTO_ACCESS_KEY"],
                  aws_secret_access_key=os.environ["WA_TEST_MOTO_SECRET_KEY"],
                  region_name=os.environ["WA_TEST_MOTO_REGION"])
args = sys.argv[1:]
{body}
"#
    );
    let out = Command::new(service_env("WA_TEST_MOTO_PYTHON")).arg("-c").arg(&script).args(args).output().unwrap();
    assert!(out.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Every version of `key`, with its lock as boto3 reads it.
fn versions(bucket: &str, key: &str) -> Vec<serde_json::Value> {
    let found = boto3(
        r#"
out = []
for v in s3.list_object_versions(Bucket=args[0], Prefix=args[1]).get("Versions", []):
    if v["Key"] != args[1]:
        continue
    head = s3.head_object(Bucket=args[0], Key=args[1], VersionId=v["VersionId"])
    out.append({"version": v["VersionId"], "mode": head.get("ObjectLockMode"),
                "until": head["ObjectLockRetainUntilDate"].isoformat() if "ObjectLockRetainUntilDate" in head else None,
                "hold": head.get("ObjectLockLegalHoldStatus")})
print(json.dumps(out))
"#,
        &[bucket, key],
    );
    found.as_array().unwrap().clone()
}

/// Tries to delete one version of `key` (with the governance bypass header when
/// `bypass`); the S3 error code, or "deleted".
fn delete_version(bucket: &str, key: &str, version: &str, bypass: bool) -> String {
    let answer = boto3(
        r#"
try:
    # NOTE: moto reads the bypass header's presence, not its value: send it only to bypass.
    extra = {"BypassGovernanceRetention": True} if args[3] == "1" else {}
    s3.delete_object(Bucket=args[0], Key=args[1], VersionId=args[2], **extra)
    print(json.dumps("deleted"))
except s3.exceptions.ClientError as e:
    print(json.dumps(e.response["Error"]["Code"]))
"#,
        &[bucket, key, version, if bypass { "1" } else { "0" }],
    );
    answer.as_str().unwrap().to_owned()
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).with_timezone(&Utc)
}

/// A harness archiving into `bucket` on moto with `storage.object_lock` set.
async fn locked_harness(bucket: &str, mode: &str, retain_from: &str, sim: SimConfig) -> Harness {
    let mut h = Harness::start(Backend::Postgres, Store::S3(S3Server::Moto), "admin", sim).await;
    h.set("WEBEX_ARCHIVER__STORAGE__URL", &format!("s3://{bucket}/{}", unique_prefix("lock")));
    h.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__MODE", mode);
    h.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETENTION", if mode == "none" { "0s" } else { RETENTION });
    h.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETAIN_FROM", retain_from);
    h.set("WEBEX_ARCHIVER__STORAGE__PART_SIZE", &(5 * MIB).to_string());
    h
}

/// The binary with the harness's settings.
fn binary(h: &Harness, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_webex-archiver"))
        .env_clear()
        .envs(&h.env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .output()
        .unwrap()
}

fn full_key(h: &Harness, relative: &str) -> String {
    h.store().key(relative).unwrap().to_string()
}

fn object_keys(row: &ArchivedRow) -> Vec<String> {
    webex_archiver::retention::object_keys(row)
}

#[tokio::test]
async fn every_object_written_carries_the_configured_retention_and_cannot_be_deleted() {
    let bucket = service_env("WA_TEST_MOTO_BUCKET_NO_DEFAULT");
    // Small recordings (one PUT) and large ones (multipart: moto gives those no lock from
    // headers nor from a bucket default, so only the explicit per-version call covers them).
    let h = locked_harness(&bucket, "governance", "create_time", config(5, 100_000, 7 * MIB)).await;
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let rows = h.db.state.archived(None).await.unwrap();
    assert_eq!(rows.len(), h.expected(true).len());
    assert!(rows.iter().any(|r| r.record.bytes > 5 * MIB as i64), "some uploads are multipart");
    let creates: BTreeMap<String, DateTime<Utc>> =
        h.sim.truth().into_iter().map(|r| (r.id.clone(), r.create_time)).collect();
    for row in &rows {
        // create_time + 400 days, whole seconds rounded up.
        let create = creates[&row.id.0];
        let wanted = create + chrono::Duration::days(400);
        let wanted = if wanted.trunc_subsecs(0) < wanted {
            wanted.trunc_subsecs(0) + chrono::Duration::seconds(1)
        } else {
            wanted
        };
        let (mode, until) = row.record.retention.clone().expect("the row records the retention");
        assert_eq!((mode.as_str(), until), ("GOVERNANCE", wanted), "{}", row.id);
        for relative in object_keys(row) {
            let key = full_key(&h, &relative);
            let found = versions(&bucket, &key);
            assert_eq!(found.len(), 1, "{key}: one version, written once: {found:?}");
            assert_eq!(found[0]["mode"], "GOVERNANCE", "{key}: {found:?}");
            assert_eq!(parse_time(found[0]["until"].as_str().unwrap()), wanted, "{key}: {found:?}");
            // Deleting a locked version is refused by the store itself.
            let version = found[0]["version"].as_str().unwrap();
            assert_eq!(delete_version(&bucket, &key, version, false), "AccessDenied", "{key}");
        }
        // Each file's date is in the row, and the custody log says what was applied.
        for file in row.record.files.as_array().unwrap() {
            assert_eq!(parse_time(file["retain_until"].as_str().unwrap()), wanted, "{file}");
        }
        let events = h.db.state.history(&row.id).await.unwrap();
        let archived = &events.iter().find(|e| e.kind == "archived").unwrap().data;
        assert_eq!(archived["retention"]["mode"], "GOVERNANCE", "{archived}");
        assert_eq!(parse_time(archived["retention"]["retain_until"].as_str().unwrap()), wanted);
        assert_eq!(parse_time(archived["files"][0]["retain_until"].as_str().unwrap()), wanted);
        assert_eq!(parse_time(archived["metadata_retain_until"].as_str().unwrap()), wanted);
    }
    // The daily manifests are retained too (from the end of their day).
    assert!(!report.manifests.is_empty());
    for key in &report.manifests {
        let found = versions(&bucket, &full_key(&h, key));
        assert_eq!(found.len(), 1, "{key}");
        assert_eq!(found[0]["mode"], "GOVERNANCE", "{key}: {found:?}");
    }

    // verify: clean; then one object's retention is shortened behind the archiver's back
    // (allowed in governance mode with the bypass permission): verify names it.
    let clean = verify::verify(&h.db.state, &h.store(), None).await.unwrap();
    assert!(clean.clean(), "{}", verify::report_text(&clean));
    let victim = &rows[0];
    let key = full_key(&h, &victim.record.media_key);
    let version = versions(&bucket, &key)[0]["version"].as_str().unwrap().to_owned();
    boto3(
        r#"
s3.put_object_retention(Bucket=args[0], Key=args[1], VersionId=args[2], BypassGovernanceRetention=True,
                        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": args[3]})
print(json.dumps(True))
"#,
        &[&bucket, &key, &version, &(Utc::now() + chrono::Duration::days(3)).to_rfc3339()],
    );
    let found = verify::verify(&h.db.state, &h.store(), None).await.unwrap();
    assert!(!found.clean());
    assert_eq!(found.retention.len(), 1, "{}", verify::report_text(&found));
    assert_eq!(found.retention[0].key, victim.record.media_key);
    assert_eq!(found.retention[0].recording_id, victim.id.0);
    assert!(found.retention[0].detail.contains("shorter than recorded"), "{:?}", found.retention[0]);
    assert!(found.missing.is_empty() && found.corrupt.is_empty() && found.metadata.is_empty());
}

#[tokio::test]
async fn compliance_mode_from_archived_at_is_applied() {
    let bucket = service_env("WA_TEST_MOTO_BUCKET_NO_DEFAULT");
    let h = locked_harness(&bucket, "compliance", "archived_at", config(2, 100_000, 200_000)).await;
    let before = Utc::now().trunc_subsecs(0);
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    for row in h.db.state.archived(None).await.unwrap() {
        let (mode, until) = row.record.retention.clone().unwrap();
        assert_eq!(mode, "COMPLIANCE");
        // archived_at + 400 days.
        assert!(until >= before + chrono::Duration::days(400), "{until}");
        assert!(until <= Utc::now() + chrono::Duration::days(400) + chrono::Duration::seconds(1), "{until}");
        for relative in object_keys(&row) {
            let key = full_key(&h, &relative);
            let found = versions(&bucket, &key);
            assert_eq!(found[0]["mode"], "COMPLIANCE", "{key}");
            assert!(parse_time(found[0]["until"].as_str().unwrap()) >= until, "{key}");
            // Compliance mode: not even the governance bypass deletes it.
            let version = found[0]["version"].as_str().unwrap();
            assert_eq!(delete_version(&bucket, &key, version, true), "AccessDenied", "{key}");
        }
    }
}

#[tokio::test]
async fn a_store_that_ignores_retention_fails_the_recording_unless_its_default_covers_it() {
    // Recordings created two hours ago, retained one day from their createTime.
    let sim = config(0, 100_000, 200_000);
    let ignore = |method: &str, target: &str| method == "PUT" && target.contains("retention");
    for (bucket, covered) in
        [(service_env("WA_TEST_MOTO_BUCKET_NO_DEFAULT"), false), (service_env("WA_TEST_MOTO_BUCKET"), true)]
    {
        let mut h = locked_harness(&bucket, "governance", "create_time", sim.clone()).await;
        h.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETENTION", "1d");
        h.set("WEBEX_ARCHIVER__ARCHIVE__MAX_ATTEMPTS", "2");
        let proxy = S3Proxy::start(&h.env["AWS_ENDPOINT_URL"], Fault::Swallow(Box::new(ignore))).await;
        h.set("AWS_ENDPOINT_URL", &proxy.endpoint);
        let id = h
            .sim
            .add_recording(NewRecording { create_time: Utc::now() - chrono::Duration::hours(2), ..Default::default() })
            .unwrap()
            .id;
        let report = h.sync().await;
        assert!(proxy.swallowed() >= 1, "the retention calls were swallowed");
        let rows = h.db.state.archived(None).await.unwrap();
        if covered {
            assert_eq!(report.exit, 0, "{report:?}");
            assert_eq!(rows.len(), 1, "the bucket's default retention covers it: archived");
        } else {
            assert_eq!(report.exit, 1, "{report:?}");
            assert!(rows.is_empty());
            let status = h.db.state.status(10).await.unwrap();
            assert_eq!(status.counts.get(&ArchiveState::Failed), Some(&1), "{status:?}");
            let failure = &status.recent_failures[0];
            assert_eq!(failure.id, RecordingId(id.clone()));
            assert_eq!(failure.reason.as_deref(), Some("retention_not_applied"), "{failure:?}");
            assert!(failure.message.as_deref().unwrap_or("").contains("HEAD shows no retention"), "{failure:?}");
        }
    }
}

#[tokio::test]
async fn legal_hold_is_set_and_removed_on_every_version_with_its_reason() {
    let bucket = service_env("WA_TEST_MOTO_BUCKET_NO_DEFAULT");
    let h = locked_harness(&bucket, "governance", "create_time", config(3, 100_000, 200_000)).await;
    assert_eq!(h.sync().await.exit, 0);
    let rows = h.db.state.archived(None).await.unwrap();
    let (held, other) = (&rows[0], &rows[1]);

    let out = binary(&h, &["hold", "add", "--id", &held.id.0, "--reason", "litigation 42 (case file)"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for relative in object_keys(held) {
        let key = full_key(&h, &relative);
        for version in versions(&bucket, &key) {
            assert_eq!(version["hold"], "ON", "{key}: {version}");
            // Under legal hold, not even the governance bypass deletes it.
            let id = version["version"].as_str().unwrap();
            assert_eq!(delete_version(&bucket, &key, id, true), "AccessDenied", "{key}");
        }
    }
    for relative in object_keys(other) {
        assert_ne!(versions(&bucket, &full_key(&h, &relative))[0]["hold"], "ON", "only the recordings named are held");
    }
    let list = binary(&h, &["hold", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], held.id.0);
    assert_eq!(list[0]["reason"], "litigation 42 (case file)");
    let status = binary(&h, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["under_hold"], 1, "{status}");
    let events = h.db.state.history(&held.id).await.unwrap();
    let set = &events.iter().find(|e| e.kind == "legal_hold_set").expect("a legal_hold_set event").data;
    assert_eq!(set["reason"], "litigation 42 (case file)");
    assert!(set["user"].as_str().is_some_and(|u| !u.is_empty()), "{set}");
    assert_eq!(set["versions"].as_array().unwrap().len(), object_keys(held).len(), "{set}");
    // The report shows it.
    let report = binary(&h, &["report", "--from", "2000-01-01", "--to", "2100-01-01"]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let recording = report["recordings"].as_array().unwrap().iter().find(|r| r["id"] == held.id.0).unwrap().clone();
    assert_eq!(recording["legal_hold"], true, "{recording}");
    assert!(recording["retained_until"].is_string(), "{recording}");
    let under_hold: i64 = report["days"].as_array().unwrap().iter().map(|d| d["under_hold"].as_i64().unwrap()).sum();
    assert_eq!(under_hold, 1, "{}", report["days"]);

    // Taken off: every version, recorded with its own reason.
    let out = binary(&h, &["hold", "remove", "--id", &held.id.0, "--reason", "case closed"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for relative in object_keys(held) {
        for version in versions(&bucket, &full_key(&h, &relative)) {
            assert_eq!(version["hold"], "OFF", "{version}");
        }
    }
    assert!(h.db.state.holds().await.unwrap().is_empty());
    let events = h.db.state.history(&held.id).await.unwrap();
    assert_eq!(events.iter().find(|e| e.kind == "legal_hold_removed").unwrap().data["reason"], "case closed");

    // An id that is not archived: exit 1 naming it; the others are still done.
    let out = binary(&h, &["hold", "add", "--id", "no-such-recording", &other.id.0, "--reason", "r"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-recording: not an archived recording"));
    assert_eq!(h.db.state.holds().await.unwrap().len(), 1);
}

#[tokio::test]
async fn retention_is_extended_and_never_shortened() {
    let bucket = service_env("WA_TEST_MOTO_BUCKET_NO_DEFAULT");
    let h = locked_harness(&bucket, "governance", "create_time", config(2, 100_000, 200_000)).await;
    assert_eq!(h.sync().await.exit, 0);
    let row = h.db.state.archived(None).await.unwrap().remove(0);
    let out = binary(&h, &["retention", "extend", "--id", &row.id.0, "--until", "2040-01-01"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let target = parse_time("2040-01-01T00:00:00Z");
    for relative in object_keys(&row) {
        let found = versions(&bucket, &full_key(&h, &relative));
        assert_eq!(parse_time(found[0]["until"].as_str().unwrap()), target, "{relative}");
        assert_eq!(found[0]["mode"], "GOVERNANCE");
    }
    let after = h.db.state.archived_one(&row.id).await.unwrap().unwrap();
    assert_eq!(after.record.retention, Some(("GOVERNANCE".to_owned(), target)));
    let extended =
        h.db.state.history(&row.id).await.unwrap().into_iter().filter(|e| e.kind == "retention_extended").count();
    assert_eq!(extended, 1);

    // An earlier date shortens nothing (moto would allow it; the archiver never asks).
    let out = binary(&h, &["retention", "extend", "--id", &row.id.0, "--until", "2030-01-01"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 object version(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for relative in object_keys(&row) {
        let found = versions(&bucket, &full_key(&h, &relative));
        assert_eq!(parse_time(found[0]["until"].as_str().unwrap()), target, "{relative}");
    }
    let extended =
        h.db.state.history(&row.id).await.unwrap().into_iter().filter(|e| e.kind == "retention_extended").count();
    assert_eq!(extended, 1, "nothing changed: nothing recorded");
    let clean = verify::verify(&h.db.state, &h.store(), None).await.unwrap();
    assert!(clean.clean(), "{}", verify::report_text(&clean));
}

#[tokio::test]
async fn the_posture_check_refuses_a_bucket_that_does_not_match_the_settings() {
    // Compliance mode on a bucket without Object Lock (moto) and on a store without
    // Object Lock at all (s3s-fs): a configuration error naming the setting, exit 2 from
    // `config check` and from `sync`; `run` refuses to build its services.
    let plain = service_env("WA_TEST_MOTO_BUCKET_PLAIN");
    let mut moto = locked_harness(&plain, "compliance", "create_time", config(1, 1000, 2000)).await;
    let mut s3s = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config(1, 1000, 2000)).await;
    s3s.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__MODE", "governance");
    s3s.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETENTION", RETENTION);
    for (h, name) in [(&mut moto, "moto"), (&mut s3s, "s3s")] {
        for args in [&["config", "check"][..], &["sync"][..]] {
            let out = binary(h, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
            assert!(stderr.contains("storage.object_lock.mode = \""), "{name} {args:?}: {stderr}");
            assert!(stderr.contains("has no Object Lock"), "{name} {args:?}: {stderr}");
        }
        let settings = settings_from_env(h.env.clone(), Needs::Webex);
        let built = app::Services::with_state(settings, h.db.state.clone(), Default::default()).await;
        let error = built.err().expect("no services over a mismatched bucket");
        assert!(error.downcast_ref::<PostureMismatch>().is_some(), "{error:?}");
        assert!(h.db.state.archived(None).await.unwrap().is_empty(), "{name}: nothing archived");
    }

    // mode = "none" on the bucket without Object Lock: a warning in status, not an error.
    moto.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__MODE", "none");
    moto.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETENTION", "0s");
    let out = binary(&moto, &["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lock = &status["object_lock"];
    assert_eq!(lock["bucket"]["object_lock"], false, "{lock}");
    assert!(lock["errors"].as_array().unwrap().is_empty(), "{lock}");
    assert!(lock["warnings"][0].as_str().unwrap().contains("has no Object Lock"), "{lock}");
    assert_eq!(binary(&moto, &["config", "check"]).status.code(), Some(0));

    // A bucket with Object Lock: the posture is read as it is.
    let locked = service_env("WA_TEST_MOTO_BUCKET");
    let h = locked_harness(&locked, "governance", "create_time", config(1, 1000, 2000)).await;
    let out = binary(&h, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lock = &status["object_lock"];
    assert_eq!(lock["bucket"]["object_lock"], true, "{lock}");
    assert_eq!(lock["bucket"]["default_mode"], "governance", "{lock}");
    assert_eq!(lock["bucket"]["default_days"], 1, "{lock}");
    assert_eq!(lock["bucket"]["versioning"], "Enabled", "{lock}");
    assert!(lock["errors"].as_array().unwrap().is_empty() && lock["warnings"].as_array().unwrap().is_empty(), "{lock}");
}

#[tokio::test]
async fn readiness_fails_when_the_bucket_does_not_match_the_settings() {
    // A replica started with mode = "none" on a bucket without Object Lock is ready, with
    // the warning; the same bucket read with a retention mode asked is a mismatch, and the
    // replica is not ready.
    let plain = service_env("WA_TEST_MOTO_BUCKET_PLAIN");
    let mut h = locked_harness(&plain, "none", "create_time", config(0, 1000, 2000)).await;
    let services = h.services(Default::default()).await;
    let endpoint = |store| webex_archiver::server::Endpoint {
        state: services.state.clone(),
        store,
        webex: services.webex.clone(),
        metrics: services.metrics.clone(),
        liveness: Default::default(),
        max_pass_age: std::time::Duration::from_secs(3600),
        started_at: Utc::now(),
    };
    let ready = webex_archiver::server::readiness(&endpoint(services.store.clone())).await;
    assert!(ready.object_lock.starts_with("ok (warning: "), "{ready:?}");
    assert!(ready.object_lock.contains("has no Object Lock"), "{ready:?}");
    h.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__MODE", "compliance");
    h.set("WEBEX_ARCHIVER__STORAGE__OBJECT_LOCK__RETENTION", RETENTION);
    let ready = webex_archiver::server::readiness(&endpoint(h.store())).await;
    assert!(!ready.ready, "{ready:?}");
    assert!(ready.object_lock.starts_with("mismatch: storage.object_lock.mode = \"compliance\""), "{ready:?}");
}
