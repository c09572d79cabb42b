"""The checks of the artifact and its manifest, cheapest first: it exists, its manifest reads, it is
recent enough, its size and its sha256 are the manifest's (reading every byte once)."""

from __future__ import annotations

import datetime

from airflow_provider_pgbackup.content import ContentRecord, ContentRecordError
from airflow_provider_pgbackup.manifest import Manifest, ManifestError
from airflow_provider_pgbackup.options import FORMAT_FLAGS, InvalidOptionError
from airflow_provider_pgbackup.storage import ArtifactMismatchError, ArtifactRefused
from airflow_provider_pgbackup.storage.base import combine_file_digests
from airflow_provider_pgbackup.verify.archive import SQL_TRAILERS
from airflow_provider_pgbackup.verify.check import Check, Fail, Run
from airflow_provider_pgbackup.verify.report import (
    ArtifactMissing,
)


class Exists(Check):
    """The artifact and its manifest are there; missing raises :class:`ArtifactMissing` ("not yet")."""

    name = "exists"

    def run(self, run: Run, detail: list[str]) -> None:
        missing = []
        try:
            try:
                run.sizes = run.source.artifact_sizes()
            except FileNotFoundError:
                missing.append(f"artifact {run.source.location.uri}")
            try:
                run.raw_manifest = run.source.manifest_bytes()
            except FileNotFoundError:
                missing.append(f"manifest {run.source.location.manifest_uri}")
        except ArtifactRefused as err:
            raise Fail(str(err)) from err
        if missing:
            hint = ""
            if len(missing) == 2 and run.source.location.is_local:
                hint = (
                    " (if the dump ran on another worker without shared storage it will never be here: "
                    "use a gs:// staging location, or pass the dump's 'artifact_uri' so this fails at once)"
                )
            raise ArtifactMissing(f"backup not there yet: no {' and no '.join(missing)}{hint}", run.report)
        detail.append("artifact and manifest are there")


class ManifestCheck(Check):
    """The manifest parses and describes this artifact."""

    name = "manifest"

    def run(self, run: Run, detail: list[str]) -> None:
        location, report = run.source.location, run.report
        try:
            manifest = Manifest.from_json(run.raw_manifest)
        except ManifestError as err:
            raise Fail(f"manifest {location.manifest_uri} is unreadable: {err}") from err
        report.kind, report.format = manifest.kind, manifest.format
        report.compression = manifest.compression
        problems = []
        if manifest.kind not in SQL_TRAILERS:
            problems.append(f"kind {manifest.kind!r} is not pg_dump or pg_dumpall")
        if manifest.format not in FORMAT_FLAGS:
            problems.append(f"format {manifest.format!r} is not one of {', '.join(FORMAT_FLAGS)}")
        if location.basename != manifest.artifact:
            problems.append(f"it describes artifact {manifest.artifact!r}, not {location.uri}")
        directory = manifest.format == "directory"
        is_dir = isinstance(run.sizes, dict)
        if directory != is_dir:
            problems.append(
                f"it describes a {'directory' if directory else 'file'} artifact but {location.uri} "
                f"is a {'directory' if is_dir else 'file'}"
            )
        if directory and manifest.files is None:
            problems.append("a directory artifact's manifest must list its files")
        try:
            _ = manifest.compression_spec  # parsed here, once; every later reader uses it
        except InvalidOptionError as err:
            problems.append(str(err))
        if manifest.content is not None:
            try:
                ContentRecord.from_dict(manifest.content)
            except ContentRecordError as err:
                problems.append(f"its content record is malformed: {err}")
        if problems:
            raise Fail(f"manifest {location.manifest_uri}: " + "; ".join(problems))
        run._manifest = manifest
        detail.append(
            f"{manifest.kind} {manifest.format} archive of {manifest.database or 'the cluster'} by "
            f"{manifest.client_tool} {manifest.client_version}"
        )


