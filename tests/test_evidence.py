"""The evidence pipeline: cached atomic pieces, compact histories, tables recomputed from what is stored."""

import contextlib
import re

import numpy as np
import pandas as pd
import pytest

from acpg_lab import evidence
from acpg_lab.evidence import Condition, collapse, conditions, heads, pfo, pieces, render
from acpg_lab.evidence import report as report_module
from acpg_lab.profiles import repository_root

TINY = dict(algo="ppo", label_source="optimal", diagnostics_every=2, diagnostics_null=True, total_steps=2048)


@pytest.fixture
def tiny_collapse(monkeypatch, tmp_path):
    conditions = {name: Condition(dict(TINY, env_id=env_id), seeds=(0, 1, 2), group=2)
                  for name, env_id in (("onehot/balanced", "acpg_lab/ActionBandit-v0"),
                                       ("onehot/imbalanced", "acpg_lab/ActionBandit-imbalanced-v0"))}
    monkeypatch.setitem(evidence.EXPERIMENTS, "collapse", conditions)
    evidence.run_experiment("collapse", root=tmp_path)
    return tmp_path


def test_pieces_are_stored_once_and_load_back(tiny_collapse, capsys):
    root = tiny_collapse
    pieces = sorted(p.name for p in (root / "collapse" / "onehot" / "balanced").iterdir())
    assert pieces == ["seeds_0-1", "seeds_2-2"]
    stamp = (root / "collapse/onehot/balanced/seeds_0-1/history.parquet").stat().st_mtime_ns
    evidence.run_experiment("collapse", root=root, only=["balanced"])
    assert "stored" in capsys.readouterr().out
    assert (root / "collapse/onehot/balanced/seeds_0-1/history.parquet").stat().st_mtime_ns == stamp
    history, evaluation = evidence.load_condition("collapse", "onehot/balanced", root=root)
    assert sorted(history.seed.unique()) == [0, 1, 2] and list(evaluation.index) == [0, 1, 2]
    assert {"greedy", "sampled"} <= set(evaluation.columns)
    assert history["nc1"].dtype == np.float32 and "null_nc1" in history
    assert not list(root.rglob(".*tmp*"))  # no temporary files left behind
    with pytest.raises(FileNotFoundError, match="run collapse"):
        evidence.load_condition("collapse", "onehot/zipf", root=root)


def test_bad_requests_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown experiment"):
        evidence.run_experiment("nope", root=tmp_path)
    with pytest.raises(ValueError, match="matches no condition"):
        evidence.run_experiment("collapse", root=tmp_path, only=["nothing-like-this"])
    assert not list(tmp_path.iterdir())


def test_long_histories_are_averaged_in_blocks():
    updates = np.arange(2500)
    h = pd.DataFrame(dict(seed=np.repeat([3, 5], 2500), update=np.tile(updates, 2), step=np.tile(updates * 40 + 40, 2),
                          episodes=1, episode_return=np.tile(updates.astype(float), 2),
                          nc1=np.tile(np.where(updates % 25 == 0, 1.0, np.nan), 2)))
    c = pieces._compact(h)
    assert len(c) == 2 * 834 and c.episodes.sum() == 5000 and c.step.max() == 2500 * 40
    first = c.iloc[0]
    assert (first["update"], first["episode_return"], first["episodes"]) == (2, 1.0, 3)
    assert c["episode_return"].dtype == np.float32


def test_collapse_tables_are_paired_contrasts_with_holm_and_verdicts(tiny_collapse):
    tables = collapse.collapse_tables(tiny_collapse)
    vs_null = tables["collapse_vs_null"]
    assert len(vs_null) == 2 * len(collapse.COLLAPSE_METRICS)
    assert (vs_null.p_holm >= vs_null.p).all() and (vs_null.df == 2).all()  # 3 seeds, paired
    assert set(vs_null.verdict) <= {"reproduced", "contradicted", "not reproduced", "inconclusive (power)"}
    between = tables["collapse_between"]
    assert list(between.index.get_level_values(0).unique()) == ["onehot/imbalanced"]


