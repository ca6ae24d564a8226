"Parallel search on Ray: complete and consistent records, a killed worker, a killed driver, Ctrl-C, workers=1, learning."
import functools, json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path
import numpy as np
import pytest
import ray
from ray import cloudpickle
from e2gan.agents import make_agent
from e2gan.bench import benchmark_agents
from e2gan.loop import run_loop, trajectory_seed
from e2gan.mdp import ProxyTaskConfig
from e2gan.parallel import init_ray
from e2gan.search import SearchConfig, TIME_KEYS, run_search
from e2gan.surrogate import SurrogateEnv
from e2gan.training import GanConfig
from e2gan.utils import load_checkpoint

MICRO = ProxyTaskConfig(num_images=128, reference_images=1000, bottom_width=2, gf_dim=8, df_dim=8, latent_dim=16,
                        eval_images=100, eval_splits=2, gan=GanConfig(d_batch=32, g_batch=32))
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def ray_address():
    "One local Ray instance (127.0.0.1 only) for the module; the searches find it running and leave it running."
    started = init_ray(num_cpus=4)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])     # the test environments below travel to the workers by value
    yield ray.get_runtime_context().gcs_address
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started: ray.shutdown()


def read(out):
    return [json.loads(l) for l in open(Path(out) / 'search.jsonl')]


def finals(records):
    return [r for r in records if 'score' in r]


def assert_learned_exactly_the_log(out, records):
    "The learner's replay buffer holds, in order, exactly the transitions of the log: nothing lost, nothing twice."
    buffer = load_checkpoint(Path(out) / 'checkpoint.pt')['agent']['buffer']['data']
    steps = [r for r in records if not r.get('failed')]
    assert len(buffer['reward']) == len(steps)
    assert np.allclose(buffer['action'].numpy(), np.array([r['action'] for r in steps], dtype=np.float32))
    assert buffer['reward'].tolist() == [np.float32(r['reward']).item() for r in steps]
    assert buffer['done'].tolist() == [float(r['terminated']) for r in steps]


def test_two_workers_on_shapes_log_every_transition_the_learner_trained_on(ray_address, tmp_path):
    cfg = SearchConfig(proxy=MICRO, agent='sac', trajectories=4, seed=1)
    summary = run_search(tmp_path, cfg, device='cpu', progress=False, workers=2)
    recs = read(tmp_path)
    assert sorted(r['trajectory'] for r in finals(recs)) == [0, 1, 2, 3] and len(recs) == 12
    assert summary['finished'] and summary['workers'] == 2 and summary['trajectories'] == 4 and summary['backend'] == 'classifier'
    for k in range(4):                                    # each trajectory's three steps together, in order
        traj = recs[3 * k:3 * k + 3]
        assert [r['step'] for r in traj] == [0, 1, 2] and len({r['trajectory'] for r in traj}) == 1
        assert len({(r['worker'], r['policy_version']) for r in traj}) == 1
    for pos, r in enumerate(finals(recs)):
        assert r['phase'] == ('explore' if r['trajectory'] < 3 else 'exploit')      # by index: 70% of 4 explore
        assert r['worker'] in (0, 1) and r['staleness'] == pos - r['policy_version'] >= 0
        assert {'is', 'fid', 'reward', 'arch', 'd_loss', 'seconds'} <= set(r)
    assert_learned_exactly_the_log(tmp_path, recs)
    assert load_checkpoint(tmp_path / 'checkpoint.pt')['done'] == [0, 1, 2, 3]
    assert json.loads((tmp_path / 'best_archs.json').read_text())[0] == summary['best']


class Faulty(SurrogateEnv):
    "The surrogate, but its process SIGKILLs itself in the middle of one trajectory (once), and another trajectory always raises."
    def __init__(self, marker, kill_seed, fail_seed):
        super().__init__(seed=0)
        self.marker, self.kill_seed, self.fail_seed, self.kill = marker, kill_seed, fail_seed, False

    def reset(self, *, seed=None, options=None):
        if seed == self.fail_seed: raise RuntimeError('this trajectory always fails')
        self.kill = seed == self.kill_seed and not os.path.exists(self.marker)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.kill and self._t == 1:
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().step(action)


