"""SpsTable (interpolation, persistence, validation), LoadMonitor and the profiling helper."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import dspark
from tests.reference.scheduler import step_time_ref


def _table(tokens: list[float], seconds: list[float], mode: str = "linear"):
    """A table and the plain reference SPS function over the same grid."""
    tab = dspark.SpsTable.from_step_times(tokens, seconds, mode)

    def sps(b: float) -> float:
        return 1.0 / step_time_ref(tokens, seconds, b, step=mode == "step")

    return tab, sps


@pytest.mark.parametrize("mode", ["linear", "step"])
def test_sps_table_interpolation_matches_reference(mode, tmp_path):
    tokens, secs = [1.0, 16.0, 17.0, 64.0, 256.0], [0.01, 0.011, 0.02, 0.02, 0.05]
    tab, sps = _table(tokens, secs, mode)
    for b in [0.5, 1, 2, 15.5, 16, 16.5, 17, 40, 256, 300, 1e4]:
        assert tab(b) == sps(b)
        assert tab.step_time(b) == pytest.approx(1.0 / sps(b), rel=1e-15)
    np.testing.assert_array_equal(tab([1, 40, 300]), [sps(1), sps(40), sps(300)])
    tab.save(tmp_path / "sps.json")
    back = dspark.SpsTable.load(tmp_path / "sps.json")
    assert back.tokens == tab.tokens
    assert back.interpolation == mode
    assert back.step_times == pytest.approx(tab.step_times, rel=1e-15)


def test_load_monitor_follows_a_shift_despite_outliers():
    tokens = [1.0, 64.0, 256.0, 1024.0]
    truth = [0.010, 0.012, 0.020, 0.060]
    mon = dspark.LoadMonitor(dspark.SpsTable.from_step_times(tokens, [t / 1.5 for t in truth]))
    rng = np.random.default_rng(0)
    for _ in range(4000):
        b = float(rng.integers(1, 1025))
        t = step_time_ref(tokens, truth, b) * rng.normal(1.0, 0.02)
        if rng.random() < 0.05:
            t *= 20  # stalls (GC, preemption) must not drag the curve
        mon.observe(b, t)
    got = mon.table().step_times
    assert got == pytest.approx(truth, rel=0.04)
    assert mon.num_clipped > 0
    # a scheduler built on the monitor reads the refined curve
    sched = dspark.PrefixScheduler(mon)
    assert sched._impl.current_table().step_times == pytest.approx(got)


def test_load_monitor_single_outlier_is_bounded_and_threads_are_safe():
    tab = dspark.SpsTable.from_step_times([1.0, 128.0], [0.01, 0.02])
    mon = dspark.LoadMonitor(tab, alpha=0.05, clip=3.0, init_scale=0.1)
    mon.observe(128, 100.0)
    # at most alpha * clip * scale = 0.05 * 3 * 0.002
    assert mon.table().step_time(128) <= 0.02 + 0.05 * 3 * 0.002 + 1e-12

    def worker():
        for i in range(2000):
            mon.observe(1 + i % 128, 0.015)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mon.num_observations == 1 + 4 * 2000


def test_profile_sps_times_a_callable():
    def forward(b: int) -> None:
        time.sleep(0.0005 + 0.00002 * b)

    tab = dspark.scheduler.profile_sps(forward, [1, 64, 128], warmup=1, repeats=3)
    assert tab.tokens == [1.0, 64.0, 128.0]
    assert tab.step_times[0] < tab.step_times[2]


@pytest.mark.parametrize(
    ("tokens", "sps", "match"),
    [
        ([1, 8, 4], [3.0, 2.0, 1.0], r"strictly increasing.*tokens\[1\] = 8"),
        ([0, 8], [3.0, 2.0], r"tokens\[0\] = 0"),
        ([1, 8], [3.0, -2.0], r"steps_per_second\[1\] = -2"),
        ([1, 8], [3.0, float("nan")], r"steps_per_second\[1\] = nan"),
        ([1, 8], [3.0], "equal lengths"),
        ([], [], "at least one grid point"),
    ],
)
def test_sps_table_rejects_bad_profiles(tokens, sps, match):
    with pytest.raises(ValueError, match=match):
        dspark.SpsTable(tokens, sps)


def test_sps_table_rejects_bad_files_and_options(tmp_path):
    with pytest.raises(ValueError, match="interpolation"):
        dspark.SpsTable([1], [1.0], interpolation="cubic")  # type: ignore[arg-type]
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format"):
        dspark.SpsTable.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        dspark.SpsTable.load(tmp_path / "y.json")
    with pytest.raises(ValueError, match="alpha"):
        dspark.LoadMonitor(dspark.SpsTable([1], [1.0]), alpha=0.0)
    with pytest.raises(ValueError, match="step_seconds"):
        dspark.LoadMonitor(dspark.SpsTable([1], [1.0])).observe(4, float("nan"))
    with pytest.raises(TypeError, match="sps"):
        dspark.PrefixScheduler([1.0, 2.0])  # type: ignore[arg-type]
