"""The operators' default prompts (each overridable per stage: `Critique(prompt=...)`).

Written for any task: the problem text is quoted as the task posed it (so a code task's "in a
markdown code block" and a math task's system prompt, which candidate-making calls keep, say
the answer's format), and a candidate is shown as the model wrote it. The wording follows the
references (docs/references.md, "Composed inference"), shortened for small models:

- CRITIQUE: Self-Refine's feedback step (madaan/self-refine) and Mind Evolution's critic, with a
  last line `Verdict: correct|incorrect` that Self-Refine's stopping rule reads.
- JOINT_CRITIQUE: Archon's critic (`make_critic_prompt`) and optillm's moa.py: one call
  reviews every candidate, strengths and weaknesses per numbered response.
- REFINE: Self-Refine's refine step / Mind Evolution's author turn.
- FUSE: mixture-of-agents' aggregate-and-synthesize prompt (togethercomputer/MoA, Archon's
  `make_fuser_prompt`), critiques appended per response when a critique stage ran.
- SELECT: GenSelect's selection prompt (NeMo-Skills; "Judgment: [IDX]", 0-based).
- ORDER: Archon's ranker (`make_ranker_prompt`): "[2] > [0] > ..." on the first line.
- REVISE: Iterative Agent Decoding ("Review, Refine, Repeat"): the best- and worst-scored
  responses with their verifier scores, and a request for a better one.
- CROSSOVER: Mind Evolution's recombination of parent solutions in one prompt.

Placeholders are `str.format` fields; a prompt given by a user is checked to format with the
fields its operator supplies (an unknown field is a one-line error when the stage is built).
"""

from __future__ import annotations

FINISH = "Give the complete final solution in the form the problem asks for."

CRITIQUE = (
    "Problem:\n{question}\n\n"
    "Proposed solution:\n{candidate}\n\n"
    "Review this solution carefully, step by step: check every calculation and every step of "
    "the reasoning, and point out each mistake you find. Do not write a new solution. "
    "End with one line: 'Verdict: correct' if the final answer is right, or 'Verdict: incorrect' if it is not."
)

JOINT_CRITIQUE = (
    "Problem:\n{question}\n\n"
    "Here are {count} responses to the problem, each marked with its number in brackets.\n\n"
    "{candidates}\n\n"
    "Evaluate each response: for every one, start with its number (e.g. [1]) and list its "
    "strengths and its weaknesses, including every mistake you find. Evaluate all {count} responses."
)

REFINE = (
    "Problem:\n{question}\n\n"
    "A previous solution:\n{candidate}\n\n"
    "Feedback on it:\n{critique}\n\n"
    "Using the feedback, write an improved solution to the problem that fixes the mistakes. " + FINISH
)

FUSE = (
    "Problem:\n{question}\n\n"
    "You have been given {count} responses to this problem. Synthesize them into a single, "
    "high-quality solution. Evaluate them critically: some of them may be wrong. Do not simply "
    "copy one; give a correct, complete solution. " + FINISH + "\n\n"
    "Responses:\n\n{candidates}"
)

SELECT = (
    "Problem:\n{question}\n\n"
    "Here are {count} candidate solutions, numbered 0 to {max_index}.\n\n"
    "{candidates}\n\n"
    "Compare them: group them by their final answers, find the mistakes in the reasoning, rule "
    "out the wrong ones and pick the best correct solution. End your evaluation with exactly:\n"
    "Judgment: [IDX]\nwhere IDX is the index (0 to {max_index}) of the best solution."
)

ORDER = (
    "Problem:\n{question}\n\n"
    "Here are {count} responses, each marked with its number in brackets.\n\n"
    "{candidates}\n\n"
    "Rank all {count} responses from best to worst by correctness. Write the ranking first, on "
    "one line starting with 'Answer:', using the numbers, e.g. Answer: [2] > [1] > [3]. Then explain."
)

REVISE = (
    "Problem:\n{question}\n\n"
    "A verifier scored earlier attempts between 0 (wrong) and 1 (right).\n\n"
    "The best attempt (score {best_score:.2f}):\n{best}\n\n"
    "The worst attempt (score {worst_score:.2f}):\n{worst}\n\n"
    "Learn from what the better attempt does right and the worse one gets wrong, and write a new, "
    "improved solution. " + FINISH
)

CROSSOVER = (
    "Problem:\n{question}\n\n"
    "Here are {count} earlier solutions with their fitness (higher is better):\n\n{candidates}\n\n"
    "Combine the strengths of these solutions and avoid their mistakes: write one new, better "
    "solution. " + FINISH
)

# The fields each prompt is formatted with (a user's prompt may use any subset of them).
FIELDS: dict[str, tuple[str, ...]] = {
    "critique": ("question", "candidate"),
    "joint_critique": ("question", "candidates", "count"),
    "refine": ("question", "candidate", "critique"),
    "fuse": ("question", "candidates", "count"),
    "select": ("question", "candidates", "count", "max_index"),
    "order": ("question", "candidates", "count"),
    "revise": ("question", "best", "worst", "best_score", "worst_score"),
    "crossover": ("question", "candidates", "count"),
}


def check(prompt: str, kind: str) -> str:
    """`prompt` if it formats with `kind`'s fields (numbers where they are numbers), else a
    ValueError naming what it needs."""
    sample = {f: (1 if f in ("count", "max_index", "best_score", "worst_score") else "x") for f in FIELDS[kind]}
    try:
        prompt.format(**sample)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"a {kind} prompt may use only the fields {{{'}, {'.join(FIELDS[kind])}}} "
                         f"(literal braces doubled: '{{{{' and '}}}}'); {type(e).__name__}: {e}") from None
    return prompt