def test_report_writes_then_checks_tables(tiny_collapse, monkeypatch):
    monkeypatch.setattr(report_module, "BUILDERS", tuple(b for b in report_module.BUILDERS if b.family != "heads"))
    assert report_module.report(root=tiny_collapse) == 0
    assert report_module.report(root=tiny_collapse, check=True) == 0
    cpu = pd.read_csv(tiny_collapse / "tables" / "evidence_cpu.csv", index_col=["experiment", "group"])
    assert cpu.loc[("collapse", "onehot"), "pieces"] == 4 and cpu.loc[("collapse", "onehot"), "seed_runs"] == 6
    assert cpu.train_seconds.gt(0).all()
    path = tiny_collapse / "tables" / "collapse_vs_null.csv"
    table = pd.read_csv(path)
    table.loc[0, "difference"] += 1e-3
    table.to_csv(path, index=False)
    assert report_module.report(root=tiny_collapse, check=True) == 1


def test_placeholders_render_named_cells_with_their_precision():
    tables = {"t": pd.DataFrame(dict(a=[0.01234, -1.5, 3e-5], v=["reproduced", "contradicted", "x"]),
                                index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2), ("y", 3)], names=["k", "j"])),
              "d": pd.DataFrame(dict(m=["greedy", "sampled"], a=[1.0, 2.0]), index=pd.Index(["e", "e"], name="arm"))}
    text = ("{{t[x; 1].a:.4f}} and {{t[y; 2].a:+.2f}} (p {{t[y; 3].a:p.4f}}; {{t[y; 2].a:a.1f}}), "
            "**{{t[x; 1].v}}**, {{d[e; @m=sampled].a:.1f}}, {{max:t[y].a:.1f}} of {{count:t[].a:.0f}}")
    assert render.render(text, tables, trace=False) == ("0.0123 and −1.50 (p < 1e-4; -1.5), **reproduced**, 2.0, "
                                                        "0.0 of 3")
    assert render.render("{{t[x; 1].a:.4f}}", tables) == "0.0123<!--t[x; 1].a-->"
    for bad in ("{{t[z; 1].a:.1f}}", "{{t[x; 1].b:.1f}}", "{{u[x; 1].a:.1f}}", "{{d[e].a:.1f}}"):
        with pytest.raises(KeyError):
            render.render(bad, tables)


def _stored_tables() -> dict[str, pd.DataFrame]:
    tables = {}
    for name in report_module.TABLE_INDEX:
        with contextlib.suppress(FileNotFoundError):
            tables[name] = report_module.stored_table(name)
    return tables


def _nudged(value, spec: str | None):
    """A value that prints differently under ``spec`` (two units of its last printed digit; a verdict renamed)."""
    if isinstance(value, str) or spec is None:
        return value + " (changed)"
    digits = int(re.search(r"\.(\d+)", spec)[1]) if "." in spec else 0
    return float(value) + 2 * 10.0 ** -digits if spec[-1] == "f" else float(value) * 1.5 + 1e-3


def test_every_cell_the_templates_use_changes_the_rendered_text():
    """Each cell a template names (and each aggregated column) moves the rendered text when its value moves, so
    `report --check` cannot pass with a stale number or verdict."""
    tables = _stored_tables()
    cells = render.template_cells()
    assert len(cells) > 800
    for agg, table, key, column, spec in cells:
        placeholder = ("{{" + (f"{agg}:" if agg else "") + f"{table}[{key}].{column}" + (f":{spec}" if spec else "")
                       + "}}")
        before = render.render(placeholder, tables)
        frame = tables[table]
        saved = frame[column].copy()
        try:
            if agg == "count":
                frame[column] = np.nan
            elif agg:
                frame[column] = [_nudged(v, spec) for v in saved]
            else:
                row = next(i for i, k in enumerate(frame.index) if render._key_text(k) == key.split("; @")[0]
                           and all(str(frame[c].iloc[i]) == v for c, _, v in
                                   (f.partition("=") for f in key.split("; @")[1:])))
                values = saved.astype(object).copy()
                values.iloc[row] = _nudged(saved.iloc[row], spec)
                frame[column] = values
            render._ROWS.clear()
            assert render.render(placeholder, tables) != before, placeholder
        finally:
            frame[column] = saved
            render._ROWS.clear()


