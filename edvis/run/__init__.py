"""The run folder and everything that passes between stages: the contract. Imports no torch.

``folder`` (paths, config.json, metrics.jsonl), ``atomic`` (writes), ``digest`` (digests
recorded on write, verified on read), ``lock`` (one writer per target), ``checkpoint`` (the
checkpoint format; torch only when one is read or written) and ``store`` (the render store and
its unit format). Every stage reads and writes through these names.
"""

from edvis.run import atomic, digest, tables
from edvis.run.checkpoint import CHECKPOINT_SCHEMA, checkpoint_digest, load_checkpoint, save_checkpoint
from edvis.run.digest import IntegrityError
from edvis.run.folder import PRECISIONS, REFERENCE_MAPS, RUN_SCHEMA, Run, RunError, check_model_config, model_label, select_epochs
from edvis.run.lock import LockedError, writer_lock
from edvis.run.sanity_file import SANITY_ARRAYS, WRITE_SANITY_AGAIN, SanityFile, read_sanity, write_sanity
from edvis.run.store import (
    ARRAYS,
    DAMAGED,
    LAYERS,
    OPTIONAL,
    UNIT_FORMAT,
    DamagedError,
    RenderStore,
    StoreError,
    Unit,
    complete_epochs,
    same_validation_set,
    softmax,
    summarise,
)
from edvis.run.tables import csv_cell, csv_text, spreadsheet_safe

__all__ = [
    "ARRAYS", "DAMAGED", "SANITY_ARRAYS", "SanityFile", "WRITE_SANITY_AGAIN", "read_sanity", "write_sanity",
    "CHECKPOINT_SCHEMA", "DamagedError", "IntegrityError", "checkpoint_digest", "digest",
    "LAYERS", "OPTIONAL", "PRECISIONS", "REFERENCE_MAPS", "RUN_SCHEMA", "UNIT_FORMAT", "LockedError", "RenderStore", "Run",
    "RunError", "StoreError", "Unit", "atomic", "complete_epochs",
    "check_model_config", "load_checkpoint", "model_label", "same_validation_set",
    "save_checkpoint",
    "select_epochs", "softmax", "spreadsheet_safe", "summarise", "tables", "writer_lock", "csv_cell", "csv_text",
]
