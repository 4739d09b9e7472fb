import math
from pathlib import Path

import pytest

from evalgate.core.errors import InputError
from evalgate.core.stats import cohen_kappa
from evalgate.engine.calibrate import (
    auroc,
    best_threshold,
    calibrate_grounding,
    calibrate_similarity,
)

from .core_fakes import HashEmbedder

DATA = Path(__file__).resolve().parents[2] / "bench" / "data"


def test_auroc_and_kappa_known_values():
    assert auroc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5  # ties count half
    assert auroc([0.5], [1]) is None
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == 1.0
    # 2x2 table a=20 b=5 c=10 d=15 (pred yes/no vs truth): kappa = 0.4 (textbook example)
    pred = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    truth = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert math.isclose(cohen_kappa(pred, truth), 0.4)
    assert best_threshold([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]) == (0.6, 1.0)


def test_similarity_calibration_on_stsb_is_positively_correlated():
    rec = calibrate_similarity(HashEmbedder(), DATA, limit=120)
    assert rec["n"] == 120 and rec["spearman"] > 0.2  # even bag-of-words tracks human similarity
    assert 0 <= rec["best_threshold"] <= 1 and rec["auroc_equivalent"] > 0.5


def test_grounding_calibration_reports_precision_and_coverage():
    rec = calibrate_grounding(DATA, limit=200)
    assert rec["n"] == 400 and 0 < rec["applies_share"] < 1
    assert rec["precision"] is not None and rec["precision"] >= 0.9  # a number absent from the source is real evidence


def test_missing_benchmark_is_a_clear_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="benchmark file not found"):
        calibrate_grounding(tmp_path)
