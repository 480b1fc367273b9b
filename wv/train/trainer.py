"""`wv train`: one readable training loop over the stream, alone or under torchrun.

    world   = distributed.start()                  # rank / world size from torchrun, NCCL or gloo
    stream  = Stream(ROOT, sampler, transform)     # equal batches on every rank, exact resume
    model   = task.build(arch)                     # the task's model (wv.train.tasks); --init loads matching tensors
    for epoch:
        for batch in stream:                       # accum_steps batches per optimizer step
            inputs, targets = task.inputs(batch); loss = task.loss(model(inputs), targets)   (wv.train.tasks)
            backward (no_sync until the last batch of a step)
            lr = schedule(epoch, batch, step)      # step or cosine, warm-up; the head's x --head-lr-mult
            step (the body's gradients dropped for --freeze-body-epochs); checkpoint every N steps
            loss summed on the device (Meter), read back every --log-every steps: no sync per batch
        validate; checkpoint

A task (wv.train.tasks) is a model head + targets + loss: `wv train` runs the class task, `wv pretrain`
the keyword, label-weight and permutation tasks, all through this one loop.

A run lives in one folder (--out): checkpoint.pt (the latest, written atomically: model, optimizer,
stream state, counters), log.jsonl, curves.png, train.json (the summary). `--resume` carries on from
checkpoint.pt into exactly the batches, and the parameters, an uninterrupted run would have had:
the stream replays its plan from (seed, epoch, step), the torch random state is reseeded from
(seed, rank, optimizer step) before every step, and the learning rate is a function of (epoch, batch,
step) (wv.train.schedule), so nothing else needs saving. `--init PATH` starts a new run from another
run's weights (wv.train.init); a resumed run takes its weights from its own checkpoint, never the file.
"""

import contextlib
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from wv.atomic import write_json
from wv.errors import WvError
from wv.models import check_arch, check_input_size, default_input, read_checkpoint, save_checkpoint, size_options
from wv.progress import bar_options
from wv.runtime import check_processes, derive_seed
from wv.shards.root import Root
from wv.stream.config import SamplerConfig
from wv.stream.loader import Stream
from wv.stream.schedule import parse_column
from wv.train import curves, distributed
from wv.train.crops import normalise
from wv.train.evaluate import check_out, check_source
from wv.train.init import describe, init_weights
from wv.train.losses import BackpropGate
from wv.train.meter import Meter, Reading
from wv.train.options import PretrainOptions, TrainOptions
from wv.train.schedule import LrSchedule, drop_body_gradients, param_groups, set_lr
from wv.train.tasks import make_task

CHECKPOINT, LOG, SUMMARY = "checkpoint.pt", "log.jsonl", "train.json"
# Options that shape the model or the meaning of a step: a resumed run must keep them.
FIXED = ("arch", "width", "image_size", "num_classes", "topic_head", "accum_steps", "head_lr_mult", "freeze_body_epochs")
MIN_SIZE = {"tinycnn": 16}  # others: 32 (five halvings)
MAX_SIZE = 2048
MAX_EPOCHS = 100_000  # beyond it a typo: the run would never end


