"""NLTK data for keyword extraction: WordNet and the POS tagger, found wherever the user has them.

Order: NLTK's own data (python -m nltk.downloader wordnet averaged_perceptron_tagger_eng); else
Debian's WordNet files (apt install wordnet-base wordnet-sense-index, /usr/share/wordnet), laid out
once as an NLTK data folder under the cache (~/.cache/wv/nltk_data, or $WV_CACHE/nltk_data). NLTK's
reader wants the files under corpora/wordnet/ and a `lexnames` file that Debian does not ship.
"""

import functools
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

from wv.errors import WvError

DEBIAN_WORDNET = Path("/usr/share/wordnet")
INSTALL_HINT = (
    "keyword extraction needs NLTK's WordNet or POS tagger: run `python -m nltk.downloader wordnet "
    "averaged_perceptron_tagger_eng`, or offline on Debian/Ubuntu `apt install wordnet-base wordnet-sense-index`"
)
# WordNet 3.0's lexicographer files, in file-number order (lexnames(5WN)).
LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body
noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive
noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation
noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication
verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception
verb.possession verb.social verb.stative verb.weather adj.ppl""".split()
LEX_POS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
TAGGER, WORDNET_FREQUENCY = "tagger", "wordnet-frequency"  # the lexicons keyword extraction can use
NEEDED = ("index.noun", "data.noun", "index.adj", "data.adj", "noun.exc", "adj.exc")


def cache_dir() -> Path:
    base = os.environ.get("WV_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "wv")
    return Path(base) / "nltk_data"


def has_nltk_resource(name: str) -> bool:
    import nltk

    try:
        nltk.data.find(name)
        return True
    except LookupError:
        return False


def has_tagger() -> bool:
    return has_nltk_resource("taggers/averaged_perceptron_tagger_eng/")


def debian_wordnet_dir() -> Path | None:
    folder = Path(os.environ.get("WV_WORDNET_DIR") or DEBIAN_WORDNET)
    return folder if all((folder / name).is_file() for name in NEEDED) else None


def lay_out_wordnet(source: Path, data: Path) -> Path:
    """data/corpora/wordnet/ with copies of the source files (36 MB) and a lexnames file; made atomically.

    Copies, not links: NLTK refuses symbolic links out of its data folder and multiply-linked files.
    """
    corpus = data / "corpora" / "wordnet"
    if (corpus / "lexnames").is_file() and all((corpus / name).is_file() for name in NEEDED):
        return corpus
    staging = data / "corpora" / f".wordnet-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for file in source.iterdir():
            if file.is_file():
                shutil.copyfile(file, staging / file.name)
        (staging / "lexnames").write_text("".join(f"{i:02d}\t{name}\t{LEX_POS[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)))
        if corpus.is_symlink() or corpus.exists():  # a stale layout (its source files moved): replace it
            shutil.rmtree(corpus, ignore_errors=True)
        try:
            os.rename(staging, corpus)
        except OSError:  # another process laid it out first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return corpus


@functools.lru_cache(maxsize=1)
def wordnet() -> "WordNetCorpusReader | None":
    """NLTK's WordNet reader, or None when neither NLTK's data nor Debian's files are installed."""
    import nltk

    if has_nltk_resource("corpora/wordnet") or has_nltk_resource("corpora/wordnet.zip"):
        from nltk.corpus import wordnet as wn

        wn.ensure_loaded()
        return wn
    source = debian_wordnet_dir()
    if source is None:
        return None
    data = cache_dir()
    corpus = lay_out_wordnet(source, data)
    if str(data) not in nltk.data.path:
        nltk.data.path.append(str(data))  # NLTK opens corpus files only under its data path
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    with warnings.catch_warnings():  # "multilingual functions are not available": no Open Multilingual WordNet here
        warnings.simplefilter("ignore", UserWarning)
        return WordNetCorpusReader(str(corpus), None)


def base_forms(wordnet: "WordNetCorpusReader", word: str, pos: str) -> list[str]:
    """WordNet's base forms of `word` as part of speech `pos` ("dogs", "n" -> ["dog"]).

    The one call of NLTK's private `_morphy` (the public `morphy` returns only one form and no list);
    tests/test_library_internals.py fails with a clear message if NLTK changes it.
    """
    return wordnet._morphy(word, pos)


def tagged_count(wordnet: "WordNetCorpusReader", form: str, pos: str) -> int:
    """How often WordNet's sense-tagged corpus (SemCor, cntlist.rev) uses `form` as part of speech `pos`."""
    return sum(lemma.count() for lemma in wordnet.lemmas(form, pos))


def has_wordnet() -> bool:
    """Whether wordnet() will find WordNet (without loading it: that takes seconds)."""
    return has_nltk_resource("corpora/wordnet") or has_nltk_resource("corpora/wordnet.zip") or debian_wordnet_dir() is not None


def require_lexicon() -> str:
    """Which part-of-speech source keyword extraction will use (TAGGER or WORDNET_FREQUENCY); WvError if none."""
    if has_tagger():
        return TAGGER
    if has_wordnet():
        return WORDNET_FREQUENCY
    raise WvError(INSTALL_HINT)
