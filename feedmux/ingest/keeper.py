"""Keeps the saved universe (``universe.py``) in step with the subscription manager: after a
live change, and without the codes the vendor refused (a restart must not ask for them again)."""

from __future__ import annotations

import logging
from pathlib import Path

from feedmux.ingest.subscriptions import SubscriptionManager
from feedmux.ingest.universe import keep_universe


class UniverseKeeper:
    def __init__(self, manager: SubscriptionManager, data_dir: str | Path,
                 log: logging.Logger) -> None:  # fmt: skip
        self.manager = manager
        self.data_dir = data_dir
        self.log = log
        self.refused: dict[str, str] = {}  # codes the vendor refused, as logged
        self.unsaved = False  # the file is behind (a full disk): written again by ``retry``
        self._seen_version = -1  # the manager's version ``refused`` was last brought up to

    def save(self) -> None:
        manager = self.manager
        self.unsaved = not keep_universe(self.data_dir, manager.desired(), manager.rejected)

    def retry(self) -> None:
        if self.unsaved:
            self.save()

    def note_refused(self) -> None:
        """Codes the vendor refused: named once, and out of the saved universe."""
        manager = self.manager
        if manager.version == self._seen_version:
            return  # the common case, at every event (heartbeat replies): nothing changed
        self._seen_version = manager.version
        new = {c: why for c, why in manager.rejected.items() if c not in self.refused}
        if not new:
            return
        for code, why in new.items():
            self.log.warning("vendor refused %s (%s): not subscribed, left out of the saved "
                             "universe", code, why)  # fmt: skip
        self.refused.update(new)
        self.save()
