"""A small paraphrase dataset this project writes itself (no downloads), for the quickstart and examples.

Pairs are built from templates: a question-like phrasing and a statement-like phrasing of the same fact.
``make_pairs`` returns training pairs (anchor, positive); ``make_scored_pairs`` returns held-out
(sentence1, sentence2, score) rows where matching facts score 1.0 and mismatched ones 0.0.
"""

from __future__ import annotations

import random

PLACES = [
    ("France", "Paris", "French"),
    ("Japan", "Tokyo", "Japanese"),
    ("Italy", "Rome", "Italian"),
    ("Spain", "Madrid", "Spanish"),
    ("Germany", "Berlin", "German"),
    ("Egypt", "Cairo", "Arabic"),
    ("Kenya", "Nairobi", "Swahili"),
    ("Peru", "Lima", "Spanish"),
    ("Norway", "Oslo", "Norwegian"),
    ("Greece", "Athens", "Greek"),
    ("Portugal", "Lisbon", "Portuguese"),
    ("Poland", "Warsaw", "Polish"),
    ("Sweden", "Stockholm", "Swedish"),
    ("Chile", "Santiago", "Spanish"),
    ("Turkey", "Ankara", "Turkish"),
    ("Ireland", "Dublin", "Irish"),
    ("Austria", "Vienna", "German"),
    ("Hungary", "Budapest", "Hungarian"),
    ("Finland", "Helsinki", "Finnish"),
    ("Vietnam", "Hanoi", "Vietnamese"),
    ("Thailand", "Bangkok", "Thai"),
    ("Cuba", "Havana", "Spanish"),
    ("Denmark", "Copenhagen", "Danish"),
    ("Iceland", "Reykjavik", "Icelandic"),
]
ANIMALS = [
    ("cat", "purrs", "mice"),
    ("dog", "barks", "bones"),
    ("cow", "moos", "grass"),
    ("owl", "hoots", "mice"),
    ("lion", "roars", "meat"),
    ("horse", "neighs", "hay"),
    ("duck", "quacks", "bread"),
    ("bee", "buzzes", "nectar"),
    ("frog", "croaks", "flies"),
    ("sheep", "bleats", "grass"),
    ("wolf", "howls", "deer"),
    ("snake", "hisses", "rats"),
]

_QUESTIONS = [
    "What is the capital city of {c}?",
    "Which city is the capital of {c}?",
    "Name the capital of {c}.",
    "What language do people speak in {c}?",
    "Which language is spoken in {c}?",
]
_ANSWERS = [
    "{k} is the capital of {c}.",
    "The capital city of {c} is {k}.",
    "{c} has {k} as its capital.",
    "People in {c} speak {l}.",
    "The main language of {c} is {l}.",
]
_ANIMAL_Q = ["What sound does a {a} make?", "How does a {a} sound?", "What does a {a} like to eat?"]
_ANIMAL_A = ["A {a} {s}.", "The {a} {s} loudly.", "A {a} likes to eat {f}."]


def _facts() -> list[tuple[str, str]]:
    facts = []
    for c, k, lang in PLACES:
        for qi, q in enumerate(_QUESTIONS):
            answers = _ANSWERS[:3] if qi < 3 else _ANSWERS[3:]
            for a in answers:
                facts.append((q.format(c=c), a.format(c=c, k=k, l=lang)))
    for a, s, f in ANIMALS:
        for qi, q in enumerate(_ANIMAL_Q):
            answers = _ANIMAL_A[:2] if qi < 2 else _ANIMAL_A[2:]
            for ans in answers:
                facts.append((q.format(a=a), ans.format(a=a, s=s, f=f)))
    return facts


def make_pairs(seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held_out) lists of (anchor, positive) pairs; held-out pairs use facts unseen in training."""
    rng = random.Random(seed)
    facts = _facts()
    rng.shuffle(facts)
    cut = int(len(facts) * 0.8)
    return facts[:cut], facts[cut:]


def make_scored_pairs(pairs: list[tuple[str, str]], seed: int = 0) -> list[tuple[str, str, float]]:
    """For each pair, the true match (score 1.0) and a mismatched answer (score 0.0)."""
    rng = random.Random(seed)
    rows = []
    answers = [p for _, p in pairs]
    for q, p in pairs:
        rows.append((q, p, 1.0))
        other = rng.choice([a for a in answers if a != p])
        rows.append((q, other, 0.0))
    return rows
