"""Tiny random models and sample texts for tests and examples (torch imported lazily).

``make_tiny_model`` writes a complete Hugging Face folder (config, safetensors weights, WordPiece
tokenizer with tokenizer.json) for a small BERT in milliseconds, with no download. Library code
takes its sample sentences from ``edgepack.data.SAMPLE_SENTENCES``, never from this module.
"""

from __future__ import annotations

from pathlib import Path

from edgepack.data import SAMPLE_SENTENCES

SAMPLE_TEXTS = list(SAMPLE_SENTENCES)  # a fresh list: tests index, repeat and slice it

_WORDS = (
    "the a an and of to is it in that film movie plot cast script great good bad dull best worst funny "
    "moving boring acted beautifully thin jokes fall flat instant classic walked out after twenty minutes "
    "warm surprisingly with never stops surprising you thing about soundtrack everything else forgettable "
    "gripping i love hate story actor actors scene scenes time really very not no"
).split()


def varied_texts(n: int) -> list[str]:
    """``n`` short texts of 3 to 11 words from the sample sentences' words (the same every call)."""
    words = " ".join(SAMPLE_SENTENCES).split()
    return [" ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i % 9)) for i in range(n)]


def write_labelled_csv(path: Path, n: int = 64) -> Path:
    """A ``text,label`` CSV of ``varied_texts(n)``: every third row "neg", the others "pos"."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, "pos" if i % 3 else "neg") for i, t in enumerate(varied_texts(n)))
    return Path(path)


def st_cls_copy(model_dir: Path, out: Path) -> Path:
    """A copy of a feature-extraction model folder that sentence-transformers (and edgepack's contract) reads as
    pooling the CLS token, without normalizing: ``modules.json`` plus ``1_Pooling/config.json``."""
    import json
    import shutil

    shutil.copytree(model_dir, out)
    width = json.loads((Path(model_dir) / "config.json").read_text())["hidden_size"]
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": width, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    return out


def write_vocab(path: Path) -> Path:
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + _WORDS
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return path


def make_tiny_model(
    out_dir: str | Path,
    task: str = "text-classification",
    num_labels: int = 2,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    intermediate: int = 64,
    seed: int = 0,
    labels: list[str] | None = None,
    init_std: float | None = None,
) -> Path:
    """Save a random BERT (``BertForSequenceClassification`` or ``BertModel``) with a WordPiece tokenizer.

    ``init_std``: the config's ``initializer_range`` (None: transformers' default, 0.02)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizerFast(vocab_file=str(write_vocab(out / "vocab.txt")), do_lower_case=True,
                            model_max_length=128)
    labels = labels or [f"label_{i}" for i in range(num_labels)]
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=128, type_vocab_size=2,
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        **({"initializer_range": init_std} if init_std is not None else {}),
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg) if task == "text-classification" else BertModel(cfg)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


FAMILIES = ("bert", "distilbert", "roberta", "mpnet", "deberta-v2", "modernbert")


def make_tiny_family_model(
    out_dir: str | Path,
    family: str = "bert",
    task: str = "text-classification",
    num_labels: int = 2,
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    intermediate: int = 64,
    seed: int = 0,
    labels: list[str] | None = None,
    init_std: float = 0.2,
) -> Path:
    """Save a tiny random model of ``family`` with a fast tokenizer (tokenizer.json), built in-process.

    Tokenizers follow each family's real kind: WordPiece (bert, distilbert, mpnet), byte-level BPE (roberta,
    modernbert), Unigram with Metaspace (deberta-v2, like its SentencePiece model). Pad ids differ too:
    0 (bert, distilbert, deberta-v2), 1 (roberta, mpnet) and the last id of the vocabulary (modernbert, whose
    special tokens follow the BPE merges as in the real one). deberta-v2 is the v3 layout (relative
    attention with p2c|c2p, shared attention keys, no token types); modernbert alternates global and local
    attention (``global_attn_every_n_layers=2``, a 16-token window so the sample texts exercise it).
    ``init_std`` (the config's ``initializer_range``; transformers' default is 0.02) is large enough that
    outputs differ between texts by far more than a 1e-4 parity tolerance (at 0.02 a tiny classifier's
    logits barely move from text to text). ``family="bert"`` is ``make_tiny_model`` with that ``init_std``.
    """
    if family == "bert":
        return make_tiny_model(out_dir, task, num_labels, layers, hidden, heads, intermediate, seed, labels, init_std)
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")
    import torch
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok, special, names = _family_tokenizer(family)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, model_input_names=names, **special)
    ids = {k: fast.convert_tokens_to_ids(v) for k, v in special.items()}
    labels = labels or [f"label_{i}" for i in range(num_labels)]
    common = {"vocab_size": len(fast), "pad_token_id": ids["pad_token"], "initializer_range": init_std,
              "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
    sizes = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
             "intermediate_size": intermediate, "max_position_embeddings": 128}
    ends = {"bos_token_id": ids["cls_token"], "eos_token_id": ids["sep_token"]}
    if family == "distilbert":
        kw = {"dim": hidden, "n_layers": layers, "n_heads": heads, "hidden_dim": intermediate,
              "max_position_embeddings": 128}
    elif family in ("roberta", "mpnet"):  # positions start after the pad id
        kw = {**sizes, **ends, "max_position_embeddings": 130, **({"type_vocab_size": 1} if family == "roberta" else {})}
    elif family == "deberta-v2":
        kw = {**sizes, "type_vocab_size": 0, "relative_attention": True, "pos_att_type": ["p2c", "c2p"],
              "position_buckets": 16, "max_relative_positions": -1, "position_biased_input": False,
              "share_att_key": True, "norm_rel_ebd": "layer_norm"}
    else:  # modernbert
        kw = {**sizes, **ends, "global_attn_every_n_layers": 2, "local_attention": 16,
              "cls_token_id": ids["cls_token"], "sep_token_id": ids["sep_token"]}
    cfg = AutoConfig.for_model(family, **common, **kw)
    torch.manual_seed(seed)
    cls = AutoModelForSequenceClassification if task == "text-classification" else AutoModel
    model = cls.from_config(cfg)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out