def test_a_hand_edit_inside_a_generated_block_fails_the_check(tmp_path, capsys):
    tables = _stored_tables()
    original = (repository_root() / "REPRODUCTION.md").read_text()
    path = tmp_path / "REPRODUCTION.md"
    path.write_text(original)
    assert report_module.render_reproduction_md(tables, check=True, path=path) == 0
    acpg = original.index("<!-- evidence:acpg -->")
    number = re.compile(r"(\d\.\d+)(<!--)").search(original, acpg)
    edited = original[:number.start(1)] + str(float(number[1]) + 1) + original[number.end(1):]
    path.write_text(edited)
    assert report_module.render_reproduction_md(tables, check=True, path=path) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "@@" in out and f"+{original[:number.end(1)].splitlines()[-1][:40]}" in out
    path.write_text(original.replace("Unit-level facts checked by the test suite",
                                     "Unit-level facts (hand-written, free to edit) checked by the test suite"))
    assert report_module.render_reproduction_md(tables, check=True, path=path) == 0  # outside the blocks
    assert report_module.render_reproduction_md(tables, check=False, path=tmp_path / "REPRODUCTION.md") == 0
    path.write_text(edited)
    report_module.render_reproduction_md(tables, check=False, path=path)  # `report` re-renders the block
    assert path.read_text() == original
    path.write_text(original.replace("<!-- /evidence:pfo -->", ""))
    with pytest.raises(ValueError, match="evidence:pfo"):
        report_module.render_reproduction_md(tables, check=True, path=path)


def test_the_notebooks_generated_blocks_are_their_rendering_and_a_hand_edit_fails(tmp_path):
    """Every block of every notebook is its rendering; a number edited by hand inside any one block is named by
    the check, and `report` writes the notebook back as committed."""
    tables = _stored_tables()
    root = repository_root()
    assert render.render_notebook_blocks(tables, root=root, check=True) == []
    assert {relative for relative in render.NOTEBOOK_BLOCKS.values()} == set(render.NOTEBOOKS.values())
    edited = {relative: (root / relative).read_text() for relative in render.NOTEBOOKS.values()}
    for name, relative in render.NOTEBOOK_BLOCKS.items():
        text = edited[relative]
        start = text.index(f"<!-- evidence:{name} -->")
        number = re.compile(r"(\d+(?:\.\d+)?)(<!--)").search(text, start)
        assert number and number.start() < text.index(f"<!-- /evidence:{name} -->"), f"{name} quotes no number"
        edited[relative] = text[:number.start(1)] + str(float(number[1]) + 1) + text[number.end(1):]
    for relative, text in edited.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    messages = render.render_notebook_blocks(tables, root=tmp_path, check=True)
    assert len(messages) == len(render.NOTEBOOK_BLOCKS) and all("first difference" in m for m in messages)
    assert len(render.render_notebook_blocks(tables, root=tmp_path, check=False)) == len(render.NOTEBOOK_BLOCKS)
    for relative in render.NOTEBOOKS.values():  # `report` re-renders the blocks: the notebook as committed
        assert (tmp_path / relative).read_text() == (root / relative).read_text()


def test_each_notebook_template_belongs_to_its_notebook(tmp_path):
    (tmp_path / "02.md").write_text("<!-- template:nb03_claim -->\nx\n<!-- /template:nb03_claim -->\n")
    with pytest.raises(ValueError, match="nb02_"):
        render.notebook_blocks(tmp_path)
    (tmp_path / "02.md").unlink()
    (tmp_path / "09.md").write_text("<!-- template:nb09_claim -->\nx\n<!-- /template:nb09_claim -->\n")
    with pytest.raises(ValueError, match="no notebook 09"):
        render.notebook_blocks(tmp_path)


def test_the_stored_evidence_recomputes_and_renders_reproduction_md():
    """The committed tables equal what the committed histories give, and REPRODUCTION.md's generated blocks are
    their rendering byte for byte."""
    assert report_module.report(check=True) == 0


