"""Training knobs: weight decay, embedding optimizers per table group, clipping, L2 penalty, schedules,
and initialisation through real TorchRec sharding (DistributedModelParallel, a world of one)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from wukong.config import Config, ConfigError, EmbeddingGroupConfig, TrainConfig, load_config
from wukong.data.batch import random_batch
from wukong.model import build_model
from wukong.schema import FeatureSchema, SparseFeature
from wukong.train.distributed import DistEnv
from wukong.train.module import TrainModule
from wukong.train.optim import (
    LearningRates,
    assign_table_optimizers,
    build_optimizers,
    fused_params,
    plateau_scale,
)
from wukong.train.sharding import build_plan, make_sharder

from .conftest import wukong_train

# Planned by size with row_wise_min_rows=500, data_parallel_max_rows=50: row-wise, table-wise, replicated.
SCHEMA = FeatureSchema(
    dense=("a", "b"), sparse=(SparseFeature("big", 600), SparseFeature("mid", 300), SparseFeature("small", 20))
)
PLAN = dict(row_wise_min_rows=500, data_parallel_max_rows=50)


@dataclasses.dataclass
class Sharded:
    dmp: DistributedModelParallel
    optimizer: torch.optim.Optimizer
    dense: torch.optim.Optimizer
    env: DistEnv

    def tables(self) -> dict[str, torch.Tensor]:
        """Each table's weights on this rank (the only rank: every row)."""
        found = {}
        for key, value in self.dmp.state_dict().items():
            if ".embedding_bags." in key:
                local = value.local_shards()[0].tensor if hasattr(value, "local_shards") else value
                found[key.split(".")[-2]] = local.detach().clone().cpu()
        return found

    def step_on_pooled(self, kjt: KeyedJaggedTensor, scale: float) -> None:
        """One optimizer step whose loss is ``scale · Σ pooled embeddings``: each looked-up row gets the
        gradient ``scale`` in every entry (one id per bag), so the update rule shows in the weights."""
        self.optimizer.zero_grad()
        pooled = self.dmp.module.model.embedding.ebc(kjt.to(self.env.device))
        pooled = pooled.wait() if hasattr(pooled, "wait") else pooled
        (scale * pooled.values()).sum().backward()
        self.optimizer.step()


def shard(env: DistEnv, train: TrainConfig, cfg: Config, schema: FeatureSchema = SCHEMA) -> Sharded:
    """The trainer's sharding steps (wukong.train.loop.Trainer) on a model built on the meta device."""
    model = build_model("dlrm", schema, cfg.model, device="meta")
    module = TrainModule(model)
    sharder = make_sharder(train, env)
    assign_table_optimizers(model.embedding.ebc, train, env.device.type)
    plan = build_plan(module, model.embedding.ebc, sharder, train, env, local_batch=4)
    dmp = DistributedModelParallel(module, device=env.device, plan=plan, sharders=[sharder])
    optimizer, dense = build_optimizers(dmp, train)
    return Sharded(dmp, optimizer, dense, env)


def ids(big: list[int], mid: list[int]) -> KeyedJaggedTensor:
    """One id per example for each of the two fused tables (`small` is replicated: left out)."""
    values = torch.tensor(big + mid)
    return KeyedJaggedTensor.from_lengths_sync(["big", "mid"], values, torch.ones(len(values), dtype=torch.int32))


FUSED_ONLY = dict(row_wise_min_rows=500, data_parallel_max_rows=0)  # no replicated table: no DDP in the way
SCHEMA_FUSED = FeatureSchema(sparse=(SparseFeature("big", 600), SparseFeature("mid", 300)))


# ---- initialisation through sharding ---------------------------------------------------------------
def test_embedding_and_linear_init_survive_sharding(env: DistEnv, tiny: Config) -> None:
    overrides = ["model.embedding_init=normal", "model.embedding_init_scale=0.01", "model.linear_init=xavier_normal"]
    cfg = load_config("tiny", overrides)
    sharded = shard(env, TrainConfig(**PLAN), cfg)
    kinds = {name: spec.sharding_type for name, spec in sharded.dmp.plan.plan["model.embedding.ebc"].items()}
    assert kinds == {"t_big": "row_wise", "t_mid": "table_wise", "t_small": "data_parallel"}
    for table, weights in sharded.tables().items():
        assert weights.std().item() == pytest.approx(0.01, rel=0.1), table  # 1/sqrt(rows) otherwise
    head = sharded.dmp.module.model.arch.top[0]  # materialised from meta by DMP
    fan_in, fan_out = head.in_features, head.out_features
    assert head.weight.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.1)
    assert (head.bias == 0).all()


