"""Benchmark readers on small folders in each publisher's layout: items read, the exact prompt per protocol, verdicts
of hand-written replies under each parser, aggregation and PDR worked out by hand, and folder-level errors."""

import json

import pytest

from stopcli.errors import UsageError
from stopcli.evaluation import benchmarks as BM
from stopcli.evaluation.benchmarks import parsers as P
from stopcli.evaluation.report import report

from benchmark_layouts import BUILDERS, row

# The replies every parser is tried on.
YES, NO, THINK_B, EMPTY = "Yes, there is", "No.", "I think (B)", ""
TWELVE = "the shape keeps moving across the grey frame until it leaves view"  # 12 words, no option letter
assert len(TWELVE.split()) == 12


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name, build in BUILDERS.items():
        out[name] = build(tmp_path_factory.mktemp(name))
    return out


def load(folders, name, protocol, **kw):
    return BM.load(name, folders[name], protocol, **kw)


def verdicts(record, protocol, replies):
    """(correct, scored) per reply."""
    out = []
    for reply in replies:
        r = row(record, reply, protocol)
        out.append((r["correct"], r["scored"]))
    return out


@pytest.mark.parametrize("name", list(BUILDERS))
def test_layout_is_detected_and_every_item_read(folders, name):
    assert BM.detect(folders[name]) == name
    counts = {"eventhallusion": 7, "mvbench": 6, "videomme": 3, "nextqa": 3, "longvideobench": 2, "mlvu": 4,
              "videocomp": 2, "vcgbench": 3}
    split = "val" if name == "nextqa" else None
    records = BM.load(name, folders[name], "official", split=split)
    assert len(records) == counts[name]
    assert len({r.key for r in records}) == len(records)
    for r in records:
        if r.error is None and not r.video.startswith("video/tvqa"):
            assert (folders[name] / r.video).is_file(), r.video


# --- EventHallusion --------------------------------------------------------------------------------------------

def test_eventhallusion_items_prompts_and_parsers(folders):
    official = load(folders, "eventhallusion", "official")
    binary = [r for r in official if not r.judge]
    assert [(r.type, r.answer) for r in binary] == [("entire", "Yes."), ("entire", "No."), ("interleave", "No."),
                                                    ("misleading", "No.")]
    assert binary[0].prompt() == "Does the red circle move to the right?\nPlease answer yes or no:"
    assert binary[2].video == "videos/interleave/interleave_001.mp4"  # mix_001 ships renamed
    desc = [r for r in official if r.judge]
    assert [r.type for r in desc] == ["entire", "interleave", "misleading"]
    assert desc[0].prompt() == "Please describe this video in detail."
    assert desc[1].answer == "Nothing unexpected."  # official judges interleave against `unexpected`
    authors = load(folders, "eventhallusion", "authors")
    assert [r.type for r in authors if r.judge] == ["entire", "interleave"]  # no misleading description
    replies = [YES, NO, THINK_B, EMPTY, TWELVE, "yes"]
    for proto in ("official", "authors"):
        assert verdicts(binary[0], proto, replies) == [(True, True), (False, True), (False, True), (False, True),
                                                        (False, True), (True, True)]
        assert verdicts(binary[1], proto, replies) == [(False, True), (True, True), (False, True), (False, True),
                                                        (False, True), (False, True)]
    # the two parsers differ: official needs the reply to start with yes/no, the authors its first word to be it
    assert row(binary[1], "Nope", "official")["correct"] and not row(binary[1], "Nope", "authors")["correct"]
    assert row(binary[0], "Yes.The circle", "official")["correct"]
    assert not row(binary[0], "Yes.The circle", "authors")["correct"]
    with pytest.raises(UsageError, match="no 'lmms-eval' protocol"):
        load(folders, "eventhallusion", "lmms-eval")


def test_eventhallusion_aggregation_by_hand(folders):
    recs = load(folders, "eventhallusion", "official")
    binary = [r for r in recs if not r.judge]
    replies = ["Yes.", "Yes.", "no", "maybe"]  # entire: 1/2, interleave: 1/1, misleading: 0/1 ("maybe" unmatched)
    rows = [row(r, p, "official") for r, p in zip(binary, replies)] + \
        [row(r, "A circle moves.", "official") for r in recs if r.judge]
    res = BM.aggregate("eventhallusion", rows, "official")
    assert res["score"] == pytest.approx(2 / 4)  # pooled over splits
    assert {g: t["accuracy"] for g, t in res["groups"].items()} == {"entire": 0.5, "interleave": 1.0,
                                                                     "misleading": 0.0}
    assert res["judge"] == 3 and "judge needed" in res["judge_note"] and res["not_matching"] == 1


