"SurrogateEnv: gymnasium's checks, an optimum that exhaustive enumeration confirms, the MDP's bookkeeping, calibrated noise and real interactions."
import dataclasses, random, warnings
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from e2gan.searchspace import (Architecture, Cell, action_from_cell, all_architectures, arch_from_index, arch_index, cell_fields,
                               options_at, random_architecture, space_size)
from e2gan.surrogate import (CALIBRATION, MEASURED, SurrogateEnv, fit_calibration, measure_gan_landscape, reported_is_moments,
                             summarize_measurements)


@pytest.fixture(scope='module')
def env():
    return SurrogateEnv()


def run(env, arch, seed=None):
    "Build `arch` in `env`: observations, rewards and infos of the episode (reset included)."
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    for i, cell in enumerate(arch):
        obs, reward, terminated, truncated, info = env.step(np.array(action_from_cell(cell, env.n_cells)))
        assert terminated == (i == len(arch) - 1) and not truncated
        observations.append(obs); rewards.append(reward); infos.append(info)
    return observations, rewards, infos


def test_check_env_passes_on_the_surrogate_and_its_continuous_form():
    from e2gan.mdp import ContinuousActions
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')        # unbounded observation space and no render modes, as in GanSearchEnv
        check_env(SurrogateEnv(), skip_render_check=True)
        check_env(ContinuousActions(SurrogateEnv(state_dim=16)), skip_render_check=True)


def test_spaces_and_info_follow_the_gan_search_contract(env):
    assert env.action_space.nvec.tolist() == [2, 3, 3, 2, 2, 2]
    assert env.observation_space.shape == (131,) and env.observation_space.dtype == np.float32
    arch = random_architecture(3, 5)
    observations, rewards, infos = run(env, arch, seed=3)
    for t, (obs, info) in enumerate(zip(observations, infos)):
        assert obs.dtype == np.float32 and obs[0] == t
        assert obs[1] == np.float32(info['is']) and obs[2] == np.float32(env.fid_scale * info['fid'])
        assert info['arch'] == Architecture(arch.cells[:t]).to_vector() and info['diverged'] is False
    assert infos[-1]['description'] == arch.describe()
    for t in range(1, 4):   # Eq. 4 on the reported values
        expected = infos[t]['is'] - infos[t - 1]['is'] + env.alpha * (infos[t - 1]['fid'] - infos[t]['fid'])
        assert rewards[t - 1] == pytest.approx(expected, abs=1e-12)


def test_optimum_is_what_exhaustive_enumeration_finds(env):
    archs = list(all_architectures(3))
    enumerated = env.scores(archs)             # from each architecture's own fields, not from the index arithmetic
    np.testing.assert_allclose(enumerated, env.all_scores(), rtol=0, atol=1e-9)
    best, best_score = env.optimum()
    assert archs[int(np.argmax(enumerated))] == best and best_score == pytest.approx(enumerated.max(), abs=1e-9)
    assert np.sort(enumerated)[-2] < best_score - 1e-6   # a unique optimum
    assert env.regret(best) == 0 and (env.all_scores() <= best_score).all()
    for k in random.Random(0).sample(range(len(archs)), 200):
        assert arch_index(archs[k]) == k and arch_from_index(k) == archs[k]
        assert env.score(archs[k]) == pytest.approx(env.all_scores()[k], abs=1e-9)
        assert env.regret(archs[k]) == pytest.approx(best_score - enumerated[k], abs=1e-9)


