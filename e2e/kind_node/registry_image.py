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

from .parts import REGISTRY_VERSION, content_digest, registry_binary

REGISTRY_REPOSITORY = "runai-mlflow/registry"
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


REGISTRY_DOCKERFILE = """\
FROM scratch
COPY registry /bin/registry
COPY config.yml /etc/distribution/config.yml
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/bin/registry"]
CMD ["serve", "/etc/distribution/config.yml"]
"""


def registry_image_tag() -> str:
    recipe = content_digest(REGISTRY_CONFIG.encode(), REGISTRY_DOCKERFILE.encode())
    return f"{REGISTRY_REPOSITORY}:{REGISTRY_VERSION}-{recipe}"


def ensure_registry_image(settings: ClusterSettings) -> str:
    tag = registry_image_tag()
    ensure_docker(settings)
    if image_exists(tag):
        return tag
    binary = registry_binary(settings)
    with step(f"registry image {tag} (distribution {REGISTRY_VERSION})"), tempfile.TemporaryDirectory() as context:
        shutil.copy2(binary, Path(context) / "registry")
        (Path(context) / "config.yml").write_text(REGISTRY_CONFIG)
        (Path(context) / "Dockerfile").write_text(REGISTRY_DOCKERFILE)
        docker("build", "-q", "-t", tag, context)
    return tag
