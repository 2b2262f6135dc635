"""Clustering of texts by their words, as φ-Decoding's code does it with scikit-learn
(`TfidfVectorizer()` then `KMeans(n_clusters=k)`), here in NumPy: TF-IDF with scikit-learn's
defaults (lower-cased words of two or more word characters, idf = ln((1 + n) / (1 + df)) + 1,
rows scaled to unit length) and Lloyd's k-means. One deviation: the first centres are chosen
deterministically, farthest-first from the first text (scikit-learn's k-means++ draws them at
random), so a run's clusters depend on its texts only.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

_WORD = re.compile(r"(?u)\b\w\w+\b")


def tfidf(texts: list[str]) -> np.ndarray | None:
    """Rows of unit-length TF-IDF vectors; None when no text holds a word (scikit-learn raises)."""
    docs = [Counter(_WORD.findall(t.lower())) for t in texts]
    vocab = sorted({w for d in docs for w in d})
    if not vocab:
        return None
    col = {w: j for j, w in enumerate(vocab)}
    x = np.zeros((len(texts), len(vocab)))
    for i, d in enumerate(docs):
        for w, c in d.items():
            x[i, col[w]] = c
    df = (x > 0).sum(axis=0)
    x *= np.log((1 + len(texts)) / (1 + df)) + 1
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def kmeans(x: np.ndarray, k: int, iterations: int = 100) -> list[int] | None:
    """Cluster labels of the rows of `x` into k clusters; None when there are fewer rows than k
    (scikit-learn raises)."""
    n = len(x)
    if n < k:
        return None
    centres = [x[0]]
    for _ in range(1, k):  # farthest-first: the row farthest from the centres so far (the first of equals)
        d = np.min([((x - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(x[int(np.argmax(d))])
    c = np.array(centres)
    labels = None
    for _ in range(iterations):
        new = np.argmin(((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2), axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):  # an empty cluster keeps its centre
            if (labels == j).any():
                c[j] = x[labels == j].mean(axis=0)
    return [int(v) for v in labels]


def cluster(texts: list[str], k: int) -> list[int] | None:
    """k-means labels of the texts' TF-IDF vectors; None where φ-Decoding's code fails over."""
    x = tfidf(texts)
    return None if x is None else kmeans(x, k)
