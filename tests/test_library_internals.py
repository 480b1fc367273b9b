"""The private or undocumented parts of other libraries that wv relies on, each checked in one place.

wv/curate/lda_fit.py drives gensim's LdaModel through its distributed-mode dispatcher protocol and
overrides its M-step; wv/curate/nltk_data.py calls WordNet's private `_morphy`. pyproject.toml caps
those libraries below the next minor release; when a newer one is allowed, these tests say exactly
which internal moved.
"""

import inspect

import pytest


def test_gensim_lda_dispatcher_protocol_and_mstep():
    from gensim.models import LdaModel
    from gensim.models.ldamodel import LdaState

    update = inspect.getsource(LdaModel.update)
    for call in ("self.dispatcher.reset(self.state)", "self.dispatcher.putjob(", "self.dispatcher.getstate()", "self.do_mstep("):
        assert call in update, f"gensim's LdaModel.update no longer calls {call}: wv/curate/lda_fit.py's PoolDispatcher must follow it"
    assert list(inspect.signature(LdaModel.do_mstep).parameters) == ["self", "rho", "other", "extra_pass"], (
        "gensim's LdaModel.do_mstep changed its signature: wv/curate/lda_fit.py's LeanLdaModel overrides it"
    )
    assert list(inspect.signature(LdaState.__init__).parameters)[:4] == ["self", "eta", "shape", "dtype"], "gensim's LdaState(eta, shape, dtype) changed: wv/curate/lda_fit.py builds one per update"
    for name in ("blend", "get_Elogbeta", "sstats", "numdocs"):
        assert name in inspect.getsource(LdaState), f"gensim's LdaState has no {name}: wv/curate/lda_fit.py uses it"
    for name in ("sync_state", "inference", "expElogbeta", "num_updates"):
        assert name in inspect.getsource(LdaModel), f"gensim's LdaModel has no {name}: wv/curate/lda_fit.py uses it"
    assert "collect_sstats" in inspect.signature(LdaModel.inference).parameters, "gensim's LdaModel.inference lost collect_sstats: wv/curate/lda_fit.py's E-step needs the statistics"


def test_nltk_wordnet_morphy_returns_every_base_form():
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    assert hasattr(WordNetCorpusReader, "_morphy"), "NLTK's WordNetCorpusReader lost _morphy: wrap its replacement in wv/curate/nltk_data.base_forms"
    assert list(inspect.signature(WordNetCorpusReader._morphy).parameters)[:3] == ["self", "form", "pos"], "NLTK's WordNetCorpusReader._morphy(form, pos) changed: see wv/curate/nltk_data.base_forms"
    from wv.curate import nltk_data

    if not nltk_data.has_wordnet():
        pytest.skip("no WordNet here (make test installs Debian's wordnet-base)")
    wordnet = nltk_data.wordnet()
    forms = nltk_data.base_forms(wordnet, "waters", "n")
    assert isinstance(forms, list) and set(forms) == {"water", "waters"}, f"WordNet's _morphy('waters', 'n') gave {forms!r}; wv expects every base form as a list"
    assert nltk_data.tagged_count(wordnet, "dog", "n") > 0, "WordNet's lemma counts (cntlist.rev) are missing or moved"


def test_numpy_seedsequence_mixing_as_derive_seeds_computes_it():
    """wv/runtime.py's derive_seeds recomputes numpy's SeedSequence (entropy pool, then generate_state) for a
    whole batch at once; the stream seeds every sample with it. It must give derive_seed's seeds exactly."""
    import random

    import numpy as np

    from wv.runtime import derive_seed, derive_seeds

    draw = random.Random(0)
    prefixes = [(0, 0, 0), (5, 0, 3), (2**63 - 1, 7, 10**6), (2**40, 2**33, 5), (1,), ()]
    prefixes += [(draw.randrange(2**63), draw.randrange(1000), draw.randrange(10**7)) for _ in range(30)]
    for prefix in prefixes:
        last = [0, 1, 63, 2**32 - 1] + [draw.randrange(2**32) for _ in range(10)]
        assert derive_seeds(prefix, last).tolist() == [derive_seed(*prefix, n) for n in last], prefix
    assert derive_seeds((1, 2), np.arange(0)).tolist() == []
    with pytest.raises(ValueError):
        derive_seeds((1,), [2**32])