def test_long_pieces_train_with_checkpoints_and_leave_no_run_directory(monkeypatch, tmp_path):
    """A piece with checkpoint_every trains through a run directory with resume=True (so a killed piece resumes
    from its last checkpoint: the resume itself is tested in test_checkpoint.py), ends as the same history as
    without checkpoints, and removes the run directory once the piece is stored."""
    config = dict(env_id="CartPole-v1", algo="ppo", total_steps=2048, num_envs=4, rollout_steps=32, minibatch_size=64)
    monkeypatch.setitem(evidence.EXPERIMENTS, "tiny", {"plain": Condition(config, seeds=(0, 1)),
                                                       "ckpt": Condition(config, seeds=(0, 1), checkpoint_every=4)})
    calls = []
    original = pieces.train

    def recording_train(cfg, **kw):
        calls.append((cfg.checkpoint_every, kw.get("run_dir"), kw.get("resume")))
        return original(cfg, **kw)

    monkeypatch.setattr(pieces, "train", recording_train)
    plain = pieces.run_piece("tiny", "plain", (0, 1), tmp_path)
    ckpt = pieces.run_piece("tiny", "ckpt", (0, 1), tmp_path)
    run_dir = tmp_path / "tiny" / "ckpt" / ".seeds_0-1.run"
    assert calls == [(0, None, True), (4, run_dir, True)] and not run_dir.exists()
    a, b = (pd.read_parquet(p / "history.parquet").drop(columns="time") for p in (plain, ckpt))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_pieces_train_as_ray_tasks_like_in_process(monkeypatch, tmp_path):
    """`run --ray`: the same pieces, trained on a local 2-CPU Ray instance, end bitwise as in one process."""
    pytest.importorskip("ray")
    import ray

    config = dict(env_id="CartPole-v1", algo="ppo", total_steps=2048, num_envs=4, rollout_steps=32, minibatch_size=64)
    monkeypatch.setitem(evidence.EXPERIMENTS, "tiny", {"a": Condition(config, seeds=(0, 1, 2), group=2)})
    evidence.run_experiment("tiny", root=tmp_path / "local")
    try:
        evidence.run_experiment("tiny", root=tmp_path / "ray", ray=True, num_cpus=2)
    finally:
        ray.shutdown()
    for seeds in ("seeds_0-1", "seeds_2-2"):
        a, b = (pd.read_parquet(tmp_path / where / "tiny" / "a" / seeds / "history.parquet").drop(columns="time")
                for where in ("local", "ray"))
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_pfo_tables_pair_cells_by_seed_and_test_trends_over_seeds(monkeypatch, tmp_path):
    """A tiny dose grid: every statistic of every cell per seed, slopes per seed (df = seeds - 1, nothing pooled),
    the PFO contrasts paired by seed, Holm over each table, collapse events counted per seed."""
    base = dict(conditions.PFO_BASE, total_steps=2048, snapshot_every=4)
    cells = {f"cartpole/e{e}_b{b:g}": Condition(dict(base, epochs=e, pfo_coef=b), seeds=(0, 1, 2), group=3,
                                                keep=conditions.PFO_COLUMNS)
             for e in (1, 2, 4) for b in (0.0, 1.0)}
    monkeypatch.setitem(evidence.EXPERIMENTS, "pfo", cells)
    evidence.run_experiment("pfo", root=tmp_path)
    tables = pfo.pfo_tables(tmp_path)
    per_seed = tables["pfo_per_seed"]
    assert len(per_seed) == 6 * 3 and per_seed.plasticity_kl_backbone.notna().all()
    dose = tables["pfo_dose"].sort_index()
    epochs_line = dose.loc[("cartpole", "log2(epochs)", "beta=0")]
    assert (epochs_line.df == 2).all() and (epochs_line.doses == 3).all()
    assert (dose.p_holm >= dose.p - 1e-12).all()
    # the slope is the least-squares slope of each seed's values over log2(epochs), averaged over seeds
    v = per_seed.xs("actor_srank", axis=1).unstack("seed").loc[["cartpole/e1_b0", "cartpole/e2_b0", "cartpole/e4_b0"]]
    slopes = np.polyfit([0.0, 1.0, 2.0], v.to_numpy(), 1)[0]
    assert epochs_line.loc["actor_srank", "difference"] == pytest.approx(slopes.mean())
    contrasts = tables["pfo_contrasts"]
    labels = set(contrasts.index.get_level_values("contrast"))
    assert {"PFO beta=1 last layer - none (epochs=1)", "PFO beta=1 last layer - none (epochs=4)"} <= labels
    assert (tables["pfo_events"].seeds == 3).all()
    assert set(tables["pfo_vs_null"].index.get_level_values("condition")) == set(cells)


