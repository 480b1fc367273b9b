"""The learning rate of every optimizer step, and the parameter groups it applies to.

    groups    one group (every parameter) by default; with --head-lr-mult other than 1 or
              --freeze-body-epochs, two: "body" and "head" (the class head, and the topic head of a
              two-head net), the head's lr the body's times --head-lr-mult
    step      lr * gamma ** (epoch // --lr-step) (--lr-step-unit epoch, as the reference), or
              lr * gamma ** (step // --lr-step) counted in optimizer steps (--lr-step-unit step)
    cosine    lr * (1 + cos(pi * t / epochs)) / 2, t the run's time in epochs at this batch (epoch +
              batch / batches in the epoch: exact for epochs of different lengths, e.g. a curriculum)
    warm-up   either schedule times min(1, (step + 1) / --warmup-steps) over the first optimizer steps
    freeze    for the first --freeze-body-epochs epochs the body's gradients are dropped before each
              step: its weights (and their momentum) stay as they are; its batch-norm statistics still
              follow the data

Every value is a function of (epoch, batch, optimizer steps done), which the checkpoint holds: a
resumed run sets the very learning rates an uninterrupted one would have.
"""

import math
from dataclasses import dataclass

from torch import nn

from wv.models import head_name
from wv.train.options import TrainOptions


@dataclass(frozen=True)
class LrSchedule:
    lr: float
    kind: str = "step"  # step | cosine
    step: int = 6
    unit: str = "epoch"  # of `step`: epoch | step
    gamma: float = 0.1
    warmup_steps: int = 0
    epochs: int = 1

    @classmethod
    def of(cls, o: TrainOptions) -> "LrSchedule":
        return cls(o.lr, o.lr_schedule, o.lr_step, o.lr_step_unit, o.lr_gamma, o.warmup_steps, o.epochs)

    def __call__(self, epoch: int, fraction: float, steps_done: int) -> float:
        """The body's lr for the optimizer step after `steps_done` steps, taken `fraction` of the way through `epoch`."""
        if self.kind == "cosine":
            lr = self.lr * (1 + math.cos(math.pi * min((epoch + fraction) / self.epochs, 1.0))) / 2
        else:
            lr = self.lr * self.gamma ** ((epoch if self.unit == "epoch" else steps_done) // self.step)
        if steps_done < self.warmup_steps:
            lr *= (steps_done + 1) / self.warmup_steps
        return lr


def two_groups(o: TrainOptions) -> bool:
    return o.head_lr_mult != 1 or o.freeze_body_epochs > 0


def param_groups(model: nn.Module, classifier: nn.Module, o: TrainOptions) -> list[dict]:
    """The optimizer's groups: all parameters in one, or the body's and the head's ("name" and "lr_mult" keys)."""
    if not two_groups(o):
        return [{"params": list(model.parameters()), "name": "all", "lr_mult": 1.0}]
    head_params = {id(p) for p in getattr(classifier, "module", classifier).get_submodule(head_name(classifier)).parameters()}
    head_params |= {id(p) for p in model.topic_head.parameters()} if hasattr(model, "topic_head") else set()
    body = [p for p in model.parameters() if id(p) not in head_params]
    head = [p for p in model.parameters() if id(p) in head_params]
    return [{"params": body, "name": "body", "lr_mult": 1.0}, {"params": head, "name": "head", "lr_mult": float(o.head_lr_mult)}]


def set_lr(optimizer, lr: float) -> dict:
    """Every group's lr from the body's; {group name: lr} for the log (a checkpoint from before the groups had names: "all")."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return {group.get("name", "all"): group["lr"] for group in optimizer.param_groups}


def drop_body_gradients(optimizer) -> None:
    """A frozen body: SGD skips a parameter without a gradient (no update, no weight decay, momentum kept)."""
    for group in optimizer.param_groups:
        if group.get("name") == "body":
            for p in group["params"]:
                p.grad = None
