"""The training loop: shard, train with the sparse-dist pipeline, validate, stop early, checkpoint, export.

Run it through ``python -m wukong.train`` (one process per device under torchrun) or ``wukong train``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd.profiler import record_function
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

from wukong.config import Config, config_to_dict
from wukong.data.errors import DataError
from wukong.data.reader import DatasetReader
from wukong.data.vocabulary import write_copy
from wukong.evaluate import compute_metrics, oracle_metrics
from wukong.io import open_storage
from wukong.malloc import configure_malloc
from wukong.model import build_model, count_flops
from wukong.train import outputs, warm_start
from wukong.train.average import TRAINING_WEIGHTS, WeightAverage
from wukong.train.checkpoint import Checkpointer, parameters_of
from wukong.train.distributed import DistEnv
from wukong.train.module import TrainModule
from wukong.train.optim import (
    LearningRates,
    assign_table_optimizers,
    build_optimizers,
    embedding_optimizers,
    plateau_scale,
)
from wukong.train.precision import precision_note, resolve_precision
from wukong.train.predict import predict
from wukong.train.rowlog import RowLog
from wukong.train.sharding import build_plan, format_plan, make_sharder, plan_rows
from wukong.train.tensorboard import TensorBoard
from wukong.train.warm_start import WarmStart


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Progress:
    """Everything needed to continue a run exactly where a checkpoint left it."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of `epoch` already trained on
    best_auc: float = -math.inf
    best_step: int | None = None
    checks_without_gain: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    last_validated: int = -1  # the step validated last (a resume must not validate it again)
    lr_scale: float = 1.0  # the plateau factor: train.plateau_factor ** (plateaus so far)


def log(env: DistEnv, message: str) -> None:
    if env.is_main:
        print(message, flush=True)


def _inject_fault(step: int, env: DistEnv) -> None:
    """Test hook: ``WUKONG_FAULT_KILL_STEP=s`` (and ``WUKONG_FAULT_KILL_RANK``, default 1) SIGKILLs that
    rank at step s of the first attempt of a torchrun job, as a crashed node would die."""
    target = os.environ.get("WUKONG_FAULT_KILL_STEP")
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if (
        target
        and first_attempt
        and step == int(target)
        and env.rank == int(os.environ.get("WUKONG_FAULT_KILL_RANK", 1))
    ):
        os.kill(os.getpid(), signal.SIGKILL)