def test_dose_slopes_recover_a_known_linear_trend():
    idx = pd.MultiIndex.from_product([["a", "b", "c"], [0, 1]], names=["condition", "seed"])
    per_seed = pd.DataFrame(dict(x=[1.0, 5.0, 3.0, 6.0, 5.0, 7.0]), index=idx)
    slopes = pfo._dose_slopes(per_seed, {"a": 0.0, "b": 1.0, "c": 2.0}, "x")
    assert slopes.to_numpy() == pytest.approx([2.0, 1.0])


def test_head_tables_test_theorem_1_and_the_exploration_ablation(monkeypatch, tmp_path):
    """Tiny head arms on a 4- and a 3-action task and the exploration arms: Theorem 1 rows per arm (paired against the
    untrained network) and ETF against each other arm (Welch); the exploration interaction is the difference of
    the two ETF - learnable differences; claims and descriptive rows are separate Holm families."""
    from acpg_lab.evidence import HEAD_ARMS

    small = dict(algo="ppo", num_envs=4, rollout_steps=16, minibatch_size=32, diagnostics_every=2,
                 diagnostics_null=True, total_steps=1024)
    tasks = {"tiny_lunar": (dict(small, env_id="LunarLander-v3"), -150.0),
             "ppo_minatar_breakout": (dict(small, env_id="MinAtar/Breakout-v1"), 0.1)}
    monkeypatch.setattr(heads, "HEAD_TASKS", tasks)
    monkeypatch.setitem(evidence.EXPERIMENTS, "heads", {
        f"{task}/{arm}": Condition(dict(shared, **head), seeds=(0, 1, 2), group=3)
        for task, (shared, _) in tasks.items() for arm, head in HEAD_ARMS.items()})
    monkeypatch.setitem(evidence.EXPERIMENTS, "exploration", {
        f"eps{eps}/{arm}": Condition(dict(tasks["ppo_minatar_breakout"][0], **HEAD_ARMS[arm], explore_epsilon=eps),
                                     seeds=(0, 1, 2), group=3) for eps in (0.01, 0.1) for arm in ("linear", "etf")})
    evidence.run_experiment("heads", root=tmp_path)
    assert heads.exploration_tables(tmp_path) == {}  # its epsilon > 0 arms are not stored yet
    evidence.run_experiment("exploration", root=tmp_path)

    tables = heads.heads_tables(tmp_path)
    per_seed = tables["heads_per_seed"]
    assert len(per_seed) == 2 * 4 * 3 and per_seed.xs("ppo_minatar_breakout")["best"].notna().all()
    align = tables["heads_alignment"]
    assert list(align.index.get_level_values("actions").unique()) == [4, 3]
    assert len(align) == 2 * (8 + 3) and (align.p_holm >= align.p - 1e-12).all()
    assert align.xs("tiny_lunar").p.notna().all()  # a random lander takes every action
    assert not align.verdict.str.contains("budget").any()  # alignment is measured against its own null
    etf = per_seed.xs(("tiny_lunar", "etf"))
    # the null that counts: the untrained network on its own greedy actions (issue 24), not on the trained labels
    own = heads.own_label_null("tiny_lunar", "etf", [0, 1, 2], tmp_path)
    assert (own > 0).all()  # an untrained network's features lean towards the rows of the actions it takes
    row = align.loc[("tiny_lunar", 4, "etf: trained - untrained")]
    assert row["df"] == 2 and row["labels_y"] == heads.OWN_NULL_LABELS
    assert row["difference"] == pytest.approx((etf.label_alignment.to_numpy() - own.to_numpy()).mean())
    circular = align.loc[("tiny_lunar", 4, "etf: trained - untrained on the trained labels (circular)")]
    assert circular.verdict == "descriptive" and circular.labels_y == heads.CIRCULAR_NULL_LABELS
    assert circular["difference"] == pytest.approx((etf.label_alignment - etf.null_label_alignment).mean())
    claimed = align[align.verdict != "descriptive"]
    assert (claimed.family_size == len(claimed)).all()  # the circular rows are a family of their own
    contrasts = tables["heads_contrasts"]
    descriptive = contrasts.xs("final_entropy", level="outcome")
    assert (descriptive.verdict == "descriptive").all()
    measured = contrasts[contrasts.verdict != "not measurable"]
    assert measured.p_holm.notna().all() and contrasts[contrasts.verdict == "not measurable"].p.isna().all()
    budget = tables["heads_convergence"]
    breakout = per_seed.xs(("ppo_minatar_breakout", "etf"))
    assert budget.loc[("ppo_minatar_breakout", "etf"), "learned"] == pytest.approx(
        (breakout.final_train.mean() - 0.5) / (30.0 - 0.5))  # MinAtar Breakout's reference range: 0.5 to 30
    assert budget.too_little.any()  # 1024 steps teach little: those arms' claims wait for a budget
    claims = measured[~measured.verdict.isin(["descriptive", "no difference (ceiling)"])]
    for (task, contrast, _), row in claims.iterrows():
        undecided = budget.loc[[(task, arm) for arm in contrast.split(" - ")]]
        undecided = bool(undecided.too_little.any() or (undecided.convergence != "converged").any())
        assert (row.verdict == "inconclusive (budget)") == undecided, (task, contrast, row.verdict)

    ex = heads.exploration_tables(tmp_path)
    per = ex["exploration_per_seed"]
    assert len(per) == 3 * 2 * 3
    table = ex["exploration_contrasts"]
    assert len(table) == 3 * 4 + 2 * 4
    assert (table.xs(0.0, level="epsilon").verdict == "descriptive").all()
    gain = {eps: per.xs((eps, "etf"))["best"].mean() - per.xs((eps, "linear"))["best"].mean() for eps in (0.0, 0.1)}
    assert table.loc[(0.1, "(etf - linear) - (etf - linear at 0)", "best"), "difference"] == pytest.approx(
        gain[0.1] - gain[0.0])
    claimed = table[table.verdict != "descriptive"]
    assert len(claimed) == 16 and (claimed.p_holm >= claimed.p - 1e-12).all()
    budget = ex["exploration_convergence"]
    assert len(budget) == 3 * 2 and {"convergence", "rise_high", "learned", "too_little"} <= set(budget.columns)
    undecided = budget.too_little | (budget.convergence != "converged")
    for (eps, contrast, _), row in claimed.iterrows():
        arms = [(e, a) for e in ({0.0, eps} if "at 0" in contrast else {eps}) for a in ("etf", "linear")]
        assert (row.verdict == "inconclusive (budget)") == bool(undecided.loc[arms].any()), (eps, contrast)


