"""Small settings and scaffolding shared by tests: the smallest backbone, a free port for 2-process gloo tests."""

from __future__ import annotations

import socket

SMALL = {
    "image_size": 16,
    "vae_channels": (8, 16),
    "unet_channels": (16, 32),
    "unet_attention": (False, True),
    "cross_attention_dim": 16,
    "n_tokens": 2,
    "condition_dim": 12,
    "conditioner_hidden": 32,
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for ``init_method=tcp://127.0.0.1:<port>``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
