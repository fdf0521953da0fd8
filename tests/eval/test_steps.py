"""The quality-against-steps sweep on the committed default model (two prompts, two settings)."""

from star.eval.steps import format_page, network_calls, sweep


def test_network_calls_count_heun_twice_but_its_last_step_once():
    assert network_calls("euler", 8) == 8
    assert network_calls("heun", 4) == 7
    assert network_calls("heun", 1) == 1


def test_sweep_scores_each_setting_on_the_same_prompts(tmp_path, spoken_prompts):
    out = sweep(spoken_prompts, tmp_path / "runs", [("euler", 1, 1.0), ("heun", 2, 3.0)], limit=2)
    assert [(r["method"], r["steps"], r["shift"], r["calls"]) for r in out] == [("euler", 1, 1.0, 1),
                                                                               ("heun", 2, 3.0, 3)]
    for r in out:
        assert r["n"] == 2 and 0.0 <= r["event_accuracy"] <= 1.0 and r["generator_median_s"] > 0
    assert len(list((tmp_path / "runs" / "heun_2_shift3" / "e2e").glob("*.wav"))) == 2
    page = format_page(out, "python -m star.eval.steps ...", (1.0, 1.0))
    assert page.count("\n| euler | 1 | 1 |") == 1 and page.count("\n| heun | 2 | 3 |") == 1
