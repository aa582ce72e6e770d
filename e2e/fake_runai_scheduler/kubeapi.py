"""Raw JSON access to the Kubernetes API through the official client's auth and TLS handling.

The generated models are validated with pydantic on every object; a scheduler that lists and
watches hundreds of pods works on plain dicts instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

from kubernetes import client, config


class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class KubeApi:
    def __init__(self, api_client: client.ApiClient):
        self.client = api_client

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> KubeApi:
        return cls(config.new_client_from_config(config_file=path, context=context))

    def _call(self, method: str, path: str, query=None, body=None, content_type=None, timeout=None):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = self.client.param_serialize(method=method, resource_path=path,
                                             query_params=list((query or {}).items()), header_params=headers,
                                             body=body, auth_settings=["BearerToken"])
        return self.client.call_api(*params, _request_timeout=timeout)

    def request(self, method: str, path: str, query=None, body=None, content_type=None, timeout=30) -> dict:
        response = self._call(method, path, query, body, content_type, timeout)
        data = response.read()
        if response.status >= 400:
            raise ApiError(response.status, data.decode(errors="replace"))
        return json.loads(data) if data else {}

    def get(self, path: str, **query) -> dict:
        return self.request("GET", path, query or None)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 240) -> Iterator[tuple[str, dict]]:
        """Yield (type, object) until the server closes the watch; raise ApiError(410) when the version expired."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds)}
        response = self._call("GET", path, query, timeout=(10, timeout_seconds + 30))
        raw = response.response
        if response.status >= 400:
            raise ApiError(response.status, response.read().decode(errors="replace"))
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
