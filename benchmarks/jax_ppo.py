"""A PureJaxRL-style PPO on CartPole in plain JAX: target 9 of ``python -m benchmarks``.

PureJaxRL's point is that the whole training loop (environment, rollout, GAE, epochs of minibatch steps) is one
jit-compiled XLA program, so one seed runs without Python in the loop. This is that loop for CartPole-v1 with
CleanRL's PPO settings (4 envs x 128 steps, 4 epochs x 4 minibatches, lr 2.5e-4 annealed, gamma 0.99, GAE 0.95,
clip 0.2, entropy 0.01, value 0.5, global gradient-norm clip 0.5, Adam eps 1e-5, separate 64-64 tanh actor and
critic, orthogonal init), written with ``jax`` alone (no flax, optax or gymnax, so the ``bench`` extra needs only
``jax``); CartPole's dynamics are gym's (as gymnax writes them: Euler steps, auto-reset, 500-step limit).

It runs on one CPU thread (XLA's flags are set before JAX is imported), like every acpg_lab and SB3 run of the
benchmark. `steps_per_second` excludes compilation, as PureJaxRL's own numbers do.
"""

from __future__ import annotations

import os
import time

if "jax" not in os.sys.modules:  # one thread, as every other run of the benchmark
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                               "intra_op_parallelism_threads=1").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

__all__ = ["CLEANRL", "make_train", "steps_per_second"]

#: CleanRL's ppo.py settings, PureJaxRL's names.
CLEANRL = dict(num_envs=4, num_steps=128, epochs=4, minibatches=4, lr=2.5e-4, gamma=0.99, lam=0.95, clip=0.2,
               ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5)
THETA_LIMIT = 12 * 2 * jnp.pi / 360


def env_reset(key: jax.Array) -> jax.Array:
    """A CartPole state ``(x, x_dot, theta, theta_dot)``, each uniform in [-0.05, 0.05]; the state is the obs."""
    return jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)


def env_step(key: jax.Array, state: jax.Array, t: jax.Array, action: jax.Array):
    """One CartPole-v1 step (reward 1), resetting from ``key`` when the episode ends: (state, t, reward, done)."""
    x, x_dot, theta, theta_dot = state
    force = jnp.where(action == 1, 10.0, -10.0)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + 0.05 * theta_dot**2 * sin) / 1.1
    theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos**2 / 1.1))
    x_acc = temp - 0.05 * theta_acc * cos / 1.1
    state = jnp.stack([x + 0.02 * x_dot, x_dot + 0.02 * x_acc, theta + 0.02 * theta_dot, theta_dot + 0.02 * theta_acc])
    t = t + 1
    done = (jnp.abs(state[0]) > 2.4) | (jnp.abs(state[2]) > THETA_LIMIT) | (t >= 500)
    return jnp.where(done, env_reset(key), state), jnp.where(done, 0, t), jnp.ones(()), done


def init_mlp(key: jax.Array, sizes: list[int], out_gain: float) -> list[dict[str, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.nn.initializers.orthogonal(out_gain if i == len(sizes) - 2 else jnp.sqrt(2.0))(k, (a, b)),
             "b": jnp.zeros(b)} for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True))]


def mlp(layers: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def loss_fn(params, obs, action, old_logp, adv, target, c: dict) -> jax.Array:
    """PPO's clipped surrogate (advantages normalised per minibatch) + value loss - entropy bonus."""
    logp_all = jax.nn.log_softmax(mlp(params["actor"], obs))
    logp = jnp.take_along_axis(logp_all, action[:, None], -1)[:, 0]
    ratio = jnp.exp(logp - old_logp)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - c["clip"], 1 + c["clip"])).mean()
    value = 0.5 * ((mlp(params["critic"], obs)[:, 0] - target) ** 2).mean()
    entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
    return policy + c["vf_coef"] * value - c["ent_coef"] * entropy


