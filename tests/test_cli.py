"""User errors end in one line, also when they are raised in a DataLoader worker."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from pipeline.cli import UserError, user_message


class _BrokenFrames(Dataset):
    """Two items; the second is a frame that cannot be read."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        if index == 1:
            raise UserError("data/prepared/demo/a.jpg: cannot read image (missing, unreadable or corrupt)")
        return index


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_errors_keep_their_one_line_message(workers: int):
    with pytest.raises(UserError) as err:
        list(DataLoader(_BrokenFrames(), batch_size=1, num_workers=workers))
    assert user_message(err.value) == "data/prepared/demo/a.jpg: cannot read image (missing, unreadable or corrupt)"


def test_other_messages_are_kept_whole():
    assert user_message(UserError("a.csv: line 3: Caught x\nmore")) == "a.csv: line 3: Caught x\nmore"
