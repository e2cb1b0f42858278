"""The rules: commands -> events -> state. No HTTP in here."""

from __future__ import annotations

from flovyn_server.engine.activations import Activations
from flovyn_server.engine.control import Control
from flovyn_server.engine.definitions import Definitions
from flovyn_server.engine.group_commit import GroupCommit
from flovyn_server.engine.scheduler import Scheduler
from flovyn_server.engine.schedules import Schedules
from flovyn_server.engine.standalone import StandaloneTasks
from flovyn_server.engine.tasks import Tasks
from flovyn_server.engine.tenants import Tenants
from flovyn_server.engine.wake import WakeHub
from flovyn_server.engine.webhooks import Webhooks
from flovyn_server.engine.workers import Workers
from flovyn_server.engine.workflows import Workflows
from flovyn_server.settings import Settings
from flovyn_server.store.base import Store


class Engine:
    """Everything the API calls, built on one store and one wake hub."""

    def __init__(self, store: Store, settings: Settings, admin_key: str) -> None:
        self.store = store
        self.settings = settings
        self.hub = WakeHub()
        store.on_commit_notify(self.hub.wake)
        store.on_resync(self.hub.wake_all)  # wake-ups were maybe missed: every waiter re-reads
        self.tenants = Tenants(store, admin_key)
        group = GroupCommit(store)
        self.workflows = Workflows(store, group)
        self.activations = Activations(store, group)
        self.tasks = Tasks(store, group)
        self.standalone = StandaloneTasks(store, group)
        self.schedules = Schedules(store, group)
        self.control = Control(store)
        self.webhooks = Webhooks(store, self.tenants, self.control)
        self.definitions = Definitions(store)
        self.workers = Workers(
            store,
            liveness_timeout_ms=settings.liveness_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
        )
        self.scheduler = Scheduler(
            store,
            self.hub,
            self.workers,
            self.schedules,
            stream_retention_ms=settings.stream_retention_s * 1000,
            execution_retention_ms=None
            if settings.execution_retention_s is None
            else settings.execution_retention_s * 1000,
        )
