"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Small problems on a shared 2-core box: one torch thread is faster and fairer (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
