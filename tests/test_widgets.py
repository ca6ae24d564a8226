"SearchStepper driven headlessly through its buttons: a full trajectory on tiny shapes, manual overrides, ignored double clicks."
import io, threading
import numpy as np
import torch
import pytest
import gymnasium as gym
from PIL import Image
from e2gan.searchspace import Architecture, active_heads, arch_from_vector, cell_from_action, head_options, parse_arch
from e2gan.mdp import GanSearchEnv
from e2gan.surrogate import SurrogateEnv
from e2gan.agents import make_agent
from e2gan.loop import run_loop
from e2gan.widgets import SearchStepper, StepObserver, arch_diagram_svg, samples_png, stage_scale, tiny_shapes_config


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def views(s: SearchStepper) -> dict:
    "Everything the widget shows, as comparable values."
    return dict(stages=[b.children[0].value for b in s.stage_box.children if hasattr(b, 'children') and b.children],
                state=s.state_image.value, metrics=s.metrics_image.value, beliefs=s.beliefs_box.value,
                history=s.history_html.value, diagram=s.diagram.value, cells=s.cells_text.value, status=s.status.value)


# ---- the pieces ----

def test_heads_and_active_heads_follow_the_search_space():
    assert [len(o) for _, o in head_options(3)] == [2, 3, 3, 2, 2, 2]
    assert active_heads(0) == [True] * 4 + [False, False]
    assert active_heads(1) == [True] * 4 + [True, False]
    assert active_heads(2) == [True] * 6
    with pytest.raises(ValueError, match='depth'): active_heads(3)


def test_diagram_draws_every_cell_and_skip_and_marks_the_next_cell():
    arch = parse_arch('autogan-cifar10')                  # cell 2 skips from 1; cell 3 from 1 and 2
    svg = arch_diagram_svg(arch)
    assert svg.count('skip-in from cell') == sum(len(c.skips) for c in arch) == 3
    assert 'cell 3 - 32x32' in svg and 'pre-act' in svg and '>next<' not in svg
    partial = arch_diagram_svg(Architecture(arch.cells[:1]), bottom_width=2)
    assert '>next<' in partial and '>to come<' in partial and 'cell 1 - 4x4' in partial


def test_sample_grids_keep_the_relative_size_of_the_stages():
    scale = stage_scale(16)
    sizes = [png_size(samples_png(np.zeros((8, 3, r, r), np.uint8), scale, nrow=4)) for r in (2, 4, 8, 16)]
    assert [w for w, _ in sizes] == [4 * (r * scale + 2) + 2 for r in (2, 4, 8, 16)] and scale == 6
    with pytest.raises(ValueError, match='uint8'): samples_png(np.zeros((8, 3, 4, 4), np.float32))


def test_tiny_config_rejects_unknown_settings():
    assert tiny_shapes_config(gf_dim=4).gf_dim == 4
    with pytest.raises(ValueError, match='not proxy-task settings: width'): tiny_shapes_config(width=3)


# ---- the real GAN environment ----

@pytest.fixture(scope='module')
def gan_env():
    return GanSearchEnv(tiny_shapes_config(), device='cpu')


@pytest.fixture
def gan_stepper(gan_env):
    return SearchStepper(gan_env, make_agent('sac', gan_env.observation_space, gan_env.action_space, seed=0), seed=0).wait()


def test_the_observer_reports_the_proxy_training_progress(gan_env):
    seen = []
    env = StepObserver(gan_env, lambda f, phase: seen.append((round(f, 4), phase)))
    env.reset(seed=0)
    env.step(np.array([0, 1, 0, 1, 0, 0]))
    fractions = [f for f, phase in seen if phase == 'proxy training']
    n = tiny_shapes_config().num_images // tiny_shapes_config().gan.d_batch   # discriminator batches of one epoch
    assert fractions == [0.0] + [round(k / n, 4) for k in range(1, n + 1)]
    assert seen[-1] == (1.0, 'done')
    assert env.unwrapped.progress_callback is None            # the hook is removed after the step
    assert len(env.last_info['samples']) == 2


def test_for_shapes_builds_the_tiny_task_on_the_default_device():
    s = SearchStepper.for_shapes(tiny=True, seed=0).wait()
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert s.device.startswith(f'GAN on {expected}') and s.env.unwrapped.config == tiny_shapes_config()
    assert len(s.stage_box.children) == 1 and s.status.value.startswith('<b>trajectory 0</b>')


