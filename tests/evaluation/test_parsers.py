"""The protocols' answer parsers on any text: they never raise, and return only what their source can return."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from stopcli.evaluation.benchmarks import parsers as P

replies = st.text(alphabet=string.printable + "éß", max_size=80)


@settings(max_examples=300, deadline=None)
@given(replies, st.integers(2, 5))
def test_parsers_return_only_their_sources_values(reply, n):
    letters = P.UPPER[:n]
    assert P.videomme_letter(reply, P.VIDEOMME_PREFIXES_OFFICIAL) in ("", "A", "B", "C", "D")
    assert P.lvb_letter(reply, n, "key") in letters  # unparsed: a seeded letter, never None
    assert P.lvb_letter(reply, n, None) in (None, *letters)
    options = [f"option {i}" for i in range(n)]
    assert P.mmmu_letter(reply, options, "key") in letters
    assert P.mmmu_letter(reply, options, None) in (None, *letters)
    a = P.authors_letter(reply)
    assert a == "" or any(ch.upper() == a for ch in reply)  # one character of the reply, upper-cased ("ß" -> "SS")
    assert P.eventhallusion_official(reply) in (None, "Yes.", "No.")
    assert isinstance(P.videochat2_match(reply, "B", True), bool)
    assert len(P.mlvu_letter(reply, True)) <= len(reply)


@given(st.sampled_from("ABCDE"), st.sampled_from(["", " ", "(", "The best answer is "]),
       st.sampled_from(["", ".", ")", " is right"]))
def test_a_plain_letter_reply_is_read_as_that_letter(letter, before, after):
    reply = f"{before}{letter}{after}"
    assert P.lvb_letter(reply, 5, None) == letter
    assert P.lmms_mvbench_option(reply) == letter
    assert P.authors_letter(reply) == letter


def test_source_quirks_are_kept():
    assert P.lvb_letter("Answer: B", 5, None) == "A"  # "Answer:" is not among its prefixes: the A of "Answer"
    assert P.videomme_letter("Answer: B", P.VIDEOMME_PREFIXES_OFFICIAL) == "B"
    assert P.videomme_letter("Answer: B", P.VIDEOMME_PREFIXES_LMMS) == "A"
    assert P.videomme_letter("The best option is C", P.VIDEOMME_PREFIXES_LMMS) == "C"
    assert P.authors_letter("I think (B)") == "I" and P.authors_letter("") == ""
    assert P.videochat2_match("", "C", after_prefix=True)  # "(" is inside "(c)"
    assert P.videochat2_match("", "C", after_prefix=False)  # "" too: the empty string is inside any string
    assert not P.videochat2_match("C", "B", after_prefix=True)