# --- MVBench ---------------------------------------------------------------------------------------------------

def test_mvbench_items_bounds_frames_and_prompts(folders):
    recs = load(folders, "mvbench", "official")
    seq = recs[0]
    assert (seq.type, seq.answer, seq.options) == ("action_sequence", "A", ("Moved right.", "Moved left.",
                                                                           "Stayed still."))
    assert (seq.start, seq.end) == (0.0, 0.75)  # official honours the bounds of bound tasks
    assert seq.prefix == "Best option:(" and seq.system.startswith("Carefully watch the video")
    assert seq.prompt() == (seq.system + "\nQuestion: What did the shape do first?\nOptions:\n(A) Moved right.\n"
                            "(B) Moved left.\n(C) Stayed still.\nOnly give the best option.")
    shuffle = next(r for r in recs if r.type == "object_shuffle")
    assert shuffle.start is None and shuffle.video == "video/perception/videos/video_7.mp4"
    frames = next(r for r in recs if r.type == "episodic_reasoning")
    assert frames.frame_rate == 3.0 and frames.video == "video/tvqa/frames_fps3_hq/s01e02_seg01_clip_00"
    pose = next(r for r in recs if r.type == "fine_grained_pose")
    assert "not among the candidates" in pose.error
    assert load(folders, "mvbench", "official", bounds=False)[0].start is None
    lmms = load(folders, "mvbench", "lmms-eval")[0]
    assert lmms.prompt() == ("Question:What did the shape do first?\nOption:\n(A) Moved right.\n(B) Moved left.\n"
                             "(C) Stayed still.\nOnly give the best option.\n")
    assert lmms.start is None and lmms.system is None and lmms.prefix is None
    authors = load(folders, "mvbench", "authors")
    assert authors[0].prompt() == ("Question: What did the shape do first?\nOptions:\n(A) Moved right.\n"
                                   "(B) Moved left.\n(C) Stayed still.\nOnly give the best option.")
    assert authors[0].start is None and "fine_grained_pose" not in {r.type for r in authors}  # 19 tasks
    assert authors[0].system == "You are a helpful assistant." and authors[0].prefix is None  # qwen_1_5's system


def test_mvbench_parsers(folders):
    last = load(folders, "mvbench", "official")[1]  # gold B ("Moved right." is the second candidate)
    assert last.answer == "B"
    replies = [YES, NO, THINK_B, EMPTY, TWELVE, "B) Moved right.", "(B) Moved right."]
    # videochat2: "(" + reply; the empty reply becomes "(", a substring of "(b)": counted correct (their quirk)
    assert verdicts(last, "official", replies) == [(False, True), (False, True), (False, True), (True, True),
                                                   (False, True), (True, True), (True, True)]
    lmms = load(folders, "mvbench", "lmms-eval")[1]
    assert verdicts(lmms, "lmms-eval", replies) == [(False, True), (False, True), (True, True), (False, False),
                                                    (False, True), (True, True), (True, True)]
    authors = load(folders, "mvbench", "authors")[1]
    assert verdicts(authors, "authors", replies) == [(False, True), (False, True), (False, True), (False, True),
                                                     (False, True), (True, True), (True, True)]
    assert P.authors_letter(THINK_B) == "I" and P.lmms_mvbench_option("C. Stayed still.") == "C"


def test_mvbench_aggregation_is_the_mean_of_tasks_by_hand(folders):
    recs = [r for r in load(folders, "mvbench", "authors") if r.error is None]
    # action_sequence: A right, B wrong -> 1/2; object_shuffle (gold B) right -> 1/1; episodic (A, B): right, right
    replies = {"action_sequence": ["A", "A"], "object_shuffle": ["B"], "episodic_reasoning": ["A", "B"]}
    rows = []
    for task, preds in replies.items():
        rows += [row(r, p, "authors") for r, p in zip([r for r in recs if r.type == task], preds)]
    official = BM.aggregate("mvbench", rows, "official")
    assert official["score"] == pytest.approx((0.5 + 1 + 1) / 3)
    authors = BM.aggregate("mvbench", rows, "authors")
    assert authors["score"] == pytest.approx(4 / 5) and authors["mean_of_tasks"] == pytest.approx(2.5 / 3)


# --- Video-MME ------------------------------------------------------------------------------------------------