def test_full_trajectory_on_shapes_updates_every_view_and_honours_a_manual_cell(gan_stepper):
    s = gan_stepper
    assert s.device.startswith('GAN on cpu') and 'cpu' in s.device_label.value
    assert s.depth == 0 and not s.history and len(s.stage_box.children) == 1
    before = views(s)
    agent_choices, manual = [], None
    for t in range(3):
        proposal = list(s.proposal)
        assert [d.value for d in s.dropdowns] == proposal            # the dropdowns show the agent's choice
        assert [not d.disabled for d in s.dropdowns] == active_heads(t)
        if t == 1:                                                   # overrule the agent on the second cell
            manual = [1 - proposal[0], (proposal[1] + 1) % 3, (proposal[2] + 1) % 3, 1 - proposal[3], 1 - proposal[4], 0]
            for d, a in zip(s.dropdowns, manual): d.value = a
            s.manual_button.click()
        else:
            agent_choices.append(proposal)
            s.step_button.click()
        assert s.busy and all(b.disabled for b in s.buttons)          # disabled while the GAN trains
        assert s.step_button.click() is None and s.ignored_clicks == t + 1   # a second click during the step is ignored
        s.wait()
        assert not s.busy and len(s.history) == t + 1                  # exactly one step was taken
        rec, after = s.history[-1], views(s)
        for k in ('state', 'metrics', 'history', 'diagram', 'cells', 'status'):
            assert after[k] != before[k], f'{k} was not redrawn after step {t + 1}'
        assert 'e2gan-head' in after['beliefs'] and s.beliefs['depth'] == (t + 1 if t < 2 else 2), 'no option values shown'
        # the progressive outputs: one grid per stage so far, each larger than the one before
        assert len(after['stages']) == t + 2
        widths = [png_size(p)[0] for p in after['stages']]
        assert widths == sorted(widths) and len(set(widths)) == len(widths)
        assert after['history'].count('<tr>') == t + 2                 # header + one row per step
        assert np.isfinite(rec['is']) and np.isfinite(rec['fid']) and rec['step'] == t
        assert len(s.points) == t + 2 and s.points[-1]['reward'] == rec['reward']
        before = after
    # what was taken: the agent's proposals on steps 1 and 3, the manual cell on step 2
    assert s.history[0]['cell_action'] == agent_choices[0] and not s.history[0]['manual']
    assert s.history[1]['manual'] and s.history[1]['cell_action'][:5] == manual[:5]
    assert s.history[2]['cell_action'] == agent_choices[1]
    arch = arch_from_vector(s.history[-1]['arch'])
    assert arch[1] == cell_from_action(manual, 1)                     # the GAN really grew the manual cell
    assert s.env.unwrapped.G.arch == arch
    # the end of the trajectory: the agent's end-of-trajectory update ran, and only Reset is enabled
    assert s.done and 'score' in s.history[-1] and 'finished' in s.status.value
    assert s.step_button.disabled and s.manual_button.disabled and s.finish_button.disabled and not s.reset_button.disabled
    s.reset_button.click(); s.wait()
    assert s.trajectory == 1 and s.depth == 0 and not s.done and not s.step_button.disabled
    assert len(s.stage_box.children) == 1 and len(s.history) == 3


# ---- the surrogate: instant steps, the agent alone ----

class Gate(gym.Wrapper):
    "A surrogate whose steps wait for a signal: a step that is 'still running' for as long as the test wants."
    def __init__(self, env):
        super().__init__(env); self.open = threading.Event(); self.open.set()
    def step(self, action):
        assert self.open.wait(30)
        return self.env.step(action)


def test_clicks_during_a_step_are_ignored_and_the_state_stays_consistent():
    env = Gate(SurrogateEnv(seed=0))
    s = SearchStepper(env, make_agent('sac-categorical', env.observation_space, env.action_space, seed=0)).wait()
    env.open.clear()
    s.step_button.click()
    assert s.busy and all(b.disabled for b in s.buttons)
    for b in (s.step_button, s.manual_button, s.finish_button, s.reset_button): b.click()
    assert s.ignored_clicks == 4 and not s.history
    env.open.set(); s.wait()
    assert len(s.history) == 1 and s.depth == 1 and s.trajectory == 0 and not any(b.disabled for b in s.buttons)


