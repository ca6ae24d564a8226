"Shared test settings: one torch thread per process, one cache (classifier weights, reference statistics) per session."
import os, sys, tempfile
from pathlib import Path

# The checkout under test, never another installed copy: its root goes first on the path of this process and, through
# PYTHONPATH, of every subprocess (notebooks, the CLI, Ray workers).
ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, ROOT)
os.environ['PYTHONPATH'] = os.pathsep.join([ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p and p != ROOT])

# Small convolutions on two shared cores run several times faster on one thread each than on two that contend;
# set before torch is imported (notebook subprocesses inherit it through the environment).
os.environ.setdefault('OMP_NUM_THREADS', '1')
# Classifier weights and reference statistics are cached on disk; one cache for the whole test session (notebooks
# included, through the environment) means each is built once, as on a user's machine.
os.environ.setdefault('E2GAN_CACHE', tempfile.mkdtemp(prefix='e2gan-test-cache-'))
os.environ.setdefault('MPLBACKEND', 'Agg')

import torch  # noqa: E402
torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


import socket  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def no_network(monkeypatch):
    "Make every connection attempt fail at once, as on a machine without network."
    def refuse(*args, **kwargs): raise OSError('network is unreachable (blocked by the test)')
    monkeypatch.setattr(socket, 'getaddrinfo', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    monkeypatch.setattr(socket.socket, 'connect', refuse)
