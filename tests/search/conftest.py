"""Shared, small fixtures for the search tests: a 3-block space at 32x32, its fixture LUT, synthetic data."""

import pytest
from lut_fixtures import fixture_lut

from edgenas_keras.search import SearchConfig, space_with_blocks
from edgenas_keras.space import SearchSpace

BLOCKS = 3  # the num_blocks ablation keeps the supernet small, so its graph traces quickly


@pytest.fixture(scope="session")
def space():
    return space_with_blocks(SearchSpace.load().with_resolution(32), BLOCKS)


@pytest.fixture(scope="session")
def lut(space):
    return fixture_lut(space)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    from edgenas_keras.data.synth import SynthSpec, write_synth

    d = tmp_path_factory.mktemp("synth") / "data"
    write_synth(d, SynthSpec(n=160, seed=5, resolution=32))
    return d


def small_config(**kw) -> SearchConfig:
    base = dict(epochs=3, warmup_epochs=1, steps_per_epoch=6, batch_size=8, train_resolution=None,
                check_every=2, num_blocks=BLOCKS, alpha_lr=0.1)
    base.update(kw)
    return SearchConfig(**base)