def test_finish_and_reset_on_the_surrogate_are_instant_and_show_the_regret():
    s = SearchStepper.for_surrogate(seed=1).wait()
    assert s.device.startswith('surrogate') and 'no images' in s.stage_box.children[0].value
    s.finish_button.click(); s.wait()
    assert s.done and [r['step'] for r in s.history] == [0, 1, 2] and 'regret' in s.status.value
    assert s.history[-1]['regret'] >= 0
    s.reset_button.click(); s.wait()
    s.mode.value = False                                             # exploit: the greedy action
    greedy = list(s.proposal)
    s.step_button.click(); s.wait()
    assert s.history[-1]['cell_action'] == greedy and s.history[-1]['explore'] is False


@pytest.mark.parametrize('name', ['sac', 'sac-categorical', 'reinforce', 'random'])
def test_the_dropdowns_show_exactly_what_the_agent_then_does(name):
    s = SearchStepper.for_surrogate(agent=name, seed=3).wait()
    for _ in range(2):
        for _ in range(3):
            proposal = list(s.proposal)
            s.step_button.click(); s.wait()
            assert s.history[-1]['cell_action'] == proposal
        s.reset_button.click(); s.wait()


@pytest.mark.parametrize('name', ['sac', 'sac-categorical', 'reinforce'])
def test_the_beliefs_are_the_agents_option_values_for_every_head(name):
    s = SearchStepper.for_surrogate(agent=name, seed=4).wait()
    s.step_button.click(); s.wait()                                  # at depth 1: the first skip head matters
    values = s.agent.option_values(s.obs)
    assert [len(v) for v in values] == [2, 3, 3, 2, 2, 2]
    shown = s.beliefs_box.value
    for (head, options), v, on in zip(head_options(3), values, active_heads(1)):
        assert head in shown and all(o in shown for o in options)
        assert all(f'{x:+.3f}' in shown for x in v)
    assert shown.count('(unused here)') == 1 and s.beliefs['chosen'] == s.proposal
    assert s.beliefs_note.value.startswith('<small>' + {'reinforce': 'log-probability'}.get(name, 'critic value'))


def test_an_error_in_a_step_is_shown_and_reraised_and_the_buttons_come_back():
    class Broken(gym.Wrapper):
        def step(self, action): raise RuntimeError('the GPU caught fire')
    env = Broken(SurrogateEnv())
    s = SearchStepper(env, make_agent('random', env.observation_space, env.action_space)).wait()
    s.step_button.click()
    with pytest.raises(RuntimeError, match='caught fire'): s.wait()
    assert 'caught fire' in s.error_box.value and not s.step_button.disabled and not s.history


@pytest.mark.parametrize('name', ['sac', 'reinforce'])
def test_stepping_by_hand_replays_the_batch_search_exactly(name):
    "Same environment, agent and seeds: the widget's trajectories are the batch search's, step for step."
    s = SearchStepper.for_surrogate(agent=name, seed=2).wait()
    for _ in range(3):
        s.finish_button.click(); s.wait(); s.reset_button.click(); s.wait()
    env = SurrogateEnv(seed=2)
    batch = run_loop(env, make_agent(name, env.observation_space, env.action_space, seed=2), trajectories=3,
                     explore_fraction=1.0, seed=2)
    mine = [(r['trajectory'], r['step'], r['cell_action'], r['reward']) for r in s.history]
    assert mine == [(r['trajectory'], r['step'], r['cell_action'], r['reward']) for r in batch]


def test_a_manual_cell_under_reinforce_conditions_its_next_cells():
    "REINFORCE's LSTM carries the trajectory: the widget's manual cell must be fed in, not only built."
    s = SearchStepper.for_surrogate(agent='reinforce', seed=5).wait()
    proposal = list(s.proposal)
    manual = [1 - proposal[0]] + proposal[1:]
    for d, a in zip(s.dropdowns, manual): d.value = a
    s.manual_button.click(); s.wait()
    assert s.history[-1]['manual'] and s.history[-1]['cell_action'][:5] == manual[:5]
    assert s.agent._choices == [manual]                              # the controller saw the manual cell
    s.finish_button.click(); s.wait()
    assert [r['cell_action'] for r in s.history][1:] == s.agent._choices[1:]
    assert 'trajectory_advantage' not in s.history[-1]               # on-policy: no update from a steered trajectory
