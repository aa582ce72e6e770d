"""kind's local registry where Docker Hub's ``registry:3`` cannot be pulled: distribution v3, the same
program, built here from its Go module into an image laid out like registry:3 (its config file, its
storage directory, port 5000)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from local_cluster.images import docker, ensure_docker, image_exists
from local_cluster.progress import step
from local_cluster.settings import ClusterSettings

from .parts import REGISTRY_VERSION, registry_binary

REGISTRY_IMAGE = f"runai-mlflow/registry:{REGISTRY_VERSION}"
# registry:3's /etc/distribution/config.yml, less its debug endpoint.
REGISTRY_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
"""


def ensure_registry_image(settings: ClusterSettings) -> str:
    ensure_docker(settings)
    if image_exists(REGISTRY_IMAGE):
        return REGISTRY_IMAGE
    binary = registry_binary(settings)
    with step(f"registry image {REGISTRY_IMAGE} (distribution {REGISTRY_VERSION})"), \
            tempfile.TemporaryDirectory() as context:
        shutil.copy2(binary, Path(context) / "registry")
        (Path(context) / "config.yml").write_text(REGISTRY_CONFIG)
        (Path(context) / "Dockerfile").write_text(
            "FROM scratch\nCOPY registry /bin/registry\nCOPY config.yml /etc/distribution/config.yml\n"
            'VOLUME ["/var/lib/registry"]\nEXPOSE 5000\n'
            'ENTRYPOINT ["/bin/registry"]\nCMD ["serve", "/etc/distribution/config.yml"]\n')
        docker("build", "-q", "-t", REGISTRY_IMAGE, context)
    return REGISTRY_IMAGE
