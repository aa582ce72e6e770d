"""A list-then-watch cache of one resource kind, re-listing when the watch expires (HTTP 410)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kube import ApiError, KubeApi

log = logging.getLogger(__name__)


def object_key(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class Informer:
    def __init__(self, api: KubeApi, path: str, on_change: Callable[[], None], watch_seconds: int = 240):
        self.api, self.path, self.on_change, self.watch_seconds = api, path, on_change, watch_seconds
        self._items: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopped = threading.Event()
        self.relists = 0
        self._thread = threading.Thread(target=self._run, name=f"informer {path}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def wait_synced(self, timeout: float = 30) -> bool:
        return self._synced.wait(timeout)

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._items.values())

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._items.get(key)

    def _relist(self) -> str:
        listing = self.api.get(self.path)
        with self._lock:
            self._items = {object_key(item): item for item in listing["items"]}
        self.relists += 1
        self._synced.set()
        self.on_change()
        return listing["metadata"]["resourceVersion"]

    def _run(self) -> None:
        version = None
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._relist()
                for kind, obj in self.api.watch(self.path, version, self.watch_seconds):
                    if self._stopped.is_set():
                        return
                    version = obj["metadata"].get("resourceVersion", version)
                    if kind == "BOOKMARK":
                        continue
                    with self._lock:
                        if kind == "DELETED":
                            self._items.pop(object_key(obj), None)
                        else:
                            self._items[object_key(obj)] = obj
                    self.on_change()
            except ApiError as err:
                if err.status == 410:
                    log.info("watch of %s expired; re-listing", self.path)
                    version = None
                else:
                    log.warning("watch of %s failed: %s; re-listing in 1s", self.path, err)
                    version = None
                    time.sleep(1)
            except Exception as err:  # noqa: BLE001 - connection resets end a watch; start again
                log.debug("watch of %s ended: %s", self.path, err)
                time.sleep(0.2)
