"""The embeddable API without HTTP: a real Predictor behind the DynamicBatcher, called from threads."""

import threading

import numpy as np
import pytest
from edgepack.runtime.batcher import BatcherConfig, DynamicBatcher

from edgepack.testing import SAMPLE_TEXTS


@pytest.fixture(scope="module")
def predictor(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx
    from edgepack.runtime.predictor import Predictor

    art = export_onnx(tiny_bert, tmp_path_factory.mktemp("batcher_pred") / "onnx", OnnxExportConfig())
    return Predictor.open(art.path, intra_op_threads=1, batch_size=4)


def test_batched_predictions_match_direct_ones_from_many_threads(predictor):
    want = predictor.infer(SAMPLE_TEXTS)  # (7, 2) probabilities
    jobs = [[SAMPLE_TEXTS[(i * 3 + j) % len(SAMPLE_TEXTS)] for j in range(1 + i % 3)] for i in range(30)]
    got: dict[int, list] = {}
    with DynamicBatcher(predictor.predict, BatcherConfig(max_batch=8, max_wait_ms=20)) as b:
        threads = [
            threading.Thread(target=lambda i=i: got.__setitem__(i, b.predict(jobs[i]))) for i in range(30)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    for i, job in enumerate(jobs):
        probs = [[r["scores"]["negative"], r["scores"]["positive"]] for r in got[i]]
        np.testing.assert_allclose(probs, [want[SAMPLE_TEXTS.index(t)] for t in job], atol=1e-5)
    assert b.stats.batches < 30  # requests were gathered
