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
) -> Path:
    """Save a random BERT (``BertForSequenceClassification`` or ``BertModel``) with a WordPiece tokenizer."""
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
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg) if task == "text-classification" else BertModel(cfg)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


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
