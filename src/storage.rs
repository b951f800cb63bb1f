//! The archive's object store, built with object_store from `storage.url`
//! (`s3://bucket/prefix` or `file:///path`).
//!
//! Guarantee: nothing already in the archive is overwritten silently. Create-only writes
//! check for an existing object first and then write with `PutMode::Create`, so stores
//! that honour conditional writes (AWS S3, s3s-fs, the local filesystem) refuse a racing
//! writer, and stores that ignore them (Garage) still refuse every writer that is not
//! racing. Uploads of whole recordings are streamed: a file smaller than one part is sent
//! as one create-only PUT that also carries its SHA-256 as object metadata; a larger one
//! as a multipart upload whose parts are sent while the next one is read.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use secrecy::ExposeSecret;

use crate::config::{SignPayload, StorageLocation, StorageSettings};

/// User-metadata name of the SHA-256 (hex) of an object (`x-amz-meta-sha256` on S3).
pub const SHA256_METADATA: &str = "sha256";

/// Errors of the storage layer, each naming the object or location concerned. A variant
/// with a source does not repeat it: print them with [`crate::telemetry::ErrorChain`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `storage.url` does not name a store.
    #[error("storage configuration")]
    Location(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// `storage.*` settings cannot make a store, or a key is not a valid key.
    #[error("storage configuration: {problem}")]
    Config {
        /// What could not be done, or the setting or path concerned.
        problem: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A create-only write found an object at the key.
    #[error("{key}: an object already exists at this key")]
    AlreadyExists {
        /// Full key.
        key: String,
    },
    /// No object at the key.
    #[error("{key}: no such object")]
    NotFound {
        /// Full key.
        key: String,
    },
    /// The store failed (unreachable, refused, disk full, ...).
    #[error("{key}: {operation} failed")]
    Store {
        /// What was being done.
        operation: &'static str,
        /// Full key (or location).
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

impl StorageError {
    fn config(problem: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Config { problem: problem.into(), source: Box::new(source) }
    }

    fn store(operation: &'static str, key: String, source: object_store::Error) -> Self {
        match source {
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                Self::AlreadyExists { key }
            }
            object_store::Error::NotFound { .. } => Self::NotFound { key },
            source => Self::Store { operation, key, source },
        }
    }
}

/// What a HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// The `sha256` user metadata, when the object carries it.
    pub sha256: Option<String>,
}

/// The archive store: a bucket (or directory) and the prefix every key lives under.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: String,
    /// `s3://bucket` or `file:///dir`: full keys are shown under it in messages.
    root: String,
    supports_attributes: bool,
    part_size: usize,
    upload_concurrency: usize,
}

impl fmt::Debug for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Archive").field("location", &self.location).finish_non_exhaustive()
    }
}

