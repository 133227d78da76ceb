"""lt2: Python side of the lt2c compiler.

Modules:
- `lt2.reference`: numpy reference of the ops lt2c compiles (ONNX semantics), and a full
  numpy forward of the example LT2-hybrid model.
- `lt2.models.example`: builder of the tiny LT2-hybrid ONNX model (Loop and unrolled forms).
- `lt2.oracles`: thin wrappers that run a model through `onnx.reference.ReferenceEvaluator`
  and onnxruntime (CPU), plus the relative-error measure used by every comparison.
- `lt2.examples.gen_example`: writes the `tests/fixtures/lt2_tiny` fixture.
"""

__all__ = ["reference", "oracles"]
