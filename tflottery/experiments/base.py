"""The registry of experiments by name (`ExperimentHparams.name` in gin).

It lives apart from the package's `__init__`, which imports every experiment
module to register it: an experiment module imports this one, not the
package, so no import goes round in a circle.
"""
from tflottery.registry import Registry

REGISTRY = Registry("experiment")
