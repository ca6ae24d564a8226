"Shared test settings: one cache (classifier weights, reference statistics) for the whole session."
import os, tempfile

# Classifier weights and reference statistics are cached on disk; one cache for the whole test session (notebooks
# included, through the environment) means each is built once, as on a user's machine.
os.environ.setdefault('E2GAN_CACHE', tempfile.mkdtemp(prefix='e2gan-test-cache-'))
os.environ.setdefault('MPLBACKEND', 'Agg')