def check_options(options: TrainOptions) -> None:
    """WvError naming the option unless a TrainOptions can start a run."""
    check_arch(options.arch)
    positive = {"--epochs": options.epochs, "--lr-step": options.lr_step, "--accum-steps": options.accum_steps, "--log-every": options.log_every, "--val-batch-size": options.val_batch_size}
    for flag, value in positive.items():
        if value < 1:
            raise WvError(f"{flag} must be at least 1")
    numbers = {
        "--lr": options.lr,
        "--lr-gamma": options.lr_gamma,
        "--momentum": options.momentum,
        "--weight-decay": options.weight_decay,
        "--soft-threshold": options.soft_threshold,
        "--topic-weight": options.topic_weight,
        "--head-lr-mult": options.head_lr_mult,
    }
    for flag, value in numbers.items():
        if not math.isfinite(value):
            raise WvError(f"{flag} must be a finite number, not {value}")
    if options.lr <= 0 or not 0 < options.lr_gamma <= 1 or options.weight_decay < 0 or not 0 <= options.momentum < 1:
        raise WvError("--lr must be positive, --lr-gamma in (0, 1], --weight-decay 0 or more and --momentum in [0, 1)")
    if options.workers < 0 or options.checkpoint_every < 0 or options.warmup_steps < 0 or options.freeze_body_epochs < 0:
        raise WvError("--workers, --checkpoint-every, --warmup-steps and --freeze-body-epochs must be 0 or more")
    check_processes(options.workers, "--workers")
    if options.epochs > MAX_EPOCHS:
        raise WvError(f"--epochs must be at most {MAX_EPOCHS:,}")
    if options.head_lr_mult < 0:
        raise WvError("--head-lr-mult must be 0 or more")
    if options.lr_schedule not in ("step", "cosine") or options.lr_step_unit not in ("epoch", "step"):
        raise WvError("--lr-schedule must be step or cosine, and --lr-step-unit epoch or step")
    if options.init and options.resume:
        raise WvError("--init starts a new run and --resume continues one: give one of them (a resumed run keeps its own weights)")
    if options.init and not Path(options.init).is_file():
        raise WvError(f"--init {options.init} does not exist")
    if options.precision not in ("auto", "fp32", "bf16"):
        raise WvError("--precision must be auto, fp32 or bf16")
    if options.topic_loss not in ("sigmoid", "softmax"):
        raise WvError("--topic-loss must be sigmoid or softmax")
    if not 0 < options.topic_weight < 1 or options.soft_threshold <= 0:
        raise WvError("--topic-weight must be between 0 and 1 and --soft-threshold positive")
    if options.soft_label:
        parse_column(options.soft_label, "--soft-label")
    if options.backprop_gate:
        BackpropGate.parse(options.backprop_gate)
    if options.width is not None and options.arch != "tinycnn":
        raise WvError("--width applies to --arch tinycnn only")
    if options.width is not None and options.width < 2:
        raise WvError("--width must be at least 2")
    smallest = MIN_SIZE.get(options.arch, 32)
    if options.image_size is not None and not smallest <= options.image_size <= MAX_SIZE:
        raise WvError(f"--image-size of {options.arch} must be between {smallest} and {MAX_SIZE} pixels")
    if options.val:
        check_source(options.val, "--val")
    check_out(options.out)


def train(source, options: TrainOptions, sampler: SamplerConfig, progress: bool = True, say=print, pretrain: PretrainOptions | None = None) -> dict:
    """Train on `source` (a dataset root or shard URLs); returns the run's summary (see Trainer.finish).
    Without `pretrain` the class task (`wv train`), with it the pre-training task it names (`wv pretrain`)."""
    check_options(options)
    world = distributed.start(options.device)
    try:
        return Trainer(source, options, sampler, world, progress, say, pretrain).run()
    finally:
        distributed.stop(world)


