"""Where ConvFill keeps user data: `CONVFILL_HOME` or `~/.convfill` (database, converted models, exports)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    p = Path(os.environ.get("CONVFILL_HOME") or Path.home() / ".convfill")
    p.mkdir(parents=True, exist_ok=True)
    return p


def db_path() -> Path:
    """The SQLite store shared by the chat and labeling tabs (`CONVFILL_DB` overrides)."""
    return Path(os.environ.get("CONVFILL_DB") or home() / "convfill.db")


# Filesystems where SQLite's WAL mode is unsafe: WAL needs shared memory between every process that opens
# the database, which network and FUSE mounts (NFS, SMB, a Space's mounted storage bucket) do not provide.
_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs", "davfs",
               "sshfs", "fuse")
JOURNAL_ENV = "CONVFILL_DB_JOURNAL"


def filesystem_type(path: str | os.PathLike, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding `path` (from `mounts`, default Linux `/proc/mounts`), or None."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, fstype = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, fields[2]
    return fstype


def on_network_fs(path: str | os.PathLike, mounts: str | None = None) -> bool:
    fstype = (filesystem_type(path, mounts) or "").lower()
    return any(fstype == t or fstype.startswith(t + ".") for t in _NETWORK_FS)


def journal_mode(db: str | os.PathLike) -> str:
    """SQLite journal mode for the store: `CONVFILL_DB_JOURNAL` ("wal" or "delete"), else "wal" on a local
    disk and "delete" on a network or FUSE mount (where WAL can corrupt the database)."""
    mode = os.environ.get(JOURNAL_ENV, "auto").strip().lower()
    if mode in ("wal", "delete"):
        return mode
    return "delete" if on_network_fs(Path(db).parent) else "wal"
