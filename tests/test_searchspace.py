"The arch vector format: round trips over the whole space, and every kind of invalid vector rejected clearly."
import random
import pytest
from e2gan.searchspace import (ARCH_PRESETS, Architecture, Cell, all_architectures, arch_from_vector, parse_arch,
                               random_architecture, space_size, action_head_sizes, cell_from_action, action_from_cell)


def test_space_size_matches_enumeration_and_published_count():
    assert space_size(3) == 36 * 72 * 144 == 373_248
    archs = list(all_architectures(3))
    assert len(archs) == len(set(archs)) == 373_248


def test_every_architecture_round_trips_through_its_vector():
    seen = set()
    for arch in all_architectures(3):
        vec = arch.to_vector()
        assert len(vec) == 14
        assert arch_from_vector(vec) == arch
        seen.add(tuple(vec))
    assert len(seen) == 373_248  # the vector is a bijection


def test_presets_decode_to_the_published_cells():
    e2 = parse_arch('e2gan-cifar10')
    assert e2.to_vector() == [0, 1, 0, 1, 0, 1, 2, 1, 0, 0, 1, 0, 1, 2]
    assert e2[2] == Cell(conv=0, norm=1, up=0, shortcut=1, skips=(0,))      # c3 skip 2 = from cell 1 only
    auto = parse_arch('autogan-cifar10')
    assert auto[1].skips == (0,) and auto[2].skips == (0, 1)                # 3 = both
    assert parse_arch('1 0 1 1 1 0 0 1 1 1 0 1 0 1')[2].skips == (1,)      # 1 = from cell 2 only
    assert e2.describe().splitlines()[1] == 'cell 2: post-act conv, batch norm, deconv up, shortcut, no skip-in'
    assert 'cell 3: post-act conv, batch norm, bilinear up, shortcut, skip from cell 1' in e2.describe()
    assert parse_arch(str(e2)) == e2 and parse_arch(','.join(map(str, e2.to_vector()))) == e2


@pytest.mark.parametrize('vector, position, words', [
    ([0] * 13, None, '14 for the standard 3 cells'),
    ([0] * 15, None, '14 for the standard 3 cells'),
    ([2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1, '0 (post-act conv), 1 (pre-act conv)'),
    ([0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2, '0 (no norm), 1 (batch norm), 2 (instance norm)'),
    ([0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0], 7, '0 (bilinear up), 1 (nearest up), 2 (deconv up)'),
    ([0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4, '0 (no shortcut), 1 (shortcut)'),
    ([0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0], 9, 'a skip from a cell that does not exist'),
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4], 14, 'a skip from a cell that does not exist'),
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5, 0], 13, 'not an integer'),
])
def test_invalid_vectors_name_the_position_and_allowed_values(vector, position, words):
    with pytest.raises(ValueError) as err: arch_from_vector(vector)
    msg = str(err.value)
    assert words in msg
    if position is not None: assert f'position {position} ' in msg and 'allowed' in msg or 'not an integer' in msg


def test_unknown_preset_and_garbage_strings_are_rejected():
    with pytest.raises(ValueError, match='neither a preset'): parse_arch('e2gan-imagenet')


def test_more_cells_generalise_the_format():
    assert space_size(4) == 373_248 * 36 * 8
    rng = random.Random(0)
    for _ in range(2000):
        arch = random_architecture(4, rng)
        assert len(arch.to_vector()) == 19 and arch_from_vector(arch.to_vector()) == arch


def test_random_architectures_are_uniform_over_each_choice():
    rng = random.Random(1)
    archs = [random_architecture(3, rng) for _ in range(6000)]
    c3_masks = [a.to_vector()[13] for a in archs]
    for v in range(4): assert abs(c3_masks.count(v) / 6000 - 0.25) < 0.03
    norms = [a[0].norm for a in archs]
    for v in range(3): assert abs(norms.count(v) / 6000 - 1 / 3) < 0.03


def test_actions_decode_to_cells_and_ignore_unusable_skip_heads():
    assert action_head_sizes(3) == (2, 3, 3, 2, 2, 2)
    assert cell_from_action([1, 2, 2, 1, 1, 1], 0) == Cell(1, 2, 2, 1, ())      # cell 1 has no earlier cell
    assert cell_from_action([0, 0, 0, 0, 1, 1], 1).skips == (0,)
    assert cell_from_action([0, 0, 0, 0, 1, 1], 2).skips == (0, 1)
    for i, cell in enumerate(parse_arch('autogan-cifar10')):
        assert cell_from_action(action_from_cell(cell), i) == cell
