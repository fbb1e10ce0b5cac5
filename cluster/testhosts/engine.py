"""The docker engine as the test hosts use it: the names of ``cluster.transport.docker``.

The docker SDK stays behind that one transport module; test-host code keeps calling
``engine.client()``, ``engine.get(...)`` and the rest under this name.
"""

from __future__ import annotations

from cluster.transport.docker import (
    ENSURE_HINT,
    LABEL,
    UNMASKED,
    Client,
    Container,
    DockerUnavailable,
    PortTaken,
    client,
    ensure_network,
    exec_argv,
    get,
    image_exists,
    import_image,
    is_port_conflict,
    labelled,
    logs_tail,
    network_ip,
    published_port,
    put_file,
    remove,
    remove_image,
    remove_network,
    run_container,
    run_systemd_container,
    translated,
)

__all__ = [
    "ENSURE_HINT", "LABEL", "UNMASKED", "Client", "Container", "DockerUnavailable", "PortTaken",
    "client", "ensure_network", "exec_argv", "get", "image_exists", "import_image",
    "is_port_conflict", "labelled", "logs_tail", "network_ip", "published_port", "put_file",
    "remove", "remove_image", "remove_network", "run_container", "run_systemd_container",
    "translated",
]  # fmt: skip