# ---- sharded tables: optimizer, rate, clipping per group --------------------------------------------
def test_embedding_groups_choose_optimizer_and_rate_per_table(env: DistEnv, tiny: Config) -> None:
    group = EmbeddingGroupConfig(features=["m*"], optimizer="sgd", learning_rate=0.5)
    sharded = shard(env, TrainConfig(**FUSED_ONLY, embedding_groups=[group]), tiny, SCHEMA_FUSED)
    before = sharded.tables()
    sharded.step_on_pooled(ids(big=[1, 2], mid=[4, 5]), scale=3.0)
    change = {t: sharded.tables()[t] - before[t] for t in before}
    # mid (group: SGD, lr 0.5): w -= 0.5 * 3. big (default: row-wise Adagrad, lr 0.05): w -= 0.05 * g / |g|_rms.
    torch.testing.assert_close(change["t_mid"][4], torch.full((16,), -1.5))
    torch.testing.assert_close(change["t_big"][1], torch.full((16,), -0.05))
    assert not change["t_big"][3].any() and not change["t_mid"][1].any()  # rows not looked up stay


def test_groups_match_by_name_and_rows() -> None:
    big_tables = EmbeddingGroupConfig(min_rows=1000)
    genres = EmbeddingGroupConfig(features=["genre*", "year"], max_rows=100)
    assert big_tables.matches("user", 5000) and not big_tables.matches("user", 999)
    assert genres.matches("genres", 30) and genres.matches("year", 100)
    assert not genres.matches("genres", 101) and not genres.matches("user", 30)


@pytest.mark.parametrize("clip", [0.0, 0.1])
def test_embedding_grad_clip_clamps_fused_gradients(env: DistEnv, tiny: Config, clip: float) -> None:
    train = TrainConfig(**FUSED_ONLY, embedding_optimizer="sgd", embedding_learning_rate=1.0, embedding_grad_clip=clip)
    sharded = shard(env, train, tiny, SCHEMA_FUSED)
    before = sharded.tables()
    sharded.step_on_pooled(ids(big=[1], mid=[7]), scale=3.0)
    expected = -clip if clip else -3.0  # SGD, lr 1: the (clamped) gradient itself
    torch.testing.assert_close(sharded.tables()["t_mid"][7] - before["t_mid"][7], torch.full((16,), expected))


def test_replicated_tables_dense_join_the_dense_optimizer_and_its_clipping(env: DistEnv, tiny: Config) -> None:
    sharded = shard(env, TrainConfig(**PLAN, grad_clip_norm=1.0, replicated_tables="dense"), tiny)
    dense_names = set(sharded.dense.params)
    assert any("t_small" in name for name in dense_names)  # replicated: dense, clipped with the rest
    assert not any("t_big" in name or "t_mid" in name for name in dense_names)  # fused: updated in backward
    by_default = shard(env, TrainConfig(**PLAN, grad_clip_norm=1.0), tiny)  # their embedding optimizer instead
    assert not any("t_small" in name for name in by_default.dense.params)


def test_cpu_refuses_what_fbgemm_cannot_do_there(tiny: Config) -> None:
    with pytest.raises(ConfigError, match="adam needs a GPU"):
        fused_params(TrainConfig(embedding_optimizer="adam"), "cpu")
    ebc = build_model("dlrm", SCHEMA, tiny.model, device="meta").embedding.ebc
    groups = [EmbeddingGroupConfig(features=["nothing"]), EmbeddingGroupConfig(max_rows=400, optimizer="adam")]
    with pytest.raises(ConfigError, match=re.escape("train.embedding_groups[1]: adam needs a GPU")):
        assign_table_optimizers(ebc, TrainConfig(embedding_groups=groups), "cpu")
    with pytest.raises(ConfigError, match=re.escape("ignored by FBGEMM's CPU kernels; on CPU use train.embedding_l2")):
        fused_params(TrainConfig(embedding_weight_decay=1e-4), "cpu")
    fused_params(TrainConfig(embedding_optimizer="adam", embedding_weight_decay=1e-4), "cuda")


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_embedding_weight_decay_shrinks_looked_up_rows_only(env: DistEnv, tiny: Config, mode: str) -> None:
    """On a GPU: the exact update. On CPU (refused there: FBGEMM's CPU kernels ignore weight decay):
    what a GPU run hands FBGEMM."""
    lr, wd = 0.01, 0.5
    train = TrainConfig(
        **FUSED_ONLY, embedding_learning_rate=lr, embedding_weight_decay=wd, embedding_weight_decay_mode=mode
    )
    if not torch.cuda.is_available():
        handed = fused_params(train, "cuda")
        assert handed["weight_decay"] == wd and handed["learning_rate"] == lr
        assert handed["weight_decay_mode"].name == {"l2": "L2", "decoupled": "DECOUPLE"}[mode]
        with pytest.raises(ConfigError, match="ignored by FBGEMM's CPU kernels"):
            fused_params(train, "cpu")
        return
    sharded = shard(env, train, tiny, SCHEMA_FUSED)
    before = sharded.tables()
    sharded.step_on_pooled(ids(big=[1], mid=[2]), scale=0.0)  # a zero gradient: only the decay acts
    after = sharded.tables()
    w = before["t_big"][1]
    # decoupled: w <- (1 - lr·wd) w; l2: g = wd·w, normalised row-wise by Adagrad: w <- w - lr·wd·w / rms(wd·w)
    shrink = lr * wd if mode == "decoupled" else lr * wd / (wd * w).pow(2).mean().sqrt()
    expected = w * (1 - shrink)
    torch.testing.assert_close(after["t_big"][1], expected, rtol=1e-4, atol=1e-7)
    assert after["t_big"][1].norm() < w.norm()
    torch.testing.assert_close(after["t_big"][5], before["t_big"][5])  # not looked up: untouched