class Trainer:
    def __init__(
        self,
        cfg: Config,
        data_uri: str,
        output_uri: str,
        env: DistEnv,
        resume: str = "auto",
        init_from: str | None = None,
        init_label: str | None = None,
    ) -> None:
        """``init_from``: a trained model's folder to start from (:mod:`wukong.train.warm_start`) unless
        the run resumes its own checkpoint; ``init_label``: how the log names it (a registry version)."""
        train = cfg.train
        log(env, configure_malloc(train.malloc))  # before the model, its optimizers and the batches are allocated
        if train.batch_size % env.world_size:
            raise DataError(f"train.batch_size {train.batch_size} is not divisible by the {env.world_size} ranks")
        self.cfg, self.env, self.data_uri, self.output_uri = cfg, env, data_uri, output_uri
        self.output = open_storage(output_uri)
        self.checkpointer = Checkpointer(output_uri, env, train.keep_checkpoints)
        if resume != "auto" and self.checkpointer.latest() is not None:  # before anything is written there
            raise DataError(
                f"{output_uri}: holds checkpoints of an earlier run; use --resume auto to continue it, "
                "or give a new --output"
            )
        self.local_batch = train.batch_size // env.world_size
        common = dict(rank=env.rank, world_size=env.world_size, num_workers=train.num_workers, seed=train.seed)
        self.train_reader = DatasetReader(data_uri, "train", self.local_batch, drop_last=True, **common)
        self.valid_reader = DatasetReader(data_uri, "valid", self.local_batch, drop_last=False, shuffle=False, **common)
        self.schema = self.train_reader.schema
        torch.manual_seed(train.seed)
        model = build_model(cfg.model.name, self.schema, cfg.model, device="meta")
        self.flops = count_flops(model)
        precision = resolve_precision(train.precision, env.device)
        note = precision_note(precision, env.device)
        if note:
            log(env, note)
        module = TrainModule(
            model,
            precision=precision,
            device_type=env.device.type,
            embedding_l2=train.embedding_l2,
            compile=train.compile,
            log=lambda message: log(env, message),
        )
        ebc = model.embedding.ebc
        sharder = make_sharder(train, env)
        grouped = assign_table_optimizers(ebc, train, env.device.type)
        plan = build_plan(module, ebc, sharder, train, env, self.local_batch)
        self.plan_rows = plan_rows(plan, ebc)
        log(env, f"sharding plan ({train.sharding}, {env.world_size} ranks):\n{format_plan(plan, ebc)}")
        for table, _, _, sharding, *_ in self.plan_rows:
            if table in grouped:  # replicated tables: their group's optimizer, or Adam (replicated_tables=dense)
                dense = sharding == "data_parallel" and train.replicated_tables == "dense"
                trained_by = "Adam" if dense else grouped[table]
                log(env, f"embedding group: {table} trained by {trained_by}")
        self.model = DistributedModelParallel(module, device=env.device, plan=plan, sharders=[sharder])
        module.warm_up(self.local_batch, env.device)  # train.compile=dense: compile now (or fall back, logged)
        self.optimizer, self.dense_optimizer = build_optimizers(self.model, train)
        # train.ema_decay: validation, checkpoints and the exported model use the averaged dense weights
        self.average = WeightAverage(self.dense_optimizer.params, train.ema_decay) if train.ema_decay else None
        self.steps_per_epoch = len(self.train_reader)  # ⌊rows / batch_size⌋ whatever the world size (data.plan)
        all_epochs = self.steps_per_epoch * train.epochs
        self.total_steps = min(train.max_steps, all_epochs) if train.max_steps else all_epochs  # the real length
        tables = embedding_optimizers(self.optimizer)
        self.learning_rates = LearningRates(self.dense_optimizer, tables, train, self.total_steps)  # before _resume
        self.saved_step: int | None = None  # the step this process saved last or resumed from
        self.saved_info: dict[str, Any] = {}  # and the progress saved with it
        self.unchecked_loss: torch.Tensor | None = None  # the last step's loss while not yet checked finite
        self.row_log = RowLog.from_env(env.rank)  # test hook: off unless WUKONG_RECORD_ROWS is set
        self.progress = Progress()
        self.history: list[dict[str, Any]] = []
        self.step_hooks: list[Callable[[], None]] = []  # called after every step (benchmarks/profile_step.py)
        self.tensorboard = TensorBoard(self.output) if env.is_main else None
        if resume == "auto":
            self._resume()
        if init_from:
            self._warm_start(init_from, init_label)

    # ---- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optim": self.optimizer.state_dict()}
        if self.average:
            state[TRAINING_WEIGHTS] = self.average.checkpoint_state()
        return state

    def _averaged(self) -> AbstractContextManager:
        """The model holds the weights it is judged by inside: the averages under train.ema_decay."""
        return self.average.applied_weights() if self.average else nullcontext()

    def _load(self, step: int, rng: bool = True) -> tuple[dict[str, Any], list[str]]:
        """Load checkpoint ``step``'s weights and optimizer state into the model in place."""
        self.optimizer.init_state()  # optimizer state must exist before DCP can load into it
        state = self._state()
        # Optional: optimizer state saved under another optimizer; raw weights a run without an average lacks.
        info, fresh = self.checkpointer.load(step, state, rng=rng, optional=("optim.", TRAINING_WEIGHTS + "."))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optim"])
        if self.average:
            without_average = [key for key in fresh if key.startswith(TRAINING_WEIGHTS + ".")]
            if without_average:  # its weights are where training and the average start
                self.average.reset()
                log(self.env, f"checkpoint step {step} holds no weight average: train.ema_decay starts one from it")
            else:
                self.average.loaded()
            fresh = [key for key in fresh if key not in without_average]
        return info, fresh

    def _resume(self) -> None:
        step = self.checkpointer.latest()
        if step is None:
            return
        info, fresh = self._load(step)
        self.progress = Progress(**info["progress"])
        self.train_reader.load_state_dict(info["data_position"])  # the rows of this epoch not yet trained on
        self.saved_step, self.saved_info = step, {k: info[k] for k in ("progress", "data_position")}
        if fresh:
            log(self.env, f"optimizer state started afresh (saved under another sharding): {parameters_of(fresh)}")
        if self.output.exists(outputs.HISTORY):
            lines = self.output.read_bytes(outputs.HISTORY).decode().splitlines()
            self.history = [r for r in map(json.loads, lines) if r["step"] <= step]
        log(self.env, f"resumed from checkpoint step {step} (epoch {self.progress.epoch}, batch {self.progress.batch})")

    def _warm_start(self, init_from: str, label: str | None) -> None:
        if self.saved_step is not None:
            log(self.env, f"--init-from {label or init_from}: not applied, the run resumed its own checkpoint")
            return
        plan = WarmStart.plan(init_from, self.cfg, self.data_uri, self.schema, label)
        report = plan.load(self.model, self.optimizer, self.env)
        if self.average:
            self.average.reset()
        if self.env.is_main:
            outputs.write_json(self.output, warm_start.RECORD, report)
        log(self.env, warm_start.describe(report))

    @record_function("wukong.checkpoint")
    def _checkpoint(self) -> None:
        """Save this step: its state once (a step is saved again when an improving validation falls on
        a checkpoint step, or at the end after a resume), its progress whenever that changed since."""
        p = self.progress
        self._confirm_finite()
        info = {"progress": dataclasses.asdict(p), "data_position": self.train_reader.state_dict(batches=p.batch)}
        if self.saved_step != p.step:
            protect = {p.best_step} if p.best_step is not None else set()
            with self._averaged():
                self.checkpointer.save(p.step, self._state(), info, protect)
        elif json.dumps(info, sort_keys=True) != json.dumps(self.saved_info, sort_keys=True):
            self.checkpointer.update_info(p.step, info)
        self.saved_step, self.saved_info = p.step, info
        self._write_history()

    def _write_history(self) -> None:
        if self.env.is_main:
            body = "".join(json.dumps(r) + "\n" for r in self.history)
            self.output.write_bytes(outputs.HISTORY, body.encode())
            self.tensorboard.publish()

    # ---- validation --------------------------------------------------------------------------
    @record_function("wukong.validate")
    def _validate(self, pipeline: TrainPipelineSparseDist | None) -> bool:
        """Validate; returns True when training should stop early."""
        self._confirm_finite()  # a diverged model must never become the best one
        self.progress.last_validated = self.progress.step
        model = pipeline.detach() if pipeline else self.model
        model.eval()
        self.valid_reader.set_epoch(0)
        with self._averaged():
            probabilities, labels, row_ids = predict(lambda b: model(b)[1][1], self.valid_reader, self.env.device)
        model.train()
        if pipeline:
            pipeline.attach(model)
        if not torch.isfinite(probabilities).all():  # the last update can break weights after a finite loss
            raise TrainingDiverged(self._diverged("validation predictions are not finite"))
        metrics = compute_metrics(probabilities, labels)
        metrics.update(oracle_metrics(self.data_uri, "valid", row_ids, probabilities, labels))  # teacher data only
        p = self.progress
        improved, rewind = metrics["auc"] > p.best_auc, False
        if improved:
            p.best_auc, p.best_step, p.best_metrics, p.checks_without_gain = metrics["auc"], p.step, metrics, 0
        else:
            p.checks_without_gain += 1
            scale = plateau_scale(p.lr_scale, p.checks_without_gain, self.cfg.train)
            if scale != p.lr_scale:
                log(self.env, f"step {p.step}: no better validation AUC; learning rates x{scale:g} of their base")
                p.lr_scale = scale
                rewind = self.cfg.train.plateau_restore and p.best_step is not None
        self.history.append({"step": p.step, "epoch": p.epoch, "valid": metrics})
        if self.tensorboard:
            self.tensorboard.scalars("valid", metrics, p.step)
        log(
            self.env,
            f"step {p.step}: valid auc {metrics['auc']:.4f} logloss {metrics['logloss']:.4f} ne {metrics['ne']:.4f}",
        )
        if improved:
            self._checkpoint()  # the best model is always a complete checkpoint
        patience = self.cfg.train.patience
        stop = bool(patience and p.checks_without_gain >= patience)
        if rewind and not stop:  # train.plateau_restore: on from the best step (the data position and RNG go on)
            self._load(p.best_step, rng=False)
            log(self.env, f"step {p.step}: restored the weights and optimizer state of step {p.best_step}")
        return stop

    # ---- training ----------------------------------------------------------------------------
    def _step_plain(self, batches) -> torch.Tensor:
        """One step without the train pipeline (train.pipeline=false), its phases labelled for the profiler."""
        with record_function("wukong.input"):
            batch = next(batches).to(self.env.device)
        with record_function("wukong.optimizer"):
            self.optimizer.zero_grad()
        objective, (loss, _, _) = self.model(batch)  # loss: the BCE alone (see TrainModule)
        with record_function("wukong.backward"):
            objective.backward()
        with record_function("wukong.optimizer"):
            self.optimizer.step()
        return loss

    def _done(self) -> bool:
        train, p = self.cfg.train, self.progress
        return p.stopped_early or p.epoch >= train.epochs or bool(train.max_steps and p.step >= train.max_steps)

    def fit(self) -> dict[str, Any]:
        train, p = self.cfg.train, self.progress
        pipeline = TrainPipelineSparseDist(self.model, self.optimizer, self.env.device) if train.pipeline else None
        started, examples = time.time(), 0
        window_start, window_examples = time.time(), 0
        while not self._done():
            # The reader knows how many steps the epoch has left (a prefetching pipeline does not say).
            epoch_end = p.batch + self.train_reader.batches_left()
            batches = iter(self.train_reader)
            if self.row_log:
                batches = self.row_log.track(batches)
            epoch_complete = False
            while not epoch_complete and p.batch < epoch_end and not self._done():
                self.learning_rates.apply(p.step, p.lr_scale)
                loss = pipeline.progress(batches)[0] if pipeline else self._step_plain(batches)
                p.step += 1
                p.batch += 1
                if self.average:
                    self.average.update(p.step)
                if self.row_log:
                    self.row_log.trained(p.step, p.epoch, p.batch)
                _inject_fault(p.step, self.env)
                examples += train.batch_size
                window_examples += train.batch_size
                self.unchecked_loss = loss
                logging_step = p.step % train.log_every == 0 or p.step == 1
                with record_function("wukong.log"):
                    if self.env.device.type == "cpu" or logging_step:  # on GPUs .item() waits: only where due
                        value = self._confirm_finite()
                    if logging_step:
                        self._log_step(value, window_examples / max(time.time() - window_start, 1e-9))
                        window_start, window_examples = time.time(), 0
                validation_step = bool(train.validate_every) and p.step % train.validate_every == 0
                validation_step |= bool(train.max_steps) and p.step >= train.max_steps  # the last step
                epoch_complete = p.batch == epoch_end
                if epoch_complete:  # validate and save as of the next epoch, then read that one
                    p.epoch, p.batch = p.epoch + 1, 0
                    self.train_reader.set_epoch(p.epoch)
                    validation_step = True
                if validation_step:
                    p.stopped_early = self._validate(pipeline)
                if train.checkpoint_every and p.step % train.checkpoint_every == 0:
                    self._checkpoint()
                for hook in self.step_hooks:
                    hook()
            if p.batch and p.batch == epoch_end:  # resumed where no step of this epoch is left
                p.epoch, p.batch = p.epoch + 1, 0
                self.train_reader.set_epoch(p.epoch)
                if p.last_validated != p.step:
                    p.stopped_early = self._validate(pipeline)
        if p.last_validated != p.step:  # stopped by max_steps (or resumed at the end): validate the final model
            self._validate(pipeline)
        seconds = time.time() - started
        self._checkpoint()  # the final state (nothing is written when this step is saved already)
        return self._finish(seconds, examples)

    def _confirm_finite(self) -> float | None:
        """The last step's loss, after checking it is finite (None when it was checked already)."""
        loss, self.unchecked_loss = self.unchecked_loss, None
        if loss is None:
            return None
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(self._diverged(f"loss is {value} at step {self.progress.step}"))
        return value

    def _diverged(self, what: str) -> str:
        step = self.saved_step
        kept = f"the last good checkpoint is step {step}" if step is not None else "no checkpoint was written"
        return (
            f"{what}; stopped, {kept}. Lower train.learning_rate and train.embedding_learning_rate (fused "
            "embedding updates happen inside backward: train.grad_clip_norm never sees their gradients, "
            "train.embedding_grad_clip clamps them), then rerun with --resume auto"
        )

    def _log_step(self, value: float, rate: float) -> None:
        p = self.progress
        lr = self.dense_optimizer.param_groups[0]["lr"]
        self.history.append(
            {"step": p.step, "epoch": p.epoch, "batch": p.batch, "loss": value, "lr": lr, "examples_per_s": rate}
        )
        if self.tensorboard:
            self.tensorboard.scalars("train", {"loss": value, "lr": lr, "examples_per_s": rate}, p.step)
        log(self.env, f"step {p.step} epoch {p.epoch} loss {value:.4f} ({rate:,.0f} examples/s)")

    def _finish(self, seconds: float, examples: int) -> dict[str, Any]:
        p = self.progress
        dist.barrier()
        summary = {
            "steps": p.step,
            "epochs_completed": p.epoch,
            "best_step": p.best_step,
            "stopped_early": p.stopped_early,
            "training_seconds": seconds,
            "examples_per_s": examples / seconds if seconds > 0 else None,
        }
        if self.env.is_main:
            best = p.best_step if p.best_step is not None else p.step
            folder = self.checkpointer.fetch(best)
            state = outputs.export_model(folder, self.cfg.model.name, self.schema, self.cfg)
            outputs.save_model(self.output, state)
            outputs.write_json(self.output, outputs.METRICS, {"split": "valid", "step": best, **p.best_metrics})
            card = {
                "model": self.cfg.model.name,
                "config": config_to_dict(self.cfg),
                "schema": self.schema.to_dict(),
                "dataset": {
                    "uri": self.data_uri,
                    "manifest_sha256": outputs.manifest_sha256(open_storage(self.data_uri)),
                    "run_id": self.train_reader.manifest.run_id,
                    "partition": self.train_reader.manifest.partition,
                },
                "metrics": {"valid": p.best_metrics},
                "mflops_per_example": self.flops.mflops,
                "world_size": self.env.world_size,
                "init_from": warm_start.recorded(self.output),
                "sharding_plan": [[str(c) for c in row] for row in self.plan_rows],
                "package_versions": outputs.package_versions(),
                "git_revision": outputs.git_revision(),
                **summary,
            }
            write_copy(open_storage(self.data_uri), self.output)  # the model's own vocabulary
            outputs.write_json(self.output, outputs.CARD, card)
            self._write_history()
            log(
                self.env,
                f"done: {p.step} steps, best valid auc {p.best_auc:.4f} at step {best}; wrote {self.output_uri}",
            )
        dist.barrier()
        self.checkpointer.close()
        if self.tensorboard:
            self.tensorboard.close()
        return summary
