"""The previous version's behaviour the canary's power is computed for (``canary_power``): its own room, light
enough for the ``canary-power`` command's parser to read the defaults from without loading the power model."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """How the previous version behaves (assumptions; measure yours and pass them to ``evalgate canary-power``)."""

    quality_mean: float = 0.85
    quality_sd: float = 0.12  # per judged answer
    hallucination_rate: float = 0.02
    error_rate: float = 0.005
    latency_median_ms: float = 2000.0
    latency_sigma: float = 0.35  # lognormal shape
    conversion_rate: float = 0.05
    conversion_share: float = 1.0  # share of requests that report a conversion outcome
    feedback_up: float = 0.80
    feedback_share: float = 0.05  # share of requests that get a thumbs up/down

    @property
    def latency_mean_ms(self) -> float:
        return self.latency_median_ms * math.exp(self.latency_sigma**2 / 2)

    @property
    def latency_sd_ms(self) -> float:
        s2 = self.latency_sigma**2
        return self.latency_median_ms * math.exp(s2 / 2) * math.sqrt(math.exp(s2) - 1)