def test_videomme_prompts_parsers_and_denominators(folders):
    official = load(folders, "videomme", "official")
    second = official[1]
    assert (second.type, second.answer, second.video) == ("medium", "B", "data/bbbbbbbbbbb.mp4")
    instruction = ("Select the best answer to the following multiple-choice question based on the video. Respond "
                   "with only the letter (A, B, C, or D) of the correct option.")
    assert second.prompt() == (instruction + "\nWhich way does the square move?\nA. Up.\nB. Down.\nC. Left.\n"
                               "D. Right.\nThe best answer is:")
    assert load(folders, "videomme", "authors")[1].prompt() == (
        instruction + " \nWhich way does the square move?\nA. Up..\nB. Down..\nC. Left..\nD. Right..\n"
        "The best answer is:")
    assert load(folders, "videomme", "lmms-eval")[1].prompt() == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\nWhich way does the square move?\n"
        "A. Up.\nB. Down.\nC. Left.\nD. Right.\n\nAnswer with the option's letter from the given choices directly.")
    replies = [YES, NO, THINK_B, EMPTY, TWELVE, "Answer: B", "The best answer is B."]
    # official: unparsed replies leave the denominator; lmms-eval: counted wrong
    assert verdicts(second, "official", replies) == [(False, False), (False, False), (True, True), (False, False),
                                                     (False, False), (True, True), (True, True)]
    assert verdicts(second, "lmms-eval", replies) == [(False, True), (False, True), (True, True), (False, True),
                                                      (False, True), (False, True), (True, True)]  # "Answer:" kept
    # the authors: the first standalone letter, "I" in "I think (B)"
    assert verdicts(second, "authors", replies) == [(False, True), (False, True), (False, True), (False, True),
                                                    (False, True), (True, True), (True, True)]


# --- NExT-QA ----------------------------------------------------------------------------------------------------

def test_nextqa_prompts_and_parsers(folders):
    recs = load(folders, "nextqa", "official")
    first = recs[0]
    assert (first.answer, first.type, first.video) == ("C", "CW", "NExTVideo/0001/1000000001.mp4")
    assert recs[1].type == "TN" and recs[1].meta["qtype"] == "TP"  # TP joins TN, as the official script does
    assert first.prompt() == ("why does the circle move right\nA. to hide\nB. to fall\nC. to reach the edge\n"
                              "D. to turn\nE. to stop")
    authors = load(folders, "nextqa", "authors")[0]
    assert authors.prompt() == ("Question: why does the circle move right\nOptions:\n(A) to hide\n(B) to fall\n"
                                "(C) to reach the edge\n(D) to turn\n(E) to stop\n Only give the option.")
    replies = [YES, NO, THINK_B, EMPTY, TWELVE, "C", "(C) to reach the edge", "2"]
    assert [c for c, _ in verdicts(first, "official", replies)] == [False] * 5 + [True, True, False]
    # the authors compare with the integer gold: only "2" matches, a letter never does (their quirk)
    assert [c for c, _ in verdicts(authors, "authors", replies)] == [False] * 7 + [True]
    # lmms-eval draws a random letter for an unparsed reply: seeded by the item, the same on every re-score
    lm = load(folders, "nextqa", "lmms-eval", split="val")[0]
    r = row(lm, TWELVE, "lmms-eval")
    assert r["parsed"] == P.seeded_choice("ABCDE", r["key"]) == row(lm, TWELVE, "lmms-eval")["parsed"]
    assert P.mmmu_letter("it is done to reach the edge of the frame", list(first.options), None) == "C"


# --- LongVideoBench -------------------------------------------------------------------------------------------

def test_longvideobench_prompts_and_parsers(folders):
    recs = load(folders, "longvideobench", "official")
    second = recs[1]
    assert (second.answer, second.type, second.video) == ("B", "600", "videos/v1.mp4")
    assert second.prompt() == ("Question: Where does the square go?\nA. Up\nB. Down\nC. Left\nD. Right\nE. Nowhere\n"
                               "Answer with the option's letter from the given choices directly.")
    assert load(folders, "longvideobench", "lmms-eval")[1].prompt() == (
        "Where does the square go?\nA. Up\nB. Down\nC. Left\nD. Right\nE. Nowhere\n"
        "Answer with the option's letter from the given choices directly.\n")
    first_authors = load(folders, "longvideobench", "authors")[0]
    assert first_authors.prompt().endswith("\nWhat shape is shown?\n(A) A circle.\n(B) A square.\n(C) A star.\n"
                                           "(D) A line.\n(E) N/A.\nThe best answer is:")
    assert [c for c, _ in verdicts(second, "official", [THINK_B, "The best answer is B", "Down"])] == \
        [True, True, row(second, "Down", "official")["parsed"] == "B"]
    authors = load(folders, "longvideobench", "authors")[1]
    assert [c for c, _ in verdicts(authors, "authors", ["B", "1", THINK_B])] == [False, True, False]