def test_an_arm_that_learned_too_little_or_still_rises_makes_the_budget_undecided():
    from acpg_lab.evidence.heads import MIN_LEARNED, _budget_reason, budget_table

    rng = np.random.default_rng(0)
    rows = [dict(task="t", arm=arm, seed=s, final_train=final + rng.normal(0, 0.1), plateau_change=change
                 + rng.normal(0, 0.05)) for arm, final, change in (("low", 1.5, 0.0), ("high", 10.0, 0.0),
                                                                     ("rising", 10.0, 2.0)) for s in range(10)]
    table = budget_table(pd.DataFrame(rows), {"t": "MinAtar/Asterix-v1"})  # random 0.5, target 20
    assert table.loc[("t", "low"), "learned"] == pytest.approx((1.5 - 0.5) / 19.5, abs=0.01)
    assert table.loc[("t", "low"), "learned"] < MIN_LEARNED < table.loc[("t", "high"), "learned"]
    assert table.too_little.to_dict() == {("t", "high"): False, ("t", "low"): True, ("t", "rising"): False}
    assert table.still_rising.to_dict() == {("t", "high"): False, ("t", "low"): False, ("t", "rising"): True}
    assert table.convergence.to_dict() == {("t", "high"): "converged", ("t", "low"): "converged",
                                           ("t", "rising"): "still rising"}
    assert _budget_reason(table, [("t", "high")]) == ""
    assert "learned less" in _budget_reason(table, [("t", "high"), ("t", "low")])
    assert "still rising" in _budget_reason(table, [("t", "rising"), ("t", "low")])


