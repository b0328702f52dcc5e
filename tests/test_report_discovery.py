"""The discovered-algorithm page: each layer's hypothesis with what it carries in words and its bits, the figures
its verdict reads, and every hypothesis the search tried, drawn and tabled with the numbers of circuit.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from palindrome_lens.errors import DataFileError
from palindrome_lens.report.inputs import ReportInputs, load_inputs
from palindrome_lens.report.pages.discovery import discovery_page
from tests.report_outputs import DISCOVERED, figure, section, write_all


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> ReportInputs:
    return load_inputs(write_all(tmp_path_factory.mktemp("synthetic")))


def test_each_layer_shows_its_hypothesis_in_words_with_its_bits(synthetic: ReportInputs) -> None:
    p = discovery_page(synthetic.attribution)
    for layer, keep in DISCOVERED.items():
        table = section(p, f"After layer {layer}: the hypothesis").content.df.set_index("position group")
        assert table["feature"].to_dict() == keep
        assert table.loc["eos", "what it carries"] == "nothing the output needs"
    first = section(p, "After layer 0: the hypothesis").content.df.set_index("position group")
    assert first.loc["chars", "what it carries"] == ("whether its mirrored pair matches and, if not, which two "
                                                     "characters differ")
    assert first.loc["chars", "bits (mean entropy per position)"] == 3.48
    assert section(p, "After layer 0: the hypothesis").anchor == "after-layer-0"


def test_the_figures_are_the_results_and_the_path_is_every_step(synthetic: ReportInputs) -> None:
    p = discovery_page(synthetic.attribution)
    boundary = synthetic.attribution.circuit["discovered"]["boundaries"][0]
    figures = section(p, "After layer 0: its figures").content.df.set_index("quantity")["value"]
    assert figures["loss recovered (random scrub 0%, model 100%)"] == "99.8%"
    assert figures["loss recovered (constant predictor 0%, model 100%)"] == "98.7%"
    assert figures["balanced accuracy recovered"] == "99.5%"  # not the loss figure beside it (99.8%)
    assert figures["each pair scrubbed alone: loss recovered"] == "97.3%"  # the weakest pair, pair 1
    assert figures["each pair scrubbed alone: balanced accuracy recovered"] == "95.3%"
    assert figures["each pair scrubbed alone: the weakest pair"] == "pair 1"
    assert figures["each pair scrubbed alone: loss recovered, pooled over the pairs"] == "98.5%"
    assert figures["control scrub (strings that disagree)"] == "-7.1%"
    assert figures["verdict"] == "supported"
    (download,) = section(p, "After layer 0: every hypothesis tried").data  # the figure's CSV: every scrub's figures
    path = download.frame
    assert path["feature"].tolist() == [s["feature"] for s in boundary["path"]] == ["label", "pair_match", "pair_diff"]
    assert path["kept"].tolist() == ["", "", "yes"] and path["scrub"].tolist() == ["screen", "screen", "full"]
    assert path["from a constant"].tolist() == ["84.0%", "80.7%", "98.7%"]  # the full scrub's figure when there is one
    assert path["loss recovered"].tolist() == ["97.6%", "97.1%", "99.8%"]
    assert path["accuracy recovered"].tolist() == ["97.1%", "96.6%", "99.5%"]
    assert path["each pair alone"].tolist() == ["84.2%", "98.6%", "99.9%"]
    drawn = figure(p, "After layer 0: every hypothesis tried")
    (chars,) = drawn.data
    assert list(chars.x) == [0.77, 0.9, 3.48] and list(chars.y) == pytest.approx([0.84, 0.807, 0.987])
    assert list(chars.marker.symbol) == ["circle", "circle", "star"]  # all three inside the axis
    words = section(p, "In words").content.text
    shown = [s for s in synthetic.attribution.circuit["sentences"]
             if s.startswith(("After layer", "Where the comparison is made"))]
    assert len(shown) == 2 and all(s in words for s in shown)
    assert "The decision is carried by" not in words  # the circuit's sentences live on the circuit page


def test_a_circuit_json_without_the_search_is_a_clear_error(tmp_path: Path) -> None:
    src = write_all(tmp_path)
    path = src.attribution / "circuit.json"
    data = json.loads(path.read_text())
    del data["discovered"]["boundaries"][0]["path"][1]["screen"]["recovered_constant"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataFileError, match=r"discovered\.boundaries\[0\]\).*'path\[1\]\.screen\.recovered_constant'"):
        load_inputs(src)


def test_a_step_far_below_the_band_sits_on_the_axis_edge(synthetic: ReportInputs) -> None:
    from palindrome_lens.report.pages.discovery import Y_FLOOR, path_figure

    boundary = json.loads(json.dumps(synthetic.attribution.circuit["discovered"]["boundaries"][0]))
    boundary["path"][0]["screen"].update(recovered_constant=-5.6, accuracy_recovered=0.0, local_recovered=0.0)
    (chars,) = path_figure(boundary, 0.9).fig.data
    assert chars.y[0] == Y_FLOOR and chars.marker.symbol[0] == "triangle-down"
    assert "-560.0%" in chars.hovertext[0]
