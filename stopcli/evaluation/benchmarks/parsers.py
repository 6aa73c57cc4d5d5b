"""The answer parsers the benchmarks' numbers come from, rewritten from their descriptions (see docs/benchmarks.md
for the source of each). Each takes the raw reply and returns what that source would have extracted; quirks are
kept on purpose, because they move the published numbers.

Letters are upper case here, as the sources write them."""

from __future__ import annotations

import random
import re
import zlib

UPPER = "ABCDEFGH"


# --- the SToP authors (eval/utils/utils_eval.py `_mcqa_match`, eval_eventhallusion.py) -------------------------

_STANDALONE_LETTER = re.compile(r"(?<![A-Za-z])([A-Za-z])(?![A-Za-z])")


def authors_letter(reply: str) -> str:
    """The first letter with no letter on either side, of any case ("I think (B)" -> "I"), else the reply's first
    character; upper-cased. An empty reply gives ""."""
    reply = reply.strip()
    m = _STANDALONE_LETTER.search(reply)
    return (m.group(1) if m else reply[:1]).upper()


def authors_match(gold: str | int, reply: str) -> bool:
    """An integer gold needs an integer reply (a letter reply never matches); a one-letter gold takes
    `authors_letter`; anything else is a case-insensitive exact match."""
    if isinstance(gold, int):
        try:
            return int(reply.strip()) == gold
        except ValueError:
            return False
    g = str(gold).strip()
    if len(g) == 1 and g.isalpha():
        return authors_letter(reply) == g.upper()
    return g.lower() == reply.strip().lower()


def authors_yes_no(reply: str) -> str:
    """EventHallusion, the authors: the first space-separated word, stripped, then '.', lower-cased, then ','."""
    return reply.split(" ")[0].strip().strip(".").lower().strip(",")


# --- EventHallusion's own eval.py ------------------------------------------------------------------------------

def eventhallusion_official(reply: str) -> str | None:
    """"Yes." / "No." from a reply that starts with yes / no (any case), else None (counted wrong)."""
    r = reply.lower()
    return "Yes." if r.startswith("yes") else "No." if r.startswith("no") else None


# --- MVBench: videochat2's check_ans (Ask-Anything video_chat2/mvbench.ipynb) ----------------------------------

def videochat2_match(reply: str, gold_letter: str, after_prefix: bool) -> bool:
    """The reply's first line (after "(" when the answer prefix "Best option:(" opened the bracket), its first
    space-separated word lower-cased, matched both ways as a substring of the gold's "(b)". Kept quirk: an empty
    reply after the prefix is "(", which is inside every "(x)", so it counts as correct."""
    lines = reply.strip().split("\n")
    pred = ("(" if after_prefix else "") + lines[0]
    pred_option = pred.lower().split(" ")[0]
    gold_option = f"({gold_letter.lower()})"
    return pred_option.replace(".", "") in gold_option or gold_option in pred_option


# --- lmms-eval: mvbench mcq_acc -------------------------------------------------------------------------------

_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")


def _lmms_punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_NUMBER.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def lmms_mvbench_option(text: str) -> str:
    """"B. text" -> "B"; otherwise punctuation removed and the first standalone A-E of any case, upper-cased;
    otherwise the cleaned text itself (which then matches no letter)."""
    m = re.match(r"^([A-E])\.\s*(.+)$", text.strip(), re.IGNORECASE)
    if m:
        return m.group(1).upper()
    t = _lmms_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    t = t.strip("'").strip('"').strip(")").strip("(").strip().lower()
    m = re.search(r"\b([A-E])\b", t, re.IGNORECASE)
    return m.group(1).upper() if m else t


# --- Video-MME (official eval script and lmms-eval's copy) ---------------------------------------------------

# The missing commas of the sources join some prefixes into one string; kept, since that is what gets removed.
VIDEOMME_PREFIXES_LMMS = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                          "The best option isThe correct option is", "Best answer:Best option:")
VIDEOMME_PREFIXES_OFFICIAL = VIDEOMME_PREFIXES_LMMS + ("Answer:",)


def videomme_letter(reply: str, prefixes: tuple[str, ...], letters: str = "ABCD") -> str:
    """Answer prefixes removed, then the first option letter anywhere (so "A dog runs" -> "A"); none -> ""
    (unparsed). The sources' extra rule "over 10 words and no letter -> unparsed" gives the same result."""
    s = reply.strip()
    for prefix in prefixes:
        s = s.replace(prefix, "")
    hit = re.search(f"[{letters}]", s)
    return hit.group(0) if hit else ""


# --- LongVideoBench (lmms-eval, "same as the original paper") --------------------------------------------------

LVB_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
                "The correct option is", "Best answer:", "Best option:")


def seeded_choice(choices: str, seed: str) -> str:
    """The random letter the source draws for an unparsed reply, drawn from a seed (the item's key) so that a
    re-score gives the same number."""
    return random.Random(zlib.crc32(seed.encode())).choice(choices)


def lvb_letter(reply: str, n_options: int, seed: str | None) -> str | None:
    """First option letter after removing answer prefixes; unparsed (more than 10 words and no letter, or no
    letter at all) -> a seeded random letter, or None when `seed` is None (counted wrong)."""
    letters = UPPER[:n_options]
    s = reply.strip()
    for prefix in LVB_PREFIXES:
        s = s.replace(prefix, "")
    hit = re.search(f"[{letters}]", s)
    if hit is None:
        return seeded_choice(letters, seed) if seed is not None else None
    return hit.group(0)


# --- NExT-QA in lmms-eval: the MMMU parser ---------------------------------------------------------------------

def mmmu_letter(reply: str, options: list[str], seed: str | None) -> str | None:
    """"(B)" anywhere, else "B " then "B.", else (replies over 5 words) an option's text; several hits -> the last
    one in the reply; none -> a seeded random letter (None without a seed: counted wrong)."""
    letters = UPPER[:len(options)]
    r = reply
    for ch in (",", ".", "!", "?", ";", ":", "'"):
        r = r.strip(ch)
    r = f" {r} "
    by_letter, bracketed = True, False
    hits = [c for c in letters if f"({c})" in r]
    if hits:
        bracketed = True
    else:
        hits = [c for c in letters if f"{c} " in r] or [c for c in letters if f"{c}." in r]
    if not hits and len(r.split()) > 5:
        hits = [c for c, text in zip(letters, options) if text.lower() in r.lower()]
        by_letter = False
    if not hits:
        return seeded_choice(letters, seed) if seed is not None else None
    if len(hits) == 1:
        return hits[0]
    if by_letter:
        where = [r.rfind(f"({c})") if bracketed else r.rfind(f" {c} ") for c in hits]
    else:
        where = [r.lower().rfind(options[letters.index(c)].lower()) for c in hits]
    return hits[max(range(len(hits)), key=lambda i: (where[i], -i))]


# --- MLVU (choice_bench.py; lmms-eval's copy) ------------------------------------------------------------------

def mlvu_letter(reply: str, strip: bool) -> str:
    """The character before the first ")", else the whole reply (stripped in lmms-eval, as is in the official
    script): a bare "B" matches, "B." does not. Case-sensitive."""
    s = reply.strip() if strip else reply
    if ")" in s:
        i = s.index(")")
        return s[i - 1:i]
    return s
