"""``num_workers`` as an int or an elastic ``(min, max)`` pair: the numbers raystx derives from it on the
driver (``raystx.train.workers``, the resource check, the config's ``scaling`` section). No Ray needed."""

from __future__ import annotations

import pytest
from ray.train import ScalingConfig

from raystx.config import ConfigError, ScalingSection
from raystx.train.build import scaling_config
from raystx.train.resources import InsufficientResourcesError, check_scaling_fits, scaling_need
from raystx.train.workers import describe_workers, is_elastic, max_workers, min_workers, worker_bounds


def test_fixed_and_elastic_bounds():
    assert worker_bounds(ScalingConfig(num_workers=3)) == (3, 3) and not is_elastic(
        ScalingConfig(num_workers=3)
    )
    elastic = ScalingConfig(num_workers=(1, 4))
    assert worker_bounds(elastic) == (1, 4) and is_elastic(elastic)
    assert (min_workers(elastic), max_workers(elastic)) == (1, 4)
    assert (
        describe_workers(elastic) == "1 to 4 (elastic)"
        and describe_workers(ScalingConfig(num_workers=2)) == "2"
    )
    assert worker_bounds(None) == (1, 1)


def test_an_elastic_group_needs_only_its_minimum_to_start():
    elastic = ScalingConfig(num_workers=(2, 8), resources_per_worker={"CPU": 2})
    assert scaling_need(elastic) == {"CPU": 4.0}  # 2 x 2, not Ray's upper bound 8 x 2
    assert scaling_need(ScalingConfig(num_workers=3, use_gpu=True)) == {"GPU": 3.0}
    check_scaling_fits(elastic, total={"CPU": 4.0})
    with pytest.raises(InsufficientResourcesError, match=r"asks for at least 2 x \{CPU: 2\} = \{CPU: 4\}"):
        check_scaling_fits(elastic, total={"CPU": 3.0})


def test_a_config_takes_a_min_max_pair():
    section = ScalingSection.model_validate({"num_workers": [1, 3], "elastic_resize_monitor_interval_s": 5})
    built = scaling_config(section)
    assert built.num_workers == (1, 3) and built.elastic_resize_monitor_interval_s == 5.0
    assert scaling_config({"num_workers": 2}).num_workers == 2
    for bad, needle in (([3, 1], "0 < min <= max"), ([1, 2, 3], "[min, max] pair"), (0, "greater than 0")):
        with pytest.raises(ConfigError, match="scaling.num_workers") as info:
            scaling_config({"num_workers": bad})
        assert needle in str(info.value)
