"""The agent image for ``runtime: container`` hosts, built once per release from local images."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cluster.deploy.wheels import BuildError, WheelSet
from cluster.testhosts import engine
from cluster.testhosts.recipe import Recipe

IMAGE_REPO = "claude-cluster-agent"
BASE_REPO = "ccc-testhost"  # the cached systemd test-host image: python3 and venv, no registry
UID = 10001  # the service user's uid and gid inside the image (and on the files it mounts)
DOCKERFILE = Path("containers") / "agent" / "Dockerfile"


def base_image(client: engine.Client, wanted: str | None = None) -> str:
    """``wanted``, else the current recipe's ``ccc-testhost`` image (it has bubblewrap), else the
    newest local ``ccc-testhost:*`` one; never a registry. (Tags end in a hash: sorting them by
    name picked an arbitrary one, possibly a stale image without bubblewrap.)"""
    if wanted:
        return wanted
    current = Recipe().image_tag()
    if engine.image_exists(client, current):
        return current
    with engine.translated(f"list {BASE_REPO} images"):
        images = client.images.list(name=BASE_REPO)
    tagged = sorted((str(image.attrs.get("Created", "")), tag) for image in images
                    for tag in image.tags)  # fmt: skip
    if not tagged:
        raise BuildError(f"no local {BASE_REPO}:* image to build the agent image FROM: "
                         "bring test hosts up once, or set container_base")  # fmt: skip
    return str(tagged[-1][1])


def dockerfile(project: Path) -> Path:
    """The project's containers/agent/Dockerfile, else the one beside this code's checkout."""
    here = project / DOCKERFILE
    return here if here.is_file() else Path(__file__).resolve().parents[2] / DOCKERFILE


def ensure_agent_image(
    client: engine.Client, wheels: WheelSet, project: Path, base: str | None = None
) -> str:
    """The tag of the agent image for ``wheels``' release; built (offline) when missing."""
    base = base_image(client, base)
    with engine.translated(f"inspect {base}"):
        base_id = str(client.images.get(base).id).rsplit(":", 1)[-1][:12]
    tag = f"{IMAGE_REPO}:{wheels.release}-{base_id}"
    if engine.image_exists(client, tag):
        return tag
    with tempfile.TemporaryDirectory(prefix="ccc-agent-image-") as scratch:
        context = Path(scratch)
        shutil.copyfile(dockerfile(project), context / "Dockerfile")
        (context / "wheels").mkdir()
        for name in wheels.manifest:
            shutil.copyfile(wheels.directory / name, context / "wheels" / name)
        with engine.translated(f"build {tag}"):
            client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False,
                                network_mode="none",
                                buildargs={"BASE": base, "UID": str(UID)})  # fmt: skip
    return tag
