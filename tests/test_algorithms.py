"""The algorithms as data: one `AlgoSpec` per algorithm drives the config's checks, the loop and the command line.

Also the estimator that GRPO adds (`group_relative_advantages`) on a hand-written rollout, and that a new entry
trains with no other change.
"""

import dataclasses
import inspect
import re

import pandas as pd
import pytest
import torch

import acpg_lab as al
from acpg_lab import algorithms, cli, config, training
from acpg_lab.algorithms import ALGORITHMS, AlgoSpec, algo_spec, group_relative_advantages
from acpg_lab.run import build_model


def _rollout(rewards, dones, valid):
    """``[T, S=len(rows), E=1]`` tensors from per-seed rows."""
    def stack(rows):
        return torch.tensor(rows, dtype=torch.float32).T.unsqueeze(-1)

    return stack(rewards), stack(dones), torch.zeros_like(stack(dones)), stack(valid)


def test_group_relative_advantages_compare_whole_episodes_that_start_and_end_in_the_rollout():
    # seed 0: an episode begun before the rollout ends at t2 (return unknown: masked); reset at t3; A = t4..t5
    # (return 2); reset at t6; B = t7..t9 (return 3). Seed 1: a reset at t0 (the last rollout ended an episode);
    # C = t1..t3 (return 3), reset at t4, D = t5..t9 still running (masked): a group of one episode.
    rewards, terminated, truncated, valid = _rollout(
        rewards=[[1, 1, 1, 0, 1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 0, 1, 1, 1, 1, 1]],
        dones=[[0, 0, 1, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]],
        valid=[[1, 1, 1, 0, 1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 0, 1, 1, 1, 1, 1]])
    adv, episode_return, mask = group_relative_advantages(rewards, terminated, truncated, valid)
    assert mask[:, 0, 0].tolist() == [0, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    assert mask[:, 1, 0].tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert episode_return[[4, 5, 7, 8, 9], 0, 0].tolist() == [2, 2, 3, 3, 3]
    # mean 2.5, std 0.5: A scores -1 on each of its steps, B +1
    torch.testing.assert_close(adv[[4, 5, 7, 8, 9], 0, 0], torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(adv[1:4, 1, 0], torch.zeros(3))  # a group of one has nothing to be compared with


def test_every_algorithm_resolves_and_its_functions_have_the_loops_shapes():
    gen = torch.Generator().manual_seed(0)
    t, s, e, n = 6, 2, 3, 5
    rewards, values = torch.rand(t, s, e, generator=gen), torch.rand(t + 1, s, e, generator=gen)
    done = (torch.rand(t, s, e, generator=gen) > 0.7).float()
    for name, spec in ALGORITHMS.items():
        assert spec.name == name and spec.summary
        cfg = al.TrainConfig(env_id="Acrobot-v1", algo=name).resolve()  # no preset: the generic defaults
        assert set(spec.defaults) <= {f.name for f in dataclasses.fields(al.TrainConfig)}, name
        assert all(getattr(cfg, k) == v for k, v in spec.defaults.items()), name
        adv, returns, mask = spec.advantage(rewards, values, done, torch.zeros_like(done), torch.ones_like(done),
                                            gamma=0.9, lam=0.9, critic=True)
        assert adv.shape == returns.shape == mask.shape == (t, s, e), name
        logp = -torch.rand(s, n, generator=gen)
        loss, stats = spec.policy_loss(logp, logp - 0.1, torch.randn(s, n, generator=gen), torch.ones(s, n),
                                       clip=0.2)
        assert loss.shape == (s,) and all(v.shape == (s,) for v in stats.values()), name


@pytest.mark.parametrize(("algo", "hint"), [("grp", "grpo"), ("PPo", "ppo"), ("a2", "a2c"), ("reinforc", "reinforce")])
def test_an_unknown_algorithm_fails_at_the_config_with_did_you_mean(algo, hint):
    with pytest.raises(ValueError, match=f"algo must be one of .*did you mean '{hint}'"):
        al.TrainConfig(algo=algo).resolve()
    with pytest.raises(ValueError, match="algo must be one of"):  # also where a stored config is filled in
        al.TrainConfig(algo=algo).filled()


def test_the_table_decides_pfo_the_clip_and_the_critic():
    for name, spec in ALGORITHMS.items():
        if spec.pfo:
            al.TrainConfig(algo=name, pfo_coef=0.5).resolve()
        else:
            with pytest.raises(ValueError, match=f"pfo_coef > 0 needs .*got algo='{name}'"):
                al.TrainConfig(algo=name, pfo_coef=0.5).resolve()
        if spec.clip:
            with pytest.raises(ValueError, match=f"clip_coef must be > 0 for algo='{name}'"):
                al.TrainConfig(algo=name, clip_coef=0.0).resolve()
        else:
            al.TrainConfig(algo=name, clip_coef=0.0).resolve()
    assert [ALGORITHMS[a].uses_critic(reinforce_baseline=b) for a, b in
            [("reinforce", True), ("reinforce", False), ("a2c", False), ("ppo", False), ("grpo", True)]] == \
        [True, False, True, True, False]


def test_the_command_line_offers_the_tables_choices(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--algo", "nope", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert all(name in err for name in ALGORITHMS) and "invalid choice" in err
    with pytest.raises(SystemExit):
        cli.main(["train", "--head", "nope", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert all(head in err for head in ("linear", "etf", "random"))


def test_grpo_trains_without_a_critic():
    run = al.train(al.TrainConfig(algo="grpo", seeds=(0, 1), total_steps=4096, device="cpu"), progress=False)
    h = run.history
    assert "loss_value" not in h and "grad_norm_critic" not in h and h.approx_kl.notna().all()
    assert (h.valid_fraction > 0).all() and (h.valid_fraction < 1).all()  # episodes cut by the rollout: masked
    fresh = build_model(run.config, (4,), 2)
    for a, b in zip(run.model.critic_parameters(), fresh.critic_parameters(), strict=True):
        assert torch.equal(a, b)  # the critic never trains


def test_a_new_entry_trains_with_no_other_change(monkeypatch):
    # A2C without its critic: the policy gradient on plain n-step returns, one entry built from existing pieces
    spec = AlgoSpec("a2c_no_critic", "n-step returns without a critic", advantage=ALGORITHMS["a2c"].advantage,
                    policy_loss=ALGORITHMS["a2c"].policy_loss, critic="no", clip=False, pfo=False,
                    defaults=ALGORITHMS["a2c"].defaults)
    monkeypatch.setattr(algorithms, "ALGORITHMS", {**ALGORITHMS, spec.name: spec})
    assert algo_spec("a2c_no_critic") is spec
    run = al.train(al.TrainConfig(algo="a2c_no_critic", seeds=(0,), total_steps=400, device="cpu"), progress=False)
    assert "loss_value" not in run.history and len(run.history) == 10
    a2c = al.train(al.TrainConfig(algo="a2c", seeds=(0,), total_steps=400, device="cpu"), progress=False).history
    assert not pd.Series(a2c.loss_policy).equals(run.history.loss_policy)  # advantages without V(s) differ


def test_no_module_but_the_table_tests_an_algorithms_name():
    # the loop, the config and the command line ask the table; a string test would let a new name fall through
    for module in (training, config, cli):
        source = inspect.getsource(module)
        assert not re.search(r"algo\s*[!=]=|algo\s+(not\s+)?in\s", source), module.__name__  # presets may name one


@pytest.mark.parametrize(("n", "size", "with_preacts"), [(12, 4, True), (13, 4, False), (8, 8, True)])
def test_minibatches_are_each_seeds_own_rows_in_its_own_order(n, size, with_preacts):
    """`Minibatches` (buffers allocated once, indices laid out once per epoch) yields exactly ``x[seed, idx]`` for
    each seed's slice of its own order, drops the remainder, and refills its buffers in place."""
    from acpg_lab.rollout import Batch

    g = torch.Generator().manual_seed(0)
    s = 3
    batch = Batch(torch.randn(s, n, 2, 5, generator=g), torch.randint(0, 4, (s, n), generator=g),
                  *(torch.randn(s, n, generator=g) for _ in range(4)),
                  torch.randn(s, n, 6, generator=g) if with_preacts else None)
    minibatches = batch.minibatches(size)
    pointers = set()
    for _ in range(2):  # two epochs through the same buffers
        order = torch.stack([torch.randperm(n, generator=g) for _ in range(s)])
        count = 0
        for k, minibatch in enumerate(minibatches.epoch(order)):  # checked as yielded: the next one refills it
            idx = order[:, k * size:(k + 1) * size]
            for x, y in zip(batch, minibatch, strict=True):
                if x is None:
                    assert y is None
                else:
                    assert torch.equal(y, torch.stack([x[seed, idx[seed]] for seed in range(s)]))
            pointers.add(minibatch.obs.data_ptr())
            count += 1
        assert count == n // size
    assert len(pointers) == 1  # one buffer, reused
