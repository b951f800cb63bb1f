//! The storage layer against real stores: s3s-fs, Garage (which ignores conditional
//! writes) and the local filesystem. Nothing is ever overwritten silently.

use bytes::Bytes;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use webex_archiver::config::Needs;
use webex_archiver::storage::{StorageError, Store};

use crate::helpers::{S3Server, settings_from_env, unique_prefix};

fn archive_with(server: Option<S3Server>, dir: &tempfile::TempDir, sign_payload: &str) -> Store {
    let env = match server {
        Some(server) => {
            let mut env = server.env(&unique_prefix("storage"));
            env.insert("WEBEX_ARCHIVER__STORAGE__SIGN_PAYLOAD".into(), sign_payload.into());
            env
        }
        None => [("WEBEX_ARCHIVER__STORAGE__URL".to_string(), format!("file://{}", dir.path().display()))].into(),
    };
    let settings = settings_from_env(env, Needs::StateOnly);
    Store::from_settings(&settings.storage).unwrap()
}

/// Deterministic bytes of a given length.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn round_trip(server: Option<S3Server>) {
    round_trip_signed(server, "auto").await;
}

async fn round_trip_signed(server: Option<S3Server>, sign_payload: &str) {
    let dir = tempfile::tempdir().unwrap();
    let archive = archive_with(server, &dir, sign_payload);
    archive.probe().await.unwrap();
    let key = archive.key("2026/11/27/rec-1/metadata.json").unwrap();

    // put (create-only), head, get
    let body = Bytes::from_static(b"{\"hello\":\"archive\"}");
    let digest = hex::encode(Sha256::digest(&body));
    archive.put_create(&key, body.clone(), "application/json", Some(&digest)).await.unwrap();
    let info = archive.head(&key).await.unwrap().expect("the object exists");
    assert_eq!(info.size, body.len() as u64);
    if server.is_some() {
        assert_eq!(info.sha256.as_deref(), Some(digest.as_str()), "S3 objects carry their SHA-256 as metadata");
    }
    assert_eq!(archive.get_bytes(&key).await.unwrap(), body);

    // create-only: a second write is refused and the first content stays
    let err = archive.put_create(&key, Bytes::from_static(b"other"), "application/json", None).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    assert_eq!(archive.get_bytes(&key).await.unwrap(), body, "nothing was overwritten");
    assert!(err.to_string().contains("rec-1/metadata.json"), "the error names the key: {err}");

    // streamed multipart upload of more than two parts
    let big = content(12 * 1024 * 1024 + 123, 7);
    let big_key = archive.key("2026/11/27/rec-1/recording.mp4").unwrap();
    let mut upload = archive.start_upload(&big_key, "video/mp4").await.unwrap();
    for chunk in big.chunks(300_000) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let big_digest = hex::encode(Sha256::digest(&big));
    upload.finish(&big_digest, big.len() as u64).await.unwrap();
    assert_eq!(archive.head(&big_key).await.unwrap().unwrap().size, big.len() as u64);
    let read: Vec<Bytes> = archive.get_stream(&big_key).await.unwrap().try_collect().await.unwrap();
    let mut hasher = Sha256::new();
    read.iter().for_each(|c| hasher.update(c));
    assert_eq!(hex::encode(hasher.finalize()), big_digest);
    let err = archive.start_upload(&big_key, "video/mp4").await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "an upload never replaces an object");

    // a small streamed upload goes out as one create-only PUT with its digest
    let small_key = archive.key("2026/11/27/rec-2/recording.mp4").unwrap();
    let mut upload = archive.start_upload(&small_key, "video/mp4").await.unwrap();
    let tiny = Bytes::from_static(b"\0\0\0\x18ftypmp42 tiny");
    upload.write(tiny.clone()).await.unwrap();
    upload.finish("feedface", tiny.len() as u64).await.unwrap();
    if server.is_some() {
        assert_eq!(archive.head(&small_key).await.unwrap().unwrap().sha256.as_deref(), Some("feedface"));
    }

    // an object read back with another size than was written fails the upload and is
    // deleted, so that a retry can write it again
    let short_key = archive.key("2026/11/27/rec-4/recording.mp4").unwrap();
    let mut upload = archive.start_upload(&short_key, "video/mp4").await.unwrap();
    upload.write(tiny.clone()).await.unwrap();
    let err = upload.finish("feedface", tiny.len() as u64 + 1).await.unwrap_err();
    assert!(matches!(err, StorageError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("rec-4/recording.mp4"), "the error names the key: {err}");
    assert!(archive.head(&short_key).await.unwrap().is_none(), "the object that failed its read-back is gone");

    // an aborted upload leaves nothing behind
    let aborted_key = archive.key("2026/11/27/rec-3/recording.mp4").unwrap();
    let mut upload = archive.start_upload(&aborted_key, "video/mp4").await.unwrap();
    upload.write(Bytes::from(content(11 * 1024 * 1024, 1))).await.unwrap();
    upload.abort().await;
    assert!(archive.head(&aborted_key).await.unwrap().is_none());

    // list, delete
    let mut listed: Vec<String> =
        archive.list("").unwrap().map_ok(|m| archive.relative(&m.location).unwrap()).try_collect().await.unwrap();
    listed.sort();
    assert_eq!(
        listed,
        ["2026/11/27/rec-1/metadata.json", "2026/11/27/rec-1/recording.mp4", "2026/11/27/rec-2/recording.mp4"]
    );
    archive.delete(&key).await.unwrap();
    assert!(archive.head(&key).await.unwrap().is_none());
    archive.delete(&key).await.unwrap();
}

#[tokio::test]
async fn round_trip_on_s3s_fs() {
    round_trip(Some(S3Server::S3s)).await;
}

#[tokio::test]
async fn round_trip_on_garage() {
    round_trip(Some(S3Server::Garage)).await;
}

#[tokio::test]
async fn round_trip_with_unsigned_payloads() {
    // What an https:// endpoint gets by default: both servers accept it.
    round_trip_signed(Some(S3Server::S3s), "never").await;
    round_trip_signed(Some(S3Server::Garage), "never").await;
}

#[tokio::test]
async fn round_trip_on_the_local_filesystem() {
    round_trip(None).await;
}

#[tokio::test]
async fn an_unwritable_archive_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let env = [("WEBEX_ARCHIVER__STORAGE__URL".to_string(), format!("file://{}/archive", file.display()))].into();
    let settings = settings_from_env(env, Needs::StateOnly);
    let err = Store::from_settings(&settings.storage).unwrap_err();
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
}