def test_convergence_needs_the_interval_to_exclude_a_meaningful_rise():
    """Issue 24: a non-significant rise is not convergence. The meaningful rise is 5% of the reference range per
    tenth of the budget (Asterix: 0.975); an arm whose rise is not significant but whose interval still holds
    0.975 is "undecided", and its contrasts wait ("inconclusive (budget)")."""
    from acpg_lab.evidence.heads import MEANINGFUL_RISE, _budget_reason, budget_table

    rng = np.random.default_rng(4)
    noise = rng.normal(0, 1, 10)
    noise = (noise - noise.mean()) / noise.std(ddof=1)  # mean 0, sd 1 exactly
    rows = [dict(task="t", arm=arm, seed=s, final_train=10.0, plateau_change=mean + sd * noise[s])
            for arm, mean, sd in (("flat", 0.0, 0.1), ("wide", 0.3, 2.0), ("small_rise", 0.2, 0.05))
            for s in range(10)]
    table = budget_table(pd.DataFrame(rows), {"t": "MinAtar/Asterix-v1"})
    assert table.meaningful_rise.iloc[0] == pytest.approx(MEANINGFUL_RISE * 19.5)
    # wide: t = 0.3 / (2 / sqrt(10)) = 0.47, not significant, but the upper bound 0.3 + 1.83 * 0.63 = 1.46 > 0.975
    assert not table.loc[("t", "wide"), "still_rising"]
    assert table.convergence.to_dict() == {("t", "flat"): "converged", ("t", "wide"): "undecided",
                                           ("t", "small_rise"): "converged"}  # significant but negligible
    assert "undecided" in _budget_reason(table, [("t", "flat"), ("t", "wide")])
    assert _budget_reason(table, [("t", "flat"), ("t", "small_rise")]) == ""


def test_a_linear_contrast_of_two_groups_is_welch():
    from acpg_lab.stats import welch, welch_contrast

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=7), rng.normal(1.0, 2.0, size=11)
    a, b = welch(x, y), welch_contrast([x, y], [1, -1])
    for key in ("difference", "ci_low", "ci_high", "df", "p"):
        assert b[key] == pytest.approx(a[key])
    with pytest.raises(ValueError, match="one weight per group"):
        welch_contrast([x, y], [1])


def test_pfo_factors_come_from_the_stored_config_not_the_name():
    """A plain cell whose name says "linear" stays on the dose lines and in the PFO contrasts; a learnable head
    without a bias (the ETF comparison's arm) leaves them, whatever its name: the factors are the stored config's."""
    def cell(**kw):
        return dict(dict(setting="cartpole", epochs=10, beta=0.0, layers="last", head="linear", bias=True,
                         shared=False), **kw)

    cells = {"cartpole/linear_e10": cell(), "cartpole/linear_e20": cell(epochs=20),
             "cartpole/linear_e10_pfo": cell(beta=1.0), "cartpole/plain_name": cell(bias=False)}
    lines = pfo._grids(cells)
    assert lines[("cartpole", "log2(epochs)", "beta=0")] == {"cartpole/linear_e10": np.log2(10),
                                                             "cartpole/linear_e20": np.log2(20)}
    assert lines[("cartpole", "beta step", "epochs=10")] == {"cartpole/linear_e10": 0.0,
                                                             "cartpole/linear_e10_pfo": 2.0}
    assert [pair[:3] for pair in pfo._contrast_pairs(cells)] == [
        ("PFO beta=1 last layer - none (epochs=10)", "cartpole/linear_e10_pfo", "cartpole/linear_e10")]
    stored = dict(env_id="CartPole-v1", epochs=40, pfo_coef=1, pfo_layers="last", head="etf", head_bias=False,
                  shared_trunk=False)
    assert pfo.factors(stored) == cell(epochs=40, beta=1.0, head="etf", bias=False)
    with pytest.raises(ValueError, match="'Pong-v5' is no pfo setting"):
        pfo.factors(dict(stored, env_id="Pong-v5"))


