"""Archon's architectures for one model (Saad-Falcon et al. 2024, "Archon: An Architecture
Search Framework for Inference-Time Techniques", arXiv 2409.15254; ScalingIntelligence/Archon).

Default: its published single-model architecture "sample 5, then critic, then fuse"
(configs archon-gpt-4o-sample_5_then_critic_then_fuse.json and archon-gemma2-9B-...: five
samples, one critic call reviewing them jointly (strengths and weaknesses per response), one
fuser call synthesising them with their critiques). `rank_top=k` adds the ranker layer of its
best math configuration (best_performing_configs/math: samples -> ranker top 5 -> fuser), one
call ordering all samples and keeping the best k, before the critic (`critique=False`: no
critic, as that config). The proposers of the multi-model configurations are samples of one
model here. The search over such architectures (Archon's ITAS) is
`tts.experiment.architecture`.
"""

from __future__ import annotations

from strategies.pipeline import Pipeline
from tts.options import Count
from tts.pipeline import Critique, Fuse, Generate, Rank


class Archon(Pipeline):
    name = "archon"

    def __init__(self, n: Count = 5, rank_top: Count | None = None, critique: bool = True):
        self.n, self.rank_top, self.critique = n, rank_top, critique
        self._stages = [Generate(strategy="self_consistency", n=n),
                        *([Rank(method="order", top=rank_top)] if rank_top is not None else []),
                        *([Critique(joint=True)] if critique else []),
                        Fuse(samples=1)]
        self.answer = "first"
