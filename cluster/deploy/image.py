"""The agent image for ``runtime: container`` hosts, built once per release from local images."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cluster.deploy.claudecli import CliPack, file_sha256
from cluster.deploy.wheels import BuildError, WheelSet
from cluster.transport import docker as engine

IMAGE_REPO = "claude-cluster-agent"
BASE_REPO = "ccc-testhost"  # the cached systemd test-host image: python3 and venv, no registry
UID = 10001  # the service user's uid and gid inside the image (and on the files it mounts)
DOCKERFILE = Path("containers") / "agent" / "Dockerfile"
CLI_TARBALL = "claude-code.tar.gz"  # its name in the build context (the Dockerfile ADDs it)


def base_image(client: engine.Client, wanted: str | None = None) -> str:
    """``wanted``, else the newest local ``ccc-testhost:*`` image by creation time, else that
    image built here from its recipe (debootstrap from the Debian mirror, once: minutes); never
    a registry. (Tags end in a hash: sorting them by name picked an arbitrary one, possibly a
    stale image without bubblewrap. The test beds name the current recipe's image as
    ``wanted``.)"""
    if wanted:
        return wanted
    with engine.translated(f"list {BASE_REPO} images"):
        images = client.images.list(name=BASE_REPO)
    tagged = sorted((str(image.attrs.get("Created", "")), tag) for image in images
                    for tag in image.tags)  # fmt: skip
    if not tagged:
        # A fresh machine (`invoke compose.up` first thing): the base is the project's own.
        from cluster.testhosts.image import ensure_image

        return ensure_image(client)
    return str(tagged[-1][1])


def dockerfile(project: Path) -> Path:
    """The project's containers/agent/Dockerfile, else the one beside this code's checkout."""
    here = project / DOCKERFILE
    return here if here.is_file() else Path(__file__).resolve().parents[2] / DOCKERFILE


def ensure_agent_image(
    client: engine.Client, wheels: WheelSet, project: Path, base: str | None, cli: CliPack
) -> str:
    """The tag of the agent image for ``wheels``' release; built (offline) when missing.

    It carries the pinned Claude Code CLI from ``cli``'s tarball (ADDed, checked against its
    checksum here first): its layer comes before the wheels', so the build cache keeps one copy
    per base and CLI while releases come and go.
    """
    base = base_image(client, base)
    with engine.translated(f"inspect {base}"):
        base_id = str(client.images.get(base).id).rsplit(":", 1)[-1][:12]
    tag = f"{IMAGE_REPO}:{wheels.release}-{base_id}-{cli.sha256[:8]}"
    if engine.image_exists(client, tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="ccc-agent-image-") as scratch:
        context = Path(scratch)
        shutil.copyfile(dockerfile(project), context / "Dockerfile")
        try:
            os.link(cli.path, context / CLI_TARBALL)  # ~185 MB: a link where it can be one
        except OSError:
            shutil.copyfile(cli.path, context / CLI_TARBALL)
        if file_sha256(context / CLI_TARBALL) != cli.sha256:
            raise BuildError(f"{cli.path}: not the checksum packed ({cli.sha256[:12]}): "
                             "remove it and its .json, deploy packs it again")  # fmt: skip
        (context / "wheels").mkdir()
        for name in wheels.manifest:
            shutil.copyfile(wheels.directory / name, context / "wheels" / name)
        with engine.translated(f"build {tag}"):
            client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False,
                                network_mode="none",
                                buildargs={"BASE": base, "UID": str(UID),
                                           "CLAUDE_CODE_VERSION": cli.version})  # fmt: skip
    return tag
