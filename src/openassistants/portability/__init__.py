"""Bring your data, take your data: export a deployment to an archive, import archives and what users
already have (``assistants-thread-export/v1`` exports, folders of SDK JSON dumps). docs/data.md
describes the archive format."""