class Trainer:
    def __init__(self, source, options: TrainOptions, sampler: SamplerConfig, world, progress: bool, say, pretrain: PretrainOptions | None = None):
        self.source, self.options, self.world, self.progress = source, options, world, progress
        self.say = say if world.main else (lambda *a, **k: None)
        self.out = Path(options.out)
        self.is_root = Root(source).exists()
        self.task = make_task(source, options, pretrain, world, self.is_root)
        self.sampler = sampler = self.task.sampler_config(sampler)
        self.classes = self.task.outputs()
        self.size = options.image_size or default_input(options.arch)["size"]
        if hasattr(self.task, "check_size"):
            self.task.check_size(self.size, MIN_SIZE.get(options.arch, 32))
        self.init_report: dict | None = None
        self.input = {**default_input(options.arch), "size": self.size}
        self.autocast = (world.device.type == "cuda" and options.precision != "fp32") or options.precision == "bf16"
        resumed = self.resume_state()
        self.model = self.make_model(resumed)
        self.optimizer = torch.optim.SGD(param_groups(self.model, self.classifier, options), lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)
        self.lr_schedule, self.lrs = LrSchedule.of(options), {}
        self.stream = Stream(
            source,
            sampler,
            rank=world.rank,
            world_size=world.size,
            transform=self.task.transform(self.size),
            workers=options.workers,
            pin_memory=world.device.type == "cuda",
            persistent_workers=True,
            progress=progress and world.main,
            draw_weight=self.task.draw_weight(sampler) if self.is_root else None,
        )
        self.optimizer_steps, self.batches_run, self.history = 0, 0, []
        # loss and kept share summed on the device: since the last log record, and over the epoch (this rank's;
        # rank 0 carries all ranks' from a checkpoint)
        self.window, self.epoch_sums = Meter(world.device), Meter(world.device)
        if resumed:
            self.optimizer.load_state_dict(resumed["optimizer"])
            self.stream.load_state_dict(resumed["stream"])
            self.optimizer_steps, self.history = resumed["optimizer_steps"], resumed.get("history", [])
            self.init_report = resumed.get("init")
            if self.stream.step:  # mid-epoch: the meters carry on
                self.window.load(Reading(**resumed["log_window"]))
                if world.main:
                    loss, batches, kept = [*resumed["epoch_totals"], math.nan][:3]  # kept: from checkpoints that have it
                    self.epoch_sums.load(Reading(loss, kept, int(batches), 0))
        if world.main:  # the log of a killed run is cut back to its checkpoint (to nothing: a run killed before one)
            curves.truncate_log(self.out / LOG, self.optimizer_steps if resumed else -1)
        self.ddp = DistributedDataParallel(self.model, device_ids=[world.device] if world.device.type == "cuda" else None) if world.distributed else self.model

    # -- set-up ------------------------------------------------------------------------------
    @property
    def classifier(self):
        """The bare model (without the task's extra heads): what the checkpoint's `model` holds."""
        return self.task.bare(self.model)

    @property
    def arch_options(self) -> dict:
        return {"width": self.options.width} if self.options.width else size_options(self.options.arch, self.size)

    def resume_state(self) -> dict | None:
        path = self.out / CHECKPOINT
        if not self.options.resume:
            if path.exists():
                raise WvError(f"{self.out} already holds a run; pass --resume to continue it, or choose another --out")
            return None
        if not path.exists():
            raise WvError(f"nothing to resume: {path} does not exist")
        state = read_checkpoint(path, map_location=self.world.device)
        saved = state.get("options", {})
        mine = asdict(self.options)
        changed = [k for k in FIXED if saved.get(k) != mine[k]]
        if state.get("task", {"name": "class"}) != self.task.record():
            changed.append("task")
        if changed or state["classes"] != self.classes:
            what = ", ".join(f"--{k.replace('_', '-')}" for k in changed) or "the class list"
            raise WvError(f"{path} was trained with another {what}; resume with the same, or start a new --out")
        self.say(f"resuming {path}: epoch {state['stream']['epoch']}, batch {state['stream']['step']}, {state['optimizer_steps']} optimizer steps done")
        return state

    def make_model(self, resumed: dict | None):
        torch.manual_seed(self.sampler.seed)  # the same initial weights on every rank
        model = self.task.build(self.options.arch, self.arch_options)
        check_input_size(self.task.bare(model), self.options.arch, self.task.checkpoint_input({"size": self.size})["size"])
        if resumed:
            self.task.load(model, resumed)
        elif self.options.init:
            self.init_report = init_weights(self.task.bare(model), self.options.init, self.classes, getattr(model, "topic_head", None))
            self.say(describe(self.init_report))
        model = model.to(self.world.device)
        return model.to(memory_format=torch.channels_last) if self.world.device.type == "cuda" else model

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> dict:
        o, started = self.options, time.perf_counter()
        what = "wv train" if self.task.name == "class" else f"wv pretrain --task {self.task.name}"
        self.say(
            f"{what}: {o.arch} on {self.source}, {len(self.classes)} outputs, world size {self.world.size}, "
            f"{self.world.device}, batch {self.sampler.batch_size} per rank x {o.accum_steps} accumulation"
        )
        steps_at_start = self.optimizer_steps
        while self.stream.epoch < o.epochs:
            self.run_epoch()
        return self.finish(time.perf_counter() - started, steps_at_start)

    def run_epoch(self) -> None:
        """One epoch, top to bottom. Each batch: forward, loss, backward (DDP all-reduces the gradients only on
        the last batch of an optimizer step: no_sync before it); every --accum-steps batches an optimizer step;
        every --log-every steps a log record, every --checkpoint-every a checkpoint. The loss stays on the
        device (in the meters) and is read back only for a record or a checkpoint: no sync per batch."""
        o, world = self.options, self.world
        epoch, steps = self.stream.epoch, len(self.stream)
        self.lrs = set_lr(self.optimizer, self.lr_schedule(epoch, 0.0, self.optimizer_steps))
        self.model.train()
        window_started = epoch_started = time.perf_counter()
        bar = tqdm(total=steps, initial=self.stream.step, desc=f"epoch {epoch}", unit="batch", dynamic_ncols=True, **bar_options(self.progress and world.main))
        for batch in self.stream:
            index = batch["step"]
            last = (index + 1) % o.accum_steps == 0 or index + 1 == steps  # of an optimizer step
            if index % o.accum_steps == 0:
                torch.manual_seed(derive_seed(self.sampler.seed, world.rank, self.optimizer_steps))
            images, labels, weights = self.to_device(batch)
            inputs, targets = self.task.inputs(images, labels, batch)
            with self.ddp.no_sync() if world.distributed and not last else contextlib.nullcontext():
                with torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    output = self.ddp(inputs)
                loss, weights = self.task.loss(output, targets, batch, weights, epoch + index / steps, self.optimizer_steps)
                (loss / o.accum_steps).backward()
            kept, seen = (weights > 0).float().mean(), len(labels) * world.size
            self.window.add(loss, kept, seen)
            self.epoch_sums.add(loss, kept, seen)
            self.batches_run += 1
            bar.update(1)
            if not last:
                continue
            self.lrs = set_lr(self.optimizer, self.lr_schedule(epoch, index / steps, self.optimizer_steps))
            if epoch < o.freeze_body_epochs:
                drop_body_gradients(self.optimizer)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.optimizer_steps += 1
            if self.optimizer_steps % o.log_every == 0:
                window = self.window.read()
                self.check_finite(window.loss, epoch, index)
                bar.set_postfix(loss=f"{window.loss / window.batches:.3f}")
                self.record(
                    {
                        "kind": "train",
                        "epoch": epoch,
                        "batch": index + 1,
                        "step": self.optimizer_steps,
                        **self.lr_record(),
                        "loss": window.loss / window.batches,
                        "gradient_share": window.kept / window.batches,
                        "images_per_s": window.images / max(time.perf_counter() - window_started, 1e-9),
                    }
                )
                window_started = time.perf_counter()
            if o.checkpoint_every and self.optimizer_steps % o.checkpoint_every == 0 and index + 1 < steps:
                self.save_checkpoint(self.epoch_totals(epoch, index))
        bar.close()
        self.end_epoch(epoch, time.perf_counter() - epoch_started)

    def to_device(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's normalised images, labels and stream weights on this rank's device (copies queued, not awaited)."""
        device = self.world.device
        self.task.check_batch(batch)
        images = normalise(batch["image"].to(device, non_blocking=True), self.input["mean"], self.input["std"])
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return images, batch["label"].to(device, non_blocking=True), batch["weight"].to(device, non_blocking=True)

    def check_finite(self, loss_sum: float, epoch: int, index: int) -> None:
        if not math.isfinite(loss_sum):
            raise WvError(f"the loss became {loss_sum} in epoch {epoch} by batch {index + 1}; lower --lr")

    def epoch_totals(self, epoch: int, index: int) -> list[float]:
        """The epoch's loss sum, batches and kept share sum so far over every rank (an all-reduce: every rank calls it)."""
        mine = self.epoch_sums.read(reset=False)
        totals = distributed.all_sum(self.world, torch.tensor([mine.loss, mine.batches, mine.kept], dtype=torch.float64)).tolist()
        self.check_finite(totals[0], epoch, index)
        return totals

    # -- records -----------------------------------------------------------------------------
    def lr_record(self) -> dict:
        """The body's lr as "lr" (the head's too, as "lr_head", when they differ in groups)."""
        lrs = self.lrs or {"all": self.options.lr}
        return {"lr": lrs.get("body", lrs.get("all")), **({"lr_head": lrs["head"]} if "head" in lrs else {})}

    def end_epoch(self, epoch: int, seconds: float) -> None:
        loss, batches, kept = self.epoch_totals(epoch, len(self.stream) - 1)
        self.epoch_sums.reset()
        self.window.reset()  # a window cut short by the epoch's end is not logged
        share = kept / batches if batches and math.isfinite(kept) else None
        record = {"kind": "epoch", "epoch": epoch, "step": self.optimizer_steps, **self.lr_record(), "loss": loss / batches if batches else None, "gradient_share": share, "seconds": round(seconds, 3)}
        if share == 0 and self.world.main:
            print(
                f"warning: no sample had a gradient in epoch {epoch} (gradient share 0): the backprop gate or a step gate is above "
                "every confidence of the model; start the gate later (e.g. --backprop-gate '0@0,0@2,0.5@3,0@10')",
                file=sys.stderr,
            )
        if self.stream.epoch < self.options.epochs:
            self.stream.start()  # the loader workers make the next epoch's first batches while this one is validated and saved
        distributed.sync_buffers(self.world, self.model)  # validate and save the same model on every rank
        record.update(self.task.validate(getattr(self.ddp, "module", self.ddp), self))
        self.history.append(record)
        self.record(record)
        val = "".join(f", {k.replace('_', ' ')} {v:.3f}" for k, v in record.items() if k.endswith(("top1", "top5", "map", "accuracy")) and isinstance(v, float))
        self.say(f"epoch {epoch}: loss {record['loss']:.4f}{val}")
        self.save_checkpoint([0.0, 0.0, 0.0])

    def record(self, record: dict) -> None:
        if self.world.main:
            curves.append_log(self.out / LOG, record)

    def save_checkpoint(self, epoch_totals: list[float]) -> None:
        """Rank 0 writes OUT/checkpoint.pt; `epoch_totals` is the epoch's loss sum and batches so far, over all ranks."""
        if not self.world.main:
            return
        extra = {
            "input": self.task.checkpoint_input(self.input),
            "task": self.task.record(),
            "optimizer": self.optimizer.state_dict(),
            "stream": self.stream.state_dict(),
            "optimizer_steps": self.optimizer_steps,
            "options": asdict(self.options),
            "sampler": self.sampler.to_dict(),
            "world_size": self.world.size,
            "history": self.history,
            "epoch_totals": epoch_totals,
            "log_window": asdict(self.window.read(reset=False)),
            "arch_options": self.arch_options,
        }
        if self.init_report:
            extra["init"] = self.init_report
        extra.update(self.task.head_state(self.model))
        save_checkpoint(self.out / CHECKPOINT, self.classifier, self.options.arch, len(self.classes), self.classes, extra)

    def finish(self, seconds: float, steps_at_start: int) -> dict:
        digests = distributed.all_agree(self.world, distributed.parameter_digest(self.model))
        last = self.history[-1] if self.history else {}
        summary = {
            "world_size": self.world.size,
            "rank": self.world.rank,
            "device": str(self.world.device),
            "arch": self.options.arch,
            "epochs": self.stream.epoch,
            "steps_per_rank": self.batches_run,
            "optimizer_steps": self.optimizer_steps,
            "optimizer_steps_this_run": self.optimizer_steps - steps_at_start,
            "first_loss": self.history[0]["loss"] if self.history else None,
            "final_loss": last.get("loss"),
            "val_top1": last.get("val_top1"),
            "val_top5": last.get("val_top5"),
            **{k: v for k, v in last.items() if k.startswith(("val_", "train_", "chance_")) and k not in ("val_top1", "val_top5")},
            **self.task.summary(),
            "seconds": round(seconds, 2),
            "images_per_s": round(self.batches_run * self.sampler.batch_size * self.world.size / max(seconds, 1e-9), 1),
            "parameter_digests": digests,
            "parameters_equal_across_ranks": len(set(digests)) == 1,
            "init": self.init_report,
            "paths": {"checkpoint": str(self.out / CHECKPOINT), "log": str(self.out / LOG), "curves": str(self.out / curves.PLOT), "summary": str(self.out / SUMMARY)},
        }
        if self.world.main:
            if self.history:
                curves.plot(self.out / LOG, self.out / curves.PLOT)
            else:
                summary["paths"].pop("curves")
            write_json(self.out / SUMMARY, summary)
        if not summary["parameters_equal_across_ranks"]:
            raise WvError(f"the ranks ended with different parameters ({', '.join(digests)}); the run is not consistent")
        return summary
