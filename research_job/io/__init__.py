"""I/O adapters: atomic local files, object storage (local dir and S3), catalogue databases, audio decoding."""
