"""The same planted scenes served through every source (Sentinel Hub imitation, STAC API + COG
range server, local catalog built by ``stac build``) give the same stack within 1 DN after
harmonisation: the pair across 2022-01-25 at Tartus and the Tobruk AOI across the UTM zone edge
at 24 E (items in EPSG:32634 and 32635)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from sentinelhub import SHConfig

from pipeline.scene import ALL_BANDS
from pipeline.sources._retry import RetryPolicy
from pipeline.sources.sentinelhub import SentinelHubSource
from pipeline.sources.stac import LocalStacSource, StacApiSource
from pipeline.sources.stac_build import build_catalog

from ._fakes import TOKEN_PATH, stac_item

FAST = RetryPolicy(attempts=2, backoff_s=0.01, max_429=3)

CASES = {
    "tartus": (date(2022, 1, 1), date(2022, 2, 28), ALL_BANDS),
    "tobruk": (date(2023, 5, 1), date(2023, 5, 31), ("B02", "B04", "B8A", "B11")),
}


def _harmonised(stack):
    off = np.array([a.offset for a in stack.acquisitions], np.int32)[:, None, None, None]
    h = stack.data.astype(np.int32) - off
    return np.where(stack.valid[:, None], h, 0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_source_gives_the_same_stack(case, request, archive, sh_server, stac_api, file_server, tmp_path):
    aoi = request.getfixturevalue(case)
    start, end, bands = CASES[case]
    cfg = SHConfig(use_defaults=True, sh_client_id="fake-id", sh_client_secret="fake-secret",
                   sh_base_url=sh_server.url, sh_token_url=sh_server.url + TOKEN_PATH)  # fmt: skip
    stac_api.items = [stac_item(s, file_server.href, style="pc") for s in archive[case]]
    sources = {
        "sentinelhub": SentinelHubSource("sentinelhub", config=cfg, cache_dir=tmp_path / "sh", retry=FAST),
        "stac-api": StacApiSource(stac_api.url, name="stac-api", retry=FAST),
        "local": LocalStacSource(build_catalog(archive["root"] / case, tmp_path / "cat")),
    }
    stacks = {}
    for name, src in sources.items():
        acqs = src.search(aoi, start, end)
        assert len(acqs) == (2 if case == "tartus" else 1), name
        stacks[name] = src.read(aoi, acqs, bands=bands)
    ref = stacks["sentinelhub"]
    assert ref.valid.all()
    if case == "tartus":
        assert [a.offset for a in stacks["stac-api"].acquisitions] == [0, 1000]
        assert [a.offset for a in stacks["local"].acquisitions] == [0, 1000]
        assert [a.offset for a in ref.acquisitions] == [0, 0]  # harmonizeValues
    for name in ("stac-api", "local"):
        st = stacks[name]
        assert st.grid == ref.grid and st.bands == ref.bands
        assert [a.date for a in st.acquisitions] == [a.date for a in ref.acquisitions]
        assert np.array_equal(st.valid, ref.valid), name
        d = np.abs(_harmonised(st) - _harmonised(ref))
        assert d.max() <= 1, (name, int(d.max()))
        assert np.array_equal(st.scl, ref.scl), name