def adam(params, grads, opt, lr, c: dict):
    """optax's chain(clip_by_global_norm, adam(eps=1e-5)), written out."""
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads)))
    grads = jax.tree_util.tree_map(lambda g: g * jnp.minimum(1.0, c["max_grad_norm"] / (norm + 1e-6)), grads)
    m, v, count = opt
    count = count + 1
    m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
    v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g**2, v, grads)
    step = lambda p, m, v: p - lr * (m / (1 - 0.9**count)) / (jnp.sqrt(v / (1 - 0.999**count)) + 1e-5)  # noqa: E731
    return jax.tree_util.tree_map(step, params, m, v), (m, v, count)


def make_train(total_steps: int, c: dict = CLEANRL):
    """A jitted ``train(key) -> (params, mean episode length per update)``: PPO for ``total_steps`` environment
    steps of one seed, the whole loop one XLA program (CartPole's return is its episode length)."""
    envs, steps = c["num_envs"], c["num_steps"]
    batch, updates = envs * steps, total_steps // (envs * steps)

    def train(key: jax.Array):
        key, actor_key, critic_key, env_key = jax.random.split(key, 4)
        params = {"actor": init_mlp(actor_key, [4, 64, 64, 2], 0.01),
                  "critic": init_mlp(critic_key, [4, 64, 64, 1], 1.0)}
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        obs = jax.vmap(env_reset)(jax.random.split(env_key, envs))
        carry = (params, (zeros, zeros, jnp.zeros((), jnp.int32)), obs, jnp.zeros(envs, jnp.int32), key)

        def update(carry, index):
            params, opt, obs, t, key = carry

            def act(carry, _):
                obs, t, key = carry
                key, sample_key, env_key = jax.random.split(key, 3)
                logits = mlp(params["actor"], obs)
                action = jax.random.categorical(sample_key, logits)
                logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
                value = mlp(params["critic"], obs)[:, 0]
                next_obs, t, reward, done = jax.vmap(env_step)(jax.random.split(env_key, envs), obs, t, action)
                return (next_obs, t, key), (obs, action, logp, value, reward, done)

            (obs, t, key), (b_obs, b_act, b_logp, b_value, b_reward, b_done) = jax.lax.scan(
                act, (obs, t, key), None, steps)

            def gae(carry, x):
                running, next_value = carry
                done, value, reward = x
                delta = reward + c["gamma"] * next_value * (1 - done) - value
                running = delta + c["gamma"] * c["lam"] * (1 - done) * running
                return (running, value), running

            _, adv = jax.lax.scan(gae, (jnp.zeros(envs), mlp(params["critic"], obs)[:, 0]),
                                  (b_done, b_value, b_reward), reverse=True)
            data = (b_obs, b_act, b_logp, adv, adv + b_value)
            lr = c["lr"] * (1.0 - index / updates)

            def epoch(carry, _):
                params, opt, key = carry
                key, perm_key = jax.random.split(key)
                perm = jax.random.permutation(perm_key, batch)
                shuffled = [x.reshape(batch, *x.shape[2:])[perm].reshape(c["minibatches"], -1, *x.shape[2:])
                            for x in data]

                def minibatch(carry, mb):
                    params, opt = carry
                    grads = jax.grad(loss_fn)(params, *mb, c)
                    return adam(params, grads, opt, lr, c), None

                (params, opt), _ = jax.lax.scan(minibatch, (params, opt), shuffled)
                return (params, opt, key), None

            (params, opt, key), _ = jax.lax.scan(epoch, (params, opt, key), None, c["epochs"])
            episodes = jnp.maximum(b_done.sum(), 1)
            return (params, opt, obs, t, key), steps * envs / episodes  # mean episode length of the rollout

        carry, lengths = jax.lax.scan(update, carry, jnp.arange(updates))
        return carry[0], lengths

    return jax.jit(train)


def steps_per_second(*, total_steps: int = 500_000, seed: int = 0) -> float:
    """Environment steps per second of one seed's training, compilation excluded (a first call compiles and runs,
    the second, from another key, is timed)."""
    train = make_train(total_steps)
    jax.block_until_ready(train(jax.random.PRNGKey(seed + 1)))
    start = time.perf_counter()
    jax.block_until_ready(train(jax.random.PRNGKey(seed)))
    steps = total_steps // (CLEANRL["num_envs"] * CLEANRL["num_steps"]) * CLEANRL["num_envs"] * CLEANRL["num_steps"]
    return steps / (time.perf_counter() - start)
