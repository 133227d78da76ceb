"""lt2: Python side of the lt2c compiler.

Modules:
- `lt2.reference`: numpy reference of the ops lt2c compiles (ONNX semantics), and a full
  numpy forward of every looped model (`looped_forward`).
- `lt2.models.looped`: configurable builder of looped LT2/Ouro models (Loop and unrolled
  forms; standard, com.microsoft and decomposed spellings; external data).
- `lt2.models.example`: the tiny LT2-hybrid example model (a `looped` config).
- `lt2.lt2_ops`, `lt2.ms_ops`: numpy oracles of the `lt2` domain and of the onnxruntime
  contrib ops, as ReferenceEvaluator custom ops.
- `lt2.zoo`: the model zoo and its generator (`python -m lt2.zoo.gen`).
- `lt2.oracles`: thin wrappers that run a model through `onnx.reference.ReferenceEvaluator`
  (with the lt2/com.microsoft oracles) and onnxruntime (CPU), plus the relative-error
  measure used by every comparison.
- `lt2.examples.gen_example`: writes the `tests/fixtures/lt2_tiny` fixture.
"""

__all__ = ["reference", "oracles"]
