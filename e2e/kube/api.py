"""Raw JSON access to the Kubernetes API, authenticated as the kubeconfig says.

A scheduler that lists and watches hundreds of pods works on plain dicts: no model objects to
build per pod, and no dependence on one version of the kubernetes client's internals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client, config


class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class KubeApi:
    """Plain urllib3 with the TLS and credentials ``kubernetes.config`` loads, so it works with any client version."""

    def __init__(self, configuration: client.Configuration):
        self.configuration = configuration
        self.host = configuration.host.rstrip("/")
        self.pool = urllib3.PoolManager(
            num_pools=4, maxsize=16, cert_reqs="CERT_REQUIRED" if configuration.verify_ssl else "CERT_NONE",
            ca_certs=configuration.ssl_ca_cert, cert_file=configuration.cert_file, key_file=configuration.key_file)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> KubeApi:
        configuration = client.Configuration()
        config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        return cls(configuration)

    def _headers(self, content_type: str | None) -> dict:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        hook = getattr(self.configuration, "refresh_api_key_hook", None)
        if hook:
            hook(self.configuration)
        token = self.configuration.get_api_key_with_prefix("authorization") or \
            self.configuration.get_api_key_with_prefix("BearerToken")
        if token:
            headers["Authorization"] = token if " " in token else f"Bearer {token}"
        return headers

    def _call(self, method: str, path: str, query=None, body=None, content_type=None, timeout=None,
              stream: bool = False) -> urllib3.BaseHTTPResponse:
        url = f"{self.host}{path}" + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = self._headers((content_type or "application/json") if body is not None else None)
        return self.pool.request(method, url, body=data, headers=headers, preload_content=not stream,
                                 timeout=urllib3.Timeout(*timeout) if isinstance(timeout, tuple) else timeout,
                                 retries=False)

    def request(self, method: str, path: str, query=None, body=None, content_type=None, timeout=30) -> dict:
        response = self._call(method, path, query, body, content_type, timeout)
        if response.status >= 400:
            raise ApiError(response.status, response.data.decode(errors="replace"))
        return json.loads(response.data) if response.data else {}

    def raw(self, path: str, timeout=30) -> bytes:
        response = self._call("GET", path, timeout=timeout)
        if response.status >= 400:
            raise ApiError(response.status, response.data.decode(errors="replace"))
        return response.data

    def get(self, path: str, **query) -> dict:
        return self.request("GET", path, query or None)

    def delete(self, path: str, body: dict | None = None) -> bool:
        """Delete the object; False when it was gone already (cleanups run after whatever else deleted it)."""
        try:
            self.request("DELETE", path, body=body)
        except ApiError as err:
            if err.status != 404:
                raise
            return False
        return True

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 240) -> Iterator[tuple[str, dict]]:
        """Yield (type, object) until the server closes the watch; raise ApiError(410) when the version expired."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds)}
        raw = self._call("GET", path, query, timeout=(10, timeout_seconds + 30), stream=True)
        if raw.status >= 400:
            raise ApiError(raw.status, raw.read().decode(errors="replace"))
        buffer = b""
        try:
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            status = event["object"]
                            raise ApiError(status.get("code", 500), status.get("message", ""))
                        yield event["type"], event["object"]
        finally:
            raw.release_conn()


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"
