"""The Amazon S3 backend (``s3://bucket/key``): what the storage registry calls.

``location`` parses URIs and checks settings; ``client`` builds the boto3 client (through the Amazon
provider's ``S3Hook`` when a connection is given) and implements the object-store calls; the streamed
multipart writer, the dump target, sources, stores, upload and promote are the shared ones of
:mod:`airflow_provider_pgbackup.storage.objects`. boto3 is imported only when a function here is used.
"""

from __future__ import annotations

from airflow_provider_pgbackup.storage.objects.backend import ObjectBackend
from airflow_provider_pgbackup.storage.s3.client import S3ObjectClient, get_s3_client, object_url
from airflow_provider_pgbackup.storage.s3.location import SCHEME, S3Location, check_settings, parse

BACKEND = ObjectBackend(S3ObjectClient, parse=parse, check_settings=check_settings, object_url=object_url)

__all__ = [
    "BACKEND",
    "SCHEME",
    "S3Location",
    "S3ObjectClient",
    "check_settings",
    "get_s3_client",
    "object_url",
    "parse",
]