def test_a_killed_worker_is_replaced_and_a_failing_trajectory_is_recorded(ray_address, tmp_path, capsys):
    cfg = SearchConfig(agent='sac-categorical', trajectories=10, seed=0)
    env = functools.partial(Faulty, str(tmp_path / 'killed'), trajectory_seed(0, 3), trajectory_seed(0, 6))
    summary = run_search(tmp_path / 'out', cfg, env=env, progress=False, workers=2)
    recs = read(tmp_path / 'out')
    assert (tmp_path / 'killed').exists()                                   # a worker process really died mid-trajectory
    assert sorted(r['trajectory'] for r in finals(recs)) == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    again = [r for r in recs if r['trajectory'] == 3]
    assert [r['step'] for r in again] == [0, 1, 2] and all(r['tries'] == 2 for r in again)   # re-run once, logged once
    assert 'ActorDied' in again[0]['retry_errors'][0]
    failed = [r for r in recs if r.get('failed')]
    assert len(failed) == 1 and failed[0]['trajectory'] == 6 and failed[0]['tries'] == 3
    assert all('always fails' in e for e in failed[0]['errors'])
    assert [r['trajectory'] for r in summary['retried']] == [3] and [r['trajectory'] for r in summary['failed']] == [6]
    assert summary['finished'] and summary['trajectories'] == 9
    err = capsys.readouterr().err
    assert 'trajectory 3 failed on worker' in err and 'trajectory 6 failed 3 times' in err
    assert_learned_exactly_the_log(tmp_path / 'out', recs)


DRIVER = '''
import sys, time
from e2gan.search import run_parallel_search
from e2gan.search import SearchConfig
from e2gan.surrogate import SurrogateEnv

class Slow(SurrogateEnv):
    "The surrogate at the pace of a (very) small proxy task."
    def step(self, action):
        time.sleep({pace})
        return super().step(action)

try:
    run_parallel_search(sys.argv[1], SearchConfig(agent='sac-categorical', trajectories={trajectories}, seed=5), workers=2,
                        env_factory=lambda: Slow(seed=0), progress=False, ray_address={address!r})
except KeyboardInterrupt:
    sys.exit(130)
'''


