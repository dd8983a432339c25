"""Every stored file an iteration owns, so deleting it leaves nothing behind.

A database may give a deleted iteration's id to the next one (SQLite does), and several files
are named by the id: a leftover training-embeddings file or model export would then look like
the new iteration's. Deleting the iteration deletes them all.
"""

from __future__ import annotations

from project.storage import files_under
from training.models import Iteration


def iteration_files(iteration: Iteration) -> list[str]:
    """Its model, serving file and training embeddings, its model exports, its "where the
    model looked" maps and the quick-test uploads kept for them."""
    names = [str(iteration.artifact.name)] if iteration.artifact else []
    # Exports made before they moved into the iteration's folder are found by their rows.
    names += [name for name in iteration.exports.values_list("file", flat=True) if name]
    for folder in iteration.stored_folders():
        names.extend(files_under(folder))
    return sorted(set(names))