def _special(pad: str, unk: str, cls: str, sep: str, mask: str, ends: bool = False) -> dict[str, str]:
    out = {"pad_token": pad, "unk_token": unk, "cls_token": cls, "sep_token": sep, "mask_token": mask}
    return {**out, "bos_token": cls, "eos_token": sep} if ends else out


def _family_tokenizer(family: str):
    """(tokenizers.Tokenizer, special tokens for PreTrainedTokenizerFast, model input names)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    corpus = [" ".join(_WORDS)] + list(SAMPLE_SENTENCES) * 2
    ids_mask = ["input_ids", "attention_mask"]
    if family in ("distilbert", "mpnet"):
        sp = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if family == "distilbert"
              else ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"])
        chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
        vocab = {t: i for i, t in enumerate(dict.fromkeys(sp + chars + ["##" + c for c in chars] + list(_WORDS)))}
        tok = Tokenizer(models.WordPiece(vocab, unk_token=sp[1] if family == "distilbert" else "[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        special = (_special("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if family == "distilbert"
                   else _special("<pad>", "[UNK]", "<s>", "</s>", "<mask>", ends=True))
    elif family in ("roberta", "modernbert"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if family == "roberta":
            sp = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
            trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=sp, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
            tok.train_from_iterator(corpus, trainer)
            special = _special("<pad>", "<unk>", "<s>", "</s>", "<mask>", ends=True)
        else:  # special tokens after the merges, as in ModernBERT's vocabulary
            trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
            tok.train_from_iterator(corpus, trainer)
            sp = ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PAD]"]
            tok.add_special_tokens(sp)
            special = _special("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    else:  # deberta-v2: Unigram over Metaspace pieces, like its SentencePiece model
        sp = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=sp, unk_token="[UNK]", show_progress=False)
        tok.train_from_iterator(corpus, trainer)
        special = _special("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    cls_, sep = special["cls_token"], special["sep_token"]
    if family == "roberta":
        tok.post_processor = processors.RobertaProcessing((sep, tok.token_to_id(sep)), (cls_, tok.token_to_id(cls_)))
    else:
        pair = f"{cls_} $A {sep} $B:1 {sep}:1" if family != "mpnet" else f"{cls_} $A {sep} {sep} $B {sep}"
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls_} $A {sep}", pair=pair,
            special_tokens=[(cls_, tok.token_to_id(cls_)), (sep, tok.token_to_id(sep))])
    return tok, special, ids_mask


def logits(model, tokenizer, texts):
    """A torch classifier's logits on ``texts`` (padded batch, no grad)."""
    import torch

    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


class LiveServer:
    """Run an ASGI app on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app, **config):
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else each reply waits ~40 ms
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False, **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        import time

        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()

    def call(self, method, path, body=None, headers=None, conn=None):
        """Returns (status, headers, parsed JSON or text)."""
        import http.client
        import json

        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        ctype = r.getheader("content-type", "")
        return (
            r.status,
            dict(r.getheaders()),
            json.loads(data) if ctype.startswith("application/json") else data.decode(),
        )

    def predict(self, texts, conn=None):
        return self.call("POST", "/v1/predict", {"texts": texts}, {"Content-Type": "application/json"}, conn)

    def wait_ready(self, timeout=20):
        import time

        deadline = time.time() + timeout
        while self.call("GET", "/readyz")[0] != 200:
            assert time.time() < deadline, "server never became ready"
            time.sleep(0.02)