impl Archive {
    /// Builds the store named by `storage.url`, with S3 settings from `storage.*` keys,
    /// falling back to the standard `AWS_*` variables.
    pub fn from_settings(settings: &StorageSettings) -> Result<Self, StorageError> {
        let location = StorageLocation::parse(&settings.url).map_err(|e| StorageError::Location(e.into()))?;
        let (store, prefix, supports_attributes, root): (Arc<dyn ObjectStore>, String, bool, String) = match &location {
            StorageLocation::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::new();
                for (key, value) in &settings.aws_env {
                    if let (Ok(config_key), Some(value)) =
                        (key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>(), value.get())
                    {
                        builder = builder.with_config(config_key, value.expose_secret());
                    }
                }
                if !settings.endpoint.is_empty() {
                    builder = builder.with_endpoint(&settings.endpoint);
                }
                if !settings.region.is_empty() {
                    builder = builder.with_region(&settings.region);
                }
                if let Some(id) = settings.access_key_id.get() {
                    builder = builder.with_access_key_id(id.expose_secret());
                }
                if let Some(secret) = settings.secret_access_key.get() {
                    builder = builder.with_secret_access_key(secret.expose_secret());
                }
                if !settings.allow_http.is_empty() {
                    builder = builder.with_allow_http(settings.allow_http == "true");
                }
                let sign = match settings.sign_payload {
                    SignPayload::Always => true,
                    SignPayload::Never => false,
                    // NOTE: without an endpoint the client talks to AWS S3 over https.
                    SignPayload::Auto => endpoint_of(settings).is_some_and(|e| e.starts_with("http://")),
                };
                builder = builder.with_unsigned_payload(!sign);
                let store = builder
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| StorageError::config("cannot build the S3 client", e))?;
                (Arc::new(store), prefix.clone(), true, format!("s3://{bucket}"))
            }
            StorageLocation::File { path } => {
                std::fs::create_dir_all(path).map_err(|e| {
                    StorageError::config(format!("{}: cannot create the archive directory", path.display()), e)
                })?;
                let store = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| StorageError::config(path.display().to_string(), e))?;
                (Arc::new(store), String::new(), false, format!("file://{}", path.display()))
            }
        };
        let prefix = Path::parse(&prefix).map_err(|e| StorageError::config("storage.url prefix", e))?;
        Ok(Self {
            store,
            prefix,
            location: settings.url.clone(),
            root: root.trim_end_matches('/').to_owned(),
            supports_attributes,
            part_size: settings.part_size,
            upload_concurrency: settings.upload_concurrency,
        })
    }

    /// `storage.url`, for messages (holds no secret).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Where a key is, for messages: `s3://bucket/full/key` or `file:///dir/full/key`.
    pub fn describe(&self, key: &Path) -> String {
        format!("{}/{}", self.root, key)
    }

    fn error(&self, operation: &'static str, key: &Path, source: object_store::Error) -> StorageError {
        StorageError::store(operation, self.describe(key), source)
    }

    /// The full key of a key relative to the prefix.
    pub fn key(&self, relative: &str) -> Result<Path, StorageError> {
        let relative = Path::parse(relative).map_err(|e| StorageError::config("invalid key", e))?;
        Ok(self.prefix.parts().chain(relative.parts()).collect())
    }

    /// A key relative to the prefix, from a full key (inverse of [`Archive::key`]).
    pub fn relative(&self, full: &Path) -> Option<String> {
        full.prefix_match(&self.prefix).map(|parts| parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>().join("/"))
    }

    /// Is the store answering? A HEAD of a key that does not exist must say "not found".
    pub async fn probe(&self) -> Result<(), StorageError> {
        let key = self.key(".webex-archiver-probe")?;
        match self.store.head(&key).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::Store { operation: "probe", key: self.root.clone(), source: e }),
        }
    }

    /// Size and `sha256` metadata of an object, or `None` when there is none.
    pub async fn head(&self, key: &Path) -> Result<Option<ObjectInfo>, StorageError> {
        let options = GetOptions { head: true, ..Default::default() };
        match self.store.get_opts(key, options).await {
            Ok(result) => Ok(Some(ObjectInfo {
                size: result.meta.size,
                sha256: result.attributes.get(&Attribute::Metadata(SHA256_METADATA.into())).map(|v| v.to_string()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("head", key, e)),
        }
    }

    /// Writes a small object only if nothing is at `key` (see the module docs).
    pub async fn put_create(
        &self,
        key: &Path,
        bytes: Bytes,
        content_type: &str,
        sha256: Option<&str>,
    ) -> Result<(), StorageError> {
        if self.head(key).await?.is_some() {
            return Err(StorageError::AlreadyExists { key: self.describe(key) });
        }
        let options = PutOptions {
            mode: PutMode::Create,
            attributes: self.attributes(content_type, sha256),
            ..Default::default()
        };
        self.store.put_opts(key, PutPayload::from(bytes), options).await.map_err(|e| self.error("put", key, e))?;
        Ok(())
    }

    /// The whole content of a small object.
    pub async fn get_bytes(&self, key: &Path) -> Result<Bytes, StorageError> {
        let result = self.store.get(key).await.map_err(|e| self.error("get", key, e))?;
        result.bytes().await.map_err(|e| self.error("get", key, e))
    }

    /// The content of an object as a stream of chunks.
    pub async fn get_stream(
        &self,
        key: &Path,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let result = self.store.get(key).await.map_err(|e| self.error("get", key, e))?;
        let shown = self.describe(key);
        Ok(result.into_stream().map_err(move |e| StorageError::store("get", shown.clone(), e)).boxed())
    }

    /// Deletes an object (a missing one is not an error).
    pub async fn delete(&self, key: &Path) -> Result<(), StorageError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    /// Every object under a key relative to the prefix (`""` = the whole archive).
    pub fn list(&self, relative: &str) -> Result<BoxStream<'static, Result<ObjectMeta, StorageError>>, StorageError> {
        let prefix = if relative.is_empty() { self.prefix.clone() } else { self.key(relative)? };
        let location = self.describe(&prefix);
        Ok(self
            .store
            .list(Some(&prefix))
            .map_err(move |e| StorageError::Store { operation: "list", key: location.clone(), source: e })
            .boxed())
    }

    /// Starts a streamed create-only upload to `key`. Call [`Upload::write`] for each
    /// chunk, then [`Upload::finish`] or [`Upload::abort`].
    pub async fn start_upload(&self, key: &Path, content_type: &str) -> Result<Upload, StorageError> {
        if self.head(key).await?.is_some() {
            return Err(StorageError::AlreadyExists { key: self.describe(key) });
        }
        Ok(Upload {
            archive: self.clone(),
            key: key.clone(),
            content_type: content_type.to_owned(),
            state: UploadState::Buffering { chunks: Vec::new(), len: 0 },
        })
    }

    fn attributes(&self, content_type: &str, sha256: Option<&str>) -> Attributes {
        let mut attributes = Attributes::new();
        if self.supports_attributes {
            attributes.insert(Attribute::ContentType, AttributeValue::from(content_type.to_owned()));
            if let Some(sha) = sha256 {
                attributes.insert(Attribute::Metadata(SHA256_METADATA.into()), AttributeValue::from(sha.to_owned()));
            }
        }
        attributes
    }
}

/// The S3 endpoint in use: `storage.endpoint`, else the standard variables.
fn endpoint_of(settings: &StorageSettings) -> Option<String> {
    if !settings.endpoint.is_empty() {
        return Some(settings.endpoint.to_ascii_lowercase());
    }
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| settings.aws_env.get(*k).and_then(|v| v.get()))
        .map(|v| v.expose_secret().to_ascii_lowercase())
}

