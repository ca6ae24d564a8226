"The command line as a newcomer meets it: expected failures are one line and a non-zero exit, help starts without the heavy imports."
import argparse, json, subprocess, sys, urllib.error
import pytest
from e2gan.cli import main, build_parser, COMMANDS


def one_line_error(capsys, argv) -> str:
    "Run `e2gan argv`; assert exit code 2 and a single line on standard error, no traceback; return that line."
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
    return err


def test_a_bad_arch_vector_is_one_line_naming_the_position(capsys):
    err = one_line_error(capsys, ['arch', '0 1 0 1 0 1 2 1 0 0 1 0 1 4'])
    assert err.startswith('e2gan arch: error:') and 'position 14' in err


def test_inception_without_weights_offline_is_one_line_with_the_cli_remedy(capsys, monkeypatch, tmp_path):
    import e2gan.metrics
    def offline(url, dest, timeout): raise urllib.error.URLError('no network')     # never touch the network in a test
    monkeypatch.setattr(e2gan.metrics, '_download', offline)
    monkeypatch.setattr(e2gan.metrics, '_hub_weights_file', lambda: tmp_path / 'hub' / 'weights.pth')
    monkeypatch.delenv('E2GAN_INCEPTION_WEIGHTS', raising=False)
    err = one_line_error(capsys, ['search', '--preset', 'quick', '--backend', 'inception', '--trajectories', '1',
                                  '--out', str(tmp_path / 'run'), '--quiet'])
    assert '--inception-weights PATH' in err and 'E2GAN_INCEPTION_WEIGHTS' in err
    err = one_line_error(capsys, ['search', '--preset', 'quick', '--backend', 'inception', '--inception-weights',
                                  str(tmp_path / 'missing.pth'), '--trajectories', '1', '--out', str(tmp_path / 'run2'), '--quiet'])
    assert 'missing.pth' in err and 'not a file' in err


def test_eval_of_a_search_checkpoint_says_which_file_it_wants(capsys, tmp_path):
    from e2gan.surrogate import SurrogateEnv
    from e2gan.search import SearchConfig, run_search
    run_search(tmp_path / 'search', SearchConfig(agent='random', trajectories=2), env=SurrogateEnv(), progress=False)
    err = one_line_error(capsys, ['eval', '--checkpoint', str(tmp_path / 'search' / 'checkpoint.pt')])
    assert 'search' in err and 'e2gan train --from-search' in err
    (tmp_path / 'junk.pt').write_bytes(b'not a checkpoint')
    err = one_line_error(capsys, ['sample', '--checkpoint', str(tmp_path / 'junk.pt')])
    assert 'junk.pt' in err