def test_landscape_seed_fixes_the_landscape_and_reset_seed_only_the_noise():
    a, b, c = SurrogateEnv(seed=3), SurrogateEnv(seed=3), SurrogateEnv(seed=4)
    np.testing.assert_array_equal(a.all_scores(), b.all_scores())
    assert np.corrcoef(a.all_scores(), c.all_scores())[0, 1] < 0.2 and a.optimum()[0] != c.optimum()[0]
    arch = random_architecture(3, 1)
    oa, _, ia = run(a, arch, seed=7)
    ob, _, ib = run(b, arch, seed=7)
    oc, _, ic = run(a, arch, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(oa, ob))
    assert ia[-1]['is'] != ic[-1]['is'] and ia[-1]['true_is'] == ic[-1]['true_is']
    # under one reset seed the luck is a function of the prefix: shared while the prefixes agree, independent after
    other = Architecture((arch[0], arch[1], Cell(1 - arch[2].conv, arch[2].norm, arch[2].up, arch[2].shortcut, arch[2].skips)))
    _, _, io = run(a, other, seed=7)
    assert [i['is'] for i in io[:3]] == [i['is'] for i in ia[:3]]
    err = lambda info: info['is'] - info['true_is']
    assert err(io[3]) != pytest.approx(err(ia[3]), abs=1e-6)


def test_progressive_state_is_a_deterministic_function_of_the_prefix(env):
    rng = random.Random(1)
    arch = random_architecture(3, rng)
    o1, _, _ = run(env, arch, seed=1)
    o2, _, _ = run(env, arch, seed=2)
    for x, y in zip(o1, o2):
        np.testing.assert_array_equal(x[3:], y[3:])   # same prefix, same state, whatever the noise did
        assert x[2] != y[2]                          # while the reported FID differs
    other = Architecture((arch[0], Cell(1 - arch[1].conv, arch[1].norm, arch[1].up, arch[1].shortcut, arch[1].skips), arch[2]))
    o3, _, _ = run(env, other, seed=1)
    np.testing.assert_array_equal(o1[1][3:], o3[1][3:])
    assert np.abs(o1[2][3:] - o3[2][3:]).max() > 1e-3 and np.abs(o1[3][3:] - o3[3][3:]).max() > 1e-3
    states = {tuple(run(env, random_architecture(3, rng))[0][-1][3:]) for _ in range(200)}
    assert len(states) == 200


def test_without_noise_rewards_sum_to_the_true_score_gain():
    quiet = SurrogateEnv(noise=0)
    stem = CALIBRATION['is_mean'][0] - quiet.alpha * np.exp(CALIBRATION['log_fid_mean'][0])
    for arch in [quiet.optimum()[0]] + [random_architecture(3, s) for s in range(20)]:
        _, rewards, infos = run(quiet, arch, seed=0)
        assert sum(rewards) == pytest.approx(quiet.score(arch) - stem, abs=1e-9)
        assert infos[-1]['is'] == infos[-1]['true_is'] and infos[-1]['true_score'] == pytest.approx(quiet.score(arch))
        assert infos[-1]['regret'] == pytest.approx(quiet.regret(arch), abs=1e-12)
        for t, info in enumerate(infos[1:], 1):   # each stage's true values are those of the prefix
            is_t, fid_t = quiet.true_metrics([Architecture(arch.cells[:t])])
            assert info['true_is'] == pytest.approx(is_t[0]) and info['true_fid'] == pytest.approx(fid_t[0])


@pytest.mark.parametrize('noise', [None, 0.5])
def test_reported_values_carry_noise_of_the_configured_size(noise):
    env, n = SurrogateEnv(noise=noise), 4000
    scale = 1.0 if noise is None else noise
    arch = env.optimum()[0]       # a high IS, so that the floor at IS = 1 (almost) never cuts the noise
    finals = np.array([[info['is'], info['fid'], info['true_is'], info['true_fid']]
                       for info in (run(env, arch, seed=s)[2][-1] for s in range(n))])
    err_is, err_fid = finals[:, 0] - finals[:, 2], np.log(finals[:, 1] / finals[:, 3])
    assert env.is_noise_sd[-1] == pytest.approx(scale * CALIBRATION['is_noise'][3])
    assert env.log_fid_noise_sd[-1] == pytest.approx(scale * CALIBRATION['log_fid_noise'][3])
    se = 1 / np.sqrt(2 * n)                       # relative standard error of a standard deviation
    assert err_is.std() == pytest.approx(env.is_noise_sd[-1], rel=4 * se)
    assert err_fid.std() == pytest.approx(env.log_fid_noise_sd[-1], rel=4 * se)
    assert abs(err_is.mean()) < 4 * env.is_noise_sd[-1] / np.sqrt(n)
    assert np.corrcoef(err_is, err_fid)[0, 1] == pytest.approx(CALIBRATION['noise_corr'], abs=4 / np.sqrt(n))