def test_one_verdict_table_for_every_family():
    from acpg_lab.evidence.verdicts import Claim, smallest_effect, verdict_table
    from acpg_lab.stats import contrast_table

    def rows():
        return contrast_table({("a", "x"): dict(difference=1.0, ci_low=0.5, ci_high=1.5, p=0.01, se=0.22, df=9),
                               ("a", "y"): dict(difference=np.nan, ci_low=np.nan, ci_high=np.nan, p=np.nan,
                                                se=np.nan, df=np.nan),
                               ("a", "z"): dict(difference=0.0, ci_low=-0.01, ci_high=0.01, p=0.9, se=0.0045, df=9),
                               ("a", "w"): dict(difference=0.0, ci_low=-0.01, ci_high=0.01, p=0.9, se=0.0045, df=9)})

    claims = {("a", "x"): Claim(1), ("a", "y"): Claim(1), ("a", "z"): Claim(1, smallest_effect("bounded")),
              ("a", "w"): Claim(0)}
    table = verdict_table(rows(), claims, names=["k", "m"], descriptive="no claim")
    assert table.index.names == ["k", "m"]
    assert list(table.verdict) == ["reproduced", "not measurable", "not reproduced", "descriptive"]
    assert table.rule.iloc[3] == "no claim" and "0.05" in table.rule.iloc[2]
    assert (table.family_size == 3).all() and "Bonferroni, m = 3" in table.rule.iloc[2]
    assert table.ci_high_family.iloc[2] > table.ci_high.iloc[2]  # the family-level interval is the wider one
    with pytest.raises(ValueError, match="rows without a claim"):
        verdict_table(rows(), {("a", "x"): Claim(1)}, names=["k", "m"])
    with pytest.raises(ValueError, match="unknown kind of smallest effect 'huge'"):
        smallest_effect("huge")
    assert smallest_effect("log") == pytest.approx(np.log(1.25)) and smallest_effect("return", span=500.0) == 25.0


def test_a_stored_piece_of_another_config_is_refused_not_reused(tiny_collapse, monkeypatch):
    changed = {name: Condition(dict(cond.config, lr=1e-2), seeds=cond.seeds, group=cond.group)
               for name, cond in evidence.EXPERIMENTS["collapse"].items()}
    monkeypatch.setitem(evidence.EXPERIMENTS, "collapse", changed)
    with pytest.raises(ValueError, match=r"another config \(differing: \['lr'\]\)"):
        evidence.run_experiment("collapse", root=tiny_collapse)
    with pytest.raises(ValueError, match=r"another config \(differing: \['lr'\]\)"):
        pieces.run_piece("collapse", "onehot/balanced", (0, 1), tiny_collapse)


def test_verdict_changes_lists_what_moved_and_why(tmp_path):
    from acpg_lab.evidence.report import verdict_changes

    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir(), after.mkdir()
    index = pd.MultiIndex.from_tuples([("c", "nc1"), ("c", "self_duality")], names=["condition", "metric"])
    pd.DataFrame(dict(verdict=["not reproduced", "reproduced"], rule=["r", "r"]), index=index).to_csv(
        before / "collapse_vs_null.csv")
    pd.DataFrame(dict(verdict=["inconclusive (power)", "reproduced"], rule=["wide", "r"]), index=index).to_csv(
        after / "collapse_vs_null.csv")
    changes = verdict_changes(before, after)
    assert changes.to_dict("records") == [dict(table="collapse_vs_null", row="c | nc1", before="not reproduced",
                                               after="inconclusive (power)",
                                               why="two-sided multiplicity (family-level Bonferroni interval): wide")]