# ---- learning rates ---------------------------------------------------------------------------------
def test_plateau_multiplies_after_patience_validations_without_gain() -> None:
    train = TrainConfig(plateau_factor=0.1, plateau_patience=2)
    scales, scale = [], 1.0
    for checks_without_gain in [0, 1, 2, 0, 1, 2, 3, 4]:  # 0: a better AUC resets the count
        scale = plateau_scale(scale, checks_without_gain, train)
        scales.append(scale)
    assert scales == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001])
    assert plateau_scale(1.0, 5, TrainConfig()) == 1.0  # plateau_factor 1: off
    floored = TrainConfig(plateau_factor=0.1, plateau_min_factor=0.05)
    assert plateau_scale(plateau_scale(1.0, 1, floored), 2, floored) == pytest.approx(0.05)


def test_learning_rates_scale_dense_and_fused_rates(env: DistEnv, tiny: Config) -> None:
    train = TrainConfig(
        **FUSED_ONLY,
        embedding_optimizer="sgd",
        embedding_learning_rate=1.0,
        warmup_steps=4,
        schedule_embeddings=True,
        learning_rate=0.01,
    )
    sharded = shard(env, train, tiny, SCHEMA_FUSED)
    rates = LearningRates(sharded.dense, [sharded.dmp.fused_optimizer], train, total_steps=100)
    assert rates.apply(step=1, plateau=0.1) == pytest.approx(0.01 * 0.5 * 0.1)  # warm-up 2/4, one plateau
    before = sharded.tables()
    sharded.step_on_pooled(ids(big=[1], mid=[2]), scale=1.0)
    # The fused kernel got the new rate: SGD moves the row by lr·g = 1.0 · 0.5 · 0.1.
    torch.testing.assert_close(sharded.tables()["t_mid"][2] - before["t_mid"][2], torch.full((16,), -0.05))
    rates.train = dataclasses.replace(train, schedule_embeddings=False)
    rates.apply(step=1, plateau=0.1)
    fused_rates = [g["lr"] for g in sharded.dmp.fused_optimizer.param_groups]  # one group per kernel
    assert fused_rates == pytest.approx([0.1] * len(fused_rates))  # the plateau only


# ---- dense parameters and the loss --------------------------------------------------------------------
def test_dense_weight_decay_shrinks_weight_matrices_only(tiny: Config, tiny_schema: FeatureSchema) -> None:
    for weight_decay in (0.0, 0.1):
        model = build_model("wukong", tiny_schema, tiny.model)
        optimizer, _ = build_optimizers(model, TrainConfig(learning_rate=0.01, weight_decay=weight_decay))
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        for p in model.parameters():
            p.grad = torch.zeros_like(p)  # unused parameters: only the decay moves them
        optimizer.step()
        for name, p in model.named_parameters():
            decayed = weight_decay and p.dim() >= 2 and ".ebc." not in name
            expected = before[name] * (1 - 0.01 * weight_decay) if decayed else before[name]
            torch.testing.assert_close(p.detach(), expected, msg=name)