# --- MLVU --------------------------------------------------------------------------------------------------------

def test_mlvu_prompts_duplicates_and_parsers(folders):
    official = load(folders, "mlvu", "official")
    ego = official[0]
    assert (ego.type, ego.answer, ego.video) == ("ego", "B", "MLVU/video/3_ego/ego_1.mp4")
    assert ego.system.startswith("Carefully watch this video") and ego.prefix == "Best Option: ("
    # the options run into the instruction without a newline: the official script's string
    assert ego.prompt() == ("Question: Which way did the square go?\nOptions:\n(A) up\n(B) down"
                            "Only give the best option.")
    count = official[1]
    assert count.answer == "D"  # "1" is candidate A and D: the official script keeps the last match
    assert load(folders, "mlvu", "authors")[1].answer == "A"  # the authors the first
    assert "not among the candidates" in official[2].error
    summary = official[3]
    assert summary.judge and summary.type == "summary"
    assert load(folders, "mlvu", "lmms-eval")[0].prompt() == (
        "Question: Which way did the square go?\nOptions:\n(A) up\n(B) down\nOnly give the best option.\n"
        "Best option: (")
    replies = [YES, NO, THINK_B, EMPTY, TWELVE, "B", "B) down", "B.", " B "]
    assert [c for c, _ in verdicts(ego, "official", replies)] == [False, False, True, False, False, True, True,
                                                                  False, False]
    lmms = load(folders, "mlvu", "lmms-eval")[0]
    assert [c for c, _ in verdicts(lmms, "lmms-eval", replies)][-1] is True  # lmms-eval strips the reply
    # re-scoring a run read under the authors' protocol with the official parser takes the official gold (last)
    r = row(load(folders, "mlvu", "authors")[1], "D) 1", "authors")
    assert not r["correct"] and BM.score(r, "official")["correct"]


def test_mlvu_m_avg_by_hand_and_judge_tasks(folders):
    recs = load(folders, "mlvu", "official")
    rows = [row(recs[0], "B", "official"), row(recs[1], "A)", "official"), row(recs[2], "", "official"),
            row(recs[3], "A triangle.", "official")]
    res = BM.aggregate("mlvu", rows, "official")
    assert res["groups"]["ego"]["accuracy"] == 1.0 and res["groups"]["count"]["accuracy"] == 0.0
    assert res["score"] == pytest.approx(0.5) and res["failed"] == 1 and res["judge"] == 1


# --- VideoComp ---------------------------------------------------------------------------------------------------

def test_videocomp(folders):
    recs = load(folders, "videocomp", "authors")
    assert [(r.type, r.answer, r.video) for r in recs] == [("ActivityNet", "A", "activitynet_video/v_abc.mp4"),
                                                           ("YouCook2", "B", "raw_videos/video/xyz.mkv")]
    assert recs[0].prompt() == recs[0].question
    assert [c for c, _ in verdicts(recs[1], "authors", ["B", THINK_B, "b) down", EMPTY])] == [True, False, True,
                                                                                            False]


def test_vcgbench_is_run_and_kept_but_not_scored(folders):
    recs = load(folders, "vcgbench", "official")
    assert [(r.type, r.prompt()) for r in recs] == [
        ("Generic", "What happens in the video?"), ("Temporal", "What happens after the circle starts moving?"),
        ("Consistency", "Which way does it go?")]
    assert all(r.judge for r in recs) and recs[-1].video == "Test_Videos/v_con.mkv"
    authors = load(folders, "vcgbench", "authors")
    assert [r.prompt() for r in authors if r.type == "Consistency"] == ["Which way does it go?"]  # q2 when q1 "None"
    res = BM.aggregate("vcgbench", [row(r, "A circle moves.", "official") for r in recs], "official")
    assert res["score"] is None and res["judge"] == 3 and res["judge_note"] == "not scored (judge needed)"


# --- PDR and the report ---------------------------------------------------------------------------------------------

