"""The protocol engine: the shipped protocol, and every validation error naming its place."""

import textwrap

import pytest

from diary.protocol import ProtocolError, load_protocol, parse_protocol, shipped_protocol_path

SHIPPED = shipped_protocol_path("ketamine-fatigue-crossover")

MINIMAL = textwrap.dedent("""\
    id: mini
    version: 1
    periods: 2
    treatments: {A: {sealed_name: drug a}, B: {sealed_name: drug b}}
    sequences: {AB: [A, B], BA: [B, A]}
    min_days_between_doses: 14
    timepoints:
      - {code: BL, target: -60m, window: {open: -24h, close: 0m}, setting: clinic, instruments: [vas]}
      - {code: D1, target: 24h, window: {open: 20h, close: 28h}, instruments: [vas]}
    instruments:
      vas:
        items:
          - {id: fatigue, type: vas, text: Tired, min_label: None at all, max_label: Worst}
    """)


def problems_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ProtocolError) as caught:
        parse_protocol(text, source="study.yaml")
    return caught.value.problems


def test_shipped_protocol_matches_the_trial():
    """The default protocol has the trial's ten time points, instruments and design."""
    protocol = load_protocol(SHIPPED)
    assert protocol.id == "ketamine-fatigue-crossover"
    assert protocol.periods == 2
    assert protocol.sequences == {"AB": ("A", "B"), "BA": ("B", "A")}
    assert [tp.code for tp in protocol.timepoints] == [
        "BL",
        "M40",
        "M80",
        "M120",
        "M230",
        "D1",
        "D2",
        "D3",
        "D7",
        "D14",
    ]
    assert set(protocol.instruments) == {"fatigue_vas", "energy_nrs", "side_effects", "blinding_guess"}
    by_code = {tp.code: tp for tp in protocol.timepoints}
    assert all("fatigue_vas" in tp.instruments for tp in protocol.timepoints)
    assert [c for c, tp in by_code.items() if "energy_nrs" in tp.instruments] == ["D1", "D2", "D3", "D7", "D14"]
    assert [c for c, tp in by_code.items() if "side_effects" in tp.instruments] == [
        "M40",
        "M80",
        "M120",
        "M230",
        "D1",
        "D2",
        "D3",
        "D7",
    ]
    assert [c for c, tp in by_code.items() if "blinding_guess" in tp.instruments] == ["D1"]
    assert by_code["D2"].optional and not by_code["D3"].optional
    checklist = protocol.instruments["side_effects"].items[0]
    assert len(checklist.terms) == 10 and checklist.terms[0].code == "headache"
    vas = protocol.instruments["fatigue_vas"].items[0]
    assert (vas.min_label, vas.max_label) == ("No fatigue", "Worst fatigue imaginable")


def test_minimal_protocol_loads():
    """The fixture used below is itself valid, so each error case changes one thing."""
    assert parse_protocol(MINIMAL).timepoints[1].code == "D1"


@pytest.mark.parametrize(
    "change, path, message",
    [
        (("close: 28h", "close: 10h"), "timepoints[1] (D1).window", "closes (10h) before it opens (20h)"),
        (
            ("close: 28h}, instruments: [vas]", "close: 28h}, instruments: [bfi]"),
            "timepoints[1] (D1).instruments",
            "unknown instrument 'bfi'",
        ),
        (("code: D1", "code: BL"), "timepoints[1] (BL).code", "duplicate time point code 'BL'"),
        (("close: 28h", "close: 15d"), "timepoints[1] (D1).window.close", "overlaps the next dose"),
        (("type: vas", "type: slider"), "instruments.vas.items[0].type", "unknown item type 'slider'"),
        (("min_label: None at all, ", ""), "instruments.vas.items[0].min_label", "needs its end anchors"),
        (("BA: [B, A]", "BA: [B]"), "sequences.BA", "has 1 treatments but the protocol has 2 periods"),
        (("BA: [B, A]", "BA: [B, C]"), "sequences.BA[1]", "unknown treatment 'C'"),
        (("target: 24h", "target: soon"), "timepoints[1] (D1).target", "'soon' is not an offset"),
        (("target: 24h", "target: 30h"), "timepoints[1] (D1).target", "lies outside its window"),
        (("periods: 2", "periods: two"), "periods", "must be a whole number"),
        (("{A: {sealed_name: drug a}", "{A: {}"), "treatments.A", "needs a sealed_name"),
    ],
)
def test_each_error_names_its_place(change, path, message):
    """A broken protocol is refused with the file, the path inside it and what is wrong."""
    old, new = change
    assert old in MINIMAL
    problems = problems_of(MINIMAL.replace(old, new, 1))
    assert any(p == path and message in m for p, m in problems), problems


def test_error_text_names_the_file(tmp_path):
    """The message a study team reads starts with the file it must fix."""
    broken = tmp_path / "study.yaml"
    broken.write_text(MINIMAL.replace("close: 28h", "close: 10h"))
    with pytest.raises(ProtocolError) as caught:
        load_protocol(broken)
    assert str(caught.value).startswith(f"{broken}: timepoints[1] (D1).window: closes")


def test_free_text_needs_a_length_limit():
    """Free text without a limit would let one answer fill the database."""
    text = MINIMAL.replace(
        "- {id: fatigue, type: vas, text: Tired, min_label: None at all, max_label: Worst}",
        "- {id: fatigue, type: vas, text: Tired, min_label: None at all, max_label: Worst}\n"
        "      - {id: note, type: free_text}",
    )
    assert ("instruments.vas.items[1].max_length", "free text needs a max_length of at least 1") in problems_of(text)


def test_all_problems_reported_at_once():
    """Several mistakes come back together, so the team fixes them in one round."""
    text = MINIMAL.replace("close: 28h", "close: 10h").replace("type: vas", "type: slider")
    assert len(problems_of(text)) >= 2


def test_invalid_yaml_names_the_line():
    problems = problems_of("id: x\nperiods: [1,\n")
    assert problems[0][0].startswith("line ") and "not valid YAML" in problems[0][1]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ProtocolError, match="cannot be read"):
        load_protocol(tmp_path / "absent.yaml")


def test_quiet_hours_must_be_clock_times():
    text = MINIMAL + "reminders: {quiet_hours: {start: '25:00', end: '07:00'}}\n"
    assert ("reminders.quiet_hours.start", "'25:00' is not a time like 22:00") in problems_of(text)