enum UploadState {
    /// Less than one part so far: kept in memory, sent as one PUT if the file ends here.
    Buffering { chunks: Vec<Bytes>, len: usize },
    /// A multipart upload is under way.
    Multipart(WriteMultipart),
    /// Finished or aborted.
    Done,
}

/// A streamed upload of one file. Memory is bounded by
/// `part_size * (upload_concurrency + 1)` whatever the file's size.
pub struct Upload {
    archive: Archive,
    key: Path,
    content_type: String,
    state: UploadState,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload").field("key", &self.key.as_ref()).finish_non_exhaustive()
    }
}

impl Upload {
    /// Appends a chunk, waiting while `upload_concurrency` parts are in flight.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match &mut self.state {
            UploadState::Buffering { chunks, len } => {
                *len += chunk.len();
                chunks.push(chunk);
                if *len >= self.archive.part_size {
                    let chunks = std::mem::take(chunks);
                    let options = PutMultipartOptions {
                        attributes: self.archive.attributes(&self.content_type, None),
                        ..Default::default()
                    };
                    let upload = self
                        .archive
                        .store
                        .put_multipart_opts(&self.key, options)
                        .await
                        .map_err(|e| self.archive.error("start multipart upload", &self.key, e))?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, self.archive.part_size);
                    for chunk in chunks {
                        writer.put(chunk);
                    }
                    self.state = UploadState::Multipart(writer);
                }
                Ok(())
            }
            UploadState::Multipart(writer) => {
                writer
                    .wait_for_capacity(self.archive.upload_concurrency)
                    .await
                    .map_err(|e| self.archive.error("upload part", &self.key, e))?;
                writer.put(chunk);
                Ok(())
            }
            UploadState::Done => Ok(()),
        }
    }

    /// Completes the upload. `sha256` is stored as object metadata where the file was
    /// small enough to be sent in one PUT (multipart uploads cannot know it up front).
    pub async fn finish(mut self, sha256: &str) -> Result<(), StorageError> {
        match std::mem::replace(&mut self.state, UploadState::Done) {
            UploadState::Buffering { chunks, .. } => {
                let options = PutOptions {
                    mode: PutMode::Create,
                    attributes: self.archive.attributes(&self.content_type, Some(sha256)),
                    ..Default::default()
                };
                let payload: PutPayload = chunks.into_iter().collect();
                self.archive
                    .store
                    .put_opts(&self.key, payload, options)
                    .await
                    .map_err(|e| self.archive.error("put", &self.key, e))?;
            }
            UploadState::Multipart(writer) => {
                // NOTE: WriteMultipart::finish aborts the upload itself when completing fails.
                writer.finish().await.map_err(|e| self.archive.error("complete multipart upload", &self.key, e))?;
            }
            UploadState::Done => {}
        }
        Ok(())
    }

    /// Abandons the upload, removing uploaded parts (best effort: a store that cannot be
    /// reached keeps them until the bucket's lifecycle rule expires them).
    pub async fn abort(mut self) {
        if let UploadState::Multipart(writer) = std::mem::replace(&mut self.state, UploadState::Done)
            && let Err(e) = writer.abort().await
        {
            tracing::warn!(key = %self.key, error = %crate::telemetry::ErrorChain(&e), "could not abort a multipart upload; the bucket's lifecycle rule will expire its parts");
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // A dropped multipart upload (task cancelled, shutdown) must not leave parts behind:
        // abort it in the background when a runtime is still there.
        if let UploadState::Multipart(writer) = std::mem::replace(&mut self.state, UploadState::Done) {
            let key = self.key.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = writer.abort().await {
                        tracing::warn!(key = %key, error = %crate::telemetry::ErrorChain(&e), "could not abort a dropped multipart upload");
                    }
                });
            }
        }
    }
}
