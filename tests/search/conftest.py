"""Shared, small fixtures for the search tests: a 3-block space at 32x32, its fixture LUT, synthetic data."""

import pytest
from lut_fixtures import fixture_lut
from search_support import BLOCKS

from edgenas_keras.search import space_with_blocks
from edgenas_keras.arch.space import SearchSpace


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
