"""The saved LDA model of `wv score lda`: a folder (ROOT/models/lda/ by default) with gensim's LdaModel
and Dictionary, the class means and lda.json (format, model id, fit options, sizes, class means id).

Written all at once (a staging folder renamed into place), the class means added when the fit split
has been scored; opened with a check of its format, loaded once per process (memory-mapped topics).
"""

import functools
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wv.atomic import atomic_path, write_json
from wv.curate.lda_model import class_means
from wv.errors import WvError

if TYPE_CHECKING:
    from gensim.corpora import Dictionary
    from gensim.models import LdaModel

MODEL_FORMAT = "wv-lda/1"
MODEL_FILE, DICTIONARY_FILE, INFO_FILE = "lda.model", "dictionary.dict", "lda.json"
MEANS_FILE, COUNTS_FILE = "class_means.npy", "class_counts.npy"


@dataclass
class SavedModel:
    folder: Path
    info: dict

    @property
    def model_id(self) -> str:
        return self.info["model_id"]

    @property
    def means_id(self) -> str | None:
        return (self.info.get("class_means") or {}).get("id")


def open_model(folder: str | Path) -> SavedModel:
    folder = Path(folder)
    info_path = folder / INFO_FILE
    if not info_path.is_file():
        raise WvError(f"{folder} holds no LDA model ({INFO_FILE} missing); fit one with `wv score lda ROOT`")
    info = json.loads(info_path.read_text())
    if info.get("format") != MODEL_FORMAT:
        raise WvError(f"{folder} holds an LDA model of another format ({info.get('format')}); refit it with --overwrite")
    return SavedModel(folder, info)


@functools.lru_cache(maxsize=2)
def load_model(folder: str, model_id: str) -> tuple["LdaModel", "Dictionary"]:
    """(LdaModel, Dictionary) once per process; the topic-word matrix is memory-mapped (shared by workers)."""
    from gensim.corpora import Dictionary
    from gensim.models import LdaModel

    model = LdaModel.load(str(Path(folder) / MODEL_FILE), mmap="r")
    return model, Dictionary.load(str(Path(folder) / DICTIONARY_FILE))


@functools.lru_cache(maxsize=2)
def load_means(folder: str, means_id: str) -> np.ndarray:
    """Class means, (classes, topics) float32, a row of NaN for a class with no scored text."""
    return np.load(Path(folder) / MEANS_FILE)


def save_model(folder: Path, model: "LdaModel", dictionary: "Dictionary", info: dict) -> None:
    """Model, dictionary and lda.json into a staging folder, renamed into place when all are written."""
    staging = folder.with_name(f".{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        model.save(str(staging / MODEL_FILE))
        dictionary.save(str(staging / DICTIONARY_FILE))
        write_json(staging / INFO_FILE, info)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_means(saved: SavedModel, sums: np.ndarray, counts: np.ndarray) -> None:
    means = class_means(sums, counts)  # NaN rows: classes with no scored text
    with atomic_path(saved.folder / MEANS_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, means)
    with atomic_path(saved.folder / COUNTS_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, counts)
    saved.info["class_means"] = {
        "id": hashlib.sha256(means.tobytes()).hexdigest()[:16],
        "classes_with_text": int((counts > 0).sum()),
        "documents": int(counts.sum()),
    }
    write_json(saved.folder / INFO_FILE, saved.info)
