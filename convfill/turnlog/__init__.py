"""The turn log (core): what was said in every conversation, stored in SQLite as it happens.

`store.TurnLog` reads and writes it, `schema` migrates it, `recorder.TurnRecorder` is the engine observer
that writes each turn through one `recorder.StoreWriter` thread, so persisting never blocks the event loop.
"""

from .recorder import StoreWriter, TurnRecorder
from .store import ImportResult, StoreError, TurnLog

__all__ = ["ImportResult", "StoreError", "StoreWriter", "TurnLog", "TurnRecorder"]
