import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import make_testdata  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"

# importing netCDF4 points HDF5_PLUGIN_PATH at its own filter plugins, built against the HDF5
# inside netCDF4's wheel; h5py's HDF5 then fails to apply blosc ("error during user callback").
# Register hdf5plugin's filters with h5py first, whichever test module imports netCDF4 first.
try:
    import h5py  # noqa: F401
    import hdf5plugin  # noqa: F401
except ImportError:
    pass


@pytest.fixture(scope="session")
def datadir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def h5file(datadir):
    pytest.importorskip("h5py")
    return make_testdata.make_hdf5(datadir / "small.h5")


@pytest.fixture(scope="session")
def many_h5(datadir):
    pytest.importorskip("h5py")
    return make_testdata.make_many_chunks(datadir / "many.h5")


@pytest.fixture(scope="session")
def kc_refs(h5file):
    """kerchunk spec v1 references of h5file (a fresh deep copy per use: json round trip)."""
    pytest.importorskip("kerchunk")
    refs = make_testdata.kerchunk_refs(h5file)
    return json.loads(json.dumps(refs))


@pytest.fixture(scope="session")
def kc_many_refs(many_h5):
    pytest.importorskip("kerchunk")
    return json.loads(json.dumps(make_testdata.kerchunk_refs(many_h5, inline_threshold=0)))
