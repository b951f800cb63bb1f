//! What the store keeps is what was sent: S3 additional checksums refuse bytes changed on
//! the way (a proxy flips one byte of an upload), a read-back that finds another size
//! fails the attempt with `storage_mismatch`, and uploads to a bucket with Object Lock and
//! a default retention work (moto's S3 server).

use std::collections::BTreeMap;

use webex_archiver::sim::SimConfig;
use webex_archiver::state::ArchiveState;

use crate::helpers::{Backend, S3Server, service_env};
use crate::proxy::{Fault, S3Proxy};
use crate::sync::{Harness, Store};

const MIB: u64 = 1024 * 1024;

fn config(recordings: usize, size_min: u64, size_max: u64) -> SimConfig {
    SimConfig {
        recordings,
        seed: 13,
        size_min,
        size_max,
        format_weights: [("MP4".to_owned(), 1)].into(),
        ..SimConfig::default()
    }
}

/// A request that uploads a recording's bytes (one PUT, or a part of a multipart upload).
fn recording_upload(method: &str, target: &str, multipart: bool) -> bool {
    method == "PUT" && target.contains("/recording.") && target.contains("partNumber=") == multipart
}

/// Runs a sync whose uploads go through a proxy that flips one byte of the first upload
/// of a recording, and checks that the store refused it and the recording was archived
/// by a later attempt with the right bytes.
async fn corrupted_upload_is_refused_and_retried(server: S3Server, sign_payload: &str, multipart: bool) {
    let (size_min, size_max) = if multipart { (6 * MIB, 7 * MIB) } else { (200_000, 400_000) };
    let mut h = Harness::start(Backend::Postgres, Store::S3(server), "admin", config(4, size_min, size_max)).await;
    let proxy = S3Proxy::start(
        &h.env["AWS_ENDPOINT_URL"],
        Fault::FlipOnce(Box::new(move |method, target| recording_upload(method, target, multipart))),
    )
    .await;
    h.set("AWS_ENDPOINT_URL", &proxy.endpoint);
    h.set("WEBEX_ARCHIVER__STORAGE__SIGN_PAYLOAD", sign_payload);
    h.set("WEBEX_ARCHIVER__STORAGE__PART_SIZE", &(5 * MIB).to_string());
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");

    let flipped = proxy.flipped();
    assert_eq!(flipped.len(), 1, "one upload was corrupted on the way");
    let truth = h.expected(true);
    let victim = truth.iter().find(|r| flipped[0].contains(&r.id)).expect("the corrupted upload is a recording's");
    let counters = h.sim.counters();
    assert_eq!(
        counters.downloads_of(&victim.id).started,
        2,
        "{}: the store refused the corrupted upload, and a second attempt archived it",
        victim.id
    );
    assert_eq!(counters.downloads.started, truth.len() as u64 + 1, "no other recording was downloaded twice");
    // Every object is read back and hashed by `verify`: the stored bytes are the right ones.
    h.assert_archive_matches(&h.expected(true)).await;
}

// NOTE: which servers check x-amz-checksum-*: Garage (2.5) on PutObject and UploadPart,
// before anything is stored. s3s-fs (0.14) on PutObject only, and after writing the
// object: the refused bytes stay at the key, so the retry finds a `conflict` (never an
// archived corruption). moto (5.2) checks nothing (it only requires the header on Object
// Lock buckets). Payloads are unsigned here, as over https: only the checksum protects them.

#[tokio::test]
async fn a_byte_flipped_in_a_single_put_is_refused_by_the_store_and_retried() {
    corrupted_upload_is_refused_and_retried(S3Server::Garage, "never", false).await;
}

#[tokio::test]
async fn a_byte_flipped_in_a_multipart_part_is_refused_by_the_store_and_retried() {
    corrupted_upload_is_refused_and_retried(S3Server::Garage, "never", true).await;
}

#[tokio::test]
async fn an_object_read_back_with_another_size_is_a_storage_mismatch_and_not_archived() {
    let mut h = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config(3, 200_000, 7 * MIB)).await;
    let proxy = S3Proxy::start(
        &h.env["AWS_ENDPOINT_URL"],
        Fault::HeadSize(Box::new(|_, target| target.contains("/recording.")), -1),
    )
    .await;
    h.set("AWS_ENDPOINT_URL", &proxy.endpoint);
    h.set("WEBEX_ARCHIVER__STORAGE__PART_SIZE", &(5 * MIB).to_string());
    h.set("WEBEX_ARCHIVER__ARCHIVE__MAX_ATTEMPTS", "2");
    let stop = tokio_util::sync::CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let report = webex_archiver::app::sync(&services, false, &stop).await.expect("sync runs");
    assert_eq!(report.exit, 1, "{report:?}");
    assert_eq!(report.status.counts.get(&ArchiveState::Archived).copied().unwrap_or(0), 0, "nothing is archived");
    let truth = h.expected(true);
    assert_eq!(report.status.recent_failures.len(), truth.len());
    for failure in &report.status.recent_failures {
        assert_eq!(failure.state, ArchiveState::Failed);
        assert_eq!(failure.reason.as_deref(), Some("storage_mismatch"), "{failure:?}");
        assert_eq!(failure.attempts, 2, "retried like any failure of an attempt: {failure:?}");
        let message = failure.message.as_deref().unwrap_or_default();
        assert!(message.contains("read back") && message.contains("bytes"), "{message}");
    }
    assert!(proxy.heads_rewritten() >= 2 * truth.len(), "every attempt read its object back");
    let metrics = services.metrics.encode(chrono::Utc::now());
    let counted = |line: &str| metrics.lines().find_map(|l| l.strip_prefix(line)).map(str::trim).map(str::to_owned);
    assert_eq!(
        counted("webex_archiver_size_mismatches_total{kind=\"storage\"}"),
        Some((2 * truth.len()).to_string()),
        "every mismatch is counted"
    );
    assert_eq!(
        counted("webex_archiver_recordings_failed_total{reason=\"storage_mismatch\"}"),
        Some(truth.len().to_string()),
        "{metrics}"
    );
    // The objects that failed their read-back were deleted (they were the attempt's own).
    let store = h.store();
    let left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list("").unwrap()).await.unwrap();
    assert!(left.iter().all(|o| !o.location.as_ref().contains("/recording.")), "{left:?}");
    assert!(h.db.state.archived(None).await.unwrap().is_empty());
}

