"""Which program template the explain stage picks from circuit.json: the hypothesis search's result when it is
there, else the hand-written scrubbing hypotheses; a family with no template, or nothing supported, is named
with its reason rather than failing."""

from __future__ import annotations

from palindrome_lens.explanation.family import PAIR_COMPARISON, choose_family, family


def hypothesis(name: str, keep: dict, verdict: str = "supported", after_layer: int = 0) -> dict:
    return {"name": name, "after_layer": after_layer, "keep": keep, "verdict": verdict}


def test_supported_pair_flags_is_the_pair_comparison_family() -> None:
    circuit = {"scrubbing": [hypothesis("pair_flags", {"chars": "pair_match"}),
                             hypothesis("pair_characters", {"chars": "pair_chars"}, "fails")]}
    choice = choose_family(circuit)
    assert (choice.name, choice.source, choice.hypothesis, choice.after_layer) == (
        PAIR_COMPARISON, "scrubbing", "pair_flags", 0)
    assert choice.has_template and family(circuit) == PAIR_COMPARISON


def test_a_failing_hypothesis_gives_no_family_and_says_why() -> None:
    choice = choose_family({"scrubbing": [hypothesis("pair_flags", {"chars": "pair_match"}, "fails")]})
    assert choice.name is None and not choice.has_template
    assert "no scrubbing hypothesis is supported" in choice.reason


def test_the_discovered_hypothesis_wins_over_the_hand_written_ones() -> None:
    circuit = {
        "scrubbing": [hypothesis("pair_flags", {"chars": "pair_match"})],
        "discovered": {"boundaries": [
            {"after_layer": 0, "keep": {"bos": "none", "chars": "n_mismatches", "eos": "none"}, "verdict": "supported"},
        ]},
    }
    choice = choose_family(circuit)
    assert choice.source == "discovered" and choice.name == "string_level" and choice.has_template
    assert choice.reason == ""


def test_causal_visible_features_and_halves_are_pair_comparison() -> None:
    circuit = {"discovered": {"boundaries": [
        {"after_layer": 1, "keep": {"first_half": "none", "second_half": "visible_pair_diff"}, "verdict": "supported"},
    ]}}
    choice = choose_family(circuit)
    assert choice.name == PAIR_COMPARISON and choice.after_layer == 1


def test_a_joined_feature_counts_by_its_parts() -> None:
    """3 layers x 4 heads: after layer 0 each character keeps its pair's characters and the label, after layer 1
    the label: the pair's characters are what layer 1 compares, so the pair-comparison template comes first."""
    circuit = {"discovered": {"boundaries": [
        {"name": "discovered_after_layer_0", "after_layer": 0, "keep": {"bos": "none", "chars": "label+pair_chars"},
         "verdict": "supported"},
        {"name": "discovered_after_layer_1", "after_layer": 1, "keep": {"bos": "label", "chars": "label"},
         "verdict": "supported"},
    ]}}
    choice = choose_family(circuit)
    assert (choice.name, choice.after_layer, choice.hypothesis) == (PAIR_COMPARISON, 0, "discovered_after_layer_0")
    assert not choice.forced
    only_counts = {"discovered": {"boundaries": [
        {"after_layer": 0, "keep": {"chars": "label+n_mismatches"}, "verdict": "supported"}]}}
    assert choose_family(only_counts).name == "string_level"


def test_a_template_family_is_preferred_among_several_supported() -> None:
    circuit = {"scrubbing": [hypothesis("labels", {"chars": "label"}), hypothesis("pairs", {"chars": "pair_chars"})]}
    assert choose_family(circuit).hypothesis == "pairs"


def test_nothing_at_the_characters_is_no_family() -> None:
    choice = choose_family({"scrubbing": [hypothesis("bos_only", {"bos": "all"})]})
    assert choice.name is None and "keep no feature at the character positions" in choice.reason
    assert choose_family({}).source == "none"


def test_a_template_asked_for_is_compiled_on_its_failing_hypothesis_and_marked_forced() -> None:
    circuit = {"scrubbing": [hypothesis("labels", {"chars": "label"}, "fails"),
                             hypothesis("flags", {"second_half": "pair_match"}, "fails", after_layer=1)]}
    assert choose_family(circuit).name is None
    choice = choose_family(circuit, "pair_comparison")
    assert (choice.name, choice.hypothesis, choice.after_layer, choice.verdict, choice.forced) == (
        PAIR_COMPARISON, "flags", 1, "fails", True)
    supported = {"scrubbing": [hypothesis("pair_flags", {"chars": "pair_match"})]}
    assert not choose_family(supported, "pair_comparison").forced  # supported anyway: nothing forced
    assert choose_family({}, "pair_comparison").after_layer == 0
