"""Self-Refine (Madaan et al. 2023, "Self-Refine: Iterative Refinement with Self-Feedback",
arXiv 2303.17651; madaan/self-refine): the model's own feedback on its solution, then a refined
solution from it, up to `rounds` times, stopping as soon as the feedback calls the solution
correct (the repository's GSM loop: `max_attempts=4`, stop on "it is correct"; here the
critique's last line, "Verdict: correct"). `n` independent trajectories vote at the end (n=1:
the paper's single one). The repository asks for feedback and the fixed solution in one
few-shot call; here they are two zero-shot calls (critique, refine), the prompts in
`tts.pipeline.prompts`.
"""

from __future__ import annotations

from strategies.pipeline import Pipeline
from tts.options import Count
from tts.pipeline import Critique, Generate, Refine


class SelfRefine(Pipeline):
    name = "self_refine"

    def __init__(self, n: Count = 1, rounds: Count = 4):
        self.n, self.rounds = n, rounds
        stages: list = [Generate(strategy="self_consistency", n=n)]
        for _ in range(rounds):
            stages += [Critique(), Refine(keep_correct=True)]
        self._stages = stages
        self.answer = "vote"