/// HEAD of `key` in `bucket` through boto3, independent of the archiver's S3 client.
fn boto3_head(bucket: &str, key: &str) -> serde_json::Value {
    let script = r#"
import json, os, sys
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["WA_TEST_MOTO_ENDPOINT"],
                  aws_access_key_id=os.environ["WA_TEST_MOTO_ACCESS_KEY"],
                  aws_secret_access_key=os.environ["WA_TEST_MOTO_SECRET_KEY"],
                  region_name=os.environ["WA_TEST_MOTO_REGION"])
head = s3.head_object(Bucket=sys.argv[1], Key=sys.argv[2], ChecksumMode="ENABLED")
print(json.dumps({k: str(v) for k, v in head.items() if k != "ResponseMetadata"}))
"#;
    let out = std::process::Command::new(service_env("WA_TEST_MOTO_PYTHON"))
        .args(["-c", script, bucket, key])
        .output()
        .expect("run boto3");
    assert!(out.status.success(), "boto3 head_object failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("boto3's answer as JSON")
}

#[tokio::test]
async fn uploads_to_an_object_lock_bucket_with_a_default_retention_are_archived() {
    // Small recordings (one PUT) and large ones (multipart), unsigned as over https. AWS
    // refuses a PUT or part to an Object Lock bucket without Content-MD5 or an
    // x-amz-checksum-* header; the proxy checks every PUT carries one and translates for
    // moto, which asks for another header (see `Fault::AwsObjectLockRule`).
    let mut h =
        Harness::start(Backend::Postgres, Store::S3(S3Server::Moto), "admin", config(6, 100_000, 7 * MIB)).await;
    let proxy = S3Proxy::start(&h.env["AWS_ENDPOINT_URL"], Fault::AwsObjectLockRule).await;
    h.set("AWS_ENDPOINT_URL", &proxy.endpoint);
    h.set("WEBEX_ARCHIVER__STORAGE__SIGN_PAYLOAD", "never");
    h.set("WEBEX_ARCHIVER__STORAGE__PART_SIZE", &(5 * MIB).to_string());
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let expected = h.expected(true);
    assert!(expected.iter().any(|r| r.size_bytes > 5 * MIB), "some uploads are multipart");
    assert!(expected.iter().any(|r| r.size_bytes < 5 * MIB), "some are one PUT");
    h.assert_archive_matches(&expected).await;
    let (with, without) = proxy.puts_by_checksum();
    assert_eq!(without, 0, "every PUT and part carries an x-amz-checksum-* header");
    assert!(with >= 2 * expected.len(), "{with} PUTs with a checksum");

    // The objects, seen by another S3 client.
    let bucket = service_env("WA_TEST_MOTO_BUCKET");
    let store = h.store();
    let rows = h.db.state.archived(None).await.unwrap();
    let sizes: BTreeMap<&str, u64> = expected.iter().map(|r| (r.id.as_str(), r.size_bytes)).collect();
    for row in &rows {
        let size = sizes[row.id.0.as_str()];
        let media = boto3_head(&bucket, store.key(&row.record.media_key).unwrap().as_ref());
        assert_eq!(media["ContentLength"], size.to_string(), "{media}");
        assert!(media.get("VersionId").is_some(), "Object Lock buckets are versioned: {media}");
        let metadata = boto3_head(&bucket, store.key(&row.record.metadata_key).unwrap().as_ref());
        // The exact versions written are in the custody log (and the row's files).
        let events = h.db.state.history(&row.id).await.unwrap();
        let archived = &events.iter().find(|e| e.kind == "archived").expect("an archived event").data;
        assert_eq!(archived["files"][0]["version_id"], media["VersionId"], "{archived}");
        assert_eq!(archived["metadata_version_id"], metadata["VersionId"], "{archived}");
        assert_eq!(row.record.files[0]["version_id"], media["VersionId"]);
        // NOTE: moto applies the bucket's default retention to single PUTs only (a known
        // gap: a multipart upload gets none).
        for (object, single_put) in [(&media, size < 5 * MIB), (&metadata, true)] {
            if single_put {
                assert_eq!(object["ObjectLockMode"], "GOVERNANCE", "{object}");
                assert!(object.get("ObjectLockRetainUntilDate").is_some(), "{object}");
            }
        }
    }
    // The daily manifests carry the same version ids.
    let mut listed = 0;
    for key in &report.manifests {
        let bytes = store.get_bytes(&store.key(key).unwrap()).await.unwrap();
        let manifest: webex_archiver::manifest::Manifest = serde_json::from_slice(&bytes).unwrap();
        for file in manifest.recordings.iter().flat_map(|r| &r.files) {
            let head = boto3_head(&bucket, store.key(&file.key).unwrap().as_ref());
            assert_eq!(file.version_id.as_deref(), head["VersionId"].as_str(), "{key}: {}", file.key);
            listed += 1;
        }
    }
    assert!(listed > 0, "the manifests written list files: {:?}", report.manifests);
}
