"""The LT2 model zoo: looped LT2-family and Ouro-family models in several ONNX forms, with
golden inputs/outputs checked by independent oracles.

- ``lt2.zoo.registry``: the zoo (``ZOO``): each model's family, tiny and big configs, forms.
- ``lt2.zoo.gen``: ``python -m lt2.zoo.gen [--check] [--size tiny|1.3b] [--out DIR]`` builds
  every form, cross-checks the oracles and writes ``tests/fixtures/zoo/<model>/`` plus the
  manifest ``tests/models/zoo.toml``.
"""

from .registry import ZOO, Form, ZooModel, get  # noqa: F401