def test_embedding_l2_adds_the_penalty_and_reports_the_log_loss(tiny: Config, tiny_schema: FeatureSchema) -> None:
    model = build_model("wukong", tiny_schema, tiny.model)
    batch = random_batch(tiny_schema, 32)
    plain_objective, (plain_loss, _, _) = TrainModule(model)(batch)
    objective, (loss, _, _) = TrainModule(model, embedding_l2=0.5)(batch)
    pooled = model.embedding(batch.dense, batch.sparse)[:, model.embedding.num_dense_embeddings :]
    torch.testing.assert_close(objective, plain_objective + 0.5 * (pooled**2).sum(dim=(1, 2)).mean())
    torch.testing.assert_close(loss, plain_loss)  # reported: the log loss alone
    objective.backward()
    table = model.embedding.ebc.embedding_bags["t_cat_0"].weight
    unused = torch.ones(table.shape[0], dtype=torch.bool)
    unused[batch.sparse["cat_0"].values()] = False
    assert not table.grad[unused].any() and table.grad[~unused].any()  # the batch's rows only


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.embedding_optimizer=adamw", "train.embedding_optimizer must be one of rowwise_adagrad"),
        ("train.embedding_weight_decay_mode=l1", "train.embedding_weight_decay_mode must be one of l2, decoupled"),
        ("train.plateau_factor=2", "train.plateau_factor must be in (0, 1]"),
        ("train.plateau_patience=0", "train.plateau_patience must be > 0"),
        ("train.plateau_min_factor=2", "train.plateau_min_factor must be in [0, 1]"),
        ("train.plateau_restore=true", "train.plateau_restore needs a plateau schedule: set train.plateau_factor"),
        ("train.weight_decay=-1", "train.weight_decay must be >= 0"),
        ("train.embedding_grad_clip=-1", "train.embedding_grad_clip must be >= 0"),
        ("train.embedding_groups=[{optimizer: sgd, weight_decay: 0.1}]", "FBGEMM's sgd has no weight decay"),
        ("train.embedding_groups=[{min_rows: 10, max_rows: 5}]", "need 0 <= min_rows <= max_rows"),
        ("train.embedding_groups=[{rows: 5}]", "unknown key 'rows'; valid keys in EmbeddingGroupConfig: features"),
    ],
)
def test_bad_train_knobs_are_rejected_by_name(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("tiny", [override])


# ---- the whole trainer ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_plateau_lowers_every_rate_after_a_flat_validation(ml_dataset: str, tmp_path: Path) -> None:
    # Rates so small that the weights cannot move: every validation equals the first, none is better.
    run = wukong_train(
        ml_dataset,
        tmp_path / "run",
        *("--max-steps", "9", "--validate-every", "3", "--log-every", "1", "--warmup-steps", "0"),
        *("--learning-rate", "1e-12", "--embedding-learning-rate", "1e-12"),
        *("--plateau-factor", "0.1", "--plateau-patience", "1", "--set", "train.schedule_embeddings=true"),
    )
    assert run.returncode == 0, run.output
    lr = {r["step"]: r["lr"] for r in run.history() if "lr" in r}
    aucs = [r["valid"]["auc"] for r in run.validations()]
    assert aucs[0] == aucs[1] == aucs[2]  # flat
    assert lr[3] == pytest.approx(1e-12)  # steps 1-3 ran before the first validation
    assert lr[4] == pytest.approx(1e-13) and lr[7] == pytest.approx(1e-14)  # x0.1 after each flat one
    assert "learning rates x0.1 of their base" in run.output
    assert "malloc: freed host memory stays in the process for reuse" in run.output  # the default, retain


@pytest.mark.slow
def test_every_knob_trains_exports_and_evaluates(ml_dataset: str, tmp_path: Path) -> None:
    knobs = [
        "model.mlp_dropout=0.1",
        "model.mlp_norm=batchnorm",
        "model.head_norm=layernorm",
        "model.dense_norm=layernorm",
        "model.fmb_activation=relu",
        "model.fm_projection_init=normal",
        "model.linear_init=xavier_normal",
        "model.embedding_init=normal",
        "model.embedding_init_scale=1e-4",
        "train.weight_decay=1e-4",
        "train.embedding_l2=1e-6",
        "train.embedding_grad_clip=10",
        "train.grad_clip_norm=10",
        "train.plateau_factor=0.1",
        "train.ema_decay=0.99",
        "train.precision=bf16",
        "train.malloc=system",
        "train.embedding_groups=[{features: [movie_id], optimizer: adagrad, learning_rate: 0.02}]",
    ]
    run = wukong_train(
        ml_dataset, tmp_path / "run", "--max-steps", "30", "--validate-every", "15", *[f"--set={k}" for k in knobs]
    )
    assert run.returncode == 0, run.output
    assert "embedding group: t_movie_id trained by adagrad lr=0.02" in run.output
    assert "malloc: the C library's defaults (malloc mode system)" in run.output
    card = run.card()
    assert card["config"]["model"]["mlp_norm"] == "batchnorm" and card["config"]["train"]["weight_decay"] == 1e-4
    assert 0.5 < card["metrics"]["valid"]["auc"] <= 1
    from wukong.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tmp_path / "run"), "--data", ml_dataset, "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.5 < metrics["auc"] <= 1  # the exported model (BatchNorm statistics included) loads and predicts
