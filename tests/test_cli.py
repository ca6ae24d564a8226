"The command line as a newcomer meets it: expected failures are one line and a non-zero exit, help starts without the heavy imports."
import argparse, subprocess, sys, urllib.error
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
