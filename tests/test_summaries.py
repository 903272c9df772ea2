"""Per-seed summaries, defined once: windows by each seed's steps, first reach of a threshold, area."""

import numpy as np
import pandas as pd
import pytest

from acpg_lab import summaries


def _history():
    """Seed 0: 10 updates of 100 steps, returns 0..9 (update 3 without a finished episode); seed 1: 5 updates."""
    h0 = pd.DataFrame(dict(seed=0, update=np.arange(10), step=100 * np.arange(1, 11),
                           episode_return=[0.0, 1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]))
    h1 = pd.DataFrame(dict(seed=1, update=np.arange(5), step=100 * np.arange(1, 6), episode_return=10.0))
    return pd.concat([h0, h1], ignore_index=True)


def test_windows_are_relative_to_each_seeds_last_step():
    h = _history()
    final = summaries.final_window(h, 0.2)
    assert final[final.seed == 0]["update"].tolist() == [8, 9] and final[final.seed == 1]["update"].tolist() == [4]
    before = summaries.window(h, 0.6, 0.8)
    assert before[before.seed == 0]["update"].tolist() == [6, 7]
    with pytest.raises(ValueError, match="final_fraction must lie in"):
        summaries.final_window(h, 0.0)
    with pytest.raises(ValueError, match="start < end"):
        summaries.window(h, 0.5, 0.5)


def test_first_reach_area_and_learning_summary():
    h = _history()
    reach = summaries.first_reach(h, 5.0, smoothing=3)  # seed 0: 3-row means 1, 2.33, 3.67, 5 (at update 6)
    assert reach.loc[0, "step"] == 700 and reach.loc[0, "update"] == 7 and reach.loc[0, "best"] == 8.0
    assert reach.loc[1, "step"] == 300
    assert np.isnan(summaries.first_reach(h, 100.0, smoothing=3).loc[0, "step"])
    assert summaries.steps_to_threshold(h, 5.0, window=3).to_dict() == {0: 700.0, 1: 300.0}
    assert summaries.area(h).to_dict() == {0: 42.0 / 9, 1: 10.0}
    table = summaries.learning_summary(h, final_fraction=0.2)
    assert table.loc[0, "final_return"] == 8.5 and table.loc[1, "mean_return"] == 10.0
