"""Drill images: which image a container drill runs, and a local build for machines
without registry access.

`dr drill` picks `openbao/openbao:VERSION` or `hashicorp/vault:VERSION` from the backup's
product and version (or `drill.image`), and never builds an image by itself. Where no
registry is reachable, an operator (or CI) builds that exact tag once from a local
server binary; the image is FROM scratch with only the static binary (about 4 s):

    python -m dr.runtime.image                          # tag from the binary's version
    python -m dr.runtime.image --tag openbao/openbao:2.7.2 --binary /usr/local/bin/bao
    python -m dr.runtime.image --if-missing             # no-op when the tag exists

The Dockerfile is deploy/drill-image/Dockerfile (for `docker build` by hand); this
module renders the same text, so the package does not depend on the repository layout.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from dr.errors import DRError, UsageError
from dr.runtime.process import detect_version
from dr.vault.localserver import find_bao_binary

IMAGE_REPOSITORIES = {"openbao": "openbao/openbao", "vault": "hashicorp/vault"}
# Where the server binary lives in the official images and in the local one.
BINARY_PATHS = {"openbao": "/bin/bao", "vault": "/bin/vault"}


def default_image(product: str, version: str) -> str:
    """The image for a backup's product and version, e.g. openbao/openbao:2.7.2."""
    try:
        repository = IMAGE_REPOSITORIES[product]
    except KeyError:
        raise UsageError(
            f"no drill image is known for product '{product}'; set drill.image"
        ) from None
    return f"{repository}:{version}"


def render_dockerfile(name: str = "bao") -> str:
    """The Dockerfile of the local image: the static binary `name`, nothing else."""
    return (
        "# A drill image with only the static OpenBao/Vault server binary: no shell, no\n"
        "# package manager, no network tools. Built by `python -m dr.runtime.image`.\n"
        "FROM scratch\n"
        f"COPY {name} /bin/{name}\n"
        "# A restore spools the snapshot to a temp file: scratch has no /tmp otherwise.\n"
        "WORKDIR /tmp\n"
        f'ENTRYPOINT ["/bin/{name}"]\n'
        'CMD ["version"]\n'
    )


def image_exists(tag: str) -> bool:
    """True when the engine (DOCKER_HOST) already has `tag`."""
    # docker SDK: testcontainers has no "is this image present" call.
    from testcontainers.core.docker_client import DockerClient

    errors: Any = importlib.import_module("docker.errors")  # untyped: no stubs needed

    try:
        client = DockerClient().client
    except errors.DockerException as exc:
        raise UsageError(f"no Docker engine answers ({exc}); set DOCKER_HOST") from exc
    try:
        client.images.get(tag)
        return True
    except errors.ImageNotFound:
        return False
    finally:
        client.close()


def build_local_image(tag: str, binary: Path | None = None) -> str:
    """Build `tag` FROM scratch holding `binary` (default: the packaged bao); its id."""
    from testcontainers.core.image import DockerImage

    binary = find_bao_binary(binary)
    product, _ = detect_version(binary)
    name = BINARY_PATHS.get(product, "/bin/bao").rsplit("/", 1)[1]
    with tempfile.TemporaryDirectory(prefix="dr-image-") as context:
        target = Path(context) / name
        try:
            os.link(binary, target)  # the binary is large (~180 MB): avoid a copy
        except OSError:
            shutil.copy2(binary, target)
        (Path(context) / "Dockerfile").write_text(render_dockerfile(name))
        try:
            image = DockerImage(path=context, tag=tag, clean_up=False).build()
        except Exception as exc:
            raise UsageError(f"could not build image {tag} from {binary}: {exc}") from exc
        return str(image.get_wrapped_image().id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dr.runtime.image",
        description="Build a local drill image FROM scratch with a bao/vault server binary.",
    )
    parser.add_argument("--tag", help="image tag (default: from the binary's version)")
    parser.add_argument("--binary", type=Path, help="server binary (default: packaged bao)")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when the tag already exists"
    )
    args = parser.parse_args(argv)
    try:
        binary = find_bao_binary(args.binary)
        tag = args.tag or default_image(*detect_version(binary))
        if args.if_missing and image_exists(tag):
            print(f"{tag}: already present")
            return 0
        image_id = build_local_image(tag, binary)
    except DRError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.exit_code)
    print(f"{tag}: built {image_id} from {binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
