"""Blob stores for received objects: local files (S3-compatible later)."""

from pacsflow.adapters.blobs.files import FileBlobStore, open_blob_store

__all__ = ["FileBlobStore", "open_blob_store"]
