import pytest

from stopcli.evaluation.scoring import is_correct, normalise, parse_letter, parse_yes_no


@pytest.mark.parametrize("text, letter", [
    ("(B) red", "b"), ("b", "b"), ("B.", "b"), ("the answer is b", "b"), ("Answer: C", "c"), ("Option D", "d"),
    ("(c)", "c"), ("I think it is A", "a"), ("a) left", "a"), ("red", None), ("", None),
])
def test_parse_letter(text, letter):
    assert parse_letter(text, 4) == letter


def test_parse_letter_by_option_text_and_range():
    assert parse_letter("Green.", 4, ["red", "green", "blue", "yellow"]) == "b"
    assert parse_letter("(e)", 4) is None  # only a-d exist


@pytest.mark.parametrize("text, word", [("Yes.", "yes"), ("no, it is not", "no"), ("I'd say yes", "yes"),
                                        ("Nothing", None), ("yesterday", None)])
def test_parse_yes_no(text, word):
    assert parse_yes_no(text) == word


def test_is_correct():
    assert is_correct("Yes.", "yes") and not is_correct("No", "yes")
    assert is_correct("(B) red", "b", ["blue", "red", "green", "yellow"])
    assert not is_correct("(A) blue", "b", ["blue", "red", "green", "yellow"])
    assert is_correct("Left.", "left") and is_correct("left, slowly", "left") and not is_correct("right", "left")
    assert is_correct("The red one", "red one")
    assert is_correct("anything", None) is None
    assert normalise("  The Red,  Circle! ") == "red circle"


def test_single_letter_gold_with_options_in_the_question_is_a_letter():
    # regression: gold "a" was normalised away as the article "a", so every such item scored wrong
    q = "What moves? (a) a red circle (b) a blue square (c) nothing"
    assert is_correct("(A) a red circle", "a", None, q)
    assert is_correct("a", "a", None, q) and is_correct("A.", "A", None, q)
    assert not is_correct("(b)", "a", None, q)
    assert is_correct("B", "b", None, "Which?\nA. up\nB. down")
    # no options written out: "a" stays a word answer, and a lone "(a)" is not a list
    assert not is_correct("(A)", "a", None, "Is it (a) circle?")
