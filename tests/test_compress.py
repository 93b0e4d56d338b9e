import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clvmodels._compress import compress


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.sampled_from([0.0, 1.5, 2.25, 7.0]), st.integers(-5, 10**9)), min_size=1, max_size=60)
)
def test_compress_round_trips(rows):
    a = np.array([r[0] for r in rows], dtype=np.int64)
    b = np.array([r[1] for r in rows])
    c = np.array([r[2] for r in rows], dtype=np.int64)
    comp = compress(a, b, c)
    ua, ub, uc = comp.columns
    np.testing.assert_array_equal(ua[comp.inverse], a)
    np.testing.assert_array_equal(ub[comp.inverse], b)
    np.testing.assert_array_equal(uc[comp.inverse], c)
    assert comp.weights.sum() == len(rows)
    assert len(set(zip(ua.tolist(), ub.tolist(), uc.tolist(), strict=True))) == len(ua)