def test_pdr_by_hand(folders):
    mv = [r for r in load(folders, "mvbench", "authors") if r.error is None]
    mme = load(folders, "videomme", "authors")
    eh = [r for r in load(folders, "eventhallusion", "authors") if not r.judge]
    rows = []
    # ratio 0: MVBench 4/5 pooled, Video-MME 2/3, EventHallusion 4/4; ratio 0.9: 2/5, 1/3, 3/4
    for ratio, pruner, mv_right, mme_right, eh_right in ((0.0, "none", 4, 2, 4), (0.9, "holitom", 2, 1, 3)):
        for i, r in enumerate(mv):
            rows.append(row(r, r.answer if i < mv_right else "Z", "authors", ratio, pruner, True))
        for i, r in enumerate(mme):
            rows.append(row(r, r.answer if i < mme_right else "Z", "authors", ratio, pruner, True))
        for i, r in enumerate(eh):
            rows.append(row(r, r.answer if i < eh_right else "maybe", "authors", ratio, pruner, True))
    rep = report(rows)
    pruned = next(t for t in rep["settings"] if t["ratio"] == 0.9)
    assert pruned["pdr"]["mvbench"] == pytest.approx((0.8 - 0.4) / 0.8)
    assert pruned["pdr"]["videomme"] == pytest.approx((2 / 3 - 1 / 3) / (2 / 3))
    assert pruned["pdr"]["eventhallusion"] == pytest.approx(0.25)
    assert pruned["pdr_groups"] == pytest.approx({"mcqa": (0.5 + 0.5) / 2, "fine-grained": 0.25})
    assert rep["protocol"] == "authors" and rep["has_unpruned"]


def test_folder_level_errors(tmp_path, folders):
    with pytest.raises(UsageError, match="no MVBench task files"):
        BM.load("mvbench", tmp_path, "official")
    with pytest.raises(UsageError, match="NExT-QA split file missing"):
        BM.load("nextqa", folders["nextqa"], "official", split="test")
    with pytest.raises(UsageError, match="MVBench task file missing"):
        BM.load("mvbench", folders["mvbench"], "official", split="action_sequence,state_change")
    with pytest.raises(UsageError, match="unknown benchmark"):
        BM.get("nope")
    assert BM.detect(tmp_path) is None
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "action_count.json").write_text("[]")
    (tmp_path / "lvb_val.json").write_text("[]")
    with pytest.raises(UsageError, match="several benchmarks"):
        BM.detect(tmp_path)
    (tmp_path / "json" / "action_count.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot read MVBench task"):
        BM.load("mvbench", tmp_path, "official")


def test_result_lines_keep_what_rescoring_needs(folders):
    r = row(load(folders, "mvbench", "official")[1], "(B) Moved right.", "official")
    json.dumps(r)  # a result line is plain JSON
    assert r["prompt"].startswith("Carefully watch") and r["answer_prefix"] == "Best option:(" and r["system"]
    assert r["clip"] == {"start": 0.25, "end": 1.0, "frame_rate": None}
    # official: "(" + "(B) ..." -> "((b)" contains "(b)"; re-scored with the authors' parser: "B"
    assert r["correct"] and BM.score(r, "authors")["correct"] and not BM.score(dict(r, prediction="C"),
                                                                                 "lmms-eval")["correct"]


def test_videomme_as_the_authors_script_lays_it_out(tmp_path):
    from benchmark_layouts import videomme

    root = videomme(tmp_path / "Video_MME", videos=False)
    (root / "videomme" / "test-00000-of-00001.parquet").rename(root / "test-00000-of-00001.parquet")
    (root / "videomme").rmdir()
    (root / "video").mkdir()
    (root / "video" / "bbbbbbbbbbb.mp4").write_bytes(b"")
    assert BM.detect(root) == "videomme"
    recs = BM.load("videomme", root, "authors")
    assert recs[1].video == "video/bbbbbbbbbbb.mp4" and recs[0].video == "data/aaaaaaaaaaa.mp4"  # missing: reported
    (root / "test-00000-of-00001.parquet").write_text("not parquet")
    assert BM.detect(root) is None


def test_longvideobench_from_the_hubs_parquet_copy(tmp_path, folders):
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = json.loads((folders["longvideobench"] / "lvb_val.json").read_text())
    for it in items:  # the hub's table: candidates as option0..4, padded with "N/A"
        for i in range(5):
            it[f"option{i}"] = (it["candidates"] + ["N/A"] * 5)[i]
        del it["candidates"]
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "validation-00000-of-00001.parquet")
    assert BM.detect(tmp_path) == "longvideobench"
    from_table = BM.load("longvideobench", tmp_path, "authors")
    from_json = BM.load("longvideobench", folders["longvideobench"], "authors")
    assert [(r.prompt(), r.answer, r.options, r.type) for r in from_table] == \
        [(r.prompt(), r.answer, r.options, r.type) for r in from_json]
    with pytest.raises(UsageError, match="split file missing"):
        BM.load("longvideobench", tmp_path, "official", split="test")