class Age(Check):
    """(only with ``max_age``) the manifest's ``finished_at`` is recent enough."""

    name = "age"

    def applies(self, run: Run) -> bool:
        return run.max_age is not None

    def run(self, run: Run, detail: list[str]) -> None:
        manifest, limit = run.manifest, run.max_age
        assert limit is not None
        try:
            finished = datetime.datetime.fromisoformat(manifest.finished_at)
        except (TypeError, ValueError) as err:
            raise Fail(f"manifest finished_at {manifest.finished_at!r} is not an ISO-8601 time") from err
        if finished.tzinfo is None:
            finished = finished.replace(tzinfo=datetime.timezone.utc)
        age = (run.now or datetime.datetime.now(datetime.timezone.utc)) - finished
        if age > limit:
            raise Fail(f"backup finished at {manifest.finished_at}, {age} ago: older than max_age {limit}")
        detail.append(f"finished {age} ago (max_age {limit})")


class Size(Check):
    """size > 0, >= ``min_size_bytes`` and equal to the manifest's; a directory holds exactly the files
    its manifest lists, with their sizes."""

    name = "size"

    def run(self, run: Run, detail: list[str]) -> None:
        manifest, sizes = run.manifest, run.sizes
        if isinstance(sizes, dict):
            expected = {f.path: f.size_bytes for f in manifest.files or ()}
            missing = sorted(expected.keys() - sizes.keys())
            extra = sorted(sizes.keys() - expected.keys())
            changed = sorted(p for p in expected.keys() & sizes.keys() if expected[p] != sizes[p])
            problems = []
            if missing:
                problems.append(f"files missing from the directory: {', '.join(missing)}")
            if extra:
                problems.append(f"files the manifest does not list: {', '.join(extra)}")
            if changed:
                problems.append(
                    "files whose size differs: "
                    + ", ".join(f"{p} ({sizes[p]} bytes, manifest {expected[p]})" for p in changed)
                )
            if problems:
                raise Fail("; ".join(problems))
            total = sum(sizes.values())
        else:
            total = sizes
        run.report.size_bytes = total
        if total == 0:
            raise Fail("the artifact is empty (0 bytes)")
        if total < run.min_size_bytes:
            raise Fail(f"the artifact has {total} bytes, fewer than min_size_bytes {run.min_size_bytes}")
        if total != manifest.size_bytes:
            raise Fail(f"the artifact has {total} bytes but the manifest says {manifest.size_bytes}")
        detail.append(f"{total} bytes" + (f" in {len(sizes)} files" if isinstance(sizes, dict) else ""))


class Checksum(Check):
    """sha256 equal to the manifest's (directory: every file's digest and the combined digest)."""

    name = "checksum"
    switch = "verify_checksum"

    def run(self, run: Run, detail: list[str]) -> None:
        manifest = run.manifest
        try:
            digest = run.source.digest()
        except ArtifactMismatchError as err:  # a remote source's crc32c check of the download
            raise Fail(str(err)) from err
        run.report.sha256 = digest.sha256
        if manifest.format == "directory":
            actual = {f.path: f for f in digest.files or ()}
            expected = {f.path: f for f in manifest.files or ()}
            if actual.keys() != expected.keys():
                missing = sorted(expected.keys() - actual.keys())
                extra = sorted(actual.keys() - expected.keys())
                raise Fail(f"directory files changed while reading: missing {missing}, extra {extra}")
            bad = sorted(p for p in expected if expected[p].sha256 != actual[p].sha256)
            if bad:
                raise Fail(f"sha256 differs from the manifest for: {', '.join(bad)}")
            listed = combine_file_digests(tuple(expected.values()))
            if listed != manifest.sha256:
                raise Fail(
                    f"the manifest's combined sha256 {manifest.sha256} does not match its own file "
                    f"digests ({listed}): the manifest was edited"
                )
        if digest.sha256 != manifest.sha256:
            raise Fail(f"sha256 is {digest.sha256} but the manifest says {manifest.sha256}")
        if digest.size_bytes != manifest.size_bytes:
            raise Fail(f"read {digest.size_bytes} bytes but the manifest says {manifest.size_bytes}")
        detail.append(f"sha256 {digest.sha256}")
