"""py3langid's model mapped from the cache gives py3langid's answers, and a bad cache costs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import py3langid.langid as langid
import pytest

from crawler import language_model

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "Russia is buying ballistic missiles and drones from Iran, intelligence officials said.",
    "Россия закупает у Ирана баллистические ракеты и беспилотники.",
    "Росія купує в Ірану балістичні ракети та безпілотники.",
    "La Russie achète des missiles balistiques et des drones à l'Iran.",
    "Russland kauft ballistische Raketen und Drohnen vom Iran.",
    "روسيا تشتري صواريخ باليستية وطائرات مسيرة من إيران",
    "俄罗斯正在从伊朗购买弹道导弹和无人机。",
]


@pytest.fixture
def identifier_restored():
    """install() replaces py3langid's module-wide identifier: put the suite's back afterwards."""
    before = langid.IDENTIFIER
    yield
    langid.IDENTIFIER = before


@pytest.fixture(scope="module")
def shipped() -> langid.LanguageIdentifier:
    return langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE)


def test_the_mapped_model_ranks_languages_as_py3langid_ships_it(tmp_path, shipped, identifier_restored):
    assert language_model.install(tmp_path)
    mapped = langid.IDENTIFIER
    assert isinstance(mapped.tk_nextmove, memoryview)  # read from the file, not unpacked in memory
    for text in TEXTS:
        assert langid.rank(text) == shipped.rank(text), text
    assert [langid.classify(text)[0] for text in TEXTS] == ["en", "ru", "uk", "fr", "de", "ar", "zh"]


def test_the_model_is_unpacked_once_and_again_when_damaged(tmp_path, shipped, identifier_restored, caplog):
    assert language_model.install(tmp_path)
    (folder,) = tmp_path.iterdir()
    nextmove = folder / "nextmove.bin"
    unpacked_at = nextmove.stat().st_mtime_ns
    assert language_model.install(tmp_path)
    assert nextmove.stat().st_mtime_ns == unpacked_at  # mapped as it was

    with open(nextmove, "r+b") as file:  # a disk that filled up while it was written
        file.truncate(1000)
    assert language_model.install(tmp_path)
    assert "damaged" in caplog.text and str(folder) in caplog.text
    assert nextmove.stat().st_size > 1000
    assert [langid.rank(text) for text in TEXTS] == [shipped.rank(text) for text in TEXTS]


def test_without_a_usable_cache_py3langid_loads_its_own_model(tmp_path, shipped, identifier_restored, caplog):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    langid.IDENTIFIER = None
    assert not language_model.install(not_a_folder)
    assert str(not_a_folder) in caplog.text
    for text in TEXTS:
        assert langid.rank(text) == shipped.rank(text), text


def test_the_cache_folder_is_the_users_or_the_one_configured(monkeypatch, tmp_path):
    monkeypatch.delenv(language_model.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert language_model.cache_dir() == tmp_path / "xdg" / "armswatch"
    monkeypatch.setenv(language_model.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert language_model.cache_dir() == tmp_path / "mine"


def test_without_a_home_folder_the_model_is_loaded_as_it_ships(monkeypatch, shipped, identifier_restored, caplog):
    """cron may run armswatch with no HOME: nothing is written in the working folder then."""
    for name in (language_model.CACHE_DIR_ENV, "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.path.expanduser", lambda path: path)  # no home in the password database either
    langid.IDENTIFIER = None
    assert not language_model.install()
    assert language_model.CACHE_DIR_ENV in caplog.text
    assert langid.rank(TEXTS[0]) == shipped.rank(TEXTS[0])


# In a process of its own: the preload freezes the collector and changes py3langid's tables.
WORKERS_MODEL = """
from array import array
import py3langid.langid as langid
import crawler.worker_preload

texts = {texts!r}
shipped = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE)
shared = langid.IDENTIFIER
assert isinstance(shared._rowbase, array) and isinstance(shared.tk_output, array)
assert isinstance(shared.tk_row, array) and list(shared.tk_row) == list(shipped.tk_row)
assert isinstance(shipped._rowbase, list)
print(type(shared.tk_nextmove).__name__)
for text in texts:
    assert shared.rank(text) == shipped.rank(text), text
print("same")
"""


@pytest.mark.parametrize("cache", ["usable", "unusable"])
def test_the_workers_language_model_answers_as_py3langid_ships_it(tmp_path, cache):
    """The forkserver maps the model (or, without a cache, loads py3langid's) and keeps the
    per-state tables in arrays, so workers do not copy them; every ranking stays the same."""
    folder = tmp_path / "cache"
    if cache == "unusable":
        folder.write_text("not a folder")
    env = {**os.environ, language_model.CACHE_DIR_ENV: str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", WORKERS_MODEL.format(texts=TEXTS)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kind, verdict = done.stdout.split()
    assert verdict == "same"
    assert kind == ("memoryview" if cache == "usable" else "array")


def test_a_py3langid_that_keeps_its_model_otherwise_only_costs_the_saving(tmp_path, monkeypatch, shipped, identifier_restored, caplog):
    """A later release reading its model into other types: the mapping is skipped, never the detection."""
    import py3langid.modelio

    reads = py3langid.modelio.load_model
    monkeypatch.setattr(py3langid.modelio, "load_model", lambda path: tuple(list(part) if hasattr(part, "typecode") else part for part in reads(path)))
    langid.IDENTIFIER = None
    assert not language_model.install(tmp_path)
    assert "loading py3langid's model instead" in caplog.text
    assert langid.rank(TEXTS[1]) == shipped.rank(TEXTS[1])
