"""Install the console's browser assets from package-lock.json without Node, for machines that have no npm.

Same result as `npm ci --omit=dev`: each locked package's tarball is fetched from the npm registry, checked
against the lock file's sha512 integrity, and unpacked into node_modules/<name>. Run by scripts/setup.sh.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"


def tarball_url(name: str, version: str) -> str:
    return f"{REGISTRY}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"


def verify(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or base64.b64encode(hashlib.sha512(data).digest()).decode() != expected:
        raise SystemExit(f"integrity check failed ({integrity[:20]}...)")


def unpack(data: bytes, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts[1:]  # npm tarballs wrap everything in one top folder
            if not parts or not (member.isfile() or member.isdir()) or ".." in parts:
                continue
            destination = target.joinpath(*parts)
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            if source is not None:
                destination.write_bytes(source.read())


def install(folder: Path) -> None:
    lock = json.loads((folder / "package-lock.json").read_text())
    for key, package in lock["packages"].items():
        if not key.startswith("node_modules/") or package.get("dev"):
            continue
        name = key.removeprefix("node_modules/")
        url = package.get("resolved") or tarball_url(name, package["version"])
        if not url.startswith("https://"):
            raise SystemExit(f"refusing a non-https tarball URL for {name}")
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - https only, checked above
            data = response.read()
        verify(data, package["integrity"])
        unpack(data, folder / key)
    shutil.copyfile(folder / "package-lock.json", folder / "node_modules" / ".package-lock.json")


if __name__ == "__main__":
    install(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "static" / "vendor"))