def additive_shares(values: np.ndarray) -> tuple[float, float]:
    "Shares of the variance over the whole space explained by an additive per-head and an additive per-cell model."
    grid, total = values.reshape([options_at(i) for i in range(3)]), values.var()
    per_head = per_cell = 0.
    for i in range(3):   # the space is a full factorial, so additive least-squares fits are sums of marginal means
        m = grid.mean(tuple(a for a in range(3) if a != i))
        per_cell = per_cell + np.expand_dims(m - m.mean(), [a for a in range(3) if a != i])
        f = cell_fields(i)
        for values_of_head in [f[k] for k in ('conv', 'norm', 'up', 'shortcut')] + [f['skip'][:, j] for j in range(i)]:
            head = np.bincount(values_of_head, m) / np.bincount(values_of_head)
            per_head = per_head + np.expand_dims(head[values_of_head] - m.mean(), [a for a in range(3) if a != i])
    return (1 - (grid - grid.mean() - per_head).var() / total, 1 - (grid - grid.mean() - per_cell).var() / total)


def test_choices_interact_as_configured(env):
    per_head, per_cell = additive_shares(np.log(env.stage_tables(3)[1]))   # log FID is affine in the latents
    assert per_head == pytest.approx(0.5, abs=0.03)          # the default main-effect share
    per_head, per_cell = additive_shares(env.all_scores())
    assert 1 - per_cell > 0.25                                # over a quarter of the score's variance lies between cells
    # a concrete case: which cell-3 upsample is best depends on cell 2 (for most cell-1 choices)
    grid = env.all_scores().reshape(36, 72, 144)
    up3 = cell_fields(2)['up']
    best_up3 = np.stack([grid[..., up3 == u].max(-1) for u in range(3)], -1).argmax(-1)   # (cell 1, cell 2)
    assert np.mean([len(set(best_up3[c1].tolist())) > 1 for c1 in range(36)]) > 0.5
    additive = SurrogateEnv(interaction_share=0, remainder_share=0)
    per_head, per_cell = additive_shares(np.log(additive.stage_tables(3)[1]))
    assert per_head == pytest.approx(1, abs=1e-9) and per_cell == pytest.approx(1, abs=1e-9)


def test_calibration_recovers_a_known_spread_and_noise():
    # IS well above its floor of 1, so that the floor does not cut the noise the estimates should recover
    truth = SurrogateEnv(state_dim=8, calibration=dict(CALIBRATION, is_mean=[m + 5 for m in CALIBRATION['is_mean']]))
    archs = [random_architecture(3, s) for s in range(30)]
    records = measure_gan_landscape(lambda: truth, archs, seeds=range(40), progress=False)
    cal = summarize_measurements(records)
    assert (cal['n_archs'], cal['n_seeds'], cal['n_diverged']) == (30, 40, 0)
    true_is, true_fid = truth.true_metrics(archs)
    assert cal['is_spread'][3] == pytest.approx(true_is.std(ddof=1), rel=0.1)
    assert cal['log_fid_spread'][3] == pytest.approx(np.log(true_fid).std(ddof=1), rel=0.1)
    assert cal['spread_corr'] == pytest.approx(np.corrcoef(true_is, np.log(true_fid))[0, 1], abs=0.1)
    for t in range(4):   # the stem's luck depends on the seed only: 40 draws at stage 0, over a thousand after it
        rel = 0.35 if t == 0 else 0.08
        assert cal['is_noise'][t] == pytest.approx(truth.is_noise_sd[t], rel=rel)
        assert cal['log_fid_noise'][t] == pytest.approx(truth.log_fid_noise_sd[t], rel=rel)
    assert cal['is_spread'][0] == 0 and cal['is_mean'][0] == pytest.approx(CALIBRATION['is_mean'][0] + 5, abs=truth.is_noise_sd[0] / 2)
    assert cal['noise_corr'] == pytest.approx(CALIBRATION['noise_corr'], abs=0.1)
    assert cal['stage_noise_corr'] == pytest.approx(CALIBRATION['stage_noise_corr'], abs=0.1)


