//! Streamed create-only uploads of whole files: a file smaller than one part is sent as
//! one PUT (with its SHA-256 as object metadata), a larger one as a multipart upload
//! whose parts are sent while the next one is read.

use std::fmt;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{PutMode, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart};

use super::{StorageError, Store};

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
    store: Store,
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
    /// An upload to `key` of `store`, not started yet: nothing is sent before the first
    /// part is full or the file ends.
    pub(super) fn new(store: Store, key: Path, content_type: &str) -> Self {
        Self {
            store,
            key,
            content_type: content_type.to_owned(),
            state: UploadState::Buffering { chunks: Vec::new(), len: 0 },
        }
    }

    /// Appends a chunk, waiting while `upload_concurrency` parts are in flight.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match &mut self.state {
            UploadState::Buffering { chunks, len } => {
                *len += chunk.len();
                chunks.push(chunk);
                if *len >= self.store.part_size {
                    let chunks = std::mem::take(chunks);
                    let options = PutMultipartOptions {
                        attributes: self.store.attributes(&self.content_type, None),
                        ..Default::default()
                    };
                    let upload = self
                        .store
                        .objects
                        .put_multipart_opts(&self.key, options)
                        .await
                        .map_err(|e| self.store.error("start multipart upload", &self.key, e))?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, self.store.part_size);
                    for chunk in chunks {
                        writer.put(chunk);
                    }
                    self.state = UploadState::Multipart(writer);
                }
                Ok(())
            }
            UploadState::Multipart(writer) => {
                writer
                    .wait_for_capacity(self.store.upload_concurrency)
                    .await
                    .map_err(|e| self.store.error("upload part", &self.key, e))?;
                writer.put(chunk);
                Ok(())
            }
            UploadState::Done => Ok(()),
        }
    }

    /// Completes the upload of `size` bytes whose SHA-256 is `sha256`, then reads the
    /// object back ([`StorageError::Mismatch`] when it is not what was sent). `sha256` is
    /// stored as object metadata where the file was small enough to be sent in one PUT
    /// (multipart uploads cannot know it up front).
    /// Returns the version id the store gave the object (versioned buckets only).
    pub async fn finish(mut self, sha256: &str, size: u64) -> Result<Option<String>, StorageError> {
        let (metadata, put) = match std::mem::replace(&mut self.state, UploadState::Done) {
            UploadState::Buffering { chunks, .. } => {
                let options = PutOptions {
                    mode: PutMode::Create,
                    attributes: self.store.attributes(&self.content_type, Some(sha256)),
                    ..Default::default()
                };
                let payload: PutPayload = chunks.into_iter().collect();
                let put = self
                    .store
                    .objects
                    .put_opts(&self.key, payload, options)
                    .await
                    .map_err(|e| self.store.error("put", &self.key, e))?;
                (self.store.supports_attributes.then_some(sha256), put)
            }
            UploadState::Multipart(writer) => {
                // NOTE: WriteMultipart::finish aborts the upload itself when completing fails.
                let put =
                    writer.finish().await.map_err(|e| self.store.error("complete multipart upload", &self.key, e))?;
                (None, put)
            }
            UploadState::Done => return Ok(None),
        };
        self.store.confirm(&self.key, size, metadata).await?;
        Ok(put.version)
    }

    /// Abandons the upload, removing uploaded parts (best effort: a store that cannot be
    /// reached keeps them until the bucket's lifecycle rule expires them).
    pub async fn abort(mut self) {
        if let UploadState::Multipart(writer) = std::mem::replace(&mut self.state, UploadState::Done)
            && let Err(e) = writer.abort().await
        {
            tracing::warn!(key = %self.key, error = %crate::errors::ErrorChain(&e), "could not abort a multipart upload; the bucket's lifecycle rule will expire its parts");
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
                        tracing::warn!(key = %key, error = %crate::errors::ErrorChain(&e), "could not abort a dropped multipart upload");
                    }
                });
            }
        }
    }
}
