"""Scoring free-text answers without a judge: option letters, yes/no, and one-word answers."""

from __future__ import annotations

import re
import string

LETTERS = "abcdefgh"
_ARTICLES = {"a", "an", "the"}


def parse_letter(text: str, n_options: int = 4, options: list[str] | None = None) -> str | None:
    """The option letter a model meant: "(B) red", "b.", "B", "the answer is b", "Option C", or the option's text.
    Returns a lower-case letter or None."""
    valid = LETTERS[:max(1, n_options)]
    t = text.strip().lower()
    patterns = [
        rf"\(([{valid}])\)",                                    # (b)
        rf"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([{valid}])\b",  # the answer is b / option: c
        rf"^\s*([{valid}])\s*(?:[\.\):,]|$|\s)",                # b. / b) / b
    ]
    for pattern in patterns:
        m = re.search(pattern, t)
        if m:
            return m.group(1)
    if options:
        norm = normalise(text)
        for i, opt in enumerate(options[:len(valid)]):
            if norm and norm == normalise(opt):
                return LETTERS[i]
    m = re.search(rf"\b([{valid.upper()}])\b", text)  # a lone capital letter anywhere
    return m.group(1).lower() if m else None


def parse_yes_no(text: str) -> str | None:
    m = re.search(r"\b(yes|no)\b", text.lower())
    return m.group(1) if m else None


def normalise(text: str) -> str:
    """lower-case, punctuation and articles removed, whitespace collapsed."""
    t = text.lower().translate(str.maketrans(string.punctuation, " " * len(string.punctuation)))
    return " ".join(w for w in t.split() if w not in _ARTICLES)


# An option marker at the start of a line or after a space: "(a) red", "a) red", "A. red", "B: blue".
_LISTED = re.compile(r"(?:^|[\s(])\(?([a-h])[\)\.:]\s", re.IGNORECASE | re.MULTILINE)


def listed_options(question: str | None) -> int:
    """How many options a question writes out itself ("(a) .. (b) .." -> 2): the letters a, b, c, ... found in
    order, so "(a)" alone or a stray "b." is not a list."""
    if not question:
        return 0
    found = {m.group(1).lower() for m in _LISTED.finditer(question)}
    n = 0
    while n < len(LETTERS) and LETTERS[n] in found:
        n += 1
    return n if n >= 2 else 0


def answer_kind(gold: str, options: list[str] | None, question: str | None = None) -> str:
    g = gold.strip().lower()
    if options:
        return "letter"
    # A one-letter gold with the options written in the question is a letter answer. Without this, gold "a" would
    # be normalised away as the article "a" and no reply could match it.
    if len(g.strip("()")) == 1 and g.strip("()") in LETTERS[:listed_options(question)]:
        return "letter"
    if g in ("yes", "no"):
        return "yes/no"
    return "word"


def is_correct(prediction: str, gold: str | None, options: list[str] | None = None,
               question: str | None = None) -> bool | None:
    """True/False against the gold answer; None when there is no gold answer. `question` lets a one-letter gold
    count as an option letter when the question lists the options itself."""
    if gold is None:
        return None
    kind = answer_kind(gold, options, question)
    g = gold.strip().lower()
    if kind == "letter":
        n = len(options) if options else listed_options(question) or 4
        return parse_letter(prediction, n, options) == g.strip("()")
    if kind == "yes/no":
        return parse_yes_no(prediction) == g
    p, gn = normalise(prediction), normalise(gold)
    return bool(p) and (p == gn or p.split()[0] == gn)


def score_row(row: dict, protocol: str | None) -> dict:
    """parsed / correct / scored for a finished result line: its benchmark protocol's parser, or the generic
    scorer above for our own format."""
    if row.get("benchmark"):
        from .benchmarks import score

        try:
            return score(row, protocol or row.get("protocol") or "official")
        except (TypeError, ValueError, KeyError, IndexError) as exc:  # a malformed line: keep it, do not score it
            return dict(parsed=None, correct=None, scored=False, score_error=f"{type(exc).__name__}: {exc}")
    correct = is_correct(row["prediction"], row["answer"], row.get("options"), row.get("question"))
    return dict(parsed=None, correct=correct, scored=correct is not None)