def test_default_surrogate_reports_the_measured_spread_and_noise(env):
    "What `summarize_measurements` estimates on the default surrogate, computed exactly over the whole space, is `MEASURED`."
    for t in range(4):
        true_is, true_fid = env.stage_tables(t)
        mean, spread, noise = reported_is_moments(true_is, 0., 1., env.is_noise_sd[t])   # true_is is already floored
        assert mean == pytest.approx(MEASURED['is_mean'][t], abs=2e-3)
        assert spread == pytest.approx(MEASURED['is_spread'][t], abs=2e-3)
        assert noise == pytest.approx(MEASURED['is_noise'][t], abs=2e-3)
        assert np.log(true_fid).mean() == pytest.approx(MEASURED['log_fid_mean'][t], abs=1e-9)
        assert np.log(true_fid).std() == pytest.approx(MEASURED['log_fid_spread'][t], abs=1e-9)
        assert env.log_fid_noise_sd[t] == MEASURED['log_fid_noise'][t]
    from e2gan.surrogate import _floored_normal_moments   # IS-FID correlation across architectures, as estimated
    m, _ = _floored_normal_moments(env.stage_tables(3)[0], env.is_noise_sd[3])
    assert np.corrcoef(m, np.log(env.stage_tables(3)[1]))[0, 1] == pytest.approx(MEASURED['spread_corr'], abs=2e-3)
    # and the fit that produced the defaults, from the measurement, gives them again
    fitted = fit_calibration(MEASURED)
    for k in ('is_mean', 'is_spread', 'is_noise', 'spread_corr'):
        np.testing.assert_allclose(fitted[k], CALIBRATION[k], rtol=1e-3, atol=1e-4)


