"""Safe file writes: atomic replacement, permissions others can read, cleanup after a crash.

Every file keras_gen writes (figures, JSON, CSV, checkpoints, .keras files, SavedModel folders)
goes through here, so three promises hold everywhere:

- atomic: data goes to a temporary name in the target's folder (``.<name>.tmp-<pid>-<random>``)
  and is renamed into place; a kill leaves the previous file or nothing, never half a file;
- readable: the result gets the modes a plain ``open()`` / ``mkdir`` would give under the user's
  umask (temporary-file helpers create 0600 files and 0700 folders, which another user serving a
  shipped model could not read);
- recoverable: a temporary left by a killed process carries the ``.tmp-`` mark, and
  `remove_stale_temporaries` removes such leftovers when a run folder is opened again.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path

# Temporary names: ours (".x.tmp-123-ab12cd"), and those of earlier releases (".x.<random>.tmp",
# ".x.tmp-123.keras", ".x.old-123").
STALE_TEMPORARY = re.compile(r"^\..+(\.tmp-[^/]*|\.tmp|\.old-\d+)$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_public(path: Path):
    """Give ``path`` (a file, or a folder and everything in it) the umask's default modes."""
    mask = _umask()
    path = Path(path)
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


def temporary_name(path: Path, suffix: str = "") -> Path:
    """A fresh temporary sibling of ``path`` with the mark `remove_stale_temporaries` looks for."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}{suffix}")


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path to write ``path``'s new content to; on success it is renamed over
    ``path`` (with public modes), on failure removed. ``suffix`` keeps a file type writers need
    (``model.save`` insists on ".keras")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        make_public(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` atomically (synced before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def save_keras_atomically(model, path):
    """``model.save`` to ``path`` (a .keras file) atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def replace_directory(new: Path, target: Path):
    """Move the folder ``new`` to ``target``; an existing ``target`` is swapped out first and
    removed after, so a failure leaves the old one in place. Callers decide whether ``target``
    may be replaced (see keras_gen.export.check_export_target)."""
    new, target = Path(new), Path(target)
    make_public(new)
    old = None
    if target.exists():
        old = temporary_name(target)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temporaries(folder, recursive: bool = True) -> list[Path]:
    """Remove the temporaries of interrupted writes under ``folder``; returns what was removed.

    Only call this while owning the folder (keras_gen.runs.RunFolder holds its lock), so no
    live writer's temporary is taken away.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in (folder.rglob(".*") if recursive else folder.glob(".*")):
        if STALE_TEMPORARY.match(entry.name) and (entry.exists() or entry.is_symlink()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


PNG_SOFTWARE = "keras_gen"  # the PNG "Software" text every figure of ours carries


def is_keras_gen_png(path) -> bool:
    """True when ``path`` is a PNG that keras_gen wrote (its Software text chunk says so)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head