def test_help_starts_without_torch_and_every_command_has_its_arguments():
    code = ("import sys; from e2gan.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'torch_fidelity', 'matplotlib', 'gymnasium') if m in sys.modules))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == '[]', out                     # `e2gan --help` imports none of them
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert all(len(sub.choices[name]._actions) > 1 for name in COMMANDS)   # built in full, every command has its arguments
    stub = next(a for a in build_parser('arch')._actions if isinstance(a, argparse._SubParsersAction))
    assert len(stub.choices['search']._actions) == 1                    # building one command's parser builds only that one


# --- bad input: one line naming the remedy, exit 2, nothing left behind, nothing overwritten ----------------------

ARCH = '0 1 0 1 0 1 2 1 0 0 1 0 1 2'
TINY_TRAIN = ['--preset', 'cpu', '--dataset', 'shapes', '--num-images', '256', '--bottom-width', '2', '--gf-dim', '16',
              '--df-dim', '16', '--epochs', '1', '--eval-every', '1', '--eval-images', '100', '--g-batch', '32',
              '--d-batch', '32', '--device', 'cpu', '--quiet']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "A one-epoch tiny training run, started with the arch vector unquoted (as `e2gan arch` takes it)."
    out = tmp_path_factory.mktemp('cli') / 'train'
    assert main(['train', '--arch', *ARCH.split(), *TINY_TRAIN, '--out', str(out)]) == 0
    return out


@pytest.fixture
def surrogate_search(tmp_path, monkeypatch):
    "A finished two-trajectory search folder; `e2gan search` in this test searches the surrogate instead of training GANs."
    from e2gan.surrogate import SurrogateEnv
    from e2gan.search import SearchConfig, run_search
    import e2gan.search
    monkeypatch.setattr(e2gan.search, 'GanSearchEnv', lambda proxy, device=None: SurrogateEnv())
    run_search(tmp_path / 'search', SearchConfig(agent='random', trajectories=2), env=SurrogateEnv(), progress=False)
    return tmp_path / 'search'


def corrupt_files(folder, good) -> dict:
    "An empty file, bytes that are not a PyTorch file, and `good` cut in half: what a failed copy or a wrong path gives."
    files = {'empty': folder / 'empty.pt', 'garbage': folder / 'garbage.pt', 'truncated': folder / 'truncated.pt'}
    files['empty'].write_bytes(b''); files['garbage'].write_bytes(b'\x00not a checkpoint' * 20)
    data = good.read_bytes(); files['truncated'].write_bytes(data[:len(data) // 2])
    return files


def test_train_takes_the_arch_vector_unquoted(trained):
    assert json.loads((trained / 'config.json').read_text())['arch'] == [int(v) for v in ARCH.split()]


def test_unreadable_checkpoints_get_e2gans_words_never_torchs_advice(capsys, tmp_path, trained, surrogate_search):
    for kind, path in corrupt_files(tmp_path, trained / 'last.pt').items():
        for argv in (['eval'], ['sample', '--out', str(tmp_path / 'g.png')]):
            err = one_line_error(capsys, argv + ['--checkpoint', str(path)])
            assert str(path) in err and 'weights_only' not in err and 'e2gan train' in err, (kind, err)
        (surrogate_search / 'checkpoint.pt').write_bytes(path.read_bytes())
        err = one_line_error(capsys, ['search', '--resume', '--agent', 'random', '--trajectories', '2', '--quiet', '--out', str(surrogate_search)])
        assert 'checkpoint.pt' in err and 'weights_only' not in err and 'an e2gan search' in err, (kind, err)
    assert not (tmp_path / 'g.png').exists()


def test_sample_out_must_name_a_file_under_a_folder(capsys, tmp_path, trained):
    folder = tmp_path / 'grids'; folder.mkdir()
    err = one_line_error(capsys, ['sample', '--checkpoint', str(trained / 'last.pt'), '--out', str(folder)])
    assert 'is a folder' in err and str(folder / 'grid.png') in err
    (tmp_path / 'a-file').write_text('x')
    err = one_line_error(capsys, ['sample', '--checkpoint', str(trained / 'last.pt'), '--out', str(tmp_path / 'a-file' / 'g.png')])
    assert 'is a file, not a folder' in err
    assert sorted(p.name for p in tmp_path.rglob('*')) == ['a-file', 'grids']        # no temporary file left behind


def test_out_under_a_file_and_resume_of_nothing_are_errors_that_create_nothing(capsys, tmp_path):
    (tmp_path / 'a-file').write_text('x')
    err = one_line_error(capsys, ['search', '--quiet', '--out', str(tmp_path / 'a-file' / 'run')])
    assert 'is a file, not a folder' in err
    err = one_line_error(capsys, ['search', '--resume', '--quiet', '--out', str(tmp_path / 'nothing')])
    assert 'nothing to resume' in err and 'leave out --resume' in err
    err = one_line_error(capsys, ['train', '--resume', '--arch', *ARCH.split(), *TINY_TRAIN, '--out', str(tmp_path / 'nothing')])
    assert 'nothing to resume' in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a-file']


def test_a_run_folder_is_never_taken_over_by_another_run(capsys, tmp_path, trained, surrogate_search):
    before = {p.name: p.read_bytes() for p in surrogate_search.iterdir() if p.is_file()}
    err = one_line_error(capsys, ['train', '--arch', *ARCH.split(), *TINY_TRAIN, '--out', str(surrogate_search)])
    assert 'holds a search' in err and 'another --out' in err
    err = one_line_error(capsys, ['train', '--resume', *TINY_TRAIN[:4], '--out', str(surrogate_search)])
    assert 'holds a search, not a training' in err
    assert {p.name: p.read_bytes() for p in surrogate_search.iterdir() if p.is_file()} == before    # the search's record is intact
    err = one_line_error(capsys, ['search', '--agent', 'random', '--quiet', '--out', str(trained)])
    assert 'holds a training' in err
    err = one_line_error(capsys, ['train', '--arch', *ARCH.split(), *TINY_TRAIN, '--out', str(trained)])
    assert 'already holds a training' in err and '--resume' in err


def test_a_missing_data_set_offline_leaves_no_output_folder(capsys, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv('E2GAN_DATA', str(tmp_path / 'data'))
    err = one_line_error(capsys, ['search', '--dataset', 'cifar10', '--trajectories', '1', '--quiet', '--out', str(tmp_path / 'runs' / 'c10')])
    assert 'CIFAR-10 is not available' in err
    assert not (tmp_path / 'runs').exists()


def test_eval_blames_the_option_that_is_wrong(capsys, trained):
    err = one_line_error(capsys, ['eval', '--checkpoint', str(trained / 'last.pt'), '--num-images', '-5'])
    assert 'num_images' in err and 'splits' not in err


def test_an_untrained_best_is_a_note_not_a_python_warning(capsys, tmp_path, monkeypatch):
    import e2gan.retrain
    monkeypatch.setattr(e2gan.retrain, '_untrained_warning', lambda *a: 'the untrained generator scored better (forced by the test)')
    assert main(['train', '--arch', *ARCH.split(), *TINY_TRAIN, '--out', str(tmp_path / 'run')]) == 0
    err = capsys.readouterr().err
    assert 'note: the untrained generator scored better' in err and 'Warning' not in err, err


def test_an_unreachable_ray_cluster_is_one_line_at_once(capsys, tmp_path):
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]    # closed again: nothing listens there
    err = one_line_error(capsys, ['search', '--workers', '2', '--ray-address', f'127.0.0.1:{port}', '--trajectories', '2',
                                  '--quiet', '--out', str(tmp_path / 'run')])
    assert f'no Ray cluster answers at 127.0.0.1:{port}' in err and 'ray start --head' in err
    assert not (tmp_path / 'run').exists()