def test_bad_input_is_rejected_clearly(env):
    with pytest.raises(RuntimeError, match='reset'): SurrogateEnv(state_dim=4).step(np.zeros(6, int))
    env.reset(seed=0)
    with pytest.raises(ValueError, match='6 integers'): env.step(np.array([0, 3, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match='6 integers'): env.step(np.zeros(5, int))
    for _ in range(3): env.step(np.zeros(6, int))
    with pytest.raises(RuntimeError, match='ended'): env.step(np.zeros(6, int))
    with pytest.raises(ValueError, match='n_cells'): SurrogateEnv(n_cells=4)
    with pytest.raises(ValueError, match='share'): SurrogateEnv(interaction_share=0.7, remainder_share=0.5)
    with pytest.raises(ValueError, match='3 cells'): env.score('0 1 0 1 0 1 2 1 0')


# ---- the family of landscapes ----
from e2gan.surrogate import (DESIGN_LANDSCAPES, DESIGN_SEEDS, LANDSCAPE_RANGES, REPORT_LANDSCAPES, REPORT_SEEDS, family_env,
                             landscape_structure, split_runs)


def test_family_member_0_is_the_calibrated_default():
    default, member = SurrogateEnv(), family_env(0)
    assert np.array_equal(default.all_scores(), member.all_scores()) and member.noise == default.noise
    explicit = SurrogateEnv(cell_weights=(1, 1, 1), within_weight=1, between_weight=1)   # weights of 1 change nothing
    assert np.array_equal(default.all_scores(), explicit.all_scores())


def test_every_sampled_family_member_has_a_unique_optimum_found_by_enumeration():
    for landscape in [*DESIGN_LANDSCAPES[:10], *REPORT_LANDSCAPES[:10]]:
        env = family_env(landscape)
        s = env.all_scores()
        best, best_score = env.optimum()
        assert (s == s.max()).sum() == 1 and best_score == s.max() == pytest.approx(env.score(best))
        assert env.regret(best) == 0 and env.regret(arch_from_index(int(np.argmin(s)))) == pytest.approx(s.max() - s.min())


def test_family_structure_is_drawn_inside_its_documented_ranges_and_varies():
    r = LANDSCAPE_RANGES
    structures = [landscape_structure(l) for l in range(1, 41)]
    for s in structures:
        assert r['interaction_share'][0] - 1e-3 <= s['interaction_share'] <= r['interaction_share'][1] + 1e-3
        assert r['remainder_share'][0] <= s['remainder_share'] <= r['remainder_share'][1] + 1e-3
        assert r['noise'][0] - 1e-3 <= s['noise'] <= r['noise'][1] + 1e-3
        assert all(r['cell_weight'][0] - 1e-3 <= w <= r['cell_weight'][1] * r['last_cell_factor'] + 1e-3 for w in s['cell_weights'])
    dominant = [s['cell_weights'][-1] > r['cell_weight'][1] + 1e-3 for s in structures]
    assert 0 < sum(dominant) < len(structures)          # some members are dominated by their last cell, most are not
    assert len({s['interaction_share'] for s in structures}) > 30    # drawn per member (rounded to 3 digits)
    assert landscape_structure(7) == landscape_structure(7)   # a member is a fixed function of its number


def swap_cell(a, b, i):
    "Architecture a with its cell i taken from b."
    return Architecture(tuple(b[j] if j == i else a[j] for j in range(len(a))))


def log_fid(env, archs):
    return np.log(env.true_metrics(archs)[1])


@pytest.mark.parametrize('between', [0.0, 1.0])
def test_without_between_cell_interactions_and_remainder_the_latent_is_additive_over_cells(between):
    env = SurrogateEnv(seed=5, remainder_share=0, between_weight=between)
    rng = random.Random(0)
    pairs = [(random_architecture(3, rng), random_architecture(3, rng)) for _ in range(200)]
    gaps = []
    for a, b in pairs:       # f(a) + f(b) = f(a with b's cell i) + f(b with a's cell i) for an additive f over cells
        lf = log_fid(env, [a, b, swap_cell(a, b, 1), swap_cell(b, a, 1)])
        gaps.append(abs(lf[0] + lf[1] - lf[2] - lf[3]))
    if between == 0: assert max(gaps) < 1e-9
    else: assert max(gaps) > 0.05               # with them, swapping a cell changes what the other cells are worth


def swap_head(a, b, i, head):
    "Architectures a and b with the option of `head` of cell i exchanged."
    ca, cb = dataclasses.replace(a[i], **{head: getattr(b[i], head)}), dataclasses.replace(b[i], **{head: getattr(a[i], head)})
    return (Architecture(tuple(ca if j == i else c for j, c in enumerate(a.cells))),
            Architecture(tuple(cb if j == i else c for j, c in enumerate(b.cells))))


def head_gap(env, cell=0, head='norm', n=100):
    "Mean |f(a) + f(b) - f(a') - f(b')| of log FID when a and b exchange one head of one cell: 0 when additive in that head."
    rng, gaps = random.Random(2), []
    for _ in range(n):
        a, b = random_architecture(3, rng), random_architecture(3, rng)
        lf = log_fid(env, [a, b, *swap_head(a, b, cell, head)])
        gaps.append(abs(lf[0] + lf[1] - lf[2] - lf[3]))
    return float(np.mean(gaps))


def test_without_interactions_and_remainder_the_latent_is_additive_over_heads():
    env = SurrogateEnv(seed=6, interaction_share=0, remainder_share=0, cell_weights=(1, 2, 0.5))
    assert all(head_gap(env, cell, head, 30) < 1e-9 for cell in range(3) for head in ('conv', 'norm', 'up', 'shortcut'))
    assert head_gap(SurrogateEnv(seed=6, interaction_share=0, remainder_share=0.3), 2, 'up') > 0.01   # the remainder is not


def test_within_cell_interactions_are_what_within_weight_scales():
    none = SurrogateEnv(seed=8, remainder_share=0, within_weight=0)
    assert head_gap(none, 0, 'conv') < 1e-9   # the conv block meets other heads only in the within-cell conv x norm table
    weak, strong = (head_gap(SurrogateEnv(seed=8, remainder_share=0, within_weight=w), 0, 'conv') for w in (1, 3))
    assert strong > weak > 0.01


def cell_share(env, cell):
    "Share of the score's variance over the whole space explained by one cell alone (the variance of its marginal means)."
    s = env.all_scores()
    return s.reshape(36, 72, 144).mean(tuple(a for a in range(3) if a != cell)).var() / s.var()


def test_cell_weights_set_which_cells_matter_and_last_cell_dominance_is_measurable():
    even, last, first = (SurrogateEnv(seed=9, cell_weights=w) for w in (None, (1, 1, 3), (3, 1, 1)))
    assert cell_share(last, 2) > 2 * cell_share(even, 2) and cell_share(last, 2) > 0.5   # a score dominated by the last cell
    assert cell_share(first, 0) > 2 * cell_share(even, 0) and cell_share(first, 0) > cell_share(first, 2)
    with pytest.raises(ValueError, match='cell_weights'): SurrogateEnv(cell_weights=(1, 1))


def test_noise_level_scales_the_observation_noise():
    arch = SurrogateEnv().optimum()[0]
    def final_is(noise):
        env = SurrogateEnv(seed=3, noise=noise, calibration=dict(CALIBRATION, is_mean=[m + 5 for m in CALIBRATION['is_mean']]))
        return np.array([run(env, arch, seed=s)[2][-1]['is'] for s in range(400)])   # IS far above its floor of 1
    low, high = final_is(0.7), final_is(1.3)
    assert low.mean() == pytest.approx(high.mean(), abs=0.1)
    assert high.std() / low.std() == pytest.approx(1.3 / 0.7, rel=0.1)


def test_design_and_report_splits_never_overlap():
    assert not set(DESIGN_LANDSCAPES) & set(REPORT_LANDSCAPES) and not set(DESIGN_SEEDS) & set(REPORT_SEEDS)
    assert len(DESIGN_LANDSCAPES) == len(DESIGN_SEEDS) and len(REPORT_LANDSCAPES) == len(REPORT_SEEDS)
    assert split_runs('report', 3) == [(1000, 2000), (1001, 2001), (1002, 2002)]
    with pytest.raises(ValueError, match='split'): split_runs('test')
    from e2gan.surrogate import SPLITS
    landscapes = [set(lands) for lands, _ in SPLITS.values()]
    seeds = [set(s) for _, s in SPLITS.values()]
    for i in range(len(SPLITS)):
        for j in range(i):
            assert not landscapes[i] & landscapes[j] and not seeds[i] & seeds[j]


def test_the_recalibrated_family_leaves_the_first_unchanged_and_spans_its_noise_range():
    "Members below RECALIBRATED_FROM draw as before (earlier results replay); the second family's members span its wider, log-uniform noise range."
    from e2gan.surrogate import LANDSCAPE_RANGES, RECALIBRATED_FROM, RECALIBRATED_RANGES, SPLITS
    assert landscape_structure(1000) == {'seed': 1000, 'interaction_share': 0.388, 'remainder_share': 0.077, 'within_weight': 1.161,
                                         'cell_weights': (1.366, 0.558, 2.642), 'noise': 0.771}      # as drawn before the second family existed
    first = [landscape_structure(m)['noise'] for m in SPLITS['design'][0] if m]
    second = [landscape_structure(m)['noise'] for m in SPLITS['design-2'][0]]
    assert min(SPLITS['design-2'][0]) >= RECALIBRATED_FROM and min(SPLITS['report-2'][0]) >= RECALIBRATED_FROM
    lo, hi = RECALIBRATED_RANGES['noise']
    assert all(lo <= n <= hi for n in second) and max(second) > max(LANDSCAPE_RANGES['noise']) * 2
    assert all(LANDSCAPE_RANGES['noise'][0] <= n <= LANDSCAPE_RANGES['noise'][1] for n in first)
    logs = np.log(second)                 # log-uniform: as many members below the geometric middle as above
    assert abs(np.mean(logs < (np.log(lo) + np.log(hi)) / 2) - 0.5) < 0.2
