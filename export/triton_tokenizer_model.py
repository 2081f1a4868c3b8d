"""Triton Python-backend model: text in, token ids out (copied into a repository as ``1/model.py``).

Input ``TEXT`` (TYPE_STRING, shape [B, 1]); outputs the model's token inputs (``input_ids``,
``attention_mask``, ``token_type_ids``: TYPE_INT64, or TYPE_INT32 for engines that take int32; [B, T]). T is the longest text in the
request rounded up to ``pad_to_multiple_of`` (so the model's dynamic batcher can merge requests of
similar length) and capped at ``max_length``. Parameters come from this model's config.pbtxt.

It needs ``numpy`` and ``tokenizers`` in Triton's Python environment (``pip install tokenizers`` in the
container). ``triton_python_backend_utils`` exists only inside Triton, so it is imported in the
methods; :func:`encode_texts` is plain Python and is what edgepack's tests run.
"""

import json
from pathlib import Path

import numpy as np

TOKEN_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")
TRITON_INT_TYPES = {"TYPE_INT64": np.int64, "TYPE_INT32": np.int32}


def load_tokenizer(path, max_length):
    """A ``tokenizers.Tokenizer`` from tokenizer.json, truncating at ``max_length``, not padding."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=int(max_length))
    return tok


def encode_texts(tokenizer, texts, pad_token_id=0, pad_to_multiple_of=1, max_length=512, names=TOKEN_OUTPUTS):
    """Tokenize ``texts`` and pad them to a common length: {name: (B, T) int64}."""
    encs = tokenizer.encode_batch([str(t) for t in texts])
    longest = max([len(e.ids) for e in encs] + [1])
    m = max(1, int(pad_to_multiple_of))
    length = min(int(max_length), -(-longest // m) * m)
    ids = np.full((len(encs), length), int(pad_token_id), dtype=np.int64)
    mask = np.zeros((len(encs), length), dtype=np.int64)
    types = np.zeros((len(encs), length), dtype=np.int64)
    for row, e in enumerate(encs):
        n = min(len(e.ids), length)
        ids[row, :n] = e.ids[:n]
        mask[row, :n] = 1
        types[row, :n] = e.type_ids[:n]
    cols = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {n: cols[n] for n in names}


def decode_text_tensor(array):
    """Triton TYPE_STRING arrives as an object array of bytes; return a list of str (row order)."""
    return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in np.asarray(array).reshape(-1)]


class TritonPythonModel:
    """The Triton Python-backend entry point."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value") for k, v in (config.get("parameters") or {}).items()}
        here = Path(args["model_repository"]) / str(args["model_version"])
        self.max_length = int(params.get("max_length", 512))
        self.pad_token_id = int(params.get("pad_token_id", 0))
        self.pad_to_multiple_of = int(params.get("pad_to_multiple_of", 1))
        self.tokenizer = load_tokenizer(
            here / params.get("tokenizer_file", "tokenizer.json"), self.max_length
        )
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = {
            o["name"]: TRITON_INT_TYPES[o.get("data_type", "TYPE_INT64")] for o in config["output"]
        }

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                texts = decode_text_tensor(pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy())
                feeds = encode_texts(
                    self.tokenizer,
                    texts,
                    self.pad_token_id,
                    self.pad_to_multiple_of,
                    self.max_length,
                    self.output_names,
                )
                tensors = [
                    pb_utils.Tensor(n, feeds[n].astype(self.output_dtypes[n])) for n in self.output_names
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as e:  # one bad request must not fail the others in the batch
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e)))
                )
        return responses

    def finalize(self):
        self.tokenizer = None
