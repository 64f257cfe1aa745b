"""py3langid's model read from memory-mapped files: only the parts a crawl reads become resident.

py3langid unpacks its model (LZMA, 0.7 s) into about 70 MB of arrays in each process that loads
it: a DFA over byte n-grams (39 MB) and a log-probability row per n-gram (28 MB). A text visits a
few hundred DFA rows and n-grams; the 181 benchmark pages and the fixtures, in eleven languages,
read 30 of the 67 MB. Unpacked once into the cache directory and mapped, the rest stays on disk,
the pages read are shared by every process that maps them (and with the next run), and a process
maps the model in some 20 ms. The arrays are py3langid's own, so are its answers.

Where the cache cannot be written or read, py3langid loads its model as it ships.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import tempfile
from array import array
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import py3langid.langid

LOGGER = logging.getLogger(__name__)

CACHE_DIR_ENV = "ARMSWATCH_CACHE_DIR"
_LAYOUT = "layout.json"  # written last: a directory without it is not a finished cache


def cache_dir() -> Path:
    """$ARMSWATCH_CACHE_DIR, else the XDG cache directory's armswatch folder.

    ValueError when neither names an absolute path (no home directory, as under some cron setups)."""
    if os.environ.get(CACHE_DIR_ENV):
        folder = Path(os.environ[CACHE_DIR_ENV])
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "armswatch"
    if not folder.is_absolute():
        raise ValueError(f"no absolute cache folder ({folder}): set {CACHE_DIR_ENV}")
    return folder


def install(directory: Path | None = None) -> bool:
    """Make py3langid's module-level identifier (used by py3langid.rank/classify) the mapped one.

    False, and py3langid left to load its own, when the cache cannot be built or mapped."""
    folder = directory
    try:
        folder = (directory or cache_dir()) / _model_key()
        identifier = _mapped_or_unpacked(folder)
    except Exception as exc:  # a py3langid release that keeps its model otherwise: only the saving is lost
        LOGGER.warning("language model cache %s unusable, loading py3langid's model instead: %s", folder, exc)
        return False
    py3langid.langid.IDENTIFIER = identifier
    return True


def share_language_model() -> bool:
    """Turn py3langid's per-state tables from lists of Python ints into arrays of the same numbers.

    py3langid reads two of them for every byte it classifies; reading an int from a list writes
    its reference count, so each worker forked from a loaded process ends up with a private copy
    of the pages holding them (5-6 MB per worker). Read from an array, the numbers are made afresh
    and the shared pages stay shared. The third, the row table it keeps but no longer reads, is
    4 MB as a list and 0.8 MB as an array. False, and the tables py3langid reads left as they
    are, if it no longer keeps them as lists."""
    identifier = py3langid.langid.IDENTIFIER
    if identifier is None:
        return False
    read = {name: getattr(identifier, name, None) for name in ("_rowbase", "tk_output")}
    if not all(isinstance(table, list) for table in read.values()):
        return False
    try:
        arrays = {name: array("q", table) for name, table in read.items()}
        if isinstance(getattr(identifier, "tk_row", None), list):
            arrays["tk_row"] = array("q", identifier.tk_row)
    except (TypeError, OverflowError):
        return False
    for name, table in arrays.items():
        setattr(identifier, name, table)
    return True


def _mapped_or_unpacked(folder: Path) -> py3langid.langid.LanguageIdentifier:
    """The cached copy mapped; unpacked first when missing, and again when damaged (a file cut short)."""
    if (folder / _LAYOUT).exists():
        try:
            return mapped_identifier(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            LOGGER.warning("language model cache %s damaged (%s): unpacking it again", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)  # processes that mapped it keep their mapping
    _unpack(folder)
    return mapped_identifier(folder)


def mapped_identifier(folder: Path) -> py3langid.langid.LanguageIdentifier:
    """An identifier over the unpacked arrays in `folder`; ValueError if a file does not fit its layout."""
    layout = json.loads((folder / _LAYOUT).read_text())
    arrays = {name: _map(folder / f"{name}.bin", spec) for name, spec in layout["arrays"].items()}
    return py3langid.langid.LanguageIdentifier(
        arrays["ptc"],
        np.array(arrays["pc"]),
        layout["classes"],
        # indexed once per byte: a memoryview answers with plain ints, a numpy array with its scalars
        memoryview(arrays["nextmove"]).cast("B").cast(arrays["nextmove"].dtype.char),
        arrays["output"].tolist(),
        tk_row=arrays["row"].tolist(),
    )


def _map(path: Path, spec: dict) -> np.ndarray:
    """The array stored raw in `path`, read through a read-only mapping of the file.

    MADV_RANDOM: a DFA row or an n-gram row is a few hundred bytes at a random place, and the
    kernel's read-ahead would otherwise bring in their neighbours too."""
    dtype = np.dtype(spec["dtype"])
    expected = dtype.itemsize * int(np.prod(spec["shape"]))
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size != expected:
            raise ValueError(f"{path}: {size} bytes, the layout says {expected}")
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    if hasattr(mapping, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mapping.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapping, dtype=dtype).reshape(spec["shape"])


def _shipped_model() -> Path:
    return Path(py3langid.langid.MODEL_DIR) / py3langid.langid.MODEL_FILE


def _model_key() -> str:
    """Names the unpacked copy after py3langid's version and its model file, so an upgrade unpacks anew."""
    try:
        release = version("py3langid")
    except PackageNotFoundError:
        release = "unknown"
    model = _shipped_model()
    stat = model.stat()
    digest = hashlib.sha256(f"{model}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return f"py3langid-{release}-{digest[:12]}"


def _unpack(folder: Path) -> None:
    """Write py3langid's arrays raw into `folder`, atomically: a concurrent run sees all or nothing."""
    from py3langid.modelio import load_model  # py3langid's own reader (0.4): a later layout fails here, not at import

    ptc, pc, classes, nextmove, row, output = load_model(_shipped_model())
    arrays = {
        "ptc": np.ascontiguousarray(ptc),
        "pc": np.asarray(pc, dtype=np.float32),
        "nextmove": np.frombuffer(nextmove, dtype=np.dtype(nextmove.typecode)),
        "row": np.frombuffer(row, dtype=np.dtype(row.typecode)),
        "output": np.asarray(output, dtype=np.int32),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=folder.parent))
    try:
        for name, values in arrays.items():
            _write_uncached(staging / f"{name}.bin", values.tobytes())
        layout = {
            "classes": list(classes),
            "arrays": {name: {"dtype": values.dtype.str, "shape": list(values.shape)} for name, values in arrays.items()},
        }
        (staging / _LAYOUT).write_text(json.dumps(layout))
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / _LAYOUT).exists():  # not another run's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_uncached(path: Path, data: bytes) -> None:
    """Write, flush to disk, and drop the file from the page cache.

    Pages still cached when a process maps the file are mapped in blocks of 16 around each page
    read (the kernel's fault-around): a model just written would come back nearly whole."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
