"""Step parsing, conversion and dilation, against hand-computed numbers."""
import pytest

from tflottery.errors import ConfigError
from tflottery.steps import Step, to_iterations


@pytest.mark.parametrize("text,ep,it", [
    ("160ep", 160, 0), ("500it", 0, 500), ("2ep10it", 2, 10), (" 3ep ", 3, 0), (7, 0, 7),
])
def test_parse(text, ep, it):
    assert Step.parse(text) == Step(ep, it)


@pytest.mark.parametrize("bad", ["", "ep", "10", "1.5ep", "-3it", "10it2ep", "abc", None, 2.5, True])
def test_parse_rejects(bad):
    with pytest.raises(ConfigError):
        Step.parse(bad)


def test_iterations_and_str():
    # 391 iterations per epoch (CIFAR-10, batch 128): 2 * 391 + 10 = 792.
    assert Step.parse("2ep10it").iterations(391) == 792
    assert str(Step(2, 10)) == "2ep10it" and str(Step(0, 5)) == "5it" and str(Step(4, 0)) == "4ep"


def test_dilation_scales_and_rounds():
    # 90 epochs of 1251 iterations dilated by 0.2 -> 22518 iterations.
    assert to_iterations("90ep", 1251, dilation=0.2) == 22518
    # 63000 it * 1.5 = 94500; 7 it * 0.5 = 3.5 -> rounds to 4.
    assert to_iterations("63000it", 391, dilation=1.5) == 94500
    assert to_iterations("7it", 10, dilation=0.5) == 4
    with pytest.raises(ConfigError):
        to_iterations("7it", 10, dilation=0.0)


def test_ordering():
    assert Step(1, 0) < Step(1, 5) < Step(2, 0)
