"""Web text cleaning for the text scorers, as in the reference LDA entry.

Lowercase, letters only, tokenize, drop English stop words and web words (flickr, google, photo,
jpg ...), Porter-stem. A sample whose text cannot be used is flagged (`text_flag`) rather than scored:
    empty        no text at all
    non_english  letters, but mostly outside a-z (Chinese, Cyrillic ...)
    no_words     nothing left after cleaning (only stop words, digits, URLs ...)
"""

import functools
import re

WEB_WORDS = frozenset(
    "flickr google photo photos image images picture pictures pic pics img url www com net org http https html htm jpg jpeg png gif bmp download free wallpaper wallpapers hd px".split()
)
TOKEN = re.compile(r"[a-z]+")
MIN_LENGTH = 2
ENGLISH_SHARE = 0.5  # below this share of a-z letters among all letters, text is not English

FLAG_EMPTY = "empty"
FLAG_NON_ENGLISH = "non_english"
FLAG_NO_WORDS = "no_words"


@functools.lru_cache(maxsize=1)
def stop_words() -> frozenset:
    """NLTK's English stop words when its corpus is installed, else scikit-learn's; plus web words."""
    try:
        from nltk.corpus import stopwords

        words = set(stopwords.words("english"))
    except LookupError:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        words = set(ENGLISH_STOP_WORDS)
    return frozenset(words | WEB_WORDS)


@functools.lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem import PorterStemmer

    return PorterStemmer()


@functools.lru_cache(maxsize=500_000)
def stem(word: str) -> str:
    # Web text repeats a small vocabulary: caching makes Porter stemming nearly free after warm-up.
    return _stemmer().stem(word)


def words(text: str | None) -> list[str]:
    """Lowercase a-z words of at least MIN_LENGTH letters that are not stop or web words."""
    stops = stop_words()
    return [w for w in TOKEN.findall((text or "").lower()) if len(w) >= MIN_LENGTH and w not in stops]


def clean_tokens(text: str | None) -> list[str]:
    """The stemmed tokens an LDA model reads."""
    stops = stop_words()
    tokens = []
    for word in words(text):
        stemmed = stem(word)
        if stemmed not in stops:
            tokens.append(stemmed)
    return tokens


def text_flag(text: str | None, tokens: list) -> str | None:
    """Why a text cannot be scored (see the module doc), or None when it can."""
    if not text or not text.strip():
        return FLAG_EMPTY
    if not tokens:
        letters = [c for c in text if c.isalpha()]
        ascii_letters = sum(1 for c in letters if c.isascii())
        if letters and ascii_letters < ENGLISH_SHARE * len(letters):
            return FLAG_NON_ENGLISH
        return FLAG_NO_WORDS
    return None
