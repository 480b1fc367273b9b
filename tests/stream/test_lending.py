"""Batch buffers lent by a loader worker (wv.stream.lending): the main process gets a copy, the buffer is
refilled only once given back, and a worker never waits for one."""

import pickle
from multiprocessing.reduction import ForkingPickler

import torch

from wv.stream.lending import KEPT_COPIES, BatchPool, Lent


def images(value: int, channels_last: bool = False) -> list[torch.Tensor]:
    made = [torch.full((3, 4, 5), value + i, dtype=torch.uint8) for i in range(2)]
    return [i.permute(1, 2, 0).contiguous().permute(2, 0, 1) for i in made] if channels_last else made


def sent(lent) -> Lent:
    """What the main process receives from a worker (shared memory, as a DataLoader sends it)."""
    return pickle.loads(ForkingPickler.dumps(lent))


def test_a_buffer_is_refilled_only_after_its_batch_is_copied_out():
    pool = BatchPool(workers=1, slots=2)
    first, second = sent(pool.lend(images(10), worker=0)), sent(pool.lend(images(20), worker=0))
    third = pool.lend(images(30), worker=0)  # both buffers on loan: a batch of its own, no waiting
    assert isinstance(third, torch.Tensor) and third[0, 0, 0, 0] == 30
    copy = first.take()
    assert torch.equal(copy, torch.stack(images(10)))
    fourth = sent(pool.lend(images(40), worker=0))  # the buffer given back is filled again...
    assert torch.equal(copy, torch.stack(images(10)))  # ...and the copy already taken keeps its pixels
    assert torch.equal(second.take(), torch.stack(images(20))) and torch.equal(fourth.take(), torch.stack(images(40)))


def test_a_batch_dropped_untaken_gives_its_buffer_back():
    pool = BatchPool(workers=1, slots=1)
    dropped = sent(pool.lend(images(1), worker=0))
    assert isinstance(pool.lend(images(2), worker=0), torch.Tensor)
    del dropped
    assert isinstance(pool.lend(images(3), worker=0), Lent)


def test_images_keep_their_memory_layout():
    pool = BatchPool(workers=1, slots=1)
    batch = sent(pool.lend(images(5, channels_last=True), worker=0)).take()
    assert batch.is_contiguous(memory_format=torch.channels_last) and torch.equal(batch, torch.stack(images(5)))


def test_the_main_process_reuses_a_batchs_memory_only_once_nothing_uses_it():
    pool = BatchPool(workers=1, slots=2)
    first = sent(pool.lend(images(1), worker=0)).take()
    second = sent(pool.lend(images(2), worker=0)).take()
    where, view = first.data_ptr(), second[1]
    del first, second  # `view` still uses the second batch's memory
    third = sent(pool.lend(images(3), worker=0)).take()
    assert third.data_ptr() == where and torch.equal(view, images(2)[1])
    fourth = sent(pool.lend(images(4), worker=0)).take()
    assert torch.equal(view, images(2)[1]) and torch.equal(third, torch.stack(images(3))) and torch.equal(fourth, torch.stack(images(4)))


def test_the_reused_memory_is_bounded():
    pool = BatchPool(workers=1, slots=1)
    held = [sent(pool.lend(images(i), worker=0)).take() for i in range(KEPT_COPIES + 3)]  # all still held
    assert len(pool.copies) == KEPT_COPIES
    assert all(torch.equal(batch, torch.stack(images(i))) for i, batch in enumerate(held))