def start_driver(tmp_path, out, pace, trajectories, address):
    script = tmp_path / 'driver.py'
    script.write_text(DRIVER.format(pace=pace, trajectories=trajectories, address=address))
    return subprocess.Popen([sys.executable, str(script), str(out)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_trajectories(proc, out, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None: pytest.fail(f'the driver exited early:\n{proc.stdout.read()[-3000:]}')
        if (out / 'search.jsonl').exists() and len(finals(read(out))) >= n: return
        time.sleep(0.2)
    proc.kill(); pytest.fail('the driver did not get going')


def test_a_killed_driver_resumes_without_losing_or_repeating_a_trajectory(ray_address, tmp_path):
    out, n = tmp_path / 'out', 12
    proc = start_driver(tmp_path, out, pace=0.1, trajectories=n, address=ray_address)   # joins this module's Ray instance
    wait_for_trajectories(proc, out, 3)
    os.kill(proc.pid, signal.SIGKILL); proc.wait()
    before = finals(read(out))
    assert 3 <= len(before) < n
    cfg = SearchConfig(agent='sac-categorical', trajectories=n, seed=5)
    summary = run_search(out, cfg, env=lambda: SurrogateEnv(seed=0), progress=False, workers=2, resume=True)
    recs = read(out)
    assert sorted(r['trajectory'] for r in finals(recs)) == list(range(n)) and len(recs) == 3 * n   # none lost, none twice
    assert summary['finished'] and summary['trajectories'] == n
    assert_learned_exactly_the_log(out, recs)


def descendants(pid):
    "Every process below `pid` (from /proc)."
    parents = {}
    for p in Path('/proc').iterdir():
        if p.name.isdigit():
            try: parents[int(p.name)] = int((p / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError): pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, par in parents.items() if par in frontier} - found
        found |= frontier
    return found


def alive(pid):
    try: return (Path('/proc') / str(pid) / 'stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False


def test_ctrl_c_stops_the_workers_and_the_local_ray_instance(tmp_path):
    out = tmp_path / 'out'
    proc = start_driver(tmp_path, out, pace=0.3, trajectories=100, address=None)     # starts its own local Ray instance
    wait_for_trajectories(proc, out, 1, timeout=150)
    procs = descendants(proc.pid)
    assert len(procs) >= 4                                          # the Ray processes and two workers
    os.killpg(proc.pid, signal.SIGINT)                              # Ctrl-C in a terminal: the whole process group
    assert proc.wait(timeout=300) == 130                           # generous: Ray can take long to stop on a busy machine
    deadline = time.time() + 60
    while time.time() < deadline and any(alive(p) for p in procs): time.sleep(0.2)
    assert not [p for p in procs if alive(p)], 'processes of the search outlived it'
    assert load_checkpoint(out / 'checkpoint.pt')['n_records'] == len(read(out))       # resumable


def strip_times(records):
    return [{k: v for k, v in json.loads(json.dumps(r)).items() if k not in TIME_KEYS} for r in records]


def test_one_worker_is_the_serial_search_without_ray(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'e2gan.parallel', None)       # workers=1 must not even import the parallel module
    cfg = SearchConfig(agent='sac-categorical', trajectories=25, seed=2)    # updates start at trajectory 22
    run_search(tmp_path, cfg, env=SurrogateEnv(seed=2), progress=False, workers=1)
    env = SurrogateEnv(seed=2)
    serial = run_loop(env, make_agent('sac-categorical', env.observation_space, env.action_space, seed=2, device='cpu'), 25, seed=2)
    assert strip_times(read(tmp_path)) == strip_times(serial)
    assert any('critic_loss' in r for r in serial)
    with pytest.raises(ValueError, match='workers > 1'): run_search(tmp_path / 'x', cfg, env=env, progress=False, ray_address='auto')


def test_the_parallel_agent_beats_random_search_with_four_workers(ray_address, tmp_path):
    "100 trajectories on the surrogate, 4 workers: what the agent builds while exploiting, and what it hands over, beat random search."
    landscape = SurrogateEnv(seed=0)
    summary = run_search(tmp_path, SearchConfig(agent='sac-categorical', trajectories=100, seed=1), env=lambda: SurrogateEnv(seed=0),
                         progress=False, workers=4)
    recs = read(tmp_path)
    # workers join as their environments come up, so the first trajectories have fewer in flight: the run is stale when
    # some trajectory acted with weights three trajectories old (all four workers busy at once)
    assert summary['workers'] == 4 and summary['staleness_max'] >= 3 and summary['staleness_mean'] > 1 and len(finals(recs)) == 100
    random = benchmark_agents(lambda: SurrogateEnv(seed=0), ['random'], seeds=[1], trajectories=100)['random'][0]
    exploit = [r['regret'] for r in finals(recs) if r['phase'] == 'exploit']
    # Arrival order makes a parallel run timing-dependent, so the claims are the ones that hold run after run: what
    # the agent builds while exploiting (30 trajectories) is far better than random search's samples, and what it
    # hands over is better than three quarters of the 373,248 architectures. A bound on one handed-over regret is not
    # such a claim: this seed's hand-over sat in the best 2.9%, 3.7%, 10.0% or 10.7% from one run to the next here,
    # either side of half random search's mean regret (top 9%); over 30 seeds x 4 workers the worst was in the best 10%.
    assert np.mean(exploit) < 0.7 * np.mean(random['trajectory_regrets'])
    scores = landscape.all_scores()
    assert landscape.regret(summary['best']['vector']) < np.quantile(scores.max() - scores, 0.25)


def test_benchmark_seeds_in_parallel_give_the_serial_results(ray_address):
    serial = benchmark_agents(lambda seed: SurrogateEnv(seed=seed), ['random', 'sac'], seeds=range(2), trajectories=10)
    parallel = benchmark_agents(lambda seed: SurrogateEnv(seed=seed), ['random', 'sac'], seeds=range(2), trajectories=10, workers=2)
    strip = lambda res: {a: [{k: v for k, v in run.items() if k != 'seconds'} for run in runs] for a, runs in res.items()}
    assert strip(parallel) == strip(serial)
