"""Filling the suite's local S3 server (the ``s3_server`` fixture): the object store that cannot exist here."""

from __future__ import annotations

from pathlib import Path

import boto3


def upload(root: Path, s3_server: str, bucket: str, prefix: str = "data") -> str:
    """Every file under ``root`` into ``bucket`` (made if missing) under ``prefix``; the URI of that prefix on the
    server, as a config or a command takes it."""
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}")
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")
    return f"s3://{bucket}/{prefix}?endpoint_override={s3_server}&scheme=http"
